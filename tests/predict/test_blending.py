"""Strip and disk accumulators, and output encodings."""

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from geopeft.predict import (
    ChipGrid,
    DiskAccumulator,
    OutputEncoding,
    RasterGrid,
    StripAccumulator,
    ramp_weights,
    window_weights,
)


def test_strip_accumulator_is_one_band_of_chip_rows() -> None:
    """Memory bound: the sums are [K, chip, width], whatever the scene height."""
    grid = ChipGrid(100_000, 1000, 64, 16)
    accumulator = StripAccumulator(5, grid, top=-8)
    assert accumulator.sums.shape == (5, 64, 1000)
    assert accumulator.nbytes == 5 * 64 * 1000 * 8 + 5 * 64 * 64 * 8 + 1000 * 8


def test_strip_accumulator_blends_and_moves_down() -> None:
    grid = ChipGrid(12, 6, 4, 2)  # chips start at -1, 1, 3 (rows and columns)
    accumulator = StripAccumulator(1, grid, top=-1)
    for col in grid.col_offsets:
        accumulator.add(np.full((1, 4, 4), col + 10.0), col)
    sums, weight = accumulator.view(0, 1)
    # Where two chips overlap their weights add up to 1 (a cross-fade).
    ramp = ramp_weights(4, 2)
    np.testing.assert_allclose(weight[0, 1:5], weight[0, 1])
    np.testing.assert_allclose(weight[0, [0, 5]] / weight[0, 1], ramp[[1, 2]])
    blended = sums[0, 0] / weight[0]
    np.testing.assert_allclose(blended[0], 9.0)  # only the first chip
    np.testing.assert_allclose(blended[1], 9.0 * ramp[2] + 11.0 * ramp[0])
    np.testing.assert_allclose(blended[5], 13.0)
    accumulator.advance(1)
    assert accumulator.top == 1
    np.testing.assert_array_equal(accumulator.sums[0, 2:], 0.0)
    assert accumulator.sums[0, :2].all()
    with pytest.raises(ValueError, match='outside the band'):
        accumulator.view(0, 2)
    with pytest.raises(ValueError, match='only moves down'):
        accumulator.advance(0)


def test_weight_sums_equal_the_sum_of_every_chip_weight() -> None:
    grid = ChipGrid(40, 30, 16, 6)
    total = np.zeros((40 + 32, 30 + 32))
    for row in grid.row_offsets:
        for col in grid.col_offsets:
            total[row + 16 : row + 32, col + 16 : col + 32] += window_weights(16, 6)
    rows = grid.weight_sums(grid.row_offsets, 0, 40)
    cols = grid.weight_sums(grid.col_offsets, 0, 30)
    np.testing.assert_allclose(np.outer(rows, cols), total[16:56, 16:46])


def test_disk_accumulator_takes_chips_in_any_order(tmp_path) -> None:
    grid = RasterGrid(CRS.from_epsg(32631), from_origin(0, 40, 1, 1), 30, 40)
    accumulator = DiskAccumulator(tmp_path / 'sums.tif', grid, 2)
    chip = np.stack([np.full((16, 16), 2.0), np.full((16, 16), 4.0)])
    weights = np.ones((16, 16))
    for row, col in [(30, 20), (-4, -4), (10, 10), (10, 10)]:
        accumulator.add(chip, row, col, weights)
    sums, weight = accumulator.view(0, 40)
    assert sums.shape == (2, 40, 30)
    assert weight[0, 0] == 1 and weight[12, 12] == 2 and weight[39, 29] == 1
    assert weight[28, 5] == 0
    np.testing.assert_allclose(sums[1][weight > 0] / weight[weight > 0], 4.0)
    accumulator.close()
    assert not (tmp_path / 'sums.tif').exists()


def test_encodings() -> None:
    sums = np.array([[[0.2, 1.6, 0.0]], [[0.6, 0.4, 0.0]]])  # [2, 1, 3]
    weight = np.array([[1.0, 2.0, 0.0]])
    valid = np.array([[True, True, True]])
    classes = OutputEncoding('classes', 2).encode(sums, weight, valid)
    assert classes.dtype == np.uint8 and classes.tolist() == [[[1, 0, 255]]]
    floats = OutputEncoding('probabilities', 2).encode(sums, weight, valid)
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats[:, 0, :2], [[0.2, 0.8], [0.6, 0.2]], 1e-6)
    assert np.isnan(floats[:, 0, 2]).all()
    scaled = OutputEncoding('probabilities', 2, 'uint8').encode(sums, weight, valid)
    assert scaled[:, 0].tolist() == [[51, 203, 255], [152, 51, 255]]
    binary = OutputEncoding('classes', 1, threshold=0.5)
    assert binary.encode(sums[1:], weight, ~valid).tolist() == [[[255, 255, 255]]]
    assert binary.encode(sums[1:], weight, valid).tolist() == [[[1, 0, 255]]]
    assert OutputEncoding('classes', 300).dtype == 'uint16'
    assert OutputEncoding('classes', 300).nodata == 65535


@pytest.mark.parametrize('channels', [2, 3, 7])
def test_class_map_is_numpys_argmax_ties_included(channels: int) -> None:
    rng = np.random.default_rng(channels)
    # Few distinct values: many ties, which go to the first channel as in NumPy.
    sums = rng.integers(0, 3, (channels, 70, 90)).astype(np.float32)
    weight = np.ones((70, 90))
    valid = rng.random((70, 90)) > 0.1
    encoding = OutputEncoding('classes', channels)
    out = encoding.encode(sums, weight, valid)[0]
    expected = np.argmax(sums, axis=0)
    assert (out[valid] == expected[valid]).all()
    assert (out[~valid] == encoding.nodata).all()
