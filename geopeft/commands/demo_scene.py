"""The demo's last step: a whole georeferenced scene mapped into a GeoTIFF.

A scene classifier becomes a dense model by giving every pixel of a chip the chip's
class scores; :func:`~geopeft.predict.predict_raster` slides it over the scene with
overlapping, blended chips, so the map is finer than the chips. With no scene
given, a synthetic mosaic of the demo's classes is written as a georeferenced
GeoTIFF (one class per tile, so the map can be scored); any 8-bit raster works too
(e.g. a NAIP or Landsat GeoTIFF).
"""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from ..datamodules import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from ..datasets import render_scene  # noqa: E402
from ..io import atomic_output, save_figure  # noqa: E402
from ..predict import PredictionReport, predict_raster  # noqa: E402

#: Largest side of the quick-look's panels (the scene is read decimated).
QUICKLOOK_SIDE = 1024

#: Where the synthetic scene lies: UTM zone 33N, 1 m pixels.
SCENE_CRS = CRS.from_epsg(32633)
SCENE_ORIGIN = (500_000.0, 5_000_000.0)


class ChipClassifier(nn.Module):
    """A scene classifier as a dense model: each chip's scores on all its pixels.

    Chips arrive as read (0-255); they are normalised with the ImageNet statistics
    (as the demo's data module does) and resized to the classifier's input size.
    """

    def __init__(
        self,
        classifier: nn.Module,
        image_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Initialize a new ChipClassifier.

        Args:
            classifier: Maps ``[B, 3, s, s]`` normalised images to ``[B, K]``.
            image_size: The classifier's input side *s*.
            mean: Per-band mean in the 0-255 scale.
            std: Per-band standard deviation in the 0-255 scale.
        """
        super().__init__()
        self.classifier = classifier
        self.image_size = image_size
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, chips: Tensor) -> Tensor:
        """Score chips ``[B, 3, h, w]`` into ``[B, K, h, w]`` logits."""
        height, width = chips.shape[-2:]
        x = (chips - self.mean) / self.std
        if (height, width) != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode='bilinear'
            )
        logits = self.classifier(x)
        return logits[:, :, None, None].expand(-1, -1, height, width)


def write_synthetic_scene(
    path: Path,
    classes: Sequence[str],
    *,
    tile: int,
    grid: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Write a georeferenced mosaic of synthetic scenes, one class per tile.

    Args:
        path: The GeoTIFF to write (3 bands, uint8, tiled, UTM 33N, 1 m pixels).
        classes: The class names, in the classifier's order.
        tile: Side of each tile in pixels.
        grid: Tiles per side.
        seed: Seed of the drawing.

    Returns:
        The true class of every pixel, ``[grid * tile, grid * tile]``.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.resize(np.arange(len(classes)), grid * grid))
    side = grid * tile
    image = np.zeros((3, side, side), dtype=np.uint8)
    truth = np.zeros((side, side), dtype=np.uint8)
    for index, label in enumerate(order):
        row, col = divmod(index, grid)
        window = np.s_[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile]
        picture = render_scene(classes[label], size=tile, rng=rng)
        image[(slice(None), *window)] = picture.transpose(2, 0, 1)
        truth[window] = label
    profile = {
        'driver': 'GTiff',
        'width': side,
        'height': side,
        'count': 3,
        'dtype': 'uint8',
        'crs': SCENE_CRS,
        'transform': from_origin(*SCENE_ORIGIN, 1.0, 1.0),
        'tiled': True,
        'blockxsize': 256,
        'blockysize': 256,
        'compress': 'deflate',
    }
    with (
        atomic_output(path) as temporary,
        rasterio.open(temporary, 'w', **profile) as f,
    ):
        f.write(image)
    return truth


def predict_scene(
    classifier: nn.Module,
    scene: Path,
    output: Path,
    *,
    image_size: int,
    bands: Sequence[int] | None = None,
    progress: bool = True,
) -> PredictionReport:
    """Map a whole raster with a scene classifier into a class GeoTIFF.

    Chips of the classifier's input size overlap by half and are blended, so each
    pixel's class comes from the chips around it.

    Args:
        classifier: The trained classifier (``[B, 3, s, s] -> [B, K]``).
        scene: An 8-bit raster with at least 3 bands.
        output: The class map to write (on the scene's grid; overwritten).
        image_size: The classifier's input side.
        bands: 1-based bands to read as RGB (None: the first three).
        progress: Show a progress bar.

    Returns:
        The prediction report.
    """
    model = ChipClassifier(classifier, image_size)
    return predict_raster(
        model,
        scene,
        output,
        chip_size=image_size,
        overlap=image_size // 2,
        batch_size=8,
        output_mode='classes',
        bands=list(bands) if bands is not None else [1, 2, 3],
        in_channels=3,
        overwrite=True,
        progress=progress,
    )


def pixel_accuracy(prediction: Path, truth: np.ndarray) -> float:
    """Share of pixels whose predicted class is the true one."""
    with rasterio.open(prediction) as f:
        predicted = f.read(1)
    return float((predicted == truth).mean())


def _read_decimated(
    path: Path, bands: Sequence[int], resampling: Resampling
) -> np.ndarray:
    """Read bands of a raster at most :data:`QUICKLOOK_SIDE` pixels a side."""
    with rasterio.open(path) as f:
        scale = max(1.0, max(f.height, f.width) / QUICKLOOK_SIDE)
        shape = (len(bands), int(f.height / scale), int(f.width / scale))
        return f.read(list(bands), out_shape=shape, resampling=resampling)


def plot_scene(
    scene: Path,
    prediction: Path,
    classes: Sequence[str],
    path: Path,
    *,
    bands: Sequence[int] | None = None,
    truth: np.ndarray | None = None,
) -> None:
    """Write a PNG quick-look: the scene, its class map and the truth, if known.

    Rasters are read decimated, so a quick-look of any scene size fits in memory.

    Args:
        scene: The input raster.
        prediction: The class GeoTIFF.
        classes: Class names.
        path: Output PNG.
        bands: 1-based bands shown as RGB (None: the first three).
        truth: True classes on the scene's grid, if known.
    """
    rgb = _read_decimated(scene, bands or [1, 2, 3], Resampling.average)
    rgb = np.clip(rgb.transpose(1, 2, 0), 0, 255).astype(np.uint8)
    predicted = _read_decimated(prediction, [1], Resampling.nearest)[0]
    colours = plt.get_cmap('tab10' if len(classes) <= 10 else 'tab20')
    cmap = ListedColormap([colours(i) for i in range(len(classes))])
    panels = [('scene', rgb), ('predicted classes', predicted)]
    if truth is not None:
        step = max(1, round(truth.shape[0] / predicted.shape[0]))
        panels.append(('true classes', truth[::step, ::step]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
    for ax, (title, data) in zip(np.atleast_1d(axes), panels, strict=True):
        if data.ndim == 3:
            ax.imshow(data)
        else:
            ax.imshow(data, cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5)
        ax.set_title(title)
        ax.axis('off')
    handles = [Patch(color=cmap(i), label=name) for i, name in enumerate(classes)]
    fig.tight_layout()
    fig.legend(
        handles=handles,
        loc='upper center',
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(4, len(classes)),
    )
    save_figure(fig, path)
    plt.close(fig)
