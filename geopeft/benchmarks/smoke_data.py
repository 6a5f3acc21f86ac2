"""Tiny generated data for the benchmarks' smoke mode (no download).

:func:`make_smoke_change_folder` writes an A/B/label change folder whose answer is
known: date B is date A with a few bright rectangles added, and the label is 1
exactly there. :func:`make_smoke_scenes` writes the demo's synthetic scenes
(:func:`~geopeft.datasets.generate_synthetic_scenes`) at a tiny size.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets import generate_synthetic_scenes

#: Pairs per split of the smoke change folder.
SMOKE_PAIRS = {'train': 8, 'val': 2, 'test': 4}


def _smooth_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark, blotchy RGB background, ``[size, size, 3]`` uint8."""
    coarse = rng.uniform(20, 110, (size // 8 + 1, size // 8 + 1, 3))
    field = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:size, :size]
    noise = rng.normal(0, 8, (size, size, 3))
    return np.clip(field + noise, 0, 255).astype(np.uint8)


def smoke_change_pair(
    rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one pair: background, the same with new bright rectangles, the change.

    Args:
        rng: Random generator.
        size: Side of the images in pixels.

    Returns:
        Date A and date B (``[H, W, 3]`` uint8) and the label (``[H, W]`` uint8,
        255 where B has a new rectangle).
    """
    image_a = _smooth_texture(rng, size)
    image_b = image_a.copy()
    label = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        height, width = rng.integers(size // 6, size // 3 + 1, 2)
        top = int(rng.integers(0, size - height + 1))
        left = int(rng.integers(0, size - width + 1))
        colour = rng.integers(190, 256, 3)
        image_b[top : top + height, left : left + width] = colour
        label[top : top + height, left : left + width] = 255
    return image_a, image_b, label


def make_smoke_change_folder(
    root: str | Path,
    size: int = 32,
    pairs: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny A/B/label change folder (``train_*``/``val_*``/``test_*``).

    Args:
        root: Folder to write into (created when missing; files are replaced).
        size: Side of the images in pixels (a multiple of 32 for most decoders).
        pairs: Pairs per split; :data:`SMOKE_PAIRS` when ``None``.
        seed: Seed of the content.

    Returns:
        *root*, ready for :class:`~geopeft.datamodules.ChangeFolderDataModule`.
    """
    root = Path(root)
    for folder in ('A', 'B', 'label'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (pairs or SMOKE_PAIRS).items():
        for index in range(count):
            name = f'{split}_{index}.png'
            image_a, image_b, label = smoke_change_pair(rng, size)
            Image.fromarray(image_a).save(root / 'A' / name)
            Image.fromarray(image_b).save(root / 'B' / name)
            Image.fromarray(label).save(root / 'label' / name)
    return root


def make_smoke_scenes(
    root: str | Path, per_class: int = 6, size: int = 32, seed: int = 0
) -> Path:
    """Write the synthetic demo scenes (8 classes) at a tiny size.

    Args:
        root: Folder to write into.
        per_class: Images per class.
        size: Side of the images in pixels.
        seed: Seed of the content.

    Returns:
        *root*, ready for :class:`~geopeft.datamodules.SceneFolderDataModule`.
    """
    return generate_synthetic_scenes(
        root, per_class=per_class, size=size, seed=seed, progress=False
    )
