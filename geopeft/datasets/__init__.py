"""geopeft.datasets: what TorchGeo lacks."""

from .aid import AID
from .change_folder import (
    BINARY_LABEL_VALUES,
    ChangeDatasetNotFoundError,
    ChangeFolder,
    is_change_image_file,
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
    'ChangeDatasetNotFoundError',
    'ChangeFolder',
    'SceneDatasetNotFoundError',
    'SceneFolder',
    'generate_synthetic_scenes',
    'is_change_image_file',
    'is_image_file',
    'render_scene',
)
