"""Generated GeoTIFFs, mosaics and vector labels for the raster tests.

Shared by the tests of :mod:`geopeft.datasets.rasters`, the raster datamodules,
``geopeft bench sampling`` and whole-scene prediction. Import from any test
(``tests/`` is on ``sys.path`` through ``tests/conftest.py``)::

    from rasters_data import make_mosaic, make_raster, make_vector_labels

Conventions:

* ``origin`` is the ``(left, top)`` corner of the upper-left pixel in CRS units;
  ``res`` the pixel size (square pixels, north-up).
* ``values='ramp'`` writes a deterministic pattern of the pixel's position on the
  CRS's pixel grid (:func:`ramp_values`): neighbouring tiles of a mosaic continue
  each other seamlessly, so a patch read across file borders must equal the
  pattern computed for its bounds. ``values='random'`` writes seeded noise.
* Every function returns what it wrote and takes keyword-only options with
  defaults that make a small 3-band uint16 UTM raster.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

#: Default CRS of the generated rasters (UTM zone 31N, metres).
DEFAULT_CRS = 'EPSG:32631'

#: Default upper-left corner ``(left, top)`` of the generated rasters.
DEFAULT_ORIGIN = (500_000.0, 4_000_000.0)


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of an int or pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def ramp_values(
    rows: np.ndarray,
    cols: np.ndarray,
    bands: int,
    dtype: str | np.dtype = 'uint16',
) -> np.ndarray:
    """The ``'ramp'`` pattern at absolute pixel positions.

    ``value[b, r, c] = (3 * r + 5 * c + 101 * b) % m`` with ``m`` 251 for 8-bit
    types and 4093 otherwise, where ``r = -y / res`` and ``c = x / res`` for the
    pixel's upper-left corner ``(x, y)``: the pattern depends on where a pixel is,
    not on which file holds it.

    Args:
        rows: Absolute row of each pixel row (1-D).
        cols: Absolute column of each pixel column (1-D).
        bands: Number of bands.
        dtype: Output dtype.

    Returns:
        A ``[bands, len(rows), len(cols)]`` array.
    """
    dtype = np.dtype(dtype)
    modulus = 251 if dtype.itemsize == 1 else 4093
    band = np.arange(bands).reshape(-1, 1, 1)
    value = 3 * rows.reshape(1, -1, 1) + 5 * cols.reshape(1, 1, -1) + 101 * band
    return (value % modulus).astype(dtype)


def ramp_for_bounds(
    bounds: tuple[float, float, float, float],
    res: float,
    bands: int,
    dtype: str | np.dtype = 'uint16',
) -> np.ndarray:
    """The ``'ramp'`` pattern of the pixels inside *bounds*.

    Args:
        bounds: ``(left, bottom, right, top)`` on the pixel grid of *res*.
        res: Pixel size.
        bands: Number of bands.
        dtype: Output dtype.

    Returns:
        A ``[bands, H, W]`` array, what any raster written with ``values='ramp'``
        and this *res* holds inside *bounds*.
    """
    left, bottom, right, top = bounds
    row0, col0 = round(-top / res), round(left / res)
    height, width = round((top - bottom) / res), round((right - left) / res)
    rows = np.arange(row0, row0 + height)
    cols = np.arange(col0, col0 + width)
    return ramp_values(rows, cols, bands, dtype)


def make_raster(
    path: Path | str,
    *,
    size: int | tuple[int, int] = 64,
    bands: int = 3,
    dtype: str = 'uint16',
    crs: str = DEFAULT_CRS,
    res: float = 10.0,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    tile: int | None = None,
    nodata: float | None = None,
    compress: str | None = 'deflate',
    values: Literal['ramp', 'random'] | np.ndarray = 'ramp',
    seed: int = 0,
) -> Path:
    """Write a north-up GeoTIFF.

    Args:
        path: Output file (parent folders are created).
        size: ``height`` and ``width`` in pixels, or one int for both.
        bands: Number of bands (ignored when *values* is an array).
        dtype: Numpy dtype name (ignored when *values* is an array).
        crs: Any CRS rasterio accepts.
        res: Pixel size in CRS units.
        origin: ``(left, top)`` of the upper-left pixel's corner.
        tile: Internal tile side (a multiple of 16) for a tiled GeoTIFF; None for
            strips.
        nodata: Nodata value written in the file's metadata (pixels are not
            changed: put it into *values* where you want nodata).
        compress: GeoTIFF compression ('deflate', 'lzw', ...) or None.
        values: 'ramp' (:func:`ramp_values` of the pixel positions), 'random'
            (seeded noise over the dtype's range, at most 0..4095), or a
            ``[bands, H, W]`` or ``[H, W]`` array to write as is.
        seed: Seed of 'random'.

    Returns:
        *path* as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(values, np.ndarray):
        data = values[None] if values.ndim == 2 else values
    else:
        height, width = _size(size)
        if values == 'ramp':
            row0, col0 = round(-origin[1] / res), round(origin[0] / res)
            rows = np.arange(row0, row0 + height)
            cols = np.arange(col0, col0 + width)
            data = ramp_values(rows, cols, bands, dtype)
        else:
            rng = np.random.default_rng(seed)
            if np.issubdtype(np.dtype(dtype), np.integer):
                high = min(np.iinfo(np.dtype(dtype)).max, 4095)
                data = rng.integers(0, high + 1, (bands, height, width))
            else:
                data = rng.random((bands, height, width))
            data = data.astype(dtype)
    count, height, width = data.shape
    profile = {
        'driver': 'GTiff',
        'height': height,
        'width': width,
        'count': count,
        'dtype': data.dtype.name,
        'crs': crs,
        'transform': from_origin(origin[0], origin[1], res, res),
        'nodata': nodata,
    }
    if compress is not None:
        profile['compress'] = compress
    if tile is not None:
        profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(data)
    return path


def make_mosaic(
    root: Path | str,
    *,
    grid: tuple[int, int] = (2, 2),
    tile_size: int | tuple[int, int] = 32,
    bands: int = 3,
    dtype: str = 'uint16',
    crs: str = DEFAULT_CRS,
    res: float = 10.0,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    tile: int | None = None,
    nodata: float | None = None,
    compress: str | None = 'deflate',
    values: Literal['ramp', 'random'] = 'ramp',
    seed: int = 0,
    prefix: str = 'tile',
) -> list[Path]:
    """Write a seamless mosaic: ``rows x cols`` edge-to-edge GeoTIFFs.

    File ``{prefix}_{row}_{col}.tif`` holds the tile in grid row ``row`` (from the
    top) and column ``col``; together they cover ``rows * tile_height`` by
    ``cols * tile_width`` pixels from *origin*. With 'ramp' the pattern runs on
    across file borders; with 'random' each file draws its own noise (seed
    ``seed + index``).

    Args:
        root: Output folder.
        grid: ``(rows, cols)`` of files.
        tile_size: Size of each file in pixels (``(height, width)`` or one int).
        bands: Number of bands.
        dtype: Numpy dtype name.
        crs: Any CRS rasterio accepts.
        res: Pixel size in CRS units.
        origin: ``(left, top)`` of the mosaic's upper-left corner.
        tile: Internal GeoTIFF tile side, or None for strips.
        nodata: Nodata value of the files' metadata.
        compress: GeoTIFF compression or None.
        values: 'ramp' or 'random' (see :func:`make_raster`).
        seed: Base seed of 'random'.
        prefix: File-name prefix.

    Returns:
        The files, row by row.
    """
    root = Path(root)
    height, width = _size(tile_size)
    paths = []
    for row in range(grid[0]):
        for col in range(grid[1]):
            corner = (origin[0] + col * width * res, origin[1] - row * height * res)
            paths.append(
                make_raster(
                    root / f'{prefix}_{row}_{col}.tif',
                    size=(height, width),
                    bands=bands,
                    dtype=dtype,
                    crs=crs,
                    res=res,
                    origin=corner,
                    tile=tile,
                    nodata=nodata,
                    compress=compress,
                    values=values,
                    seed=seed + row * grid[1] + col,
                )
            )
    return paths


def pixel_box(
    origin: tuple[float, float],
    res: float,
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> shapely.Polygon:
    """The polygon covering pixel rows ``rows[0]:rows[1]`` and columns of a raster.

    Args:
        origin: ``(left, top)`` of the raster.
        res: Pixel size.
        rows: Half-open range of rows (from the top).
        cols: Half-open range of columns.

    Returns:
        A box exactly on those pixels' edges.
    """
    left = origin[0] + cols[0] * res
    right = origin[0] + cols[1] * res
    top = origin[1] - rows[0] * res
    bottom = origin[1] - rows[1] * res
    return shapely.box(left, bottom, right, top)


def make_vector_labels(
    path: Path | str,
    polygons: Sequence[shapely.Geometry | tuple[float, float, float, float]],
    classes: Sequence[int | str],
    crs: str = DEFAULT_CRS,
    *,
    column: str = 'class',
    extra: dict[str, Sequence[object]] | None = None,
) -> Path:
    """Write polygons with one attribute to a vector file.

    Also writes split regions: ``column='split'`` and values 'train'/'val'/'test'.

    Args:
        path: Output file; the driver follows the suffix (``.gpkg`` GeoPackage,
            ``.geojson`` GeoJSON, ``.shp`` shapefile).
        polygons: Shapely geometries or ``(left, bottom, right, top)`` boxes.
        classes: The attribute of each polygon.
        crs: CRS of the coordinates.
        column: Name of the attribute column.
        extra: Further columns (name -> one value per polygon).

    Returns:
        *path* as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    geometries = [shapely.box(*p) if isinstance(p, tuple) else p for p in polygons]
    data = {column: list(classes), **(extra or {})}
    frame = gpd.GeoDataFrame(data, geometry=geometries, crs=crs)
    frame.to_file(path)
    return path


def make_labelled_scene(
    root: Path | str,
    *,
    size: int = 64,
    bands: int = 3,
    num_classes: int = 2,
    block: int = 16,
    crs: str = DEFAULT_CRS,
    res: float = 10.0,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    tile: int | None = None,
    seed: int = 0,
    name: str = 'scene',
) -> tuple[Path, Path]:
    """Write a learnable image and its class mask on the same grid.

    The mask is a grid of ``block``-pixel squares of random classes; the image
    has, in every band, ``1000 * (class + 1)`` plus noise below 200 (uint16), so
    a model can learn it.

    Args:
        root: Output folder.
        size: Side of both rasters in pixels (a multiple of *block*).
        bands: Bands of the image.
        num_classes: Classes ``0 .. num_classes - 1`` in the mask.
        block: Side of the squares.
        crs: CRS of both.
        res: Pixel size.
        origin: ``(left, top)`` of both.
        tile: Internal tile side, or None for strips.
        seed: Seed of the classes and the noise.
        name: File-name stem: ``{name}_image.tif`` and ``{name}_mask.tif``.

    Returns:
        The image and the mask files.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, num_classes, (size // block, size // block))
    mask = np.kron(cells, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
    noise = rng.integers(0, 200, (bands, size, size))
    image = (1000 * (mask[None].astype(np.int64) + 1) + noise).astype(np.uint16)
    grid = {'crs': crs, 'res': res, 'origin': origin, 'tile': tile}
    image_path = make_raster(root / f'{name}_image.tif', values=image, **grid)
    mask_path = make_raster(root / f'{name}_mask.tif', values=mask, **grid)
    return image_path, mask_path


def truncate_file(path: Path | str, keep: float = 0.5) -> Path:
    """Cut a file short (a corrupt GeoTIFF from a valid one).

    Args:
        path: The file, changed in place.
        keep: Fraction of its bytes to keep.

    Returns:
        *path* as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
