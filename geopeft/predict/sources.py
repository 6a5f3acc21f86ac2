"""The rasters a scene prediction reads, brought onto one grid.

The first raster defines the grid (CRS, transform, width, height) of the prediction
and of its output. A second raster (the later date of a change-detection pair) is
read through a :class:`rasterio.vrt.WarpedVRT` onto that grid when its CRS,
transform or size differ, so both dates' pixels line up; its pixels outside its own
footprint are nodata.

Reads are padded: the part of a window outside the scene is filled by mirroring the
scene at its edge (``numpy.pad(mode='reflect')``), so chips keep their size at the
edges and the model sees plausible context there instead of a black border.

A pixel is nodata when every band of an input equals that input's nodata value
(``--nodata`` or the file's own, NaN included) or is masked by the input's mask or
alpha band; with two inputs, when it is nodata in either. Nodata pixels are set to
0 before the chip reaches the model, so that they never turn into NaN or extreme
values in the network.
"""

import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from .windows import RasterGrid


def _open(path: Path) -> Any:
    """Open a raster, with errors that name the file and the fix."""
    if not path.exists():
        msg = f'input raster not found: {path}'
        raise FileNotFoundError(msg)
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        msg = (
            f'{path} is not a readable raster ({err}); the file may be truncated, '
            'still being copied or not a GeoTIFF: re-create or re-download it'
        )
        raise ValueError(msg) from err


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    """Tell whether two ``(left, bottom, right, top)`` boxes share an area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Identify a file's version: absolute path, size and modification time.

    Args:
        path: The file.

    Returns:
        A JSON-serialisable description.
    """
    path = Path(path).resolve()
    stat = path.stat()
    return {'path': str(path), 'bytes': stat.st_size, 'mtime_ns': stat.st_mtime_ns}


class SceneInputs:
    """One raster, or two (change detection) on the first one's grid.

    Attributes:
        paths: The input files.
        grid: The grid of the first raster, which every read is on.
        count: Bands of a read: the selected bands of every input, concatenated.
        dtype: Numpy dtype of a read (the inputs' common type).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        bands: Sequence[int] | None = None,
        nodata: float | None = None,
        resampling: str = 'bilinear',
        in_channels: int | None = None,
    ) -> None:
        """Open the inputs.

        Args:
            paths: One or two rasters.
            bands: 1-based band indexes to read from each input (all when None).
            nodata: Nodata value of the inputs, overriding the files' own.
            resampling: Resampling of a second raster onto the first one's grid
                (a :class:`rasterio.enums.Resampling` name).
            in_channels: Bands the model takes per input; checked when given.

        Raises:
            FileNotFoundError: If an input does not exist.
            ValueError: If an input is unreadable, has too few bands or other
                bands than *in_channels*, or the two inputs do not overlap.
        """
        self.paths = [Path(path) for path in paths]
        if len(self.paths) not in (1, 2):
            msg = f'give one raster, or two for change detection; got {len(self.paths)}'
            raise ValueError(msg)
        try:
            method = Resampling[resampling]
        except KeyError:
            names = ', '.join(item.name for item in Resampling)
            msg = f'unknown resampling {resampling!r}: one of {names}'
            raise ValueError(msg) from None
        self._stack = ExitStack()
        try:
            sources = [self._stack.enter_context(_open(path)) for path in self.paths]
            self.grid = RasterGrid.of(sources[0])
            self._nodata = [
                nodata if nodata is not None else src.nodata for src in sources
            ]
            self._readers = [sources[0]]
            if len(sources) == 2:
                self._readers.append(
                    self._onto_grid(sources[1], method, self._nodata[1])
                )
            self._bands = [self._band_indexes(src, bands) for src in sources]
            self._masked = [
                self._nodata[i] is None and self._has_mask(reader)
                for i, reader in enumerate(self._readers)
            ]
            if in_channels is not None:
                self._check_channels(in_channels)
        except BaseException:
            self._stack.close()
            raise
        self.count = sum(len(indexes) for indexes in self._bands)
        self.dtype = np.result_type(*(src.dtypes[0] for src in sources))

    def _onto_grid(self, src: Any, method: Resampling, nodata: float | None) -> Any:
        """Return *src* on the first raster's grid (itself when already on it).

        Pixels outside *src*'s footprint get *nodata*, or a zero alpha when it has
        none.
        """
        grid = RasterGrid.of(src)
        if grid.matches(self.grid):
            return src
        if grid.crs is None or self.grid.crs is None:
            msg = (
                f'{self.paths[1]} is on another grid than {self.paths[0]} and one '
                'of them has no CRS, so it cannot be resampled onto the other: '
                'assign CRSs (e.g. gdal_edit.py -a_srs) or resample them to one grid'
            )
            raise ValueError(msg)
        first = tuple(self.grid.bounds)
        second = transform_bounds(src.crs, self.grid.crs, *src.bounds)
        if not _overlaps(first, second):
            msg = (
                f'the rasters do not overlap: {self.paths[0]} covers {first} and '
                f'{self.paths[1]} covers {tuple(round(v, 3) for v in second)} (in '
                f'{self.grid.crs}); change detection needs two images of the same '
                'place: check the files and their CRSs'
            )
            raise ValueError(msg)
        options: dict[str, Any] = {
            'crs': self.grid.crs,
            'transform': self.grid.transform,
            'width': self.grid.width,
            'height': self.grid.height,
            'resampling': method,
        }
        if nodata is not None:
            options['src_nodata'] = nodata
            options['nodata'] = nodata
        else:
            options['add_alpha'] = True
        return self._stack.enter_context(WarpedVRT(src, **options))

    def _band_indexes(self, src: Any, bands: Sequence[int] | None) -> list[int]:
        """Validate the selected bands of *src*."""
        if bands is None:
            return list(range(1, src.count + 1))
        wrong = [band for band in bands if not 1 <= band <= src.count]
        if wrong:
            msg = (
                f'{src.name} has bands 1..{src.count}, so bands {wrong} do not exist '
                '(band indexes are 1-based)'
            )
            raise ValueError(msg)
        return list(bands)

    @staticmethod
    def _has_mask(reader: Any) -> bool:
        """Tell whether a reader has a mask or alpha band to honour."""
        flags = reader.mask_flag_enums[0]
        return MaskFlags.all_valid not in flags

    def _check_channels(self, in_channels: int) -> None:
        """Fail unless every input gives *in_channels* bands."""
        for path, indexes in zip(self.paths, self._bands, strict=True):
            if len(indexes) != in_channels:
                msg = (
                    f'the model takes {in_channels} bands per image (in_channels of '
                    f'the checkpoint), but {path} gives {len(indexes)}: select '
                    f'{in_channels} bands (--bands, 1-based) or use a model trained '
                    f'on {len(indexes)} bands'
                )
                raise ValueError(msg)

    def cache_mb(self, chip_size: int) -> int:
        """GDAL block cache (MB) that holds the input tiles one chip-row touches.

        With less, tiles shared by neighbouring chips are decoded again for each
        chip.

        Args:
            chip_size: Rows of a chip.

        Returns:
            Megabytes: the block rows a chip-row spans, over the full width, for
            every input, plus a quarter.
        """
        total = 0
        for reader in self._readers:
            block_rows = max(1, reader.block_shapes[0][0])
            rows = (-(-chip_size // block_rows) + 1) * block_rows
            itemsize = np.dtype(reader.dtypes[0]).itemsize
            total += rows * self.grid.width * reader.count * itemsize
        return -(-total * 5 // 4) // 2**20 + 1

    def describe(self) -> list[dict[str, Any]]:
        """Fingerprints of the input files (for resume checks)."""
        return [fingerprint(path) for path in self.paths]

    def read(
        self, rows: tuple[int, int], cols: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read a window of the grid, padded where it leaves the scene.

        Args:
            rows: ``(start, stop)`` rows of the grid; may extend past the scene.
            cols: ``(start, stop)`` columns of the grid; may extend past it.

        Returns:
            ``data [count, rows, cols]`` (:attr:`dtype`, nodata pixels set to 0,
            padding mirrored) and ``valid [rows, cols]`` (False for nodata and
            padding).

        Raises:
            OSError: If a file cannot be read (naming it and the rows).
        """
        height, width = self.grid.height, self.grid.width
        r0, r1 = max(0, rows[0]), min(height, rows[1])
        c0, c1 = max(0, cols[0]), min(width, cols[1])
        window = Window(c0, r0, c1 - c0, r1 - r0)
        parts, valid = [], np.ones((r1 - r0, c1 - c0), dtype=bool)
        for i, reader in enumerate(self._readers):
            data, ok = self._read_one(i, reader, window)
            parts.append(data)
            valid &= ok
        data = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if not valid.all():
            data[:, ~valid] = 0
        if np.issubdtype(data.dtype, np.floating):
            np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        pad = (
            (r0 - rows[0], rows[1] - r1),
            (c0 - cols[0], cols[1] - c1),
        )
        if any(any(side) for side in pad):
            data = np.pad(data, ((0, 0), *pad), mode='reflect')
            valid = np.pad(valid, pad, mode='constant', constant_values=False)
        return data, valid

    def _read_one(
        self, index: int, reader: Any, window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read one input's bands and validity in *window*."""
        path = self.paths[index]
        try:
            data = reader.read(self._bands[index], window=window)
            nodata = self._nodata[index]
            if nodata is not None:
                if np.isnan(nodata):
                    valid = ~np.isnan(data).all(axis=0)
                else:
                    valid = (data != nodata).any(axis=0)
            elif self._masked[index]:
                valid = reader.read_masks(1, window=window) > 0
            else:
                valid = np.ones(data.shape[1:], dtype=bool)
        except RasterioError as err:
            reason = err.__cause__ or err
            msg = (
                f'reading rows {window.row_off}..{window.row_off + window.height} of '
                f'{path} failed ({reason}): the file is damaged or truncated; '
                're-create or re-download it'
            )
            raise OSError(msg) from err
        return data.astype(self.dtype, copy=False), valid

    def close(self) -> None:
        """Close the files."""
        self._stack.close()

    def __enter__(self) -> 'SceneInputs':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
