"""Where chips go on a scene: the raster grid, the chip grid with its halo, weights.

A scene of ``height x width`` pixels is cut into square chips of ``chip_size``
pixels that step by ``stride = chip_size - overlap``, so neighbouring chips share
``overlap`` rows or columns. The grid starts ``halo = overlap // 2`` pixels before
the scene's first row and column, so that the scene's edge pixels lie inside a
chip, like every other pixel, and chips run past the last row and column: chips
never shrink; what they cover outside the scene is padding (see
:mod:`geopeft.predict.sources`).

Overlapping predictions are blended with :func:`window_weights`: 1 in a chip's
centre, falling smoothly (``sin^2``) over its ``overlap`` border to a small value
that is still > 0 at the very edge. The falling border of a chip and the rising
border of its neighbour add up to 1, so blending is a smooth cross-fade without
seams, and a pixel that only one chip covers (at the scene's edge) keeps that
chip's prediction.
"""

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.transform import array_bounds


@dataclass(frozen=True)
class RasterGrid:
    """The pixel grid of a raster: what an output must share with its input.

    Attributes:
        crs: Coordinate reference system (None for a raster without one).
        transform: Affine transform from pixel to CRS coordinates.
        width: Columns.
        height: Rows.
    """

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, dataset: Any) -> 'RasterGrid':
        """Return the grid of an open rasterio dataset.

        Args:
            dataset: A rasterio dataset (or anything with ``crs``, ``transform``,
                ``width`` and ``height``).

        Returns:
            Its grid.
        """
        return cls(dataset.crs, dataset.transform, dataset.width, dataset.height)

    @property
    def bounds(self) -> BoundingBox:
        """``(left, bottom, right, top)`` in CRS units."""
        return BoundingBox(*array_bounds(self.height, self.width, self.transform))

    def matches(self, other: 'RasterGrid') -> bool:
        """Tell whether *other* is the same grid (same CRS, transform and size).

        Args:
            other: Another grid.

        Returns:
            True when pixels of both grids coincide one to one.
        """
        return (
            self.crs == other.crs
            and self.width == other.width
            and self.height == other.height
            and self.transform.almost_equals(other.transform)
        )


@dataclass(frozen=True)
class ChipGrid:
    """Square chips over a scene, with overlap and a halo at the scene's edges.

    Attributes:
        height: Scene rows.
        width: Scene columns.
        chip_size: Side of a chip in pixels.
        overlap: Rows (and columns) shared by neighbouring chips, in
            ``[0, chip_size)``.
    """

    height: int
    width: int
    chip_size: int
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            msg = f'the scene must have pixels, got {self.height} x {self.width}'
            raise ValueError(msg)
        if self.chip_size < 1:
            msg = f'chip_size must be >= 1, got {self.chip_size}'
            raise ValueError(msg)
        if not 0 <= self.overlap < self.chip_size:
            msg = (
                f'overlap must be in [0, chip_size) = [0, {self.chip_size}), got '
                f'{self.overlap}'
            )
            raise ValueError(msg)

    @property
    def stride(self) -> int:
        """Step between neighbouring chips: ``chip_size - overlap``."""
        return self.chip_size - self.overlap

    @property
    def halo(self) -> int:
        """Padding before the first row and column: ``overlap // 2``."""
        return self.overlap // 2

    def offsets(self, length: int) -> list[int]:
        """Chip starts along an axis of *length* pixels.

        Args:
            length: Scene rows or columns.

        Returns:
            Starts ``-halo + i * stride``: the fewest chips whose union covers
            ``[0, length)``.
        """
        beyond_first = length + self.halo - self.chip_size
        count = 1 + max(0, math.ceil(beyond_first / self.stride))
        return [-self.halo + i * self.stride for i in range(count)]

    @cached_property
    def row_offsets(self) -> list[int]:
        """First scene row of each chip-row."""
        return self.offsets(self.height)

    @cached_property
    def col_offsets(self) -> list[int]:
        """First scene column of each chip-column."""
        return self.offsets(self.width)

    @property
    def num_chips(self) -> int:
        """Chips in the grid."""
        return len(self.row_offsets) * len(self.col_offsets)

    def finished_rows(self, index: int) -> tuple[int, int]:
        """Scene rows that no chip after chip-row *index* touches.

        Args:
            index: A chip-row.

        Returns:
            ``(start, stop)``: the rows that are final once chip-rows
            ``0 .. index`` are blended (all remaining rows after the last; none,
            ``start == stop``, while the next chip-row still starts above the
            scene).
        """
        offsets = self.row_offsets
        start = max(0, offsets[index])
        stop = self.height if index == len(offsets) - 1 else offsets[index + 1]
        return start, max(start, min(self.height, stop))

    def weight_sums(self, offsets: list[int], start: int, stop: int) -> np.ndarray:
        """Sum of the chips' one-dimensional weights along an axis.

        Chip weights are the outer product of :func:`ramp_weights`, and the chips
        form a product grid, so the sum of the weights of all chips over pixel
        ``(r, c)`` is ``weight_sums(row_offsets, ...)[r] *
        weight_sums(col_offsets, ...)[c]``: no per-pixel weight needs storing.

        Args:
            offsets: :attr:`row_offsets` or :attr:`col_offsets`.
            start: First position.
            stop: Position after the last.

        Returns:
            ``float64 [stop - start]``.
        """
        ramp = ramp_weights(self.chip_size, self.overlap)
        sums = np.zeros(stop - start, dtype=np.float64)
        for offset in offsets:
            lo, hi = max(start, offset), min(stop, offset + self.chip_size)
            if lo < hi:
                sums[lo - start : hi - start] += ramp[lo - offset : hi - offset]
        return sums

    def first_chip_row(self, row: int) -> int:
        """The first chip-row that reaches scene row *row* or beyond.

        Resuming at *row* recomputes chip-rows from here: they are all the
        chip-rows that contribute to rows ``>= row``.

        Args:
            row: A scene row.

        Returns:
            The chip-row index (``len(row_offsets)`` when *row* is past the scene).
        """
        if row >= self.height:
            return len(self.row_offsets)
        for index, start in enumerate(self.row_offsets):
            if start + self.chip_size > row:
                return index
        return len(self.row_offsets)


def ramp_weights(size: int, overlap: int) -> np.ndarray:
    """One-dimensional blending weights of a chip.

    Args:
        size: Chip side.
        overlap: Width of the cross-fade at each end (0: all ones).

    Returns:
        ``float64 [size]``: ``sin^2`` rising over the first *overlap* pixels,
        1 in the middle, mirrored at the end; strictly positive.
    """
    weights = np.ones(size, dtype=np.float64)
    if overlap > 0:
        rise = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        weights[:overlap] = rise
        weights[size - overlap :] = np.minimum(weights[size - overlap :], rise[::-1])
    return weights


def window_weights(chip_size: int, overlap: int) -> np.ndarray:
    """Two-dimensional blending weights of a chip.

    Args:
        chip_size: Chip side.
        overlap: Overlap of neighbouring chips.

    Returns:
        ``float64 [chip_size, chip_size]``, the outer product of
        :func:`ramp_weights`: > 0 everywhere, and the weights of overlapping
        chips add up to 1 wherever ``overlap <= chip_size / 2``.
    """
    ramp = ramp_weights(chip_size, overlap)
    return np.outer(ramp, ramp)
