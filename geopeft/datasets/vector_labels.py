"""Vector labels: polygons with a class attribute, rasterised per patch."""

import os

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from rasterio.crs import CRS
from rasterio.transform import from_origin
from torchgeo.datasets.utils import Path

from .errors import DataNotFoundError
from .raster_files import RasterInputError

#: File suffixes read as vector labels (anything else is read as a raster).
VECTOR_SUFFIXES = (
    '.gpkg',
    '.geojson',
    '.json',
    '.shp',
    '.fgb',
    '.parquet',
    '.geoparquet',
    '.gml',
    '.kml',
)


def is_vector_file(path: Path) -> bool:
    """Tell whether a path names a vector file (by its suffix).

    Args:
        path: The path.

    Returns:
        True for the suffixes of :data:`VECTOR_SUFFIXES`.
    """
    return os.fspath(path).lower().endswith(VECTOR_SUFFIXES)


def read_vector(
    path: Path,
    crs: CRS,
    *,
    column: str | None,
    layer: str | int | None = None,
    what: str = 'vector labels',
) -> gpd.GeoDataFrame:
    """Read a vector file, check its attribute column and reproject it.

    Args:
        path: The file (any format geopandas reads).
        crs: CRS to reproject to.
        column: Attribute that must be present, or None to ask for none.
        layer: Layer of a multi-layer file (GeoPackage), or None for the first.
        what: What the file holds, for error messages.

    Returns:
        The features with a geometry, in *crs*.

    Raises:
        DataNotFoundError: If the file does not exist.
        RasterInputError: If it cannot be read, has no features, has no CRS, or
            lacks *column*.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        msg = f'{what}: {path} does not exist'
        raise DataNotFoundError(msg)
    try:
        frame = gpd.read_file(path, layer=layer)
    except Exception as error:  # pyogrio raises several unrelated types
        msg = f'{what}: cannot read {path} as a vector file: {error}'
        raise RasterInputError(msg) from error
    frame = frame[~(frame.geometry.is_empty | frame.geometry.isna())]
    if len(frame) == 0:
        msg = (
            f'{what}: {path} has no features (no polygon with a geometry): give '
            'a file that holds the polygons'
        )
        raise RasterInputError(msg)
    if column is not None and column not in frame.columns:
        found = [c for c in frame.columns if c != frame.geometry.name]
        msg = (
            f'{what}: {path} has no column {column!r}; its columns are {found}: '
            'pass the name of the column that holds the '
            f'{"split" if what == "split regions" else "class"} of each polygon'
        )
        if what != 'split regions':
            msg += (
                ', or label_column=None (--label-column none) when every polygon '
                'is one class (e.g. building footprints: class 1)'
            )
        raise RasterInputError(msg)
    if frame.crs is None:
        msg = f'{what}: {path} has no CRS; set one (e.g. in QGIS or with ogr2ogr)'
        raise RasterInputError(msg)
    return frame.to_crs(crs.to_wkt())


class VectorLabels:
    """Polygons with a class attribute, rasterised on the fly for each patch.

    A pixel takes the class of the polygon that covers its centre
    (``rasterio.features.rasterize`` with ``all_touched=False``): a polygon whose
    edges lie on pixel edges covers exactly the pixels inside it, and a polygon
    thinner than a pixel may cover none. Where polygons overlap, the later one in
    the file wins. Pixels outside every polygon get *background* (or the
    dataset's ``ignore_index`` when *background* is None).

    The polygons of a patch are found through the frame's spatial index
    (``sindex.query``), not by a scan.
    """

    def __init__(
        self,
        path: Path,
        crs: CRS,
        *,
        column: str | None = 'class',
        layer: str | int | None = None,
        background: int | None = 0,
    ) -> None:
        """Initialize a new VectorLabels instance.

        Args:
            path: The vector file.
            crs: CRS of the grid the labels are rasterised on.
            column: Integer attribute holding each polygon's class, or None
                when every polygon is class 1.
            layer: Layer of a multi-layer file, or None.
            background: Class of pixels outside every polygon (None: ignored).

        Raises:
            RasterInputError: If the file cannot be used (see :func:`read_vector`)
                or the class column is not integer.
        """
        self.path = os.fspath(path)
        frame = read_vector(path, crs, column=column, layer=layer)
        values = (
            pd.Series(np.ones(len(frame), dtype=np.int64), index=frame.index)
            if column is None
            else frame[column]
        )
        if (
            not (
                pd.api.types.is_integer_dtype(values)
                or (
                    pd.api.types.is_float_dtype(values)
                    and np.all(np.mod(values.dropna(), 1) == 0)
                )
            )
            or values.isna().any()
        ):
            examples = values.astype(str).unique()[:5].tolist()
            msg = (
                f'vector labels: column {column!r} of {self.path} must hold integer '
                f'class indexes; found {values.dtype} values such as {examples}: '
                'map them to 0, 1, ... first'
            )
            raise RasterInputError(msg)
        self.frame = gpd.GeoDataFrame(
            {'value': values.astype(np.int64).to_numpy()},
            geometry=frame.geometry.to_numpy(),
            crs=frame.crs,
        )
        self.geometries = self.frame.geometry.to_numpy()
        self.values = self.frame['value'].to_numpy()
        self.background = background
        self.column = column

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of all polygons."""
        return tuple(float(v) for v in self.frame.total_bounds)  # type: ignore[return-value]

    def rasterize(
        self,
        bounds: tuple[float, float, float, float],
        res: tuple[float, float],
        shape: tuple[int, int],
        fill: int,
    ) -> np.ndarray:
        """Burn the polygons that touch bounds into a class mask.

        Args:
            bounds: ``(left, bottom, right, top)`` of the patch.
            res: Pixel size ``(x, y)``.
            shape: ``(height, width)`` of the patch.
            fill: Value of pixels outside every polygon.

        Returns:
            The ``[H, W]`` int64 mask.
        """
        hits = self.frame.sindex.query(shapely.box(*bounds), predicate='intersects')
        if len(hits) == 0:
            return np.full(shape, fill, dtype=np.int64)
        hits = np.sort(hits)
        transform = from_origin(bounds[0], bounds[3], res[0], res[1])
        return rasterio.features.rasterize(
            zip(self.geometries[hits], self.values[hits], strict=True),
            out_shape=shape,
            transform=transform,
            fill=fill,
            all_touched=False,
            dtype=np.int64,
        )
