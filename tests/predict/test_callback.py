"""GeoTIFFPredictionWriter: trainer.predict over a RasterDataset -> one GeoTIFF."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from lightning.pytorch import LightningModule, Trainer
from rasters_data import make_raster
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import GridGeoSampler

from geopeft.predict import GeoTIFFPredictionWriter, RasterGrid


class IdentityTask(LightningModule):
    """Predicts each chip's bands as its "probabilities", like TorchGeo's tasks."""

    def __init__(self, dictionary: bool = True) -> None:
        super().__init__()
        self.dictionary = dictionary
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        if not self.dictionary:  # like TorchGeo's ChangeDetection.predict_step
            return batch['image']
        return {
            'probabilities': batch['image'],
            'bounds': batch['bounds'],
            'transform': batch['transform'],
        }


def predict(
    raster: Path, writer: GeoTIFFPredictionWriter, *, dictionary: bool = True
) -> None:
    dataset = RasterDataset(paths=str(raster))
    sampler = GridGeoSampler(dataset, size=32, stride=24)
    loader = DataLoader(
        dataset, sampler=sampler, batch_size=4, collate_fn=stack_samples
    )
    trainer = Trainer(
        accelerator='cpu',
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[writer],
    )
    trainer.predict(IdentityTask(dictionary), loader, return_predictions=False)


@pytest.mark.parametrize('dictionary', [True, False])
def test_writer_blends_chips_onto_the_grid(tmp_path: Path, dictionary: bool) -> None:
    raster = make_raster(tmp_path / 'scene.tif', size=(70, 90), values='random')
    out = tmp_path / 'pred.tif'
    writer = GeoTIFFPredictionWriter(
        out, output_mode='probabilities', overlap=8, blocksize=16
    )
    predict(raster, writer, dictionary=dictionary)
    with rasterio.open(raster) as src, rasterio.open(out) as got:
        assert got.crs == src.crs and got.transform == src.transform
        assert (got.width, got.height, got.count) == (src.width, src.height, 3)
        assert got.dtypes[0] == 'float32' and got.block_shapes[0] == (16, 16)
        np.testing.assert_array_equal(got.read(), src.read().astype('float32'))
    assert not writer.scratch.exists()


def test_writer_class_map_on_a_given_grid(tmp_path: Path) -> None:
    raster = make_raster(tmp_path / 'scene.tif', size=(40, 40), values='random')
    reference = make_raster(tmp_path / 'reference.tif', size=(60, 60), bands=1)
    out = tmp_path / 'classes.tif'
    writer = GeoTIFFPredictionWriter(out, grid=reference, overlap=8, blocksize=16)
    predict(raster, writer)
    with rasterio.open(raster) as src, rasterio.open(out) as got:
        assert (got.width, got.height, got.count) == (60, 60, 1)
        classes = got.read(1)
        expected = np.argmax(src.read(), axis=0)
    np.testing.assert_array_equal(classes[:40, :40], expected)
    # GridGeoSampler's last chips reach 16 pixels past the scene's east and north
    # edges (read as nodata, 0); no chip covers the rest of the grid: nodata.
    assert (classes[:40, :56] != 255).all()
    assert (classes[40:] == 255).all() and (classes[:, 56:] == 255).all()
    with pytest.raises(FileExistsError, match='--overwrite'):
        predict(raster, GeoTIFFPredictionWriter(out))


def test_writer_rejects_chips_off_the_grid(tmp_path: Path) -> None:
    raster = make_raster(tmp_path / 'scene.tif', size=40, values='random')
    shifted = RasterGrid(
        None, rasterio.transform.from_origin(500_005.0, 4_000_000.0, 10, 10), 40, 40
    )
    out = tmp_path / 'pred.tif'
    writer = GeoTIFFPredictionWriter(out, grid=shifted)
    with pytest.raises(ValueError, match='between pixels'):
        predict(raster, writer)
    assert not out.exists() and not writer.scratch.exists()


def test_writer_keeps_the_nodata_of_the_grid_raster(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(1, 1000, (3, 40, 50), dtype='uint16')
    values[:, :10, :] = 0  # a nodata strip along the north edge
    values[:, 25:30, 5:20] = 0
    raster = make_raster(tmp_path / 'scene.tif', values=values, nodata=0)
    out = tmp_path / 'classes.tif'
    predict(raster, GeoTIFFPredictionWriter(out, grid=raster, overlap=8))
    with rasterio.open(out) as got:
        classes = got.read(1)
        nodata = got.nodata
    empty = (values == 0).all(axis=0)
    assert (classes[empty] == nodata).all()
    assert (classes[~empty] == np.argmax(values, axis=0)[~empty]).all()
    # Without the mask the same pixels get a class.
    unmasked = tmp_path / 'unmasked.tif'
    predict(raster, GeoTIFFPredictionWriter(unmasked, grid=raster, mask=False))
    with rasterio.open(unmasked) as got:
        assert (got.read(1) != got.nodata).all()


def test_writer_rejects_a_mask_off_the_grid(tmp_path: Path) -> None:
    raster = make_raster(tmp_path / 'scene.tif', size=(40, 40), values='random')
    other = make_raster(tmp_path / 'other.tif', size=(30, 40), bands=1)
    writer = GeoTIFFPredictionWriter(tmp_path / 'out.tif', mask=other)
    with pytest.raises(ValueError, match='not on the output grid'):
        predict(raster, writer)
    assert not (tmp_path / 'out.tif').exists()


def test_writer_mask_true_is_refused() -> None:
    with pytest.raises(ValueError, match='mask=True is ambiguous'):
        GeoTIFFPredictionWriter('out.tif', mask=True)  # type: ignore[arg-type]
