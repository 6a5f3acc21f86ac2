"""End-to-end CLI tests of the raster data modules on tiny generated GeoTIFFs.

``geopeft fit`` with ``tests/conf/rasters_*.yaml`` (bare class names) on a scene
written by ``tests/rasters_data.py``, then ``test`` (and ``predict``) from the
checkpoint, as ``tests/test_cli_dense.py`` does for the other data modules.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_helpers import logged_metrics, trainer_args
from rasters_data import (
    DEFAULT_ORIGIN,
    make_labelled_scene,
    make_raster,
    make_vector_labels,
    pixel_box,
)

from geopeft.datasets import RasterInputError
from geopeft.main import lightning_cli, main

CONF = Path(__file__).parent / 'conf'


def _checkpoint(out: Path) -> Path:
    """The checkpoint fit wrote (the monitored best one)."""
    ckpts = sorted(c for c in out.rglob('*.ckpt') if c.name != 'last.ckpt')
    assert ckpts, 'fit wrote no checkpoint'
    return ckpts[-1]


def _args(config: str, data: dict[str, str], out: Path) -> list[str]:
    """CLI arguments: a tests/conf YAML, its data paths, one CPU epoch, CSV logs."""
    args = ['--config', str(CONF / config)]
    for key, value in data.items():
        args += [f'--data.init_args.{key}', value]
    return [*args, *trainer_args(out), '--trainer.enable_progress_bar', 'false']


def test_segmentation_fit_test_predict(tmp_path: Path) -> None:
    image, mask = make_labelled_scene(
        tmp_path / 'data', size=128, num_classes=3, block=8, tile=16
    )
    out = tmp_path / 'out'
    args = _args(
        'rasters_segmentation.yaml', {'images': str(image), 'labels': str(mask)}, out
    )
    main(['fit', *args])
    ckpt = _checkpoint(out)
    main(['test', *args, '--ckpt_path', str(ckpt)])
    logged = logged_metrics(out)
    assert 'val_loss' in logged
    assert 0 <= logged['test_AverageJaccardIndex'] <= 1
    cli = lightning_cli(['predict', *args, '--ckpt_path', str(ckpt)])
    batches = cli.trainer.predict_loop.predictions
    assert batches
    assert all(b['probabilities'].shape[1:] == (3, 32, 32) for b in batches)


def test_segmentation_with_vector_labels_fits(tmp_path: Path) -> None:
    image = make_raster(tmp_path / 'image.tif', size=96, tile=16, values='random')
    polygons = [
        pixel_box(DEFAULT_ORIGIN, 10.0, rows=(0, 40), cols=(0, 96)),
        pixel_box(DEFAULT_ORIGIN, 10.0, rows=(60, 90), cols=(10, 50)),
    ]
    labels = make_vector_labels(tmp_path / 'labels.gpkg', polygons, [1, 2], column='lc')
    out = tmp_path / 'out'
    args = _args(
        'rasters_segmentation.yaml',
        {'images': str(image), 'labels': str(labels), 'label_column': 'lc'},
        out,
    )
    main(['fit', *args])
    assert _checkpoint(out).is_file()


def test_change_fit_test(tmp_path: Path) -> None:
    data = tmp_path / 'data'
    a, change = make_labelled_scene(data, size=128, num_classes=2, block=8, name='a')
    b, _ = make_labelled_scene(data, size=128, block=8, name='b', seed=1)
    out = tmp_path / 'out'
    args = _args(
        'rasters_change.yaml',
        {'images_a': str(a), 'images_b': str(b), 'labels': str(change)},
        out,
    )
    main(['fit', *args])
    main(['test', *args, '--ckpt_path', str(_checkpoint(out))])
    logged = logged_metrics(out)
    assert 'val_ChangedF1' in logged
    assert 0 <= logged['test_ChangedF1'] <= 1


def test_band_mismatch_with_the_task_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_raster(tmp_path / 'image.tif', size=64, bands=4)
    mask = make_raster(
        tmp_path / 'mask.tif', size=64, values=np.zeros((64, 64), 'uint8')
    )
    args = _args(
        'rasters_segmentation.yaml',
        {'images': str(image), 'labels': str(mask), 'in_channels': 'null'},
        tmp_path / 'out',
    )
    argv = ['fit', *args, '--data.init_args.mean', '[0.0]']
    argv += ['--data.init_args.std', '[1.0]']
    # One line on the terminal, exit status 1; --debug raises with the traceback.
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith('geopeft fit: error: ') and len(err) == 2, err
    assert re.search(r"4 band.*task's in_channels", err[0])
    with pytest.raises(RasterInputError, match=r"4 band.*task's in_channels"):
        main([*argv, '--debug'])


def _ddp_data(task: str, root: Path) -> tuple[str, dict[str, str]]:
    """Config file and data paths of a DDP run of *task* on generated rasters."""
    if task == 'segmentation':
        image, mask = make_labelled_scene(
            root, size=128, num_classes=3, block=8, tile=16
        )
        return 'rasters_segmentation.yaml', {'images': str(image), 'labels': str(mask)}
    a, change = make_labelled_scene(
        root, size=128, num_classes=2, block=8, tile=16, name='a'
    )
    b, _ = make_labelled_scene(root, size=128, block=8, tile=16, name='b', seed=1)
    paths = {'images_a': str(a), 'images_b': str(b), 'labels': str(change)}
    return 'rasters_change.yaml', paths


@pytest.mark.parametrize('task', ['segmentation', 'change'])
def test_fits_with_ddp_on_two_cpu_processes(task: str, tmp_path: Path) -> None:
    # The samplers shard themselves (and are DistributedSamplers, so Lightning does
    # not shard them again): 8 patches per epoch, 2 ranks, batch 2 -> 2 steps.
    name, paths = _ddp_data(task, tmp_path / 'data')
    config = yaml.safe_load((CONF / name).read_text())
    config['trainer'] = {
        'max_epochs': 1,
        'accelerator': 'cpu',
        'devices': 2,
        'strategy': 'ddp',
        'enable_progress_bar': False,
        'enable_model_summary': False,
        'limit_val_batches': 1,
        'default_root_dir': str(tmp_path / 'run'),
    }
    config['data']['init_args'].update(paths, length=8, batch_size=2)
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run(
        [sys.executable, '-m', 'geopeft.main', 'fit', '--config', str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = (tmp_path / 'run').rglob('*.ckpt')
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert state['global_step'] == 2
