"""Prediction over whole scenes into GeoTIFFs: streaming, blended, resumable.

* :func:`predict_raster`: any model ``[B, C, h, w] -> [B, K, h, w]`` over one
  raster (or two, for change detection) into a tiled, compressed GeoTIFF on the
  input's grid, in memory bounded by the scene's width;
* :class:`GeoTIFFPredictionWriter`: the same output from Lightning's
  ``trainer.predict`` over a TorchGeo dataset and sampler.

See ``docs/prediction.md``.
"""

from .blending import DiskAccumulator, StripAccumulator
from .callback import GeoTIFFPredictionWriter
from .encoding import OutputEncoding
from .lock import OutputBusyError, OutputLock
from .scene import ChipBatch, PredictionReport, RowEnd, iter_chips, predict_raster
from .sources import SceneInputs
from .windows import ChipGrid, RasterGrid, ramp_weights, window_weights
from .writer import GeoTIFFStripWriter, partial_path, progress_path

__all__ = (
    'ChipBatch',
    'ChipGrid',
    'DiskAccumulator',
    'GeoTIFFPredictionWriter',
    'GeoTIFFStripWriter',
    'OutputBusyError',
    'OutputEncoding',
    'OutputLock',
    'PredictionReport',
    'RasterGrid',
    'RowEnd',
    'SceneInputs',
    'StripAccumulator',
    'iter_chips',
    'partial_path',
    'predict_raster',
    'progress_path',
    'ramp_weights',
    'window_weights',
)
