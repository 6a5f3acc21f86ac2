"""Blending overlapping chip predictions: weighted sums, in a strip or on disk.

Every chip adds ``prediction * weight`` (see
:func:`~geopeft.predict.windows.window_weights`) to running sums; a pixel's blended
value is ``sum(prediction * weight) / sum(weight)``. Sums are float64 by default,
so that blending identical predictions returns them bit for bit once cast back to
float32 (float32 sums, enough for a class map's arg-max, halve the memory).

:class:`StripAccumulator` holds the sums of one band of ``chip_size`` rows only:
chips arrive chip-row by chip-row, the rows that no later chip touches are taken
out (:meth:`StripAccumulator.view`) and the band moves down
(:meth:`StripAccumulator.advance`). Its memory is
``channels * chip_size * width`` sums, whatever the scene's height.

:class:`DiskAccumulator` takes chips in any order (as a Lightning prediction loop
delivers them) and keeps the sums in a scratch GeoTIFF instead of memory.
"""

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from .windows import ChipGrid, RasterGrid, window_weights


def _clip(start: int, size: int, limit: int) -> tuple[int, int]:
    """The part ``[lo, hi)`` of ``[0, size)`` that lands inside ``[0, limit)``."""
    return max(0, -start), min(size, limit - start)


class StripAccumulator:
    """Weighted sums of the chips of one chip-row, over the scene's full width.

    Only the weighted predictions are summed: the sum of the weights is known
    from the chip grid (:meth:`~geopeft.predict.ChipGrid.weight_sums`), because
    every chip of the grid counts. Chips skipped as nodata do not break this: all
    the pixels they cover are nodata, and nodata pixels are not blended.

    Attributes:
        sums: ``[channels, chip_size, width]``, sum of weighted predictions.
        top: Scene row of the band's first row.
    """

    def __init__(
        self,
        channels: int,
        grid: ChipGrid,
        *,
        top: int = 0,
        dtype: type[np.floating] = np.float64,
    ) -> None:
        """Initialize a new StripAccumulator instance.

        Args:
            channels: Channels of a prediction (classes).
            grid: The chip grid over the scene.
            top: Scene row where the first chip-row starts (may be negative: the
                halo).
            dtype: Type of the sums: float64 (blended float32 values are exact)
                or float32 (half the memory; enough for an arg-max).
        """
        self.grid = grid
        self.weights = window_weights(grid.chip_size, grid.overlap).astype(dtype)
        self.col_weights = grid.weight_sums(grid.col_offsets, 0, grid.width)
        size = grid.chip_size
        self.sums = np.zeros((channels, size, grid.width), dtype=dtype)
        self._product = np.empty((channels, size, size), dtype=dtype)
        self.top = top

    @property
    def nbytes(self) -> int:
        """Bytes held by the sums and their scratch space."""
        return self.sums.nbytes + self._product.nbytes + self.col_weights.nbytes

    def add(self, prediction: np.ndarray, col: int) -> None:
        """Add one chip of the current chip-row.

        Args:
            prediction: ``[channels, chip_size, chip_size]``.
            col: Scene column of the chip's first column (may be negative).
        """
        lo, hi = _clip(col, prediction.shape[-1], self.sums.shape[2])
        product = self._product[:, :, : hi - lo]
        np.multiply(prediction[:, :, lo:hi], self.weights[:, lo:hi], out=product)
        self.sums[:, :, col + lo : col + hi] += product

    def view(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The sums of scene rows ``[start, stop)`` and their weight.

        Args:
            start: First scene row, within the band.
            stop: Row after the last, within the band.

        Returns:
            ``sums [channels, rows, width]`` (a view) and ``weight [rows, width]``
            (the sum of the chips' weights; computed, so view a few rows at a
            time).

        Raises:
            ValueError: If the rows are not in the band.
        """
        lo, hi = start - self.top, stop - self.top
        if lo < 0 or hi > self.sums.shape[1] or lo > hi:
            msg = (
                f'rows {start}..{stop} are outside the band of rows {self.top}..'
                f'{self.top + self.sums.shape[1]}'
            )
            raise ValueError(msg)
        rows = self.grid.weight_sums(self.grid.row_offsets, start, stop)
        return self.sums[:, lo:hi], np.outer(rows, self.col_weights)

    def advance(self, top: int) -> None:
        """Move the band down to start at scene row *top*.

        Rows above *top* are dropped, rows below the old band start at zero.

        Args:
            top: The new first row (at or below the current one).

        Raises:
            ValueError: If *top* is above the band's first row.
        """
        shift = top - self.top
        if shift < 0:
            msg = f'the band only moves down: {self.top} -> {top}'
            raise ValueError(msg)
        keep = max(0, self.sums.shape[1] - shift)
        for channel in self.sums:  # one channel at a time: no temporary copy
            channel[:keep] = channel[shift : shift + keep]
            channel[keep:] = 0
        self.top = top


class DiskAccumulator:
    """Weighted sums over a whole grid in a scratch GeoTIFF, for chips in any order.

    The scratch file is an uncompressed, tiled float64 GeoTIFF with ``channels + 1``
    bands (the sums, then the weight); each chip is a read-modify-write of its
    window, through GDAL's block cache, so memory stays bounded by the cache.
    """

    def __init__(self, path: Path, grid: RasterGrid, channels: int) -> None:
        """Initialize a new DiskAccumulator instance.

        Args:
            path: Scratch file (created, replaced if it exists).
            grid: The grid of the scene.
            channels: Channels of a prediction.
        """
        self.path = path
        self.grid = grid
        self.channels = channels
        block = 256 if min(grid.width, grid.height) > 256 else 16
        self.dataset = rasterio.open(
            path,
            'w+',
            driver='GTiff',
            width=grid.width,
            height=grid.height,
            count=channels + 1,
            dtype='float64',
            crs=grid.crs,
            transform=grid.transform,
            tiled=True,
            blockxsize=block,
            blockysize=block,
            sparse_ok=True,
            bigtiff='if_safer',
        )

    def add(
        self, prediction: np.ndarray, row: int, col: int, weights: np.ndarray
    ) -> None:
        """Add one chip; the part outside the grid is dropped.

        Args:
            prediction: ``[channels, height, width]``.
            row: Grid row of the chip's first row (may be negative).
            col: Grid column of the chip's first column (may be negative).
            weights: ``[height, width]`` blending weights of the chip.
        """
        r0, r1 = _clip(row, prediction.shape[1], self.grid.height)
        c0, c1 = _clip(col, prediction.shape[2], self.grid.width)
        if r0 >= r1 or c0 >= c1:
            return
        window = Window(col + c0, row + r0, c1 - c0, r1 - r0)
        current = self.dataset.read(window=window)
        weights = weights[r0:r1, c0:c1]
        current[:-1] += prediction[:, r0:r1, c0:c1] * weights
        current[-1] += weights
        self.dataset.write(current, window=window)

    def view(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The sums of grid rows ``[start, stop)``.

        Args:
            start: First row.
            stop: Row after the last.

        Returns:
            ``sums [channels, rows, width]`` and ``weight [rows, width]``.
        """
        window = Window(0, start, self.grid.width, stop - start)
        data = self.dataset.read(window=window)
        return data[:-1], data[-1]

    def close(self) -> None:
        """Close and delete the scratch file."""
        if not self.dataset.closed:
            self.dataset.close()
        self.path.unlink(missing_ok=True)
