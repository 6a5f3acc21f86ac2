"""Bad inputs found before any work: one line that matches the cause."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rasters_data import make_raster

from geopeft.datamodules import RasterSegmentationDataModule
from geopeft.datasets import RasterInputError, RasterSegmentationDataset
from geopeft.main import main
from geopeft.predict import predict_raster


@pytest.mark.parametrize(
    ('argv', 'message'),
    [
        (['--scene', 'missing.tif'], '--scene missing.tif does not exist'),
        (['--data-root', 'nowhere'], '--data-root nowhere does not exist'),
        (['--data-root', 'one_class'], 'holds 1 class folder'),
        (['--scene', 'notes.tif'], '--scene notes.tif is not a readable raster'),
        (['--scene', 'gray.tif'], 'has 1 band\\(s\\), but --scene-bands'),
    ],
)
def test_demo_checks_its_inputs_before_training(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'one_class' / 'a').mkdir(parents=True)
    (tmp_path / 'notes.tif').write_text('not a raster')
    make_raster(tmp_path / 'gray.tif', size=16, bands=1, dtype='uint8')
    assert main(['demo', '--out', 'out', *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith('geopeft demo: error: '), err
    assert re.search(message, err.splitlines()[0])
    assert not (tmp_path / 'out' / 'data').exists()  # nothing generated


def _footprints(path: Path, features: list[dict]) -> Path:
    collection = {
        'type': 'FeatureCollection',
        'crs': {'type': 'name', 'properties': {'name': 'EPSG:32616'}},
        'features': features,
    }
    path.write_text(json.dumps(collection))
    return path


def test_a_geojson_without_features_says_so(tmp_path: Path) -> None:
    image = make_raster(tmp_path / 'image.tif', size=32, crs='EPSG:32616')
    labels = _footprints(tmp_path / 'empty.geojson', [])
    for column in ('class', None):
        with pytest.raises(RasterInputError, match='has no features'):
            RasterSegmentationDataset(image, labels, label_column=column)


def test_a_patch_larger_than_the_raster_says_so(tmp_path: Path) -> None:
    image = make_raster(tmp_path / 'image.tif', size=(48, 64), bands=1)
    labels = make_raster(
        tmp_path / 'mask.tif', values=np.zeros((48, 64), dtype='uint8')
    )
    module = RasterSegmentationDataModule(image, labels, patch_size=96, batch_size=2)
    with pytest.raises(ValueError, match=r'96 x 96 px is larger than the rasters '
                       r'\(48 x 64 px.*at most 48 px'):  # fmt: skip
        module.setup('fit')


def test_an_image_without_crs_warns_that_the_map_has_none(tmp_path: Path) -> None:
    png = tmp_path / 'photo.png'
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(png)

    def model(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], -x[:, :1]], dim=1)

    out = tmp_path / 'map.tif'
    with pytest.warns(UserWarning, match='has no CRS.*no georeference either'):
        predict_raster(model, png, out, chip_size=32, overlap=8, progress=False)
    assert out.exists()


def _damaged(path: Path, damage: str) -> Path:
    """A GeoTIFF cut to a third of its bytes, or bytes that are no raster."""
    if damage == 'garbage':
        path.write_bytes(b'not a GeoTIFF\n' * 100)
        return path
    make_raster(path, size=64, bands=1, tile=16, values='random')
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_a_corrupt_geotiff_is_one_line_naming_it(
    tmp_path: Path,
    damage: str,
    seg_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scene = _damaged(tmp_path / 'scene.tif', damage)
    out = tmp_path / 'map.tif'
    argv = ['predict-raster', str(scene), str(out), '--ckpt', str(seg_checkpoint)]
    argv += ['--mean', '0', '--std', '1', '--chip-size', '16', '--overlap', '4']
    assert main([*argv, '--no-progress']) == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if 'error:' in x]
    assert len(errors) == 1 and 'scene.tif' in errors[0], errors
    assert not out.exists()

    labels = make_raster(tmp_path / 'mask.tif', values=np.zeros((64, 64), 'uint8'))
    module = RasterSegmentationDataModule(scene, labels, patch_size=16, batch_size=2)
    with pytest.raises(RasterInputError, match='scene.tif'):
        module.setup('fit')
        next(iter(module.train_dataloader()))
