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
from .scene_folder import (
    IMAGE_EXTENSIONS,
    SceneDatasetNotFoundError,
    SceneFolder,
    is_image_file,
)
from .synthetic_scenes import generate_synthetic_scenes, render_scene

__all__ = (
    'AID',
    'BINARY_LABEL_VALUES',
    'IMAGE_EXTENSIONS',
    'L8BIOME_CLASSES',
    'L8BIOME_SPLIT_COUNTS',
    'ChangeDatasetNotFoundError',
    'ChangeFolder',
    'GrassDatasetNotFoundError',
    'GrassSegmentation',
    'L8BiomePatches',
    'L8BiomePatchesNotFoundError',
    'SceneDatasetNotFoundError',
    'SceneFolder',
    'generate_synthetic_scenes',
    'is_change_image_file',
    'is_image_file',
    'l8biome_split_counts',
    'prepare_l8biome_patches',
    'render_scene',
)
