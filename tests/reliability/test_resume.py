"""kill -9 during ``geopeft fit``: resuming from the last checkpoint repeats the run.

Three fits of the same config on a generated scene (3 epochs of random patches,
random flips and rotations): one uninterrupted, one killed with SIGKILL in the
middle of its second epoch and resumed with ``--ckpt_path`` from its
``last.ckpt``, and, to show that the comparison can fail, the same resume from a
checkpoint whose random-number states were removed. Only the first two end with
the same weights, bit for bit.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from rasters_data import make_labelled_scene

from geopeft.tasks.resume import RNG_KEY

KILLER = '''
import os
import signal

from lightning.pytorch import Callback


class KillDuringEpoch(Callback):
    """SIGKILL this process after training batch *batch* of epoch *epoch*."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _config(image: Path, mask: Path, killer: bool) -> dict[str, Any]:
    callbacks: list[dict[str, Any]] = [
        {'class_path': 'ModelCheckpoint', 'init_args': {'save_last': True}}
    ]
    if killer:
        callbacks.append(
            {
                'class_path': 'killer.KillDuringEpoch',
                'init_args': {'epoch': 1, 'batch': 1},
            }
        )
    return {
        'seed_everything': 3,
        'trainer': {
            'accelerator': 'cpu',
            'max_epochs': 3,
            'logger': False,
            'enable_progress_bar': False,
            'enable_model_summary': False,
            'callbacks': callbacks,
        },
        'model': {
            'class_path': 'PEFTSemanticSegmentation',
            'init_args': {
                'model': 'unet',
                'backbone': 'resnet18',
                'weights': None,
                'peft': 'upetu',
                'in_channels': 3,
                'num_classes': 2,
                'decoder_kwargs': {'decoder_channels': [16, 8, 8, 8, 8]},
            },
        },
        'data': {
            'class_path': 'RasterSegmentationDataModule',
            'init_args': {
                'images': str(image),
                'labels': str(mask),
                'batch_size': 2,
                'patch_size': 32,
                'length': 6,
                'split_fractions': [0.5, 0.25, 0.25],
                'split_block_size': 32,
                'mean': [2000.0],
                'std': [1000.0],
            },
        },
    }


def _fit(
    root: Path, config: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    path = root / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(root), *sys.path])}
    argv = [sys.executable, '-m', 'geopeft.main', 'fit', '--config', str(path)]
    argv += ['--trainer.default_root_dir', str(root), *extra]
    return subprocess.run(
        argv, cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def _last(root: Path) -> Path:
    found = sorted(root.rglob('last.ckpt'))
    assert len(found) == 1, found
    return found[0]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    assert checkpoint['epoch'] == 2
    return checkpoint['state_dict']


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='needs SIGKILL')
def test_fit_killed_and_resumed_ends_with_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    image, mask = make_labelled_scene(tmp_path / 'data', size=128, block=8, tile=16)
    runs = {name: tmp_path / name for name in ('whole', 'killed', 'no_rng')}
    for folder in runs.values():
        folder.mkdir()
        (folder / 'killer.py').write_text(KILLER)

    whole = _fit(runs['whole'], _config(image, mask, killer=False))
    assert whole.returncode == 0, whole.stderr[-3000:]
    expected = _weights(_last(runs['whole']))

    killed = _fit(runs['killed'], _config(image, mask, killer=True))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = _last(runs['killed'])
    saved = torch.load(last, map_location='cpu', weights_only=True)
    assert saved['epoch'] == 0 and RNG_KEY in saved

    # The same resume from a copy without the random-number states.
    del saved[RNG_KEY]
    stripped = runs['no_rng'] / 'epoch0.ckpt'
    torch.save(saved, stripped)

    config = _config(image, mask, killer=False)
    resumed = _fit(runs['killed'], config, '--ckpt_path', str(last))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _equal(_weights(_last(runs['killed'])), expected)

    other = _fit(runs['no_rng'], config, '--ckpt_path', str(stripped))
    assert other.returncode == 0, other.stderr[-3000:]
    assert not _equal(_weights(_last(runs['no_rng'])), expected)
