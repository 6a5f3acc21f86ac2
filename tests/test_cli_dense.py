"""End-to-end CLI tests of the dense tasks on tiny generated data.

As TorchGeo tests its tasks: a YAML in ``tests/conf`` per datamodule, run through
``geopeft fit`` (bare class names) or ``torchgeo fit`` (full class paths), then
``validate``/``test``/``predict`` from the checkpoint. Test metrics are read back
from a CSVLogger's ``metrics.csv``; predictions from the CLI's trainer.
"""

import importlib
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from change_data import make_change_folder, make_levircd, make_oscd
from cli_helpers import logged_metrics, trainer_args
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from segmentation_data import make_loveda, make_potsdam
from torchgeo.datamodules import BaseDataModule
from torchgeo.datasets import LoveDA, Potsdam2D
from torchgeo.main import main as torchgeo_main
from torchgeo.tasks import BaseTask

from geopeft.datamodules import LEVIRCDChangeDataModule, OSCDChangeDataModule
from geopeft.main import lightning_cli, main
from geopeft.tasks import PEFTChangeDetection

CONF = Path(__file__).parent / 'conf'
REPO = Path(__file__).parents[1]
EXPERIMENTS = REPO / 'experiments' / 'upetu'


@pytest.fixture(scope='module')
def change_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_change_folder(tmp_path_factory.mktemp('change_folder'), size=32)


def _args(config: str, root: Path, out: Path, *, dict_kwargs: bool = True) -> list[str]:
    """CLI arguments: a tests/conf YAML, its data root, one CPU epoch, CSV logs."""
    where = 'dict_kwargs' if dict_kwargs else 'init_args'
    return [
        '--config',
        str(CONF / config),
        f'--data.{where}.root',
        str(root),
        *trainer_args(out),
    ]


def _checkpoint(out: Path) -> Path:
    """The checkpoint fit wrote (the monitored best one when there is one)."""
    ckpts = sorted(out.rglob('*.ckpt'))
    assert ckpts, 'fit wrote no checkpoint'
    best = [c for c in ckpts if c.name != 'last.ckpt']
    return (best or ckpts)[-1]


def _predictions(args: list[str]) -> list[Any]:
    """Run ``predict`` (as ``geopeft predict`` does) and return what it predicted."""
    cli = lightning_cli(['predict', *args])
    return cli.trainer.predict_loop.predictions


def test_change_folder_fit_validate_test_predict_resume(
    change_folder: Path, tmp_path: Path
) -> None:
    args = _args('change_folder.yaml', change_folder, tmp_path, dict_kwargs=False)
    # The YAML's ModelCheckpoint monitors val_ChangedF1: fit fails if not logged.
    main(['fit', *args])
    ckpt = _checkpoint(tmp_path)
    assert (ckpt.parent / 'last.ckpt').is_file()
    main(['validate', *args, '--ckpt_path', str(ckpt)])
    main(['test', *args, '--ckpt_path', str(ckpt)])
    logged = logged_metrics(tmp_path)
    for name in ('ChangedF1', 'ChangedPrecision', 'ChangedRecall', 'ChangedIoU'):
        assert 0 <= logged[f'test_{name}'] <= 1
    assert 'val_ChangedF1' in logged
    batches = _predictions([*args, '--ckpt_path', str(ckpt)])
    assert sum(len(b) for b in batches) == 4  # the test pairs
    for probabilities in batches:
        assert probabilities.shape == (2, 1, 32, 32)
        assert 0 <= probabilities.min() and probabilities.max() <= 1
    # Training resumes from the last checkpoint: epoch 1 of 0..1 follows.
    last = ckpt.parent / 'last.ckpt'
    main(['fit', *args, '--trainer.max_epochs', '2', '--ckpt_path', str(last)])
    assert list(tmp_path.rglob('epoch=1-step=4.ckpt'))


@pytest.mark.parametrize(
    ('config', 'make', 'predictor', 'tests'),
    [
        ('change_levircd.yaml', make_levircd, LEVIRCDChangeDataModule, 2),
        ('change_oscd.yaml', make_oscd, OSCDChangeDataModule, 2),
    ],
    ids=['levircd', 'oscd'],
)
def test_torchgeo_change_datamodules_fit_test_predict(
    config: str,
    make: Callable[..., Path],
    predictor: type,
    tests: int,
    tmp_path: Path,
) -> None:
    # TorchGeo's LEVIRCDDataModule / OSCDDataModule unchanged for fit and test;
    # they define no predict stage, geopeft's subclasses of them do.
    root = make(tmp_path / 'data', size=32)
    out = tmp_path / 'out'
    args = _args(config, root, out)
    main(['fit', *args])
    ckpt = _checkpoint(out)
    main(['test', *args, '--ckpt_path', str(ckpt)])
    assert 0 <= logged_metrics(out)['test_ChangedF1'] <= 1
    predicting = predictor.__name__
    batches = _predictions(
        [*args, '--data.class_path', predicting, '--ckpt_path', str(ckpt)]
    )
    assert sum(len(b) for b in batches) == tests
    assert all(b.shape[1:] == (1, 32, 32) for b in batches)
    task = PEFTChangeDetection.load_from_checkpoint(ckpt, weights_only=True)
    in_channels = yaml.safe_load((CONF / config).read_text())['model']['init_args']
    assert task.hparams['in_channels'] == in_channels.get('in_channels', 3)


def test_torchgeo_fit_full_class_paths(change_folder: Path, tmp_path: Path) -> None:
    args = _args(
        'change_folder_torchgeo.yaml', change_folder, tmp_path, dict_kwargs=False
    )
    torchgeo_main(['fit', *args])
    ckpt = _checkpoint(tmp_path)
    task = PEFTChangeDetection.load_from_checkpoint(ckpt, weights_only=True)
    assert task.hparams['per_date_adapters'] is True
    assert task.hparams['fusion'] == 'concat+diff'
    assert task.model.encoder.encoder_b is not None
    # The same YAML works with the geopeft command too.
    main(['test', *args, '--ckpt_path', str(ckpt)])
    assert 'test_ChangedF1' in logged_metrics(tmp_path)


def test_bare_class_names_resolve_in_a_fresh_process(
    change_folder: Path, tmp_path: Path
) -> None:
    # In this process geopeft.tasks is already imported; a new one shows that the
    # geopeft command itself makes PEFTChangeDetection and ChangeFolderDataModule
    # resolvable by bare name.
    args = _args('change_folder.yaml', change_folder, tmp_path, dict_kwargs=False)
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
    result = subprocess.run(
        [sys.executable, '-m', 'geopeft.main', 'fit', *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _checkpoint(tmp_path).is_file()


def test_loveda_fit_validate_predict(tmp_path: Path) -> None:
    # TorchGeo's LoveDADataModule unchanged. LoveDA's test masks are not public,
    # so it has no test stage: validate scores Val, predict runs on Test.
    root = make_loveda(tmp_path / 'loveda', size=64)
    out = tmp_path / 'out'
    args = _args('segmentation_loveda.yaml', root, out)
    main(['fit', *args])
    ckpt = _checkpoint(out)
    main(['validate', *args, '--ckpt_path', str(ckpt)])
    logged = logged_metrics(out)
    for name in ('val_loss', 'val_AverageJaccardIndex', 'val_OverallAccuracy'):
        assert name in logged
    batches = _predictions([*args, '--ckpt_path', str(ckpt)])
    assert sum(len(b['probabilities']) for b in batches) == 2  # 1 urban + 1 rural
    for batch in batches:
        probabilities = batch['probabilities']
        assert probabilities.shape[1:] == (8, 64, 64)
        torch.testing.assert_close(
            probabilities.sum(dim=1), torch.ones(len(probabilities), 64, 64)
        )


def test_potsdam_fit_test(tmp_path: Path) -> None:
    # TorchGeo's Potsdam2DDataModule unchanged: 4-band tiles, RGB-coded labels.
    root = make_potsdam(tmp_path / 'potsdam', size=64)
    out = tmp_path / 'out'
    args = _args('segmentation_potsdam.yaml', root, out)
    main(['fit', *args])
    main(['test', *args, '--ckpt_path', str(_checkpoint(out))])
    assert 0 <= logged_metrics(out)['test_AverageJaccardIndex'] <= 1


@pytest.mark.parametrize(
    'config', sorted(EXPERIMENTS.glob('*.yaml')), ids=lambda path: path.stem
)
def test_experiment_configs_instantiate(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parse and instantiate (run=False) as 'torchgeo fit --config' would, with a
    # tiny random-init backbone so that nothing downloads.
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    class_path = yaml.safe_load(config.read_text())['model']['class_path']
    module, _, name = class_path.rpartition('.')
    task_class = getattr(importlib.import_module(module), name)
    # The timm name is 'backbone' for the dense tasks, 'model' for classification.
    parameters = inspect.signature(task_class).parameters
    backbone = 'backbone' if 'backbone' in parameters else 'model'
    cli = LightningCLI(
        model_class=BaseTask,
        datamodule_class=BaseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=[
            '--config',
            str(config),
            f'--model.init_args.{backbone}',
            'convnext_atto',
            '--model.init_args.weights',
            'null',
            '--trainer.accelerator',
            'cpu',
            '--trainer.default_root_dir',
            str(tmp_path),
        ],
    )
    assert type(cli.model) is task_class
    assert isinstance(cli.datamodule, BaseDataModule)
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert checkpoints, f'{config.name} saves no checkpoint'
    logged = {*cli.model.val_metrics.keys(), 'val_loss'}
    for checkpoint in checkpoints:
        assert checkpoint.monitor in logged, (checkpoint.monitor, sorted(logged))
        assert checkpoint.mode == ('min' if 'loss' in checkpoint.monitor else 'max')


def test_catalog_segmentation_entries_match_torchgeo_and_configs() -> None:
    catalog = yaml.safe_load((REPO / 'data_catalog.yaml').read_text())['datasets']
    loveda, potsdam = catalog['loveda'], catalog['potsdam']
    # Listed by mask value: 0 is no-data (TorchGeo's tuple lists it last).
    assert loveda['classes']['names'][0] == 'no-data'
    assert set(loveda['classes']['names']) == set(LoveDA.classes)
    assert potsdam['classes']['names'] == list(Potsdam2D.classes)
    for key, entry in (('loveda', loveda), ('potsdam', potsdam)):
        config = yaml.safe_load((EXPERIMENTS / f'{key}.yaml').read_text())
        init_args = config['model']['init_args']
        assert init_args['num_classes'] == entry['classes']['count']
        assert init_args.get('bands', ['red', 'green', 'blue']) == entry['bands']
        assert config['data']['class_path'] == entry['datamodule']
