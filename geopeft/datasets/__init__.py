"""geopeft.datasets: what TorchGeo lacks."""

from .aid import AID
from .change_folder import (
    BINARY_LABEL_VALUES,
    ChangeDatasetNotFoundError,
    ChangeFolder,
    is_change_image_file,
)
from .grass import GrassDatasetNotFoundError, GrassSegmentation
from .l8biome_patches import (
    L8BIOME_CLASSES,
    L8BIOME_SPLIT_COUNTS,
    L8BiomePatches,
    L8BiomePatchesNotFoundError,
    l8biome_split_counts,
    prepare_l8biome_patches,
)
from .raster_files import (
    RASTER_SUFFIXES,
    RasterFile,
    RasterInputError,
    RasterMosaic,
    TargetGrid,
    find_raster_files,
    inspect_raster,
    resolve_grid,
)
from .rasters import RasterChangeDataset, RasterImages, RasterSegmentationDataset
from .scene_folder import (
    IMAGE_EXTENSIONS,
    SceneDatasetNotFoundError,
    SceneFolder,
    is_image_file,
)
from .spatial_splits import SPLITS, block_split_regions, vector_split_regions
from .synthetic_scenes import generate_synthetic_scenes, render_scene
from .vector_labels import VECTOR_SUFFIXES, VectorLabels, is_vector_file

__all__ = (
    'AID',
    'BINARY_LABEL_VALUES',
    'IMAGE_EXTENSIONS',
    'L8BIOME_CLASSES',
    'L8BIOME_SPLIT_COUNTS',
    'RASTER_SUFFIXES',
    'SPLITS',
    'VECTOR_SUFFIXES',
    'ChangeDatasetNotFoundError',
    'ChangeFolder',
    'GrassDatasetNotFoundError',
    'GrassSegmentation',
    'L8BiomePatches',
    'L8BiomePatchesNotFoundError',
    'RasterChangeDataset',
    'RasterFile',
    'RasterImages',
    'RasterInputError',
    'RasterMosaic',
    'RasterSegmentationDataset',
    'SceneDatasetNotFoundError',
    'SceneFolder',
    'TargetGrid',
    'VectorLabels',
    'block_split_regions',
    'find_raster_files',
    'generate_synthetic_scenes',
    'inspect_raster',
    'is_change_image_file',
    'is_image_file',
    'is_vector_file',
    'l8biome_split_counts',
    'prepare_l8biome_patches',
    'render_scene',
    'resolve_grid',
    'vector_split_regions',
)
