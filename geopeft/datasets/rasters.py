"""The user's own rasters as TorchGeo datasets: images, raster or vector labels.

Three :class:`~torchgeo.datasets.GeoDataset` classes index GeoTIFFs (one file, a
mosaic of many, any CRS) on one target grid and read patches through the fast path
of :mod:`geopeft.datasets.raster_files` (one window read per file, no merge):

* :class:`RasterImages`: one layer, as TorchGeo's ``RasterDataset`` (``image``
  ``[C, H, W]`` float32, or ``mask`` ``[H, W]`` int64 with ``is_image=False``);
* :class:`RasterSegmentationDataset`: images and labels (a raster, or polygons
  with a class column rasterised per patch): ``image [C, H, W]``, ``mask [H, W]``;
* :class:`RasterChangeDataset`: two dates of images (two rasters or two lists) and
  change labels: ``image [2, C, H, W]``, ``mask [1, H, W]``, TorchGeo's
  change-detection convention.

Index them like any TorchGeo dataset, with ``[xmin:xmax, ymin:ymax]`` slices in
the grid's CRS (what :mod:`geopeft.samplers` and TorchGeo's samplers yield).
Every sample carries ``bounds`` (``[xmin, xmax, xres, ymin, ymax, yres, tmin,
tmax, tres]``, TorchGeo's layout) and ``transform`` (the patch's affine, 9
values), both float64 so that coordinates keep sub-metre precision (TorchGeo
stores float32).

The target grid is *crs* and *res* when given, else the files' own (they must
then share CRS and resolution). Pixels where the image is nodata (any band) or
that no file covers get ``ignore_index`` in the mask (255 by default; set the
task's ``ignore_index`` to the same value), as do label-raster nodata pixels.
"""

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import shapely
import torch
from geopandas import GeoDataFrame
from pyproj import CRS as PROJ_CRS
from rasterio.crs import CRS
from rasterio.transform import from_origin
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice, Path, Sample

from .raster_files import (
    RasterFile,
    RasterInputError,
    RasterMosaic,
    ResamplingName,
    TargetGrid,
    find_raster_files,
    inspect_raster,
    resolve_grid,
)
from .vector_labels import VECTOR_SUFFIXES, VectorLabels, is_vector_file

#: What a target CRS may be given as.
CRSLike = str | int | CRS | PROJ_CRS

#: Raster or vector labels.
Labels = RasterMosaic | VectorLabels


def _describe(bounds: Iterable[float]) -> str:
    """Bounds rounded for messages."""
    return '(' + ', '.join(f'{v:.6g}' for v in bounds) + ')'


class _GridDataset(GeoDataset):
    """A GeoDataset read on one :class:`~geopeft.datasets.raster_files.TargetGrid`.

    Holds the grid, the index (one grid-aligned box per file of the first image
    layer), the ``footprint`` (where every layer has data) and turns slices into
    bounds and the ``bounds``/``transform`` metadata of a sample.
    """

    grid: TargetGrid
    footprint: shapely.Geometry
    transforms: Callable[[Sample], Sample] | None

    def _set_index(self, layer: RasterMosaic, footprint: shapely.Geometry) -> None:
        """Index the files of *layer* clipped to the grid window of *footprint*."""
        self.footprint = footprint
        col, row, width, height = self.grid.snap(footprint.bounds)
        window = shapely.box(*self.grid.to_bounds(col, row, width, height))
        geometry = layer.index.geometry.intersection(window)
        keep = ~geometry.is_empty & (geometry.area > 0)
        interval = pd.Interval(pd.Timestamp.min, pd.Timestamp.max, closed='both')
        times = pd.IntervalIndex([interval] * int(keep.sum()), name='datetime')
        self.index = GeoDataFrame(
            {'filepath': layer.index['filepath'][keep].to_list()},
            index=times,
            geometry=geometry[keep].to_list(),
            crs=self.grid.crs.to_wkt(),
        )
        xmin, ymin, xmax, ymax = self.index.total_bounds
        self._bounds = (
            slice(float(xmin), float(xmax), self.grid.res[0]),
            slice(float(ymin), float(ymax), self.grid.res[1]),
            slice(interval.left, interval.right, 1),
        )
        self._res = self.grid.res

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """Bounds of the index: x, y and t slices (x and y on the grid)."""
        return self._bounds

    @property
    def crs(self) -> PROJ_CRS:
        """CRS of the grid."""
        return PROJ_CRS.from_wkt(self.grid.crs.to_wkt())

    @crs.setter
    def crs(self, new_crs: PROJ_CRS) -> None:
        """Accept only the grid's own CRS (the grid is fixed at construction)."""
        if PROJ_CRS.from_user_input(new_crs) != self.crs:
            msg = (
                f'{type(self).__name__} reads on a fixed grid ({self.crs}); build it '
                f'with crs={new_crs} instead of changing crs'
            )
            raise ValueError(msg)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` of the grid."""
        return self.grid.res

    @res.setter
    def res(self, new_res: float | tuple[float, float]) -> None:
        """Accept only the grid's own resolution."""
        if isinstance(new_res, int | float):
            new_res = (new_res, new_res)
        if tuple(new_res) != self.grid.res:
            msg = (
                f'{type(self).__name__} reads on a fixed grid (res {self.grid.res}); '
                f'build it with res={new_res} instead of changing res'
            )
            raise ValueError(msg)

    def _query(
        self, index: GeoSlice
    ) -> tuple[tuple[float, float, float, float], tuple[int, int], slice]:
        """Resolve a slice to bounds, a patch shape and the time slice.

        Raises:
            ValueError: If the slice asks for another resolution.
            IndexError: If the bounds lie outside the dataset.
        """
        x, y, t = self._disambiguate_slice(index)
        for given, own in ((x.step, self.grid.res[0]), (y.step, self.grid.res[1])):
            if not math.isclose(given, own):
                msg = (
                    f'{type(self).__name__} reads at its grid resolution {self.res}; '
                    f'got a slice step of {given}'
                )
                raise ValueError(msg)
        bounds = (float(x.start), float(y.start), float(x.stop), float(y.stop))
        box = shapely.box(*bounds)
        if len(self.index.sindex.query(box, predicate='intersects')) == 0:
            msg = (
                f'index: {index} not found in dataset with bounds: '
                f'{_describe(self.index.total_bounds)}'
            )
            raise IndexError(msg)
        shape = (
            round((bounds[3] - bounds[1]) / self.grid.res[1]),
            round((bounds[2] - bounds[0]) / self.grid.res[0]),
        )
        return bounds, shape, t

    def _metadata(self, bounds: tuple[float, float, float, float], t: slice) -> Sample:
        """``bounds`` and ``transform`` of a patch (TorchGeo's layout, float64)."""
        xres, yres = self.grid.res
        values = [
            bounds[0],
            bounds[2],
            xres,
            bounds[1],
            bounds[3],
            yres,
            t.start.timestamp(),
            t.stop.timestamp(),
            t.step,
        ]
        transform = from_origin(bounds[0], bounds[3], xres, yres)
        return {
            'bounds': torch.tensor(values, dtype=torch.float64),
            'transform': torch.tensor(tuple(transform), dtype=torch.float64),
        }

    def _finish(self, sample: Sample) -> Sample:
        """Apply the transforms."""
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


def _inspect_all(paths: Path | Iterable[Path], what: str) -> list[RasterFile]:
    """Find and inspect raster files."""
    files = find_raster_files(paths, what=what)
    vectors = [f for f in files if is_vector_file(f)]
    if vectors:
        msg = (
            f'{what}: {vectors[0]} is a vector file; {what} must be rasters '
            '(vector files are accepted as labels)'
        )
        raise RasterInputError(msg)
    return [inspect_raster(f) for f in files]


def _build_labels(
    labels: Sequence[Path] | Path,
    grid: TargetGrid,
    *,
    column: str | None,
    layer: str | int | None,
    background: int | None,
) -> Labels:
    """Open labels: one vector file, or label rasters read on the grid."""
    paths = (
        [labels]
        if isinstance(labels, str) or not isinstance(labels, Sequence)
        else labels
    )
    if any(is_vector_file(p) for p in paths):
        if len(paths) != 1:
            msg = (
                f'labels: give one vector file ({"/".join(VECTOR_SUFFIXES)}) or '
                f'label rasters, not {list(map(str, paths))}'
            )
            raise RasterInputError(msg)
        return VectorLabels(
            paths[0], grid.crs, column=column, layer=layer, background=background
        )
    files = _inspect_all(paths, 'labels')
    return RasterMosaic(files, grid, bands=[1], resampling='nearest', what='labels')


def _common_footprint(
    layers: Sequence[tuple[str, RasterMosaic]], labels: Labels | None
) -> shapely.Geometry:
    """Where every layer has data; errors when two layers do not overlap."""
    name, first = layers[0]
    footprint = first.footprint
    for other_name, layer in layers[1:]:
        common = shapely.intersection(footprint, layer.footprint)
        if common.area <= 0:
            msg = (
                f'{other_name} {_describe(layer.footprint.bounds)} do not overlap '
                f'{name} {_describe(footprint.bounds)} (bounds in the grid CRS); '
                'give rasters of the same place'
            )
            raise RasterInputError(msg)
        footprint = common
    if isinstance(labels, RasterMosaic):
        common = shapely.intersection(footprint, labels.footprint)
        if common.area <= 0:
            msg = (
                f'the label rasters {_describe(labels.footprint.bounds)} do not '
                f'overlap the images {_describe(footprint.bounds)} (bounds in the '
                'grid CRS); give labels of the same place'
            )
            raise RasterInputError(msg)
        footprint = common
    elif isinstance(labels, VectorLabels):
        hits = labels.frame.sindex.query(footprint, predicate='intersects')
        if len(hits) == 0:
            msg = (
                f'no polygon of the vector labels {labels.path} '
                f'{_describe(labels.bounds)} overlaps the images '
                f'{_describe(footprint.bounds)} (bounds in the grid CRS); give '
                'labels of the same place'
            )
            raise RasterInputError(msg)
    return footprint


class RasterImages(_GridDataset):
    """One layer of user rasters, like TorchGeo's ``RasterDataset``.

    Samples: ``image`` ``[C, H, W]`` float32 (or ``mask`` ``[H, W]`` int64 with
    ``is_image=False``), ``bounds`` and ``transform``. Pixels no file covers are
    0 (as in TorchGeo's merge); nodata pixels keep the files' nodata value.
    """

    def __init__(
        self,
        paths: Path | Iterable[Path],
        *,
        crs: CRSLike | None = None,
        res: float | tuple[float, float] | None = None,
        bands: Sequence[int] | None = None,
        is_image: bool = True,
        resampling: ResamplingName | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new RasterImages instance.

        Args:
            paths: Raster files, folders or glob patterns.
            crs: Target CRS (default: the files', when they share one).
            res: Target pixel size in CRS units (default: the files').
            bands: 1-based band indexes to read (default: all).
            is_image: Return ``image`` (True) or ``mask`` (False).
            resampling: Resampling of files that are not on the grid (default:
                bilinear for images, nearest for masks).
            transforms: Function applied to each sample.

        Raises:
            DataNotFoundError: If a path does not exist.
            RasterInputError: If the files cannot be used as given.
        """
        files = _inspect_all(paths, 'images' if is_image else 'labels')
        self.grid = resolve_grid(files, crs=crs, res=res)
        self.paths = [info.path for info in files]
        self.is_image = is_image
        self.transforms = transforms
        if resampling is None:
            resampling = 'bilinear' if is_image else 'nearest'
        self.layer = RasterMosaic(files, self.grid, bands=bands, resampling=resampling)
        self._set_index(self.layer, self.layer.footprint)

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Read the patch of a slice.

        Args:
            index: ``[xmin:xmax, ymin:ymax]`` (optionally a third, time, slice).

        Returns:
            The sample.
        """
        bounds, _, t = self._query(index)
        sample = self._metadata(bounds, t)
        if self.is_image:
            data, _ = self.layer.read(bounds)
            sample['image'] = torch.from_numpy(data)
        else:
            data, _ = self.layer.read(bounds, dtype='int64')
            sample['mask'] = torch.from_numpy(data).squeeze(0)
        return self._finish(sample)


class _LabelledRasters(_GridDataset):
    """Images of one or more dates and optional labels on one grid."""

    def __init__(
        self,
        dates: Sequence[tuple[str, Path | Sequence[Path]]],
        labels: Sequence[Path] | Path | None,
        *,
        crs: CRSLike | None,
        res: float | tuple[float, float] | None,
        bands: Sequence[int] | None,
        label_column: str | None,
        label_layer: str | int | None,
        background: int | None,
        ignore_index: int | None,
        resampling: ResamplingName,
        transforms: Callable[[Sample], Sample] | None,
    ) -> None:
        """Index the dates and the labels on one grid (see the subclasses)."""
        inspected = [(name, _inspect_all(paths, name)) for name, paths in dates]
        self.grid = resolve_grid(
            [f for _, files in inspected for f in files], crs=crs, res=res
        )
        self.layers = [
            (
                name,
                RasterMosaic(
                    files, self.grid, bands=bands, resampling=resampling, what=name
                ),
            )
            for name, files in inspected
        ]
        counts = {name: layer.count for name, layer in self.layers}
        if len(set(counts.values())) > 1:
            msg = (
                f'the dates have different band counts {counts}; pass bands to read '
                'the same bands of both'
            )
            raise RasterInputError(msg)
        self.paths = [f.path for _, files in inspected for f in files]
        self.ignore_index = ignore_index
        self.background = background
        self.transforms = transforms
        self.labels = (
            None
            if labels is None
            else _build_labels(
                labels,
                self.grid,
                column=label_column,
                layer=label_layer,
                background=background,
            )
        )
        footprint = _common_footprint(self.layers, self.labels)
        self._set_index(self.layers[0][1], footprint)

    @property
    def count(self) -> int:
        """Number of bands of each date's image."""
        return self.layers[0][1].count

    @property
    def block(self) -> tuple[int, int]:
        """``(height, width)`` of the first image file's internal blocks."""
        return self.layers[0][1].block

    def _read(
        self, index: GeoSlice
    ) -> tuple[Sample, list[np.ndarray], np.ndarray | None]:
        """Read every date and the labels of a slice.

        Returns:
            The metadata and mask (if labelled) of the sample, the images of the
            dates, and the mask as an array (None without labels).
        """
        bounds, shape, t = self._query(index)
        sample = self._metadata(bounds, t)
        images, invalid = [], np.zeros(shape, dtype=bool)
        for _, layer in self.layers:
            data, valid = layer.read(bounds)
            images.append(data)
            if valid is not None:
                invalid |= ~valid
        mask = None
        if isinstance(self.labels, RasterMosaic):
            data, valid = self.labels.read(bounds, dtype='int64')
            mask = data[0]
            if valid is not None:
                invalid |= ~valid
        elif isinstance(self.labels, VectorLabels):
            fill = self.background
            if fill is None:
                fill = -1 if self.ignore_index is None else self.ignore_index
            mask = self.labels.rasterize(bounds, self.grid.res, shape, fill)
        if mask is not None and self.ignore_index is not None and invalid.any():
            mask[invalid] = self.ignore_index
        return sample, images, mask


class RasterSegmentationDataset(_LabelledRasters):
    """User rasters and their labels for semantic segmentation.

    Samples: ``image`` ``[C, H, W]`` float32 in the files' scale, ``mask``
    ``[H, W]`` int64 (when labels are given), ``bounds`` and ``transform``.

    Labels are a raster (or mosaic; class values as stored, read with nearest
    resampling onto the grid) or one vector file (GeoPackage, GeoJSON,
    shapefile, ...) whose polygons carry an integer class in ``label_column``,
    rasterised per patch (see :class:`~geopeft.datasets.vector_labels.VectorLabels`
    for the pixel rule). Pixels where the image is nodata (any band), no image
    file covers, or the label raster is nodata get ``ignore_index``.
    """

    def __init__(
        self,
        images: Sequence[Path] | Path,
        labels: Sequence[Path] | Path | None = None,
        *,
        crs: CRSLike | None = None,
        res: float | tuple[float, float] | None = None,
        bands: Sequence[int] | None = None,
        label_column: str | None = 'class',
        label_layer: str | int | None = None,
        background: int | None = 0,
        ignore_index: int | None = 255,
        resampling: ResamplingName = 'bilinear',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new RasterSegmentationDataset instance.

        Args:
            images: Image rasters: files, folders or glob patterns (a mosaic).
            labels: Label rasters, or one vector file; None for images only.
            crs: Target CRS (default: the images', when they share one).
            res: Target pixel size in CRS units (default: the images').
            bands: 1-based band indexes of the images to read (default: all).
            label_column: Class column of vector labels, or None when every
                polygon is class 1 (e.g. building footprints).
            label_layer: Layer of a multi-layer vector file.
            background: Class of pixels outside every polygon (vector labels);
                None gives them ``ignore_index``.
            ignore_index: Mask value of nodata and uncovered pixels; None leaves
                the mask as read.
            resampling: Resampling of images that are not on the grid.
            transforms: Function applied to each sample.

        Raises:
            DataNotFoundError: If a path does not exist.
            RasterInputError: If the files cannot be used as given (CRSs without
                a target grid, band counts, no overlap, unreadable files, a
                missing class column), naming the fix.
        """
        super().__init__(
            [('images', images)],
            labels,
            crs=crs,
            res=res,
            bands=bands,
            label_column=label_column,
            label_layer=label_layer,
            background=background,
            ignore_index=ignore_index,
            resampling=resampling,
            transforms=transforms,
        )

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Read the image and mask of a slice.

        Args:
            index: ``[xmin:xmax, ymin:ymax]`` (optionally a third, time, slice).

        Returns:
            The sample.
        """
        sample, images, mask = self._read(index)
        sample['image'] = torch.from_numpy(images[0])
        if mask is not None:
            sample['mask'] = torch.from_numpy(mask)
        return self._finish(sample)


class RasterChangeDataset(_LabelledRasters):
    """Two dates of user rasters and change labels.

    Samples: ``image`` ``[2, C, H, W]`` float32 (date A, date B), ``mask``
    ``[1, H, W]`` int64 (when labels are given), ``bounds`` and ``transform``.
    Each date is one raster or a list of rasters (a mosaic); both are read on one
    grid and sampled where both, and raster labels, have data. Pixels nodata in
    either date get ``ignore_index``.
    """

    def __init__(
        self,
        images_a: Sequence[Path] | Path,
        images_b: Sequence[Path] | Path,
        labels: Sequence[Path] | Path | None = None,
        *,
        crs: CRSLike | None = None,
        res: float | tuple[float, float] | None = None,
        bands: Sequence[int] | None = None,
        label_column: str | None = 'class',
        label_layer: str | int | None = None,
        background: int | None = 0,
        ignore_index: int | None = 255,
        resampling: ResamplingName = 'bilinear',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new RasterChangeDataset instance.

        Args:
            images_a: Rasters of the first date (files, folders or patterns).
            images_b: Rasters of the second date.
            labels: Change label rasters (0 unchanged, 1 changed, or classes), or
                one vector file of changed polygons; None for images only.
            crs: Target CRS (default: the images', when they share one).
            res: Target pixel size in CRS units (default: the images').
            bands: 1-based band indexes read from both dates (default: all).
            label_column: Class column of vector labels, or None when every
                polygon is class 1 (e.g. building footprints).
            label_layer: Layer of a multi-layer vector file.
            background: Class outside every polygon (vector labels); None gives
                ``ignore_index``.
            ignore_index: Mask value of nodata and uncovered pixels; None leaves
                the mask as read.
            resampling: Resampling of images that are not on the grid.
            transforms: Function applied to each sample.

        Raises:
            DataNotFoundError: If a path does not exist.
            RasterInputError: If the files cannot be used as given.
        """
        super().__init__(
            [('images_a', images_a), ('images_b', images_b)],
            labels,
            crs=crs,
            res=res,
            bands=bands,
            label_column=label_column,
            label_layer=label_layer,
            background=background,
            ignore_index=ignore_index,
            resampling=resampling,
            transforms=transforms,
        )

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Read both dates and the mask of a slice.

        Args:
            index: ``[xmin:xmax, ymin:ymax]`` (optionally a third, time, slice).

        Returns:
            The sample.
        """
        sample, images, mask = self._read(index)
        sample['image'] = torch.from_numpy(np.stack(images))
        if mask is not None:
            sample['mask'] = torch.from_numpy(mask[None])
        return self._finish(sample)
