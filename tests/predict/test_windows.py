"""Chip grid, halo and blending weights."""

import numpy as np
import pytest

from geopeft.predict import ChipGrid, ramp_weights, window_weights


@pytest.mark.parametrize(
    ('length', 'chip', 'overlap'),
    [(100, 32, 0), (77, 32, 8), (77, 32, 31), (32, 32, 0), (5, 32, 8), (513, 64, 16)],
)
def test_offsets_cover_the_axis_with_the_fewest_chips(
    length: int, chip: int, overlap: int
) -> None:
    grid = ChipGrid(length, length, chip, overlap)
    offsets = grid.offsets(length)
    assert offsets[0] == -(overlap // 2)
    assert np.all(np.diff(offsets) == chip - overlap)
    assert offsets[-1] + chip >= length  # covered
    assert len(offsets) == 1 or offsets[-2] + chip < length  # no chip too many
    assert all(start < length for start in offsets)  # every chip touches the scene


@pytest.mark.parametrize('overlap', [0, 1, 8, 16])
def test_weights_are_positive_and_a_partition_of_unity(overlap: int) -> None:
    ramp = ramp_weights(32, overlap)
    assert (ramp > 0).all()
    assert ramp[overlap : 32 - overlap].tolist() == [1.0] * (32 - 2 * overlap)
    if overlap:
        stride = 32 - overlap
        # The falling end of a chip plus the rising start of the next one is 1.
        np.testing.assert_allclose(ramp[stride:] + ramp[:overlap], 1.0)
    weights = window_weights(32, overlap)
    assert weights.shape == (32, 32)
    assert (weights > 0).all()
    np.testing.assert_array_equal(weights, np.outer(ramp, ramp))


def test_weights_stay_positive_when_overlap_exceeds_half_the_chip() -> None:
    assert (ramp_weights(32, 31) > 0).all()


@pytest.mark.parametrize(('height', 'overlap'), [(100, 0), (100, 8), (77, 31)])
def test_finished_rows_partition_the_scene(height: int, overlap: int) -> None:
    grid = ChipGrid(height, 10, 32, overlap)
    rows = [grid.finished_rows(i) for i in range(len(grid.row_offsets))]
    assert rows[0][0] == 0 and rows[-1][1] == height
    for (_, stop), (start, _) in zip(rows, rows[1:], strict=False):
        assert stop == start
    for index, (start, stop) in enumerate(rows):
        # No later chip-row touches a finished row.
        for later in grid.row_offsets[index + 1 :]:
            assert later >= stop or start == stop


def test_first_chip_row_is_the_first_that_reaches_the_row() -> None:
    grid = ChipGrid(200, 10, 32, 8)
    for row in range(200):
        index = grid.first_chip_row(row)
        assert grid.row_offsets[index] + 32 > row
        assert index == 0 or grid.row_offsets[index - 1] + 32 <= row
    assert grid.first_chip_row(200) == len(grid.row_offsets)


@pytest.mark.parametrize(('chip', 'overlap'), [(0, 0), (32, 32), (32, -1)])
def test_invalid_chip_grids_fail(chip: int, overlap: int) -> None:
    with pytest.raises(ValueError, match='chip_size|overlap'):
        ChipGrid(10, 10, chip, overlap)
