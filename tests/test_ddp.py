"""Scale-out through Lightning's DDP strategy: two CPU processes."""

import subprocess
import sys
from pathlib import Path

import torch
import yaml
from change_data import make_change_folder
from ktda_data import make_grass


def test_change_task_fits_with_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    root = make_change_folder(tmp_path / 'data', size=64, pairs_per_split=4)
    config = {
        'trainer': {
            'max_epochs': 1,
            'accelerator': 'cpu',
            'devices': 2,
            'strategy': 'ddp',
            'enable_progress_bar': False,
            'default_root_dir': str(tmp_path / 'run'),
        },
        'model': {
            'class_path': 'PEFTChangeDetection',
            'init_args': {
                'model': 'upernet',
                'backbone': 'convnext_atto',
                'per_date_adapters': True,
                'decoder_kwargs': {'decoder_channels': 32},
            },
        },
        'data': {
            'class_path': 'ChangeFolderDataModule',
            'init_args': {'root': str(root), 'batch_size': 2, 'patch_size': 64},
        },
    }
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, '-m', 'geopeft.main', 'fit', '--config', str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Both ranks trained the same model: the checkpoint holds one state.
    (checkpoint,) = (tmp_path / 'run').rglob('*.ckpt')
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert state['global_step'] >= 1
    assert state['geopeft_task'].endswith('PEFTChangeDetection')


def test_ktda_fits_with_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    # The teacher is outside the module tree: DDP wraps the student only, and
    # every trainable parameter gets a gradient (no find_unused_parameters).
    root = make_grass(tmp_path / 'grass', counts={'train': 4, 'val': 2}, size=32)
    config = yaml.safe_load(
        (Path(__file__).parent / 'conf' / 'ktda_grass.yaml').read_text()
    )
    config['trainer'] = {
        'max_epochs': 1,
        'accelerator': 'cpu',
        'devices': 2,
        'strategy': 'ddp',
        'enable_progress_bar': False,
        'default_root_dir': str(tmp_path / 'run'),
    }
    config['data']['init_args']['root'] = str(root)
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, '-m', 'geopeft.main', 'fit', '--config', str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = (tmp_path / 'run').rglob('*.ckpt')
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert state['global_step'] == 1  # 4 images, batch 2 per rank, 2 ranks
    assert not any('teacher' in key for key in state['state_dict'])
