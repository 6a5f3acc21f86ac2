"""predict_raster: exact stitching, grids, nodata, resume, atomicity, memory, errors."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import Resampling, reproject, transform_bounds
from rasters_data import make_raster, truncate_file
from torch import Tensor

from geopeft.predict import SceneInputs, partial_path, predict_raster, progress_path
from geopeft.predict import scene as scene_module

FAST = {'progress': False, 'blocksize': 16, 'batch_size': 8}


def identity(x: Tensor) -> Tensor:
    return x


class Counting:
    """A model function that counts chips and may fail after some."""

    def __init__(self, fn: Callable[[Tensor], Tensor], fail_after: int | None = None):
        self.fn = fn
        self.fail_after = fail_after
        self.chips = 0

    def __call__(self, x: Tensor) -> Tensor:
        if self.fail_after is not None and self.chips >= self.fail_after:
            raise RuntimeError('model failed')
        self.chips += x.shape[0]
        return self.fn(x)


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as dataset:
        return dataset.read(), dataset.profile


@pytest.mark.parametrize('overlap', [0, 8, 31])
@pytest.mark.parametrize('size', [(100, 77), (20, 45)])
def test_identity_reproduces_the_raster_bit_for_bit(
    tmp_path: Path, overlap: int, size: tuple[int, int]
) -> None:
    source = make_raster(tmp_path / 'in.tif', size=size, values='random')
    out = tmp_path / 'out.tif'
    report = predict_raster(
        identity,
        source,
        out,
        chip_size=32,
        overlap=overlap,
        output_mode='probabilities',
        activation='none',
        **FAST,
    )
    expected, _ = read(source)
    got, profile = read(out)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert report.chips == report.total_chips and report.skipped == 0
    assert profile['tiled'] and profile['compress'] == 'deflate'
    assert not partial_path(out).exists() and not progress_path(out).exists()


def test_output_is_on_the_input_grid_with_its_nodata(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((2, 50, 70)).astype(np.float32)
    values[:, 10:20, 5:40] = np.nan
    source = make_raster(
        tmp_path / 'in.tif', values=values, nodata=float('nan'), crs='EPSG:3857'
    )
    out = tmp_path / 'out.tif'
    predict_raster(
        identity,
        source,
        out,
        chip_size=16,
        overlap=4,
        output_mode='probabilities',
        activation='none',
        **FAST,
    )
    got, profile = read(out)
    with rasterio.open(source) as src:
        assert profile['crs'] == src.crs
        assert profile['transform'] == src.transform
        assert (profile['width'], profile['height']) == (src.width, src.height)
        assert np.isnan(profile['nodata']) and np.isnan(src.nodata)
    np.testing.assert_array_equal(got, values)  # NaN where the input is nodata


def test_class_map_of_a_known_function_is_exact(tmp_path: Path) -> None:
    source = make_raster(tmp_path / 'in.tif', size=(90, 70), values='random')
    band0, _ = read(source)
    expected = (band0[0] > 2047.5).astype(np.uint8)

    def two_classes(x: Tensor) -> Tensor:
        score = x[:, :1] - 2047.5
        return torch.cat([-score, score], dim=1)

    out = tmp_path / 'classes.tif'
    predict_raster(two_classes, source, out, chip_size=32, overlap=10, **FAST)
    got, profile = read(out)
    assert profile['dtype'] == 'uint8' and profile['count'] == 1
    assert profile['nodata'] == 255
    np.testing.assert_array_equal(got[0], expected)

    binary = tmp_path / 'binary.tif'
    predict_raster(
        lambda x: (x[:, :1] - 2047.5) / 100,
        source,
        binary,
        chip_size=32,
        overlap=10,
        activation='sigmoid',
        **FAST,
    )
    np.testing.assert_array_equal(read(binary)[0][0], expected)


def test_nodata_pixels_and_chips(tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(1, 4000, (3, 64, 96)).astype('uint16')
    values[:, :, :48] = 0  # the left half is nodata
    values[:, 5, 60] = 0  # and one pixel
    source = make_raster(tmp_path / 'in.tif', values=values, nodata=0)
    model = Counting(lambda x: torch.cat([x[:, :1], 4000 - x[:, :1]], dim=1))
    out = tmp_path / 'out.tif'
    report = predict_raster(
        model,
        source,
        out,
        chip_size=32,
        overlap=0,
        activation='none',
        num_outputs=2,  # no probe call on a blank chip
        **FAST,
    )
    assert report.skipped == 2 * 1  # two chip-rows x the chip of columns 0..31
    assert model.chips == report.chips == report.total_chips - report.skipped
    got = read(out)[0][0]
    nodata = (values == 0).all(axis=0)
    assert (got[nodata] == 255).all()
    np.testing.assert_array_equal(got[~nodata], values[0][~nodata] < 2000)


def test_interrupted_prediction_resumes(tmp_path: Path) -> None:
    source = make_raster(tmp_path / 'in.tif', size=(130, 50), values='random')
    options = {
        'chip_size': 32,
        'overlap': 8,
        'output_mode': 'probabilities',
        'activation': 'none',
        **FAST,
        'batch_size': 2,
    }
    reference = tmp_path / 'reference.tif'
    full = Counting(identity)
    predict_raster(full, source, reference, **options)

    out = tmp_path / 'out.tif'
    failing = Counting(identity, fail_after=full.chips // 2)
    with pytest.raises(RuntimeError, match='model failed') as info:
        predict_raster(failing, source, out, **options)
    assert 'resume' in ' '.join(info.value.__notes__)
    assert not out.exists()  # atomic: nothing at the final path
    record = json.loads(progress_path(out).read_text())
    assert partial_path(out).exists()
    assert 0 < record['rows_done'] < 130 and record['rows_done'] % 16 == 0

    resumed = Counting(identity)
    report = predict_raster(resumed, source, out, **options)
    assert report.resumed_rows == record['rows_done']
    assert 0 < resumed.chips < full.chips
    np.testing.assert_array_equal(read(out)[0], read(reference)[0])
    assert not partial_path(out).exists() and not progress_path(out).exists()


def test_a_failure_before_any_row_leaves_no_file(tmp_path: Path) -> None:
    source = make_raster(tmp_path / 'in.tif', size=(100, 40))
    out = tmp_path / 'out.tif'
    # The output is opened first (num_outputs given: no probing call), then the
    # model fails on its first chips.
    failing = Counting(identity, fail_after=0)
    options = {'output_mode': 'probabilities', 'activation': 'none', **FAST}
    with pytest.raises(RuntimeError, match='model failed') as info:
        predict_raster(
            failing, source, out, chip_size=32, overlap=8, num_outputs=3, **options
        )
    assert 'nothing was written' in ' '.join(info.value.__notes__)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in.tif']


def test_other_settings_start_over(tmp_path: Path) -> None:
    source = make_raster(tmp_path / 'in.tif', size=(100, 40))
    out = tmp_path / 'out.tif'
    options = {
        'activation': 'none',
        'output_mode': 'probabilities',
        'num_outputs': 3,
        **FAST,
    }
    with pytest.raises(RuntimeError):
        predict_raster(
            Counting(identity, fail_after=8),
            source,
            out,
            chip_size=16,
            overlap=4,
            **options,
        )
    model = Counting(identity)
    with pytest.warns(UserWarning, match='other settings'):
        report = predict_raster(model, source, out, chip_size=32, overlap=4, **options)
    assert report.resumed_rows == 0 and model.chips == report.total_chips
    np.testing.assert_array_equal(read(out)[0], read(source)[0].astype('float32'))


def test_failure_keeps_an_existing_output_and_overwrite_replaces_it(
    tmp_path: Path,
) -> None:
    source = make_raster(tmp_path / 'in.tif', size=(40, 40))
    out = tmp_path / 'out.tif'
    out.write_bytes(b'old')
    with pytest.raises(FileExistsError, match='--overwrite'):
        predict_raster(identity, source, out, activation='none', **FAST)
    with pytest.raises(RuntimeError):
        predict_raster(
            Counting(identity, fail_after=0),
            source,
            out,
            chip_size=16,
            overlap=0,
            activation='none',
            overwrite=True,
            **FAST,
        )
    assert out.read_bytes() == b'old'
    predict_raster(
        identity,
        source,
        out,
        chip_size=16,
        overlap=2,
        activation='none',
        output_mode='probabilities',
        overwrite=True,
        **FAST,
    )
    np.testing.assert_array_equal(read(out)[0], read(source)[0].astype('float32'))


def test_memory_is_bounded_by_strips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accumulator is one band of chip-rows and reads are chips, however tall."""
    source = make_raster(tmp_path / 'tall.tif', size=(600, 40), bands=2)
    accumulators: list[scene_module.StripAccumulator] = []
    reads: list[tuple[int, ...]] = []

    class Recording(scene_module.StripAccumulator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            accumulators.append(self)

    original_read = scene_module.SceneInputs.read

    def recording_read(self, rows, cols):
        data, valid = original_read(self, rows, cols)
        reads.append(data.shape)
        return data, valid

    monkeypatch.setattr(scene_module, 'StripAccumulator', Recording)
    monkeypatch.setattr(scene_module.SceneInputs, 'read', recording_read)
    predict_raster(
        identity, source, tmp_path / 'out.tif', chip_size=32, overlap=8, **FAST
    )
    (accumulator,) = accumulators
    assert accumulator.sums.shape == (2, 32, 40)  # [K, chip, width], not height
    assert accumulator.sums.dtype == np.float32  # a class map needs no float64
    assert len(reads) == scene_module.ChipGrid(600, 40, 32, 8).num_chips
    assert set(reads) == {(2, 32, 32)}  # one chip at a time


def test_change_detection_resamples_the_second_raster(tmp_path: Path) -> None:
    first = make_raster(tmp_path / 'a.tif', size=(60, 50), values='random')
    with rasterio.open(first) as src:
        grid, bounds = src.profile, src.bounds
    # The second date: most of the area, in Web Mercator at another resolution.
    left, bottom, right, top = transform_bounds(grid['crs'], 'EPSG:3857', *bounds)
    second_values = np.random.default_rng(2).integers(0, 4000, (3, 90, 80))
    second = make_raster(
        tmp_path / 'b.tif',
        values=second_values.astype('uint16'),
        crs='EPSG:3857',
        res=7.0,
        origin=(left + 100, top + 20),
    )
    seen: list[int] = []

    def second_date(x: Tensor) -> Tensor:
        seen.append(x.shape[1])
        return x[:, 3:]

    out = tmp_path / 'change.tif'
    predict_raster(
        second_date,
        [first, second],
        out,
        chip_size=32,
        overlap=8,
        output_mode='probabilities',
        activation='none',
        resampling='nearest',
        **FAST,
    )
    assert set(seen) == {6}  # both dates' bands
    got, profile = read(out)
    assert profile['crs'] == grid['crs'] and profile['transform'] == grid['transform']
    expected = np.zeros((3, 60, 50), dtype=np.float32)
    with rasterio.open(second) as src:
        reproject(
            rasterio.band(src, [1, 2, 3]),
            expected,
            dst_transform=grid['transform'],
            dst_crs=grid['crs'],
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
    covered = ~np.isnan(expected).any(axis=0)
    assert covered.mean() > 0.5
    np.testing.assert_array_equal(got[:, covered], expected[:, covered])
    assert np.isnan(got[:, ~covered]).all()  # outside the second date: nodata


def test_rasters_that_do_not_overlap_fail(tmp_path: Path) -> None:
    first = make_raster(tmp_path / 'a.tif', size=32)
    second = make_raster(
        tmp_path / 'b.tif', size=32, crs='EPSG:32632', origin=(200_000.0, 100_000.0)
    )
    with pytest.raises(ValueError, match='do not overlap.*same place'):
        predict_raster(identity, [first, second], tmp_path / 'out.tif', **FAST)


def test_missing_corrupt_and_wrong_band_inputs_fail_clearly(tmp_path: Path) -> None:
    out = tmp_path / 'out.tif'
    with pytest.raises(FileNotFoundError, match='missing.tif'):
        predict_raster(identity, tmp_path / 'missing.tif', out, **FAST)
    garbage = tmp_path / 'garbage.tif'
    garbage.write_bytes(b'II*\x00 not a tiff')
    with pytest.raises(ValueError, match='garbage.tif.*not a readable raster'):
        predict_raster(identity, garbage, out, **FAST)
    truncated = make_raster(
        tmp_path / 'cut.tif', size=128, values='random', tile=32, compress=None
    )
    truncate_file(truncated, keep=0.4)
    with pytest.raises((OSError, ValueError), match='cut.tif'):
        predict_raster(identity, truncated, out, chip_size=32, overlap=0, **FAST)
    assert not out.exists()
    three = make_raster(tmp_path / 'three.tif', size=32)
    with pytest.raises(ValueError, match='takes 4 bands.*gives 3.*--bands'):
        predict_raster(identity, three, out, in_channels=4, **FAST)
    with pytest.raises(ValueError, match=r'bands \[5\] do not exist'):
        predict_raster(identity, three, out, bands=[1, 5], **FAST)


def test_model_output_of_another_size_fails(tmp_path: Path) -> None:
    source = make_raster(tmp_path / 'in.tif', size=32)
    with pytest.raises(ValueError, match="chips' height and width"):
        predict_raster(
            lambda x: x[:, :, ::2, ::2], source, tmp_path / 'out.tif', **FAST
        )


def test_gdal_cache_holds_the_tiles_of_a_chip_row(tmp_path: Path) -> None:
    # 1000 px wide, 3 bands of uint16 in 64-row tiles: a 100-row chip spans at most
    # three tile rows (192 rows) -> 192 x 1000 x 3 x 2 bytes, plus a quarter.
    source = make_raster(tmp_path / 'in.tif', size=(300, 1000), tile=64)
    with SceneInputs([source]) as scene:
        assert scene.cache_mb(100) == -(-192 * 1000 * 3 * 2 * 5 // 4) // 2**20 + 1
