"""A Lightning prediction writer: ``trainer.predict`` over a GeoDataset -> GeoTIFF.

TorchGeo 0.10's ``SemanticSegmentation.predict_step`` returns
``{'probabilities': Tensor[B, K, h, w], 'bounds': Tensor[B, 9], 'transform':
Tensor[B, 9]}``, where ``transform`` is each chip's affine transform (the 9
coefficients of :class:`affine.Affine`, float32) and ``bounds`` its
``(xmin, xmax, xres, ymin, ymax, yres, tmin, tmax, tres)``;
``ChangeDetection.predict_step`` returns the probabilities tensor alone, and then
the transforms come from the batch's ``transform``.
:class:`GeoTIFFPredictionWriter` places every chip on the output grid by its
transform, blends overlapping chips with the same smooth weights as
:func:`~geopeft.predict.predict_raster`, and writes one GeoTIFF, atomically, when
prediction ends.

Chips may come in any order (a ``GridGeoSampler`` walks each file's rows from the
south), so the sums are kept in a scratch GeoTIFF beside the output
(:class:`~geopeft.predict.blending.DiskAccumulator`), not in memory; it is removed
at the end. The writer runs in one process: with several devices, predict with
:func:`~geopeft.predict.predict_raster` per scene instead.
"""

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import rasterio
from lightning.pytorch.callbacks import BasePredictionWriter
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window
from torch import Tensor

from .blending import DiskAccumulator
from .encoding import OutputEncoding, OutputMode, ProbabilityDtype
from .windows import RasterGrid, ramp_weights
from .writer import GeoTIFFStripWriter, check_output

#: Largest misalignment of a chip with the output grid, in pixels.
_ALIGNMENT_TOLERANCE = 0.25


def grid_of_dataset(dataset: Any) -> RasterGrid:
    """The pixel grid that covers a TorchGeo GeoDataset.

    Args:
        dataset: A :class:`torchgeo.datasets.GeoDataset` (``crs``, ``res``,
            ``bounds``).

    Returns:
        A north-up grid over the dataset's bounds at its resolution.
    """
    x, y, _ = dataset.bounds
    xres, yres = dataset.res
    width = round((x.stop - x.start) / xres)
    height = round((y.stop - y.start) / yres)
    crs = CRS.from_user_input(dataset.crs) if dataset.crs is not None else None
    return RasterGrid(crs, from_origin(x.start, y.stop, xres, yres), width, height)


class GeoTIFFPredictionWriter(BasePredictionWriter):
    """Write ``trainer.predict`` outputs over a GeoDataset into one GeoTIFF.

    Example::

        writer = GeoTIFFPredictionWriter('pred.tif', overlap=64)
        sampler = GridGeoSampler(dataset, size=512, stride=448)
        loader = DataLoader(dataset, sampler=sampler, collate_fn=stack_samples)
        Trainer(callbacks=[writer]).predict(task, loader, return_predictions=False)
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        *,
        grid: RasterGrid | str | os.PathLike[str] | None = None,
        output_mode: OutputMode = 'classes',
        probability_dtype: ProbabilityDtype = 'float32',
        threshold: float = 0.5,
        overlap: int = 0,
        blocksize: int = 512,
        compress: str = 'deflate',
        overwrite: bool = False,
        key: str = 'probabilities',
        gdal_cache_mb: int = 64,
        mask: str | os.PathLike[str] | Literal[False] | None = None,
    ) -> None:
        """Initialize a new GeoTIFFPredictionWriter instance.

        Args:
            output: The GeoTIFF to write.
            grid: Its grid: a :class:`~geopeft.predict.RasterGrid`, a raster whose
                grid it takes, or None for the grid of the prediction dataset
                (its bounds at its resolution).
            output_mode: ``'classes'`` or ``'probabilities'``
                (see :mod:`geopeft.predict.encoding`).
            probability_dtype: ``'float32'`` or ``'uint8'``.
            threshold: Class-1 threshold of one-channel probabilities.
            overlap: Overlap of the sampler's chips (``size - stride``): the width
                of the blending cross-fade (0: plain averaging).
            blocksize: Side of the output's tiles.
            compress: ``'deflate'``, ``'zstd'``, ``'lzw'`` or ``'none'``.
            overwrite: Replace an existing output.
            key: Key of the probabilities in a dictionary prediction.
            gdal_cache_mb: Cap of GDAL's block cache while predicting.
            mask: A raster on the output grid whose nodata pixels (its GDAL
                dataset mask: nodata value, mask band or alpha) stay nodata in the
                output. None: the *grid* raster when *grid* is a path, else no
                mask; False: no mask.
        """
        super().__init__(write_interval='batch')
        self.output = Path(output)
        self.grid_source = grid
        self.encoding_options = {
            'mode': output_mode,
            'probability_dtype': probability_dtype,
            'threshold': threshold,
        }
        OutputEncoding(**self.encoding_options)  # fail early on bad options
        self.overlap = overlap
        self.blocksize = blocksize
        self.compress = compress
        self.overwrite = overwrite
        self.key = key
        self.gdal_cache_mb = gdal_cache_mb
        if mask is True:
            msg = 'mask=True is ambiguous: give the raster whose nodata to keep'
            raise ValueError(msg)
        if mask is None and isinstance(grid, str | os.PathLike):
            mask = grid
        self.mask = None if mask is None or mask is False else Path(mask)
        self.grid: RasterGrid | None = None
        self._accumulator: DiskAccumulator | None = None
        self._weights: dict[tuple[int, int], np.ndarray] = {}
        self._stack = ExitStack()

    @property
    def scratch(self) -> Path:
        """The scratch file of the blended sums, beside the output."""
        return self.output.with_name(f'.{self.output.name}.sums.tif')

    def setup(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
    ) -> None:
        """Refuse to run in several processes (they would write one file)."""
        if stage == 'predict' and trainer.world_size > 1:
            msg = (
                'GeoTIFFPredictionWriter writes one file from one process, but '
                f'prediction runs in {trainer.world_size}: predict on one device '
                '(devices=1)'
            )
            raise RuntimeError(msg)

    def _inputs(self) -> list[Path]:
        """The files this writer reads: the grid raster and the mask."""
        files = [self.mask] if self.mask is not None else []
        if self.grid_source is not None and not isinstance(
            self.grid_source, RasterGrid
        ):
            files.append(Path(self.grid_source))
        return files

    def on_predict_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Check the output path and find the grid."""
        check_output(self.output, self.overwrite, self._inputs())
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(rasterio.Env(GDAL_CACHEMAX=self.gdal_cache_mb << 20))
        if isinstance(self.grid_source, RasterGrid):
            self.grid = self.grid_source
        elif self.grid_source is not None:
            with rasterio.open(self.grid_source) as dataset:
                self.grid = RasterGrid.of(dataset)
        else:
            loaders = trainer.predict_dataloaders
            loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
            self.grid = grid_of_dataset(loader.dataset)
        if self.mask is not None:
            self._check_mask(self.mask)

    def _check_mask(self, path: Path) -> None:
        """Refuse a mask raster that is missing or off the output grid."""
        assert self.grid is not None
        if not path.exists():
            msg = f'mask raster not found: {path}'
            raise FileNotFoundError(msg)
        with rasterio.open(path) as dataset:
            grid = RasterGrid.of(dataset)
        if not grid.matches(self.grid):
            msg = (
                f'the mask raster {path} is not on the output grid ({grid} vs '
                f'{self.grid}): give a raster on that grid, or mask=False'
            )
            raise ValueError(msg)

    def _unpack(self, prediction: Any, batch: Any) -> tuple[Tensor, Tensor]:
        """Probabilities ``[B, K, h, w]`` and transforms ``[B, 9]`` of a batch."""
        transform = None
        if isinstance(prediction, dict):
            probabilities = prediction[self.key]
            transform = prediction.get('transform')
        else:
            probabilities = prediction
        if transform is None and isinstance(batch, dict):
            transform = batch.get('transform')
        if not isinstance(transform, Tensor):
            msg = (
                "GeoTIFFPredictionWriter needs each chip's 'transform' in the "
                'prediction or the batch (TorchGeo GeoDataset samples carry it; '
                'collate them with torchgeo.datasets.stack_samples)'
            )
            raise ValueError(msg)
        return probabilities, transform.reshape(len(probabilities), -1)

    def _place(self, transform: Tensor) -> tuple[int, int]:
        """Grid row and column of a chip's upper-left pixel."""
        assert self.grid is not None
        a, _, c, _, e, f = (float(v) for v in transform[:6])
        grid = self.grid.transform
        if abs(a - grid.a) > 1e-4 * abs(grid.a) or abs(e - grid.e) > 1e-4 * abs(grid.e):
            msg = (
                f'a chip has pixels of {a} x {-e} CRS units, the output grid '
                f'{grid.a} x {-grid.e}: predict at the output resolution (set the '
                "dataset's res) or give a grid of that resolution"
            )
            raise ValueError(msg)
        col, row = (c - grid.c) / grid.a, (f - grid.f) / grid.e
        if max(abs(col - round(col)), abs(row - round(row))) > _ALIGNMENT_TOLERANCE:
            msg = (
                f'a chip starts at ({c}, {f}), between pixels of the output grid '
                f'(column {col:.2f}, row {row:.2f}): sample on the grid (pixel units)'
            )
            raise ValueError(msg)
        return round(row), round(col)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Blend a batch of chips into the scratch sums."""
        assert self.grid is not None
        probabilities, transforms = self._unpack(prediction, batch)
        chips = probabilities.detach().float().cpu().numpy()
        if self._accumulator is None:
            self._accumulator = DiskAccumulator(self.scratch, self.grid, chips.shape[1])
        for chip, transform in zip(chips, transforms, strict=True):
            row, col = self._place(transform)
            shape = chip.shape[-2:]
            if shape not in self._weights:
                overlap = min(self.overlap, min(shape) - 1)
                self._weights[shape] = np.outer(
                    ramp_weights(shape[0], overlap), ramp_weights(shape[1], overlap)
                )
            self._accumulator.add(chip, row, col, self._weights[shape])

    def on_predict_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Blend, encode and write the GeoTIFF, then rename it onto the output."""
        assert self.grid is not None
        accumulator = self._accumulator
        try:
            if accumulator is None:
                msg = 'nothing was predicted: the prediction dataloader was empty'
                raise RuntimeError(msg)
            encoding = OutputEncoding(
                channels=accumulator.channels, **self.encoding_options
            )
            writer = GeoTIFFStripWriter(
                self.output,
                self.grid,
                encoding,
                blocksize=self.blocksize,
                compress=self.compress,
                resume=False,
                overwrite=self.overwrite,
                inputs=self._inputs(),
            )
            writer.open()
            try:
                with ExitStack() as files:
                    mask = None
                    if self.mask is not None:
                        mask = files.enter_context(rasterio.open(self.mask))
                    for start in range(0, self.grid.height, self.blocksize):
                        stop = min(start + self.blocksize, self.grid.height)
                        sums, weight = accumulator.view(start, stop)
                        if mask is None:
                            valid = np.ones(weight.shape, dtype=bool)
                        else:
                            window = Window(0, start, self.grid.width, stop - start)
                            valid = mask.dataset_mask(window=window) > 0
                        writer.write(start, encoding.encode(sums, weight, valid))
                writer.commit()
            except BaseException:
                writer.discard()
                raise
        finally:
            self._cleanup()

    def on_exception(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        exception: BaseException,
    ) -> None:
        """Remove the scratch file; no output is written."""
        self._cleanup()

    def _cleanup(self) -> None:
        """Delete the scratch sums and leave GDAL's settings as they were."""
        if self._accumulator is not None:
            self._accumulator.close()
            self._accumulator = None
        self._weights.clear()
        self._stack.close()
