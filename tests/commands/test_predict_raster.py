"""``geopeft predict-raster`` end to end on tiny checkpoints and rasters."""

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from lightning.pytorch import LightningModule, Trainer
from rasterio.warp import transform_bounds
from rasters_data import make_raster, truncate_file

from geopeft.commands import predict_raster as command
from geopeft.predict import predict_raster
from geopeft.tasks import PEFTChangeDetection, PEFTSemanticSegmentation

TINY = {'model': 'unet', 'backbone': 'resnet18', 'weights': None, 'peft': 'full'}
FAST = ['--chip-size', '32', '--overlap', '8', '--blocksize', '16', '--no-progress']


def save(task: LightningModule, path: Path) -> Path:
    trainer = Trainer(
        accelerator='cpu',
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope='module')
def segmentation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = PEFTSemanticSegmentation(in_channels=3, num_classes=3, **TINY)
    return save(task, tmp_path_factory.mktemp('ckpt') / 'seg.ckpt')


@pytest.fixture(scope='module')
def change(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = PEFTChangeDetection(in_channels=3, **TINY)
    return save(task, tmp_path_factory.mktemp('ckpt') / 'change.ckpt')


def test_segmentation_checkpoint_to_class_map(
    tmp_path: Path, segmentation: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_raster(tmp_path / 'scene.tif', size=(70, 50), values='random')
    out = tmp_path / 'classes.tif'
    argv = [str(image), str(out), '--ckpt', str(segmentation), *FAST]
    assert command.main([*argv, '--mean', '2000', '--std', '1000']) == 0
    assert 'wrote' in capsys.readouterr().out
    with rasterio.open(image) as src, rasterio.open(out) as got:
        assert (got.crs, got.transform) == (src.crs, src.transform)
        assert (got.width, got.height, got.count) == (50, 70, 1)
        assert got.dtypes[0] == 'uint8' and got.nodata == 255
        classes = got.read(1)
    # The same as predict_raster with the task itself: the command wires it up.
    task = PEFTSemanticSegmentation.load_from_checkpoint(segmentation).eval()
    expected = tmp_path / 'expected.tif'
    predict_raster(
        lambda x: task((x - 2000) / 1000),
        image,
        expected,
        chip_size=32,
        overlap=8,
        blocksize=16,
        progress=False,
    )
    with rasterio.open(expected) as reference:
        np.testing.assert_array_equal(classes, reference.read(1))
    assert set(np.unique(classes)) <= {0, 1, 2}

    probabilities = tmp_path / 'probabilities.tif'
    argv = [str(image), str(probabilities), '--ckpt', str(segmentation), *FAST]
    assert command.main([*argv, '--output', 'probabilities']) == 0
    with rasterio.open(probabilities) as got:
        assert got.count == 3 and got.dtypes[0] == 'float32'
        np.testing.assert_allclose(got.read().sum(axis=0), 1.0, atol=1e-5)
    assert 'no normalisation' in capsys.readouterr().err


def test_config_datamodule_normalises_like_mean_std(
    tmp_path: Path, segmentation: Path
) -> None:
    image = make_raster(tmp_path / 'scene.tif', size=40, values='random')
    config = tmp_path / 'config.yaml'
    config.write_text(
        'data:\n'
        '  class_path: SceneFolderDataModule\n'
        '  init_args:\n'
        f'    root: {tmp_path / "nowhere"}\n'
        '    mean: [100.0, 200.0, 300.0]\n'
        '    std: [1000.0, 2000.0, 3000.0]\n'
    )
    by_config, by_values = tmp_path / 'a.tif', tmp_path / 'b.tif'
    base = ['--ckpt', str(segmentation), *FAST, '--mode', 'probabilities']
    assert (
        command.main([str(image), str(by_config), *base, '--config', str(config)]) == 0
    )
    values = ['--mean', '100', '200', '300', '--std', '1000', '2000', '3000']
    assert command.main([str(image), str(by_values), *base, *values]) == 0
    with rasterio.open(by_config) as a, rasterio.open(by_values) as b:
        np.testing.assert_allclose(a.read(), b.read(), atol=1e-6)


def test_config_alone_builds_the_model(tmp_path: Path) -> None:
    image = make_raster(tmp_path / 'scene.tif', size=32, values='random')
    config = tmp_path / 'config.yaml'
    config.write_text(
        'model:\n'
        '  class_path: PEFTSemanticSegmentation\n'
        '  init_args: {model: unet, backbone: resnet18, weights: null, peft: full,\n'
        '              in_channels: 3, num_classes: 2}\n'
    )
    out = tmp_path / 'out.tif'
    assert command.main([str(image), str(out), '--config', str(config), *FAST]) == 0
    assert out.exists()


def test_change_checkpoint_with_a_second_raster_on_another_grid(
    tmp_path: Path, change: Path
) -> None:
    first = make_raster(tmp_path / 'a.tif', size=(48, 40), values='random')
    with rasterio.open(first) as src:
        left, _, _, top = transform_bounds(src.crs, 'EPSG:3857', *src.bounds)
    second = make_raster(
        tmp_path / 'b.tif',
        size=(90, 90),
        values='random',
        seed=1,
        crs='EPSG:3857',
        res=9.0,
        origin=(left - 100, top + 100),
    )
    out = tmp_path / 'change.tif'
    argv = [str(first), str(second), str(out), '--ckpt', str(change), *FAST]
    assert command.main([*argv, '--mean', '2000', '--std', '1000']) == 0
    with rasterio.open(first) as src, rasterio.open(out) as got:
        assert (got.crs, got.transform, got.shape) == (
            src.crs,
            src.transform,
            src.shape,
        )
        assert set(np.unique(got.read(1))) <= {0, 1}


@pytest.mark.parametrize(
    ('case', 'message'),
    [
        ('bands', 'takes 3 bands per image.*gives 4.*--bands'),
        ('exists', 'exists: pass --overwrite'),
        ('missing', 'input raster not found'),
        ('corrupt', 'not a readable raster'),
        ('count', 'takes one raster, got 2'),
        ('ckpt', 'checkpoint not found'),
    ],
)
def test_bad_input_fails_with_the_fix(
    tmp_path: Path,
    segmentation: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    image = make_raster(tmp_path / 'scene.tif', size=32)
    out = tmp_path / 'out.tif'
    inputs = [str(image)]
    ckpt = str(segmentation)
    match case:
        case 'bands':
            inputs = [str(make_raster(tmp_path / 'four.tif', size=32, bands=4))]
        case 'exists':
            out.write_bytes(b'keep')
        case 'missing':
            inputs = [str(tmp_path / 'nope.tif')]
        case 'corrupt':
            inputs = [str(truncate_file(image, keep=0.05))]
        case 'count':
            inputs = [str(image), str(image)]
        case 'ckpt':
            ckpt = str(tmp_path / 'none.ckpt')
    assert command.main([*inputs, str(out), '--ckpt', ckpt, *FAST]) == 1
    err = capsys.readouterr().err
    assert 'geopeft predict-raster: error:' in err
    assert re.search(message, err), err
    if case == 'exists':
        assert out.read_bytes() == b'keep'
    else:
        assert not out.exists()


def test_usage_errors() -> None:
    with pytest.raises(SystemExit):
        command.main(['a.tif', 'b.tif'])  # no model
    with pytest.raises(SystemExit):
        command.main(['only.tif', '--ckpt', 'x.ckpt'])


def test_task_class_of_resolves_any_geopeft_task() -> None:
    from geopeft.tasks import KTDASegmentation

    name = 'geopeft.tasks.ktda.KTDASegmentation'
    assert command.task_class_of({'geopeft_task': name}) is KTDASegmentation
    with pytest.raises(ValueError, match='not a geopeft task'):
        command.task_class_of({'geopeft_task': 'os.path.join'})
