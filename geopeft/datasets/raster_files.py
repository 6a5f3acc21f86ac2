"""User raster files on one target grid, read with one window read per file.

The fast read path of :mod:`geopeft.datasets.rasters`:

* :func:`find_raster_files` expands files, folders and glob patterns;
  :func:`inspect_raster` opens each file once (clear errors for missing, corrupt
  or truncated files and files without a CRS);
* :func:`resolve_grid` picks the :class:`TargetGrid` (CRS, resolution and the
  origin every pixel edge is a whole number of pixels from): the one given, or the
  files' own when they all share CRS and resolution;
* :class:`RasterMosaic` places every file on that grid in integer pixel
  coordinates. A file already on the grid is read as it is; any other (another
  CRS or resolution, or shifted by a fraction of a pixel) through a
  :class:`rasterio.vrt.WarpedVRT` onto the grid. Either way a patch on the grid is
  one ``read(window=...)`` per file it touches: no merge, no boundless masked
  read. Patches over several files are pasted together (the first file in order
  wins where files overlap, as :func:`rasterio.merge.merge` does). Files are
  looked up through the index's spatial index (``sindex.query``); open handles are
  cached per worker process (keyed by pid, so a forked DataLoader worker reopens
  its own) and never pickled.
"""

import glob
import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
import rasterio.merge
import shapely
from geopandas import GeoDataFrame
from pyproj import CRS as PROJ_CRS
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.transform import Affine, from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_geom
from rasterio.windows import Window
from torchgeo.datasets.utils import Path

from .errors import DataNotFoundError

#: File suffixes picked up from folders (case-insensitive).
RASTER_SUFFIXES = ('.tif', '.tiff', '.vrt')

#: Resampling names accepted by the datasets.
ResamplingName = Literal['nearest', 'bilinear', 'cubic', 'average', 'mode']

#: Pixel offsets closer than this to a whole number count as on the grid.
_TOLERANCE = 1e-6


class RasterInputError(ValueError):
    """Raised when user rasters or labels cannot be used as given.

    The message names the files, what is wrong with them and how to fix it (CRSs
    that differ without a target grid, bands that do not match, rasters that do
    not overlap, unreadable files, vector labels without the class column).
    """


def find_raster_files(
    paths: Path | Iterable[Path],
    suffixes: Sequence[str] = RASTER_SUFFIXES,
    what: str = 'rasters',
) -> list[str]:
    """Expand files, folders and glob patterns into a list of files.

    Files are kept in the order given; the files of a folder (searched
    recursively for *suffixes*) and of a glob pattern are sorted. Duplicates are
    dropped.

    Args:
        paths: One path or several: files, folders or glob patterns.
        suffixes: Suffixes searched for in folders.
        what: What the paths are, for error messages ('images', 'labels', ...).

    Returns:
        The files.

    Raises:
        DataNotFoundError: If a path does not exist, or a folder or pattern holds
            no file.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[str] = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isfile(path):
            found = [path]
        elif os.path.isdir(path):
            found = sorted(
                f
                for f in glob.glob(os.path.join(path, '**', '*'), recursive=True)
                if f.lower().endswith(tuple(suffixes)) and os.path.isfile(f)
            )
            if not found:
                msg = (
                    f'{what}: the folder {path} holds no {"/".join(suffixes)} file; '
                    'point to the raster files or the folder that holds them'
                )
                raise DataNotFoundError(msg)
        elif glob.has_magic(path):
            found = sorted(
                f for f in glob.glob(path, recursive=True) if os.path.isfile(f)
            )
            if not found:
                msg = f'{what}: the pattern {path} matches no file'
                raise DataNotFoundError(msg)
        else:
            msg = f'{what}: {path} does not exist (a file, folder or glob pattern)'
            raise DataNotFoundError(msg)
        files.extend(f for f in found if f not in files)
    if not files:
        msg = f'{what}: no file given'
        raise DataNotFoundError(msg)
    return files


@dataclass(frozen=True)
class RasterFile:
    """What :class:`RasterMosaic` needs to know of one raster file.

    Attributes:
        path: The file.
        crs: Its CRS.
        transform: Its affine transform.
        width: Width in pixels.
        height: Height in pixels.
        count: Number of bands.
        dtype: Numpy dtype name of its first band.
        nodata: Its nodata value, or None.
        block: ``(height, width)`` of its internal blocks (tiles; one row for
            striped files).
    """

    path: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    block: tuple[int, int]

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (positive)."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the file's CRS."""
        left, top = self.transform.c, self.transform.f
        right = left + self.width * self.transform.a
        bottom = top + self.height * self.transform.e
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)


def inspect_raster(path: str) -> RasterFile:
    """Open a raster once and describe it.

    The last internal block is decoded too, so that a truncated GeoTIFF (whose
    header is intact but whose last tiles are missing) fails here, naming the file,
    rather than in a DataLoader worker.

    Args:
        path: The file.

    Returns:
        Its description.

    Raises:
        DataNotFoundError: If the file does not exist.
        RasterInputError: If it cannot be read as a raster, has no CRS, or is
            rotated.
    """
    if not os.path.exists(path):
        msg = f'raster {path} does not exist'
        raise DataNotFoundError(msg)
    try:
        with rasterio.open(path) as src:
            block = src.block_shapes[0] if src.block_shapes else (1, src.width)
            last = Window(
                (src.width - 1) // block[1] * block[1],
                (src.height - 1) // block[0] * block[0],
                min(block[1], src.width - (src.width - 1) // block[1] * block[1]),
                min(block[0], src.height - (src.height - 1) // block[0] * block[0]),
            )
            src.read(src.count, window=last)
            info = RasterFile(
                path=path,
                crs=src.crs,
                transform=src.transform,
                width=src.width,
                height=src.height,
                count=src.count,
                dtype=src.dtypes[0],
                nodata=src.nodata,
                block=(int(block[0]), int(block[1])),
            )
    except (RasterioIOError, RasterioError) as error:
        msg = (
            f'cannot read raster {path}: {error}. The file is corrupt, truncated '
            '(an interrupted copy or download?) or not a raster: replace it, or '
            'leave it out'
        )
        raise RasterInputError(msg) from error
    if info.crs is None:
        msg = (
            f'raster {path} has no CRS; georeference it (e.g. gdal_edit.py -a_srs '
            'EPSG:...) before use'
        )
        raise RasterInputError(msg)
    if info.transform.b != 0 or info.transform.d != 0:
        msg = (
            f'raster {path} has a rotated transform {tuple(info.transform)[:6]}; '
            'pass crs and res so that it is warped onto a north-up grid'
        )
        if info.transform.is_identity:
            msg = f'raster {path} has no geotransform; georeference it before use'
        raise RasterInputError(msg)
    return info


def _crs_name(crs: CRS) -> str:
    """Short name of a CRS (its EPSG code when it has one)."""
    epsg = crs.to_epsg()
    return f'EPSG:{epsg}' if epsg is not None else crs.to_string()


@dataclass(frozen=True)
class TargetGrid:
    """The pixel grid every layer is read on.

    Attributes:
        crs: The CRS.
        res: Pixel size ``(x, y)`` in CRS units (positive).
        origin: ``(x, y)`` of a pixel corner: every pixel edge of the grid lies a
            whole number of pixels from it.
    """

    crs: CRS
    res: tuple[float, float]
    origin: tuple[float, float]

    def to_pixels(
        self, bounds: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        """Express bounds as grid pixel coordinates.

        Args:
            bounds: ``(left, bottom, right, top)`` in the grid's CRS.

        Returns:
            ``(col, row, width, height)`` in pixels: column and row of the
            upper-left corner (rows counted downwards from the origin).
        """
        left, bottom, right, top = bounds
        col = (left - self.origin[0]) / self.res[0]
        row = (self.origin[1] - top) / self.res[1]
        return col, row, (right - left) / self.res[0], (top - bottom) / self.res[1]

    def to_bounds(
        self, col: int, row: int, width: int, height: int
    ) -> tuple[float, float, float, float]:
        """Bounds of a window of grid pixels.

        Args:
            col: Column of the upper-left pixel.
            row: Row of the upper-left pixel.
            width: Width in pixels.
            height: Height in pixels.

        Returns:
            ``(left, bottom, right, top)``.
        """
        left = self.origin[0] + col * self.res[0]
        top = self.origin[1] - row * self.res[1]
        return (
            left,
            self.origin[1] - (row + height) * self.res[1],
            self.origin[0] + (col + width) * self.res[0],
            top,
        )

    def snap(
        self, bounds: tuple[float, float, float, float], outward: bool = True
    ) -> tuple[int, int, int, int]:
        """The grid window that covers (or fits inside) bounds.

        Args:
            bounds: ``(left, bottom, right, top)``.
            outward: Cover the bounds (True) or fit inside them (False).

        Returns:
            ``(col, row, width, height)`` in whole pixels (width or height may be
            0 or negative when nothing fits inside).
        """
        col, row, width, height = self.to_pixels(bounds)
        low, high = (math.floor, math.ceil) if outward else (math.ceil, math.floor)
        c0, r0 = low(col + _sign(outward)), low(row + _sign(outward))
        c1 = high(col + width - _sign(outward))
        r1 = high(row + height - _sign(outward))
        return c0, r0, c1 - c0, r1 - r0

    def holds(self, info: RasterFile) -> bool:
        """Tell whether a file's pixels are pixels of this grid.

        Args:
            info: The file.

        Returns:
            True when the file has the grid's CRS and resolution, is north-up and
            its corner lies a whole number of pixels from the origin.
        """
        t = info.transform
        if info.crs != self.crs or t.b != 0 or t.d != 0:
            return False
        if not (math.isclose(t.a, self.res[0]) and math.isclose(-t.e, self.res[1])):
            return False
        col, row, _, _ = self.to_pixels(info.bounds)
        return _whole(col) and _whole(row)


def _sign(outward: bool) -> float:
    """Tolerance that keeps near-integer pixel edges from rounding the wrong way."""
    return _TOLERANCE if outward else -_TOLERANCE


def _whole(value: float) -> bool:
    """Tell whether a pixel coordinate is a whole number (within tolerance)."""
    return abs(value - round(value)) < _TOLERANCE


def resolve_grid(
    files: Sequence[RasterFile],
    crs: str | int | CRS | PROJ_CRS | None = None,
    res: float | tuple[float, float] | None = None,
) -> TargetGrid:
    """Pick the target grid of a set of rasters.

    The CRS is *crs*, or the files' CRS when they all share one. The resolution
    is *res*, or that of the files in the target CRS when they share one. The
    origin is the corner of the first file already on that CRS and resolution (so
    its pixels are read as they are, as are all files aligned with it), or
    ``(0, 0)`` when none is.

    Args:
        files: The rasters, in order.
        crs: Target CRS (anything rasterio accepts), or None.
        res: Target pixel size in CRS units (one value or ``(x, y)``), or None.

    Returns:
        The grid.

    Raises:
        RasterInputError: If the CRSs or resolutions differ and no target was
            given, naming them and the fix.
    """
    if crs is None:
        by_crs: dict[str, list[str]] = {}
        for info in files:
            by_crs.setdefault(_crs_name(info.crs), []).append(info.path)
        if len(by_crs) > 1:
            listing = '; '.join(
                f'{name}: {len(paths)} file(s), e.g. {paths[0]}'
                for name, paths in by_crs.items()
            )
            msg = (
                f'the rasters are in different CRSs ({listing}); pass a target grid '
                f'to reproject them onto, e.g. crs: {next(iter(by_crs))} and res: '
                'the pixel size in its units'
            )
            raise RasterInputError(msg)
        target_crs = files[0].crs
    else:
        if isinstance(crs, PROJ_CRS):
            crs = crs.to_wkt()
        target_crs = CRS.from_user_input(crs)
    native = [info for info in files if info.crs == target_crs]
    if res is None:
        found = sorted({info.res for info in native})
        if not found:
            msg = (
                f'no raster is in the target CRS {_crs_name(target_crs)}, so its '
                'resolution cannot be taken from them; pass res (the pixel size in '
                'CRS units)'
            )
            raise RasterInputError(msg)
        if len(found) > 1:
            msg = (
                f'the rasters have different resolutions {found}; pass res (the '
                'target pixel size) to resample them onto one grid'
            )
            raise RasterInputError(msg)
        target_res = found[0]
    else:
        target_res = (float(res), float(res)) if isinstance(res, int | float) else res
        target_res = (float(target_res[0]), float(target_res[1]))
    origin = (0.0, 0.0)
    for info in native:
        if (
            info.transform.b == 0
            and info.transform.d == 0
            and all(
                math.isclose(a, b) for a, b in zip(info.res, target_res, strict=True)
            )
        ):
            left, _, _, top = info.bounds
            origin = (left, top)
            break
    return TargetGrid(crs=target_crs, res=target_res, origin=origin)


def _footprint(info: RasterFile, crs: CRS) -> shapely.Geometry:
    """The file's outline in another CRS (edges densified before transforming)."""
    outline = shapely.box(*info.bounds)
    if info.crs == crs:
        return outline
    step = max(info.bounds[2] - info.bounds[0], info.bounds[3] - info.bounds[1]) / 64
    dense = shapely.segmentize(outline, step)
    moved = transform_geom(info.crs, crs, shapely.geometry.mapping(dense))
    return shapely.geometry.shape(moved)


def _close(entry: tuple[DatasetReader, WarpedVRT | None]) -> None:
    """Close a file handle and its warped view."""
    src, vrt = entry
    if vrt is not None:
        vrt.close()
    src.close()


class RasterMosaic:
    """Raster files read as one layer on a :class:`TargetGrid`.

    Every file gets a window of grid pixels (``cols``, ``rows``, ``widths``,
    ``heights``). :meth:`read` returns any grid window as one array: one window
    read per file it touches. Pixels no file covers get ``fill``.

    Attributes:
        index: One row per file: ``filepath`` and, as geometry, the file's grid
            window as a box (what TorchGeo's samplers need).
        footprint: Union of the files' exact outlines in the grid's CRS (a
            warped file's outline is not a box).
        count: Number of bands read.
    """

    def __init__(
        self,
        files: Sequence[RasterFile],
        grid: TargetGrid,
        *,
        bands: Sequence[int] | None = None,
        resampling: ResamplingName = 'nearest',
        fill: float = 0,
        max_open: int = 256,
        what: str = 'rasters',
    ) -> None:
        """Initialize a new RasterMosaic instance.

        Args:
            files: The files, in order (the first wins where files overlap).
            grid: The target grid.
            bands: 1-based band indexes to read (default: all bands).
            resampling: Resampling of warped files.
            fill: Value of pixels that no file covers.
            max_open: Most file handles kept open per process.
            what: What the files are, for error messages.

        Raises:
            RasterInputError: If the files have different band counts, or a band
                index is out of range.
        """
        self.files = list(files)
        self.grid = grid
        self.fill = fill
        self.max_open = max_open
        self.resampling = Resampling[resampling]
        counts = sorted({info.count for info in self.files})
        if bands is None:
            if len(counts) > 1:
                examples = {info.count: info.path for info in reversed(self.files)}
                listing = ', '.join(f'{c} bands ({p})' for c, p in examples.items())
                msg = (
                    f'{what} have different band counts: {listing}; pass bands (the '
                    '1-based band indexes to read, present in every file)'
                )
                raise RasterInputError(msg)
            bands = list(range(1, counts[0] + 1))
        bands = [int(b) for b in bands]
        if not bands or min(bands) < 1 or max(bands) > counts[0]:
            msg = (
                f"{what}: bands {bands} are not 1-based indexes of the files' bands "
                f'(the files have {counts[0]}{" or more" if len(counts) > 1 else ""})'
            )
            raise RasterInputError(msg)
        self.bands = bands
        self.count = len(bands)

        self.warped = np.array([not grid.holds(info) for info in self.files])
        windows, footprints = [], []
        for info, warped in zip(self.files, self.warped, strict=True):
            outline = _footprint(info, grid.crs)
            bounds = info.bounds if not warped else outline.bounds
            col, row, width, height = grid.snap(bounds)
            windows.append((col, row, width, height))
            footprints.append(outline)
        window_array = np.array(windows, dtype=np.int64).reshape(-1, 4)
        self.cols, self.rows, self.widths, self.heights = window_array.T
        self.nodata = [info.nodata for info in self.files]
        self.footprint = shapely.union_all(footprints)
        boxes = [shapely.box(*grid.to_bounds(*map(int, w))) for w in windows]
        self.index = GeoDataFrame(
            {'filepath': [info.path for info in self.files]},
            geometry=boxes,
            crs=grid.crs.to_wkt(),
        )
        self._pid = os.getpid()
        self._handles: OrderedDict[int, tuple[DatasetReader, WarpedVRT | None]] = (
            OrderedDict()
        )

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the open handles (each process opens its own)."""
        state = self.__dict__.copy()
        state['_handles'] = OrderedDict()
        return state

    @property
    def block(self) -> tuple[int, int]:
        """``(height, width)`` of the first file's internal blocks."""
        return self.files[0].block

    def bounds_of(self, i: int) -> tuple[float, float, float, float]:
        """Bounds of the *i*-th file's grid window."""
        return self.grid.to_bounds(
            int(self.cols[i]),
            int(self.rows[i]),
            int(self.widths[i]),
            int(self.heights[i]),
        )

    def _handle(self, i: int) -> DatasetReader | WarpedVRT:
        """The open handle of the *i*-th file in this process (opened on demand).

        After a fork (a DataLoader worker) the parent's handles are dropped and
        the file is reopened, so no two processes share a GDAL handle.
        """
        if os.getpid() != self._pid:
            self._handles = OrderedDict()
            self._pid = os.getpid()
        entry = self._handles.get(i)
        if entry is not None:
            self._handles.move_to_end(i)
            return entry[1] if entry[1] is not None else entry[0]
        info = self.files[i]
        try:
            src = rasterio.open(info.path)
        except RasterioIOError as error:
            msg = f'cannot open raster {info.path}: {error}'
            raise RasterInputError(msg) from error
        vrt = None
        if self.warped[i]:
            vrt = WarpedVRT(
                src,
                crs=self.grid.crs,
                transform=from_origin(
                    *self.bounds_of(i)[::3], self.grid.res[0], self.grid.res[1]
                ),
                width=int(self.widths[i]),
                height=int(self.heights[i]),
                resampling=self.resampling,
                add_alpha=info.nodata is None,
            )
        self._handles[i] = (src, vrt)
        while len(self._handles) > self.max_open:
            _, entry = self._handles.popitem(last=False)
            _close(entry)
        return vrt if vrt is not None else src

    def close(self) -> None:
        """Close this process's file handles (reopened on the next read).

        GDAL's cached blocks of the files go with them.
        """
        if os.getpid() == self._pid:
            for entry in self._handles.values():
                _close(entry)
        self._handles = OrderedDict()
        self._pid = os.getpid()

    def query(self, bounds: tuple[float, float, float, float]) -> list[int]:
        """Files whose grid windows overlap bounds (by a positive area), in order.

        Args:
            bounds: ``(left, bottom, right, top)``.

        Returns:
            Positions of the files in :attr:`files`.
        """
        hits = self.index.sindex.query(shapely.box(*bounds), predicate='intersects')
        left, bottom, right, top = bounds
        keep = []
        for i in sorted(int(h) for h in hits):
            f_left, f_bottom, f_right, f_top = self.bounds_of(i)
            if min(right, f_right) > max(left, f_left) and min(top, f_top) > max(
                bottom, f_bottom
            ):
                keep.append(i)
        return keep

    def _read_file(
        self, i: int, col: int, row: int, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One window read of a file, in grid pixels inside its window.

        Returns:
            The ``[bands, height, width]`` data and the per-pixel validity
            ``[bands, height, width]`` (None when every pixel is valid).
        """
        handle = self._handle(i)
        window = Window(col - int(self.cols[i]), row - int(self.rows[i]), width, height)
        info = self.files[i]
        indexes = list(self.bands)
        alpha = bool(self.warped[i]) and info.nodata is None
        if alpha:
            indexes.append(info.count + 1)
        try:
            data = handle.read(indexes, window=window)
        except RasterioIOError as error:
            msg = (
                f'cannot read raster {info.path} (window {window}): {error}. The '
                'file is corrupt or truncated: replace it, or leave it out'
            )
            raise RasterInputError(msg) from error
        if alpha:
            valid = np.broadcast_to(data[-1:] > 0, (self.count, height, width))
            return data[:-1], valid
        if info.nodata is not None:
            nodata = info.nodata
            valid = ~np.isnan(data) if math.isnan(nodata) else data != nodata
            return data, valid
        return data, None

    def read(
        self,
        bounds: tuple[float, float, float, float],
        dtype: str = 'float32',
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Read the grid window of bounds from every file it touches.

        Args:
            bounds: ``(left, bottom, right, top)``. On the grid, one window read
                per file; off the grid (not a whole number of pixels from the
                origin), :func:`rasterio.merge.merge` resamples the files.
            dtype: Dtype of the returned array.

        Returns:
            The ``[bands, H, W]`` array and the ``[H, W]`` validity of its
            pixels (False where any band is nodata or no file covers the pixel;
            None when all are valid).
        """
        col, row, width, height = self.grid.to_pixels(bounds)
        if not all(map(_whole, (col, row, width, height))):
            return self._merge(bounds, dtype)
        col, row, width, height = round(col), round(row), round(width), round(height)
        hits = self.query(bounds)
        if len(hits) == 1:
            i = hits[0]
            inside = (
                col >= self.cols[i]
                and row >= self.rows[i]
                and col + width <= self.cols[i] + self.widths[i]
                and row + height <= self.rows[i] + self.heights[i]
            )
            if inside:
                data, valid = self._read_file(i, col, row, width, height)
                return data.astype(dtype, copy=False), _all_bands(valid)
        out = np.full((self.count, height, width), self.fill, dtype=dtype)
        filled = np.zeros((self.count, height, width), dtype=bool)
        for i in hits:
            c0 = max(col, int(self.cols[i]))
            r0 = max(row, int(self.rows[i]))
            c1 = min(col + width, int(self.cols[i] + self.widths[i]))
            r1 = min(row + height, int(self.rows[i] + self.heights[i]))
            data, valid = self._read_file(i, c0, r0, c1 - c0, r1 - r0)
            part = (slice(None), slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            take = ~filled[part]
            if valid is not None:
                take &= valid
            out[part] = np.where(take, data, out[part])
            filled[part] |= take
        return out, None if filled.all() else filled.all(axis=0)

    def _merge(
        self, bounds: tuple[float, float, float, float], dtype: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Read bounds off the grid with :func:`rasterio.merge.merge`."""
        hits = self.query(bounds)
        if not hits:
            width, height = self.grid.to_pixels(bounds)[2:]
            shape = (self.count, round(height), round(width))
            return np.full(shape, self.fill, dtype=dtype), np.zeros(shape[1:], bool)
        data, _ = rasterio.merge.merge(
            [self._handle(i) for i in hits],
            bounds=bounds,
            res=self.grid.res,
            indexes=self.bands,
            resampling=self.resampling,
            masked=True,
        )
        valid = ~np.ma.getmaskarray(data)
        array = np.ma.filled(data.astype(dtype), self.fill)
        return array, None if valid.all() else valid.all(axis=0)


def _all_bands(valid: np.ndarray | None) -> np.ndarray | None:
    """Per-pixel validity (every band valid) from per-band validity."""
    if valid is None:
        return None
    pixel = valid.all(axis=0)
    return None if pixel.all() else pixel
