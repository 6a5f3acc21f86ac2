"""geopeft.datasets: what TorchGeo lacks."""

from .aid import AID
from .scene_folder import (
    IMAGE_EXTENSIONS,
    SceneDatasetNotFoundError,
    SceneFolder,
    is_image_file,
)
from .synthetic_scenes import generate_synthetic_scenes, render_scene

__all__ = (
    'AID',
    'IMAGE_EXTENSIONS',
    'SceneDatasetNotFoundError',
    'SceneFolder',
    'generate_synthetic_scenes',
    'is_image_file',
    'render_scene',
)
