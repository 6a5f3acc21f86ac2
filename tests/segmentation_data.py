"""Tiny generated semantic-segmentation data in TorchGeo's on-disk layouts.

* :func:`make_loveda`: what TorchGeo's ``LoveDA(root, split, download=False)``
  reads (the extracted Train/Val/Test archives).
* :func:`make_potsdam`: what TorchGeo's ``Potsdam2D(root, split)`` reads (the
  extracted ``4_Ortho_RGBIR`` and ``5_Labels_all`` archives).

Every image carries a learnable pattern: the mask is a grid of square blocks, each
of one class, and every class has its own colour (plus noise) in the image. Import
from any test (``tests/`` is on ``sys.path`` through ``tests/conftest.py``)::

    from segmentation_data import make_loveda, make_potsdam
"""

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from torchgeo.datasets import Potsdam2D

#: Images per scene (urban, rural) and split of make_loveda.
LOVEDA_IMAGES = {'train': 2, 'val': 1, 'test': 1}

#: Tiles of make_potsdam per split (TorchGeo's Potsdam2DDataModule holds 20 % of
#: the training tiles out for validation).
POTSDAM_TILES = {'train': 5, 'test': 2}

#: LoveDA's mask values: 0 is no-data (ignored), 1-7 the land-cover classes.
LOVEDA_CLASSES = 8

#: One colour per class value (no-data is black, as in LoveDA's empty borders).
_PALETTE = np.array(
    [
        [0, 0, 0],
        [200, 200, 200],
        [220, 40, 40],
        [240, 220, 40],
        [40, 80, 220],
        [150, 110, 70],
        [20, 120, 30],
        [160, 220, 90],
    ]
)


def block_mask(
    rng: np.random.Generator, size: int, num_classes: int, block: int = 16
) -> np.ndarray:
    """Draw a mask made of ``block``-pixel squares, each of one random class.

    Args:
        rng: Random generator.
        size: Side of the mask in pixels (a multiple of *block*).
        num_classes: Classes are drawn from ``0 .. num_classes - 1``.
        block: Side of each square.

    Returns:
        An ``[H, W]`` int64 array of class values.
    """
    cells = rng.integers(0, num_classes, (size // block, size // block))
    return np.kron(cells, np.ones((block, block), dtype=np.int64))


def paint(rng: np.random.Generator, mask: np.ndarray, bands: int = 3) -> np.ndarray:
    """Colour a mask: each class gets its palette colour plus uniform noise.

    Args:
        rng: Random generator.
        mask: ``[H, W]`` class values (at most 8 classes).
        bands: 3 for RGB; a fourth band (near infrared) repeats the green one.

    Returns:
        An ``[H, W, bands]`` uint8 image.
    """
    colours = _PALETTE[mask]
    if bands == 4:
        colours = np.concatenate([colours, colours[..., 1:2]], axis=-1)
    noise = rng.integers(-20, 21, colours.shape)
    return np.clip(colours + noise, 0, 255).astype(np.uint8)


def make_loveda(root: Path, size: int = 64, seed: int = 0) -> Path:
    """Write a tiny LoveDA as TorchGeo 0.10's ``LoveDA`` reads it.

    ``LoveDA(root, split, scene, download=False)`` checks that
    ``root/<Split>/<Scene>`` exists for every scene asked for and reads::

        root/{Train,Val,Test}/{Urban,Rural}/images_png/<n>.png   (RGB)
        root/{Train,Val}/{Urban,Rural}/masks_png/<n>.png         (values 0-7)

    Test has no masks (LoveDA's test labels are not public, so TorchGeo's
    ``LoveDADataModule`` predicts on Test and has no test stage). Mask value 0 is
    no-data and should be ignored (``ignore_index=0``); images are numbered across
    splits as in LoveDA; counts are in :data:`LOVEDA_IMAGES`.

    Args:
        root: Directory to write into (created if needed).
        size: Side of the images in pixels (LoveDA: 1024; a multiple of 16).
        seed: Seed of the random content.

    Returns:
        *root*, to pass as ``LoveDA(root=...)``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    index = 0
    for split, count in LOVEDA_IMAGES.items():
        for scene in ('Urban', 'Rural'):
            folder = root / split.capitalize() / scene
            (folder / 'images_png').mkdir(parents=True)
            if split != 'test':
                (folder / 'masks_png').mkdir()
            for _ in range(count):
                mask = block_mask(rng, size, LOVEDA_CLASSES)
                name = f'{index}.png'
                Image.fromarray(paint(rng, mask)).save(folder / 'images_png' / name)
                if split != 'test':
                    Image.fromarray(mask.astype(np.uint8)).save(
                        folder / 'masks_png' / name
                    )
                index += 1
    return root


def make_potsdam(root: Path, size: int = 64, seed: int = 0) -> Path:
    """Write a tiny ISPRS Potsdam as TorchGeo 0.10's ``Potsdam2D`` reads it.

    ``Potsdam2D(root, split)`` checks that ``root/4_Ortho_RGBIR`` exists and reads,
    for the tiles of its split list that are present::

        root/4_Ortho_RGBIR/<tile>_RGBIR.tif   (4 bands: red, green, blue, NIR)
        root/<tile>_label.tif                 (RGB, one colour per class)

    Tiles are the first ones of TorchGeo's own split lists
    (``Potsdam2D.splits``); counts are in :data:`POTSDAM_TILES`.

    Args:
        root: Directory to write into (created if needed).
        size: Side of the tiles in pixels (Potsdam: 6000; a multiple of 16).
        seed: Seed of the random content.

    Returns:
        *root*, to pass as ``Potsdam2D(root=...)``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    images = root / Potsdam2D.image_root
    images.mkdir(parents=True)
    colormap = np.array(Potsdam2D.colormap, dtype=np.uint8)
    for split, count in POTSDAM_TILES.items():
        for tile in Potsdam2D.splits[split][:count]:
            mask = block_mask(rng, size, len(Potsdam2D.classes))
            image = paint(rng, mask, bands=4)
            with rasterio.open(
                images / f'{tile}_RGBIR.tif',
                'w',
                driver='GTiff',
                height=size,
                width=size,
                count=4,
                dtype='uint8',
                crs='EPSG:32633',  # Potsdam's UTM zone, 5 cm pixels
                transform=from_origin(366000, 5808000, 0.05, 0.05),
            ) as f:
                f.write(np.moveaxis(image, -1, 0))
            Image.fromarray(colormap[mask]).save(root / f'{tile}_label.tif')
    return root
