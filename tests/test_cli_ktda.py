"""End-to-end CLI tests of KTDA on a generated grass folder (CPU only).

``geopeft fit/validate/test/predict`` with a tiny student and a tiny DINOv2-shaped
teacher saved to a local file; the recipes and ablations of ``experiments/ktda``
instantiate as ``geopeft fit --config`` reads them.
"""

from pathlib import Path

import pytest
import rasterio
import torch
import yaml
from cli_helpers import logged_metrics, trainer_args
from ktda_data import make_grass
from ktda_helpers import TINY_TAPS, TINY_TEACHER
from lightning.pytorch.cli import LightningCLI
from rasters_data import make_raster
from torchgeo.datamodules import BaseDataModule
from torchgeo.tasks import BaseTask

from geopeft.distill import DINOv2Teacher
from geopeft.main import lightning_cli, main
from geopeft.tasks import KTDASegmentation

CONF = Path(__file__).parent / 'conf'
EXPERIMENTS = Path(__file__).parents[1] / 'experiments' / 'ktda'


@pytest.fixture(scope='module')
def grass(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_grass(
        tmp_path_factory.mktemp('grass'), counts={'train': 4, 'val': 2}, size=32
    )


@pytest.fixture(scope='module')
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp('teacher') / 'dinov2_tiny.pth'
    teacher = DINOv2Teacher('dinov2_vits14', taps=TINY_TAPS, model_kwargs=TINY_TEACHER)
    torch.save(teacher.model.state_dict(), path)
    return path


def _args(root: Path, out: Path, teacher: Path | None) -> list[str]:
    args = [
        '--config',
        str(CONF / 'ktda_grass.yaml'),
        '--data.dict_kwargs.root',
        str(root),
        *trainer_args(out),
    ]
    if teacher is not None:
        args += ['--model.init_args.teacher_weights', str(teacher)]
    return args


def test_fit_validate_test_predict_resume(
    grass: Path, teacher_file: Path, tmp_path: Path
) -> None:
    args = _args(grass, tmp_path, teacher_file)
    main(['fit', *args])
    ckpts = sorted(tmp_path.rglob('*.ckpt'))
    best = next(c for c in ckpts if c.name != 'last.ckpt')
    logged = logged_metrics(tmp_path)
    for name in ('train_loss_seg', 'train_loss_aux', 'train_loss_distill'):
        assert name in logged
    assert 0 <= logged['val_AverageJaccardIndex'] <= 1
    checkpoint = torch.load(best, weights_only=True)
    assert not any('teacher' in key for key in checkpoint['state_dict'])
    assert 'teacher_weights' not in checkpoint['hyper_parameters']
    # Evaluation and prediction without the teacher: no teacher_weights given.
    plain = _args(grass, tmp_path, None)
    main(['validate', *plain, '--ckpt_path', str(best)])
    main(['test', *plain, '--ckpt_path', str(best)])
    logged = logged_metrics(tmp_path)
    assert 0 <= logged['test_AverageJaccardIndex'] <= 1
    assert 0 <= logged['test_OverallAccuracy'] <= 1
    cli = lightning_cli(['predict', *plain, '--ckpt_path', str(best)])
    batches = cli.trainer.predict_loop.predictions
    assert sum(b['probabilities'].shape[0] for b in batches) == 2  # the val images
    assert batches[0]['probabilities'].shape[1:] == (5, 32, 32)
    assert isinstance(cli.model, KTDASegmentation)
    assert cli.model.teacher is None
    # A whole georeferenced scene through the student only.
    scene = make_raster(tmp_path / 'scene.tif', size=(45, 70), dtype='uint8')
    mapped = tmp_path / 'scene_classes.tif'
    norm = ['--mean', '123', '116', '103', '--std', '58', '57', '57']
    chips = ['--chip-size', '28', '--overlap', '8', '--no-progress']
    argv = ['predict-raster', '--ckpt', str(best), str(scene), str(mapped)]
    assert main([*argv, *norm, *chips]) == 0
    with rasterio.open(scene) as src, rasterio.open(mapped) as out:
        assert out.crs == src.crs
        assert out.transform == src.transform
        assert out.shape == src.shape
        assert out.read(1).max() < 5
    # Training resumes from the last checkpoint (the teacher is built again).
    last = best.parent / 'last.ckpt'
    main(['fit', *args, '--trainer.max_epochs', '2', '--ckpt_path', str(last)])
    assert list(tmp_path.rglob('epoch=1-step=4.ckpt'))


def test_an_ablation_config_overrides_the_recipe(grass: Path, tmp_path: Path) -> None:
    cli = lightning_cli(
        [
            'fit',
            *_args(grass, tmp_path, None),
            '--config',
            str(EXPERIMENTS / 'ablations' / 'no_distill.yaml'),
            '--config',
            str(EXPERIMENTS / 'ablations' / 'fam_only.yaml'),
        ]
    )
    model = cli.model
    assert isinstance(model, KTDASegmentation)
    assert model.hparams['distill_weight'] == 0.0
    assert model.model.fmm.kind == 'none'
    assert model.hparams['backbone'] == 'resnet18'  # the rest from the first config
    assert model.teacher is None  # no distillation: never built


RECIPES = sorted(EXPERIMENTS.glob('*.yaml'))
ABLATIONS = sorted((EXPERIMENTS / 'ablations').glob('*.yaml'))


@pytest.mark.parametrize(
    'configs',
    [[r] for r in RECIPES] + [[EXPERIMENTS / 'grass.yaml', a] for a in ABLATIONS],
    ids=lambda configs: '+'.join(p.stem for p in configs),
)
def test_recipes_and_ablations_instantiate(configs: list[Path], tmp_path: Path) -> None:
    # As 'torchgeo fit --config' reads them, with a tiny student and teacher width
    # so that nothing downloads and the reference-size FMM stays small.
    args: list[str] = []
    for config in configs:
        args += ['--config', str(config)]
    cli = LightningCLI(
        model_class=BaseTask,
        datamodule_class=BaseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=[
            *args,
            '--model.init_args.backbone',
            'convnext_atto',
            '--model.init_args.weights',
            'null',
            '--model.init_args.teacher_kwargs',
            '{"embed_dim": 32, "depth": 24, "num_heads": 2}',
            '--trainer.accelerator',
            'cpu',
            '--trainer.default_root_dir',
            str(tmp_path),
        ],
    )
    assert isinstance(cli.model, KTDASegmentation)
    assert cli.model.teacher is None


def test_recipes_follow_the_reference() -> None:
    grass = yaml.safe_load((EXPERIMENTS / 'grass.yaml').read_text())
    cloud = yaml.safe_load((EXPERIMENTS / 'cloud.yaml').read_text())
    for config, (crop, batch, warmup, total) in (
        (grass, (256, 4, 1150, 23000)),
        (cloud, (512, 2, 2000, 80000)),
    ):
        model = config['model']['init_args']
        data = config['data']['init_args']
        assert (data['patch_size'], data['batch_size']) == (crop, batch)
        assert (model['warmup_iters'], model['max_iters']) == (warmup, total)
        assert config['trainer']['max_steps'] == total
        assert model['lr'] == 6e-4
        assert model['weight_decay'] == 0.01
        assert model['scheduler'] == 'poly'
        assert (model['alpha'], model['temperature'], model['aux_weight']) == (
            0.5,
            1.0,
            0.4,
        )
        assert model['model_kwargs'] == {'drop_path_rate': 0.4}
        monitor = config['trainer']['callbacks'][0]['init_args']
        assert monitor == {
            'monitor': 'val_AverageJaccardIndex',
            'mode': 'max',
            'save_last': True,
        }
    assert grass['model']['init_args']['num_classes'] == 5
    assert cloud['model']['init_args']['num_classes'] == 4
