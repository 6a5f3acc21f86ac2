"""The segmentation problem of the accuracy benchmark: one raster, spatial folds.

A labelled raster is cut into square blocks aligned with its pixel grid; the
blocks are dealt into *k* folds (seeded, the same for every row). Run *i* trains
on patches that lie inside the other folds' blocks and is scored on a grid of
patches inside fold *i*'s blocks, so training and test pixels never meet. The
regions of each fold are written as a GeoJSON with a ``split`` column
(``<out_dir>/folds/fold<i>.geojson``) and read by
:class:`~geopeft.datamodules.RasterSegmentationDataModule` as ``split_regions``;
they can be opened in any GIS to see the folds.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from lightning.pytorch import LightningDataModule, LightningModule
from rasterio.windows import Window, bounds

from ..datamodules.folds import check_folds, kfold_indices
from ..io import atomic_write_text
from .accuracy import AccuracyRow, Problem, TaskName


def block_windows(width: int, height: int, block: int) -> list[Window]:
    """Cut a ``width x height`` grid into blocks of *block* pixels.

    The last row and column of blocks take the remainder; a remainder smaller
    than half a block is merged into the block before it.

    Args:
        width: Raster width in pixels.
        height: Raster height in pixels.
        block: Side of a block in pixels.

    Returns:
        The windows, row by row.
    """

    def edges(size: int) -> list[int]:
        cuts = list(range(0, size, block))
        if len(cuts) > 1 and size - cuts[-1] < block // 2:
            cuts.pop()
        return [*cuts, size]

    rows, cols = edges(height), edges(width)
    return [
        Window(c0, r0, c1 - c0, r1 - r0)
        for r0, r1 in zip(rows, rows[1:], strict=False)
        for c0, c1 in zip(cols, cols[1:], strict=False)
    ]


class SegmentationProblem(Problem):
    """Semantic segmentation of one labelled raster, scored on spatial folds."""

    task_name: TaskName = 'segmentation'

    def __init__(self, settings: Any) -> None:
        """Initialize a new SegmentationProblem instance.

        Args:
            settings: The benchmark settings (``image``, ``labels``).
        """
        super().__init__(settings)
        self._statistics: tuple[list[float], list[float]] | None = None
        self._bands: int | None = None
        self._windows: list[Window] | None = None

    @property
    def block_size(self) -> int:
        """Side of the fold blocks in pixels."""
        return self.settings.block_size or 2 * self.settings.patch_size

    def check(self) -> None:
        """Check the rasters, the folds, and write the fold regions.

        Raises:
            ValueError: If the image or labels are missing or do not overlap, the
                vector labels lack the class column, or there are fewer blocks
                than folds, or blocks smaller than a patch.
        """
        s = self.settings
        for name in ('image', 'labels'):
            value = getattr(s, name)
            if value is None or not Path(value).exists():
                msg = f'--{name} {value} does not exist (segmentation needs both)'
                raise ValueError(msg)
        if self.block_size < s.patch_size:
            msg = (
                f'--block-size {self.block_size} is smaller than --patch-size '
                f'{s.patch_size}: no test patch would fit in a block'
            )
            raise ValueError(msg)
        from ..datasets import RasterSegmentationDataset

        # Opening the pair checks the grids, their overlap and the label column.
        dataset = RasterSegmentationDataset(
            s.image, s.labels, label_column=s.label_column
        )
        self._bands = dataset.count
        check_folds(
            s.folds, 0, len(self.windows()), what=f'{self.block_size} px blocks'
        )
        self.write_folds()

    def write_folds(self) -> list[Path]:
        """Write the regions of every fold as GeoJSON files.

        Returns:
            The files, one per fold.
        """
        s = self.settings
        windows = self.windows()
        with rasterio.open(s.image) as source:
            transform, crs = source.transform, source.crs
        dealt = kfold_indices(len(windows), s.folds, seed=s.fold_seed)
        paths = []
        for fold in range(s.folds):
            features = []
            for index, window in enumerate(windows):
                left, bottom, right, top = bounds(window, transform)
                ring = [
                    [left, bottom],
                    [right, bottom],
                    [right, top],
                    [left, top],
                    [left, bottom],
                ]
                features.append(
                    {
                        'type': 'Feature',
                        'properties': {
                            'split': 'test' if index in dealt[fold] else 'train',
                            'block': index,
                        },
                        'geometry': {'type': 'Polygon', 'coordinates': [ring]},
                    }
                )
            collection = {
                'type': 'FeatureCollection',
                'crs': {'type': 'name', 'properties': {'name': crs.to_string()}},
                'features': features,
            }
            path = self.fold_path(fold)
            atomic_write_text(path, json.dumps(collection))
            paths.append(path)
        return paths

    def windows(self) -> list[Window]:
        """The fold blocks of the image (its size is read once)."""
        if self._windows is None:
            with rasterio.open(self.settings.image) as source:
                width, height = source.width, source.height
            self._windows = block_windows(width, height, self.block_size)
        return self._windows

    def fold_path(self, fold: int) -> Path:
        """Where the regions of a fold are written."""
        return Path(self.settings.out_dir) / 'folds' / f'fold{fold}.geojson'

    def statistics(self) -> tuple[list[float], list[float]]:
        """Per-band mean and std of the image's valid pixels (its nodata left out).

        Returns:
            ``(mean, std)``, one value per band.
        """
        if self._statistics is None:
            with rasterio.open(self.settings.image) as source:
                data = source.read(masked=True).astype(np.float64)
            mean = [float(band.mean()) for band in data]
            std = [max(float(band.std()), 1e-6) for band in data]
            self._statistics = (mean, std)
        return self._statistics

    def num_classes(self) -> int:
        """The classes of the labels (``--num-classes``)."""
        return self.settings.num_classes

    def ignore_index(self) -> int | None:
        """The label value left out (``--ignore-index``)."""
        return self.settings.ignore_index

    def datamodule(self, fold: int, seed: int) -> LightningDataModule:
        """The raster data module of a fold, normalised with the image's stats."""
        from ..datamodules import RasterSegmentationDataModule

        s = self.settings
        mean, std = self.statistics()
        windows_area = self._train_pixels(fold)
        length = max(s.batch_size, s.train_repeats * windows_area // (s.patch_size**2))
        return RasterSegmentationDataModule(
            images=s.image,
            labels=s.labels,
            batch_size=s.batch_size,
            patch_size=s.patch_size,
            length=length,
            split_regions=str(self.fold_path(fold)),
            seed=seed,
            mean=mean,
            std=std,
            ignore_index=s.ignore_index,
            label_column=s.label_column,
        )

    def _train_pixels(self, fold: int) -> int:
        """Pixels of the training blocks of a fold."""
        s = self.settings
        windows = self.windows()
        test = set(kfold_indices(len(windows), s.folds, seed=s.fold_seed)[fold])
        return sum(
            int(w.width * w.height) for i, w in enumerate(windows) if i not in test
        )

    def _segmentation_options(self) -> dict[str, Any]:
        return {
            'in_channels': self._bands or 1,
            'task': 'multiclass',
            'num_classes': self.settings.num_classes,
            'ignore_index': self.settings.ignore_index,
        }

    def geopeft_task(self, row: AccuracyRow) -> LightningModule:
        """:class:`~geopeft.tasks.PEFTSemanticSegmentation`, or KTDA's student."""
        from ..tasks import PEFTSemanticSegmentation

        if row.ktda:
            return self.ktda_task(row)
        return PEFTSemanticSegmentation(
            model=self.settings.arch,
            backbone=self.settings.backbone,
            **{**self._segmentation_options(), **self.geopeft_options(row)},
        )

    def ktda_task(self, row: AccuracyRow) -> LightningModule:
        """:class:`~geopeft.tasks.KTDASegmentation`: the student and its teacher.

        The student is the benchmark's backbone, fully trained (the reference's
        choice), with KTDA's FAM, FMM and UPerNet head; ``distill_weight=0`` is the
        same model trained without the teacher.
        """
        from ..tasks import KTDASegmentation

        s = self.settings
        arguments: dict[str, Any] = {
            'backbone': s.backbone,
            'weights': s.weights,
            'in_channels': self._bands or 1,
            'num_classes': s.num_classes,
            'ignore_index': s.ignore_index,
            'loss': 'ce',
            'teacher': s.teacher,
            'teacher_weights': s.teacher_weights,
            'lr': s.lr,
            'weight_decay': s.weight_decay,
        }
        arguments.update(dict(row.ktda_options))
        arguments.update(dict(row.task_options))
        return KTDASegmentation(**arguments)

    def torchgeo_task(self, row: AccuracyRow) -> LightningModule:
        """TorchGeo's ``SemanticSegmentation(model='unet')``."""
        from torchgeo.tasks import SemanticSegmentation

        return self.dense_anchor(
            SemanticSegmentation, row, 'unet', **self._segmentation_options()
        )

    def describe(self) -> str:
        """The raster, the block size and the patch size."""
        return (
            f'{Path(str(self.settings.image)).name} (labels '
            f'{Path(str(self.settings.labels)).name}), '
            f'{self.block_size} px spatial blocks, {self.settings.patch_size} px '
            f'patches x {self.settings.train_repeats} per training area and epoch'
        )
