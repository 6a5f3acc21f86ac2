"""Data modules over the user's own rasters: segmentation and change detection.

:class:`RasterSegmentationDataModule` and :class:`RasterChangeDataModule` read
GeoTIFFs (one file or a mosaic, any CRS, on one target grid) with raster or vector
labels through :mod:`geopeft.datasets.rasters`, and split the area spatially:

* by polygons of a vector file with a split column (``split_regions``), or
* by fractions of the area (``split_fractions``): the area is cut into square
  blocks of ``split_block_size`` pixels assigned to train/val/test in a seeded
  random order.

The samplers of a split (:mod:`geopeft.samplers`) draw only patches fully inside
its region, so patches of different splits never overlap: random patches
(``length`` per epoch) for training, a grid (``stride``) for validation, testing
and prediction (prediction runs over the test region). Under DDP each rank draws
its own shard of the patches.

Samples stay in the files' scale on the CPU; on the device,
``on_after_batch_transfer`` applies Kornia: training flips and 90-degree
rotations (``augment``), then normalisation with ``mean`` and ``std`` (none by
default; one value, or one per band). Nodata and uncovered pixels get
``ignore_index`` in the mask (255 by default: give the task the same
``ignore_index``). Every argument is a plain typed value, so the data modules are
configured from YAML (``geopeft fit --config``).
"""

from collections.abc import Sequence

import kornia.augmentation as K
import shapely
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchgeo.datamodules import GeoDataModule
from torchgeo.datasets.utils import Path, Sample

from ..datasets.raster_files import RasterInputError, ResamplingName
from ..datasets.rasters import (
    CRSLike,
    RasterChangeDataset,
    RasterSegmentationDataset,
    _LabelledRasters,
)
from ..datasets.spatial_splits import block_split_regions, vector_split_regions
from ..samplers import GridRegionSampler, RandomRegionSampler, block_alignment
from .change_augmentation import (
    _pair,
    _statistics,
    change_eval_augmentation,
    change_train_augmentation,
)


class SegmentationAugmentation(nn.Module):
    """Flips and 90-degree rotations of images and masks, then normalisation.

    Takes and returns a batch dict: ``image [B, C, H, W]`` and, when present,
    ``mask [B, H, W]`` (moved with the image by the same transform, kept
    integer). Other keys (``bounds``, ``transform``) pass through unchanged; they
    describe the patch as read, before the augmentation.
    """

    def __init__(
        self,
        mean: float | Sequence[float] | Tensor,
        std: float | Sequence[float] | Tensor,
        geometric: bool = True,
        square: bool = True,
    ) -> None:
        """Initialize a new SegmentationAugmentation instance.

        Args:
            mean: Per-band mean (one value or one per band), in the stored scale.
            std: Per-band standard deviation.
            geometric: Add random horizontal and vertical flips and rotations.
            square: Whether the patches are square (rotations only then).
        """
        super().__init__()
        self.geometric = None
        if geometric:
            transforms: list[nn.Module] = [
                K.RandomHorizontalFlip(),
                K.RandomVerticalFlip(),
            ]
            if square:
                transforms.append(
                    K.RandomRotation90(times=(0, 3), p=1.0, resample='nearest')
                )
            self.geometric = K.AugmentationSequential(
                *transforms, data_keys=None, keepdim=True
            )
        self.normalize = K.Normalize(
            mean=_statistics(mean, 'mean'), std=_statistics(std, 'std'), keepdim=True
        )

    def forward(self, batch: Sample) -> Sample:
        """Augment and normalise a batch.

        Args:
            batch: ``{'image': [B, C, H, W], 'mask': [B, H, W]}`` (mask optional).

        Returns:
            The batch with the transformed image and mask.
        """
        out = dict(batch)
        if self.geometric is not None:
            data = {'image': batch['image']}
            if 'mask' in batch:
                data['mask'] = batch['mask'][:, None]
            data = self.geometric(data)
            out['image'] = data['image']
            if 'mask' in batch:
                out['mask'] = data['mask'][:, 0].to(batch['mask'].dtype)
        out['image'] = self.normalize(out['image'])
        return out


class _RasterDataModule(GeoDataModule):
    """Shared setup: one dataset, spatial split regions, region samplers."""

    def __init__(
        self,
        *,
        labels: list[Path] | Path | None,
        crs: CRSLike | None,
        res: float | tuple[float, float] | None,
        bands: list[int] | None,
        in_channels: int | None,
        label_column: str | None,
        label_layer: str | int | None,
        background: int | None,
        ignore_index: int | None,
        batch_size: int,
        patch_size: int | tuple[int, int],
        length: int | None,
        stride: int | tuple[int, int] | None,
        num_workers: int,
        split_regions: Path | None,
        split_column: str,
        split_fractions: tuple[float, float, float],
        split_block_size: int | None,
        seed: int,
        block_aligned: bool,
        mean: float | list[float] | None,
        std: float | list[float] | None,
        augment: bool,
        resampling: ResamplingName,
    ) -> None:
        """Store the arguments (documented in the public subclasses)."""
        super().__init__(
            _LabelledRasters,  # type: ignore[arg-type]
            batch_size=batch_size,
            patch_size=patch_size,
            length=length,
            num_workers=num_workers,
        )
        if (mean is None) != (std is None):
            msg = 'give both mean and std, or neither (no normalisation)'
            raise ValueError(msg)
        self.labels = labels
        self.crs = crs
        self.res = res
        self.bands = bands
        self.in_channels = in_channels
        self.label_column = label_column
        self.label_layer = label_layer
        self.background = background
        self.ignore_index = ignore_index
        self.stride = stride
        self.split_regions = split_regions
        self.split_column = split_column
        self.split_fractions = split_fractions
        self.split_block_size = split_block_size
        self.seed = seed
        self.block_aligned = block_aligned
        self.resampling = resampling
        self.augment = augment
        self.mean = _statistics(0.0 if mean is None else mean, 'mean')
        self.std = _statistics(1.0 if std is None else std, 'std')
        self.dataset: _LabelledRasters | None = None
        self.regions: dict[str, shapely.Geometry] = {}

    def _build_dataset(self) -> _LabelledRasters:
        """Open the rasters and labels."""
        raise NotImplementedError

    def _check_bands(self, dataset: _LabelledRasters) -> None:
        """Check the band count against ``in_channels`` and the task's.

        Raises:
            RasterInputError: If they differ, or mean/std do not fit the bands.
        """
        count = dataset.count
        expected = {'in_channels': self.in_channels}
        model = (
            getattr(self.trainer, 'lightning_module', None) if self.trainer else None
        )
        hparams = getattr(model, 'hparams', {})
        if 'in_channels' in hparams:
            expected[f"the task's in_channels ({type(model).__name__})"] = hparams[
                'in_channels'
            ]
        for name, value in expected.items():
            if value is not None and value != count:
                chosen = f'bands {self.bands}' if self.bands else 'all bands'
                msg = (
                    f'the images have {count} band(s) ({chosen} of {dataset.paths[0]}) '
                    f'but {name} is {value}: pass bands (1-based band indexes, e.g. '
                    f'{list(range(1, value + 1))}) to read {value}, or set in_channels '
                    f'to {count}'
                )
                raise RasterInputError(msg)
        for name, values in (('mean', self.mean), ('std', self.std)):
            if values.numel() not in (1, count):
                msg = (
                    f'{name} has {values.numel()} values but the images have {count} '
                    'bands; give one value per band (or one for all)'
                )
                raise RasterInputError(msg)

    def _check_patch(self, dataset: _LabelledRasters) -> None:
        """Refuse a patch larger than the rasters, before any split or sampler.

        Raises:
            ValueError: Naming both sizes and the largest patch that fits.
        """
        height, width = _pair(self.patch_size)
        *_, cols, rows = dataset.grid.to_pixels(tuple(dataset.footprint.bounds))
        cols, rows = int(round(cols)), int(round(rows))
        if height > rows or width > cols:
            msg = (
                f'patch_size {height} x {width} px is larger than the rasters '
                f'({rows} x {cols} px on the grid): lower patch_size to at most '
                f'{min(rows, cols)} px'
            )
            raise ValueError(msg)

    def _split(self, dataset: _LabelledRasters) -> dict[str, shapely.Geometry]:
        """The regions of the splits."""
        if self.split_regions is not None:
            regions = vector_split_regions(
                self.split_regions, dataset.grid.crs, column=self.split_column
            )
        else:
            height, width = _pair(self.patch_size)
            block = self.split_block_size or 4 * max(height, width)
            regions = block_split_regions(
                dataset.footprint,
                dataset.grid,
                block_size=block,
                fractions=self.split_fractions,
                seed=self.seed,
            )
        for split, region in regions.items():
            common = shapely.intersection(region, dataset.footprint)
            if common.area <= 0:
                msg = (
                    f'the {split} region does not overlap the rasters; check the '
                    'split regions (and their CRS)'
                )
                raise RasterInputError(msg)
            regions[split] = common
        return regions

    def setup(self, stage: str) -> None:
        """Open the dataset once and set the samplers of a stage.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.

        Raises:
            RasterInputError: If the rasters, labels or bands cannot be used.
            ValueError: If no patch fits in a split's region, or the training
                patches fill no batch.
        """
        if self.dataset is None:
            dataset = self._build_dataset()
            self._check_bands(dataset)
            self._check_patch(dataset)
            self.regions = self._split(dataset)
            self.dataset = dataset
        dataset = self.dataset
        align = None
        if self.block_aligned:
            align = block_alignment(dataset.block, self.patch_size)
        if stage == 'fit':
            self.train_dataset = dataset
            self.train_sampler = RandomRegionSampler(
                dataset,
                size=self.patch_size,
                length=self.length,
                region=self.regions['train'],
                align=align,
                generator=self.seed,
            )
            if len(self.train_sampler) < self.batch_size:
                msg = (
                    f'{len(self.train_sampler)} training patch(es) per epoch (on this '
                    f'rank) is fewer than batch_size={self.batch_size}; training drops '
                    'the last incomplete batch, so nothing would train: raise length '
                    'or lower batch_size'
                )
                raise ValueError(msg)
        if stage in ('fit', 'validate'):
            self.val_dataset = dataset
            self.val_sampler = self._grid('val')
        if stage == 'test':
            self.test_dataset = dataset
            self.test_sampler = self._grid('test', required=True)
        if stage == 'predict':
            self.predict_dataset = dataset
            self.predict_sampler = self._grid('test', required=True)

    def _grid(self, split: str, required: bool = False) -> GridRegionSampler | None:
        """The grid sampler of a split's region (None when it has none)."""
        if split not in self.regions:
            if required:
                msg = (
                    f'there is no {split} region: set a {split} fraction in '
                    'split_fractions, or give split_regions with '
                    f'{self.split_column} = {split} polygons'
                )
                raise ValueError(msg)
            return None
        assert self.dataset is not None
        sampler = GridRegionSampler(
            self.dataset,
            size=self.patch_size,
            stride=self.stride,
            region=self.regions[split],
        )
        if len(sampler.cols) == 0:
            height, width = self.patch_pair
            msg = (
                f'no {height}x{width} px patch fits inside the {split} region: lower '
                'patch_size, or enlarge the region (split_block_size, '
                'split_fractions or split_regions)'
            )
            raise ValueError(msg)
        return sampler

    def val_dataloader(self) -> DataLoader[Sample] | list[DataLoader[Sample]]:
        """Return the validation data loader, or none without a val region.

        Returns:
            A data loader over the validation grid, or an empty list (Lightning
            then skips validation).
        """
        if self.val_sampler is None:
            return []
        return super().val_dataloader()

    @property
    def patch_pair(self) -> tuple[int, int]:
        """``(height, width)`` of the patches."""
        return _pair(self.patch_size)


class RasterSegmentationDataModule(_RasterDataModule):
    """Semantic segmentation on the user's rasters (one file or a mosaic).

    Samples: ``image [B, C, H, W]`` float32, ``mask [B, H, W]`` int64,
    ``bounds`` and ``transform`` (see :mod:`geopeft.datasets.rasters`).
    """

    def __init__(
        self,
        images: list[Path] | Path,
        labels: list[Path] | Path | None = None,
        *,
        crs: str | None = None,
        res: float | tuple[float, float] | None = None,
        bands: list[int] | None = None,
        in_channels: int | None = None,
        label_column: str | None = 'class',
        label_layer: str | int | None = None,
        background: int | None = 0,
        ignore_index: int | None = 255,
        batch_size: int = 8,
        patch_size: int | tuple[int, int] = 256,
        length: int | None = None,
        stride: int | tuple[int, int] | None = None,
        num_workers: int = 0,
        split_regions: Path | None = None,
        split_column: str = 'split',
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_block_size: int | None = None,
        seed: int = 0,
        block_aligned: bool = False,
        mean: float | list[float] | None = None,
        std: float | list[float] | None = None,
        augment: bool = True,
        resampling: ResamplingName = 'bilinear',
    ) -> None:
        """Initialize a new RasterSegmentationDataModule instance.

        Args:
            images: Image rasters: files, folders or glob patterns (a mosaic).
            labels: Label rasters (class values), or one vector file whose
                polygons carry an integer class in *label_column*.
            crs: Target CRS, e.g. 'EPSG:32631' (default: the images', when they
                share one; required with *res* when they do not).
            res: Target pixel size in CRS units (default: the images').
            bands: 1-based band indexes of the images to read (default: all).
            in_channels: Expected band count (checked; the task's ``in_channels``
                is checked too when the data module runs with a task).
            label_column: Class column of vector labels, or None when every
                polygon is class 1 (e.g. building footprints).
            label_layer: Layer of a multi-layer vector file.
            background: Class outside every polygon (vector labels); None gives
                ``ignore_index``.
            ignore_index: Mask value of nodata and uncovered pixels; None keeps
                the mask as read.
            batch_size: Size of each mini-batch.
            patch_size: Patch side in pixels, or ``(height, width)``.
            length: Training patches per epoch (default: about as many as fit
                side by side in the train region).
            stride: Step of the evaluation grid in pixels (default: the patch).
            num_workers: Number of workers for parallel data loading.
            split_regions: Vector file of split polygons (replaces
                *split_fractions*).
            split_column: Column of *split_regions* holding train/val/test.
            split_fractions: Fractions of the area for train, val and test.
            split_block_size: Side in pixels of the blocks the area is cut into
                for *split_fractions* (default: 4 patches).
            seed: Seed of the block assignment and of the training draws.
            block_aligned: Put random patch corners on the files' internal tiles
                (:func:`~geopeft.samplers.block_alignment`: each patch touches as
                few tiles as possible; faster reads, fewer distinct patches).
            mean: Per-band mean for normalisation (None: no normalisation).
            std: Per-band standard deviation.
            augment: Random flips and 90-degree rotations in training.
            resampling: Resampling of images warped onto the grid.
        """
        self.images = images
        super().__init__(
            labels=labels,
            crs=crs,
            res=res,
            bands=bands,
            in_channels=in_channels,
            label_column=label_column,
            label_layer=label_layer,
            background=background,
            ignore_index=ignore_index,
            batch_size=batch_size,
            patch_size=patch_size,
            length=length,
            stride=stride,
            num_workers=num_workers,
            split_regions=split_regions,
            split_column=split_column,
            split_fractions=split_fractions,
            split_block_size=split_block_size,
            seed=seed,
            block_aligned=block_aligned,
            mean=mean,
            std=std,
            augment=augment,
            resampling=resampling,
        )
        height, width = self.patch_pair
        self.train_aug = SegmentationAugmentation(
            self.mean, self.std, geometric=augment, square=height == width
        )
        self.aug = SegmentationAugmentation(self.mean, self.std, geometric=False)

    def _build_dataset(self) -> RasterSegmentationDataset:
        """Open the rasters and labels."""
        return RasterSegmentationDataset(
            self.images,
            self.labels,
            crs=self.crs,
            res=self.res,
            bands=self.bands,
            label_column=self.label_column,
            label_layer=self.label_layer,
            background=self.background,
            ignore_index=self.ignore_index,
            resampling=self.resampling,
        )


class RasterChangeDataModule(_RasterDataModule):
    """Change detection on two dates of the user's rasters.

    Samples: ``image [B, 2, C, H, W]`` float32 (TorchGeo's change convention),
    ``mask [B, 1, H, W]`` int64, ``bounds`` and ``transform``. Augmentation:
    the same flips and rotations for both dates and the mask
    (:func:`~geopeft.datamodules.change_train_augmentation` without colour
    jitter), then per-band normalisation of each date.
    """

    def __init__(
        self,
        images_a: list[Path] | Path,
        images_b: list[Path] | Path,
        labels: list[Path] | Path | None = None,
        *,
        crs: str | None = None,
        res: float | tuple[float, float] | None = None,
        bands: list[int] | None = None,
        in_channels: int | None = None,
        label_column: str | None = 'class',
        label_layer: str | int | None = None,
        background: int | None = 0,
        ignore_index: int | None = 255,
        batch_size: int = 8,
        patch_size: int | tuple[int, int] = 256,
        length: int | None = None,
        stride: int | tuple[int, int] | None = None,
        num_workers: int = 0,
        split_regions: Path | None = None,
        split_column: str = 'split',
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_block_size: int | None = None,
        seed: int = 0,
        block_aligned: bool = False,
        mean: float | list[float] | None = None,
        std: float | list[float] | None = None,
        augment: bool = True,
        resampling: ResamplingName = 'bilinear',
    ) -> None:
        """Initialize a new RasterChangeDataModule instance.

        Args:
            images_a: Rasters of the first date: files, folders or patterns.
            images_b: Rasters of the second date, co-registered with the first
                (or given a target grid).
            labels: Change label rasters (0 unchanged, 1 changed), or one vector
                file of polygons with an integer class in *label_column*.
            crs: Target CRS (default: the images', when they share one).
            res: Target pixel size in CRS units (default: the images').
            bands: 1-based band indexes read from both dates (default: all).
            in_channels: Expected band count of each date (checked, as is the
                task's ``in_channels``).
            label_column: Class column of vector labels, or None when every
                polygon is class 1 (e.g. building footprints).
            label_layer: Layer of a multi-layer vector file.
            background: Class outside every polygon (vector labels); None gives
                ``ignore_index``.
            ignore_index: Mask value of nodata and uncovered pixels; None keeps
                the mask as read.
            batch_size: Size of each mini-batch.
            patch_size: Patch side in pixels, or ``(height, width)``.
            length: Training patches per epoch (default: about as many as fit
                side by side in the train region).
            stride: Step of the evaluation grid in pixels (default: the patch).
            num_workers: Number of workers for parallel data loading.
            split_regions: Vector file of split polygons (replaces
                *split_fractions*).
            split_column: Column of *split_regions* holding train/val/test.
            split_fractions: Fractions of the area for train, val and test.
            split_block_size: Side in pixels of the split blocks (default: 4
                patches).
            seed: Seed of the block assignment and of the training draws.
            block_aligned: Put random patch corners on the files' internal tiles
                (:func:`~geopeft.samplers.block_alignment`).
            mean: Per-band mean for normalisation (None: no normalisation).
            std: Per-band standard deviation.
            augment: The same random flips and 90-degree rotations for both dates
                and the mask in training.
            resampling: Resampling of images warped onto the grid.
        """
        self.images_a = images_a
        self.images_b = images_b
        super().__init__(
            labels=labels,
            crs=crs,
            res=res,
            bands=bands,
            in_channels=in_channels,
            label_column=label_column,
            label_layer=label_layer,
            background=background,
            ignore_index=ignore_index,
            batch_size=batch_size,
            patch_size=patch_size,
            length=length,
            stride=stride,
            num_workers=num_workers,
            split_regions=split_regions,
            split_column=split_column,
            split_fractions=split_fractions,
            split_block_size=split_block_size,
            seed=seed,
            block_aligned=block_aligned,
            mean=mean,
            std=std,
            augment=augment,
            resampling=resampling,
        )
        self.train_aug = change_train_augmentation(
            self.mean,
            self.std,
            self.patch_pair,
            photometric=False,
            geometric=augment,
        )
        self.aug = change_eval_augmentation(self.mean, self.std)

    def _build_dataset(self) -> RasterChangeDataset:
        """Open both dates and the labels."""
        return RasterChangeDataset(
            self.images_a,
            self.images_b,
            self.labels,
            crs=self.crs,
            res=self.res,
            bands=self.bands,
            label_column=self.label_column,
            label_layer=self.label_layer,
            background=self.background,
            ignore_index=self.ignore_index,
            resampling=self.resampling,
        )
