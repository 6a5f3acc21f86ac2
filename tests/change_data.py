"""Tiny generated change-detection data in three on-disk layouts.

* :func:`make_change_folder`: the A/B/label folder layout of
  :class:`geopeft.datasets.ChangeFolder` (split prefixes or split lists).
* :func:`make_levircd`: what TorchGeo's ``LEVIRCD(root, split, download=False)``
  reads (the extracted train/val/test archives).
* :func:`make_oscd`: what TorchGeo's ``OSCD(root, split, download=False)`` reads
  (13 single-band Sentinel-2 TIFFs per date, per city).

Every pair carries a learnable pattern: the image of date 2 equals date 1 (a
textured background) except for one bright square, and the label is 1 exactly on
that square. Import from any test (``tests/`` is on ``sys.path`` through
``tests/conftest.py``)::

    from change_data import make_change_folder, make_levircd, make_oscd
"""

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from torchgeo.datasets import OSCD

#: Split sizes of make_levircd (LEVIR-CD has 445 / 64 / 128 pairs).
LEVIRCD_PAIRS = {'train': 4, 'val': 2, 'test': 2}

#: Cities of make_oscd: enough train cities for TorchGeo's 20 % validation split.
OSCD_CITIES = {
    'train': ['abudhabi', 'aguasclaras', 'beihai', 'beirut', 'bercy'],
    'test': ['brasilia', 'chongqing'],
}

#: Sentinel-2 bands of OSCD, in TorchGeo's order.
OSCD_BANDS = tuple(OSCD.all_bands)

_OSCD = 'Onera Satellite Change Detection dataset'


def change_pair(
    rng: np.random.Generator,
    size: int,
    bands: int = 3,
    dark: tuple[int, int] = (30, 100),
    bright: int = 230,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image pair with a bright square that appears in date 2.

    Args:
        rng: Random generator.
        size: Side of the images in pixels.
        bands: Number of bands.
        dark: Value range of the textured background.
        bright: Value of the square in date 2.

    Returns:
        Date 1 and date 2 as ``[H, W, bands]`` int64 arrays, and the binary
        ``[H, W]`` label (1 on the square).
    """
    image1 = rng.integers(dark[0], dark[1], (size, size, bands))
    side = int(rng.integers(size // 4, size // 2 + 1))
    top, left = rng.integers(0, size - side + 1, 2)
    label = np.zeros((size, size), dtype=np.int64)
    label[top : top + side, left : left + side] = 1
    image2 = image1.copy()
    image2[label == 1] = bright
    return image1, image2, label


def _save_image(array: np.ndarray, path: Path) -> None:
    """Save ``[H, W, C]`` as PNG (C = 1 or 3) or a multi-band GeoTIFF (uint8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == '.tif':
        height, width, count = array.shape
        profile = {'height': height, 'width': width, 'count': count}
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', NotGeoreferencedWarning)
            with rasterio.open(
                path, 'w', driver='GTiff', dtype='uint8', **profile
            ) as f:
                f.write(np.moveaxis(array, -1, 0).astype(np.uint8))
    else:
        if array.shape[-1] == 1:
            array = array[..., 0]
        Image.fromarray(array.astype(np.uint8)).save(path)


def _write_pair(
    root: Path,
    name: str,
    pair: tuple[np.ndarray, np.ndarray, np.ndarray],
    label_scale: int,
) -> None:
    """Write a pair as ``root/{A,B}/name`` and ``root/label/<stem>.png``."""
    image1, image2, label = pair
    _save_image(image1, root / 'A' / name)
    _save_image(image2, root / 'B' / name)
    _save_image(
        label[..., None] * label_scale, (root / 'label' / name).with_suffix('.png')
    )


def make_change_folder(
    root: Path,
    size: int = 32,
    pairs_per_split: int = 4,
    *,
    layout: Literal['prefix', 'list'] = 'prefix',
    bands: int = 3,
    label_scale: int = 255,
    seed: int = 0,
) -> Path:
    """Write a tiny A/B/label change dataset.

    Args:
        root: Directory to write into (created if needed).
        size: Side of the images in pixels.
        pairs_per_split: Number of pairs in each of train, val and test.
        layout: 'prefix': files named ``train_0.png``, ``val_0.png``... (LEVIR-CD,
            also what TorchGeo's LEVIRCD reads); 'list': files named
            ``pair_000.png`` and split lists ``root/list/{train,val,test}.txt``
            (BIT).
        bands: Number of bands: 3 writes RGB PNGs, other counts GeoTIFFs (uint8).
        label_scale: Stored value of change in the labels (255 or 1).
        seed: Seed of the random content.

    Returns:
        *root*.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    suffix = '.png' if bands == 3 else '.tif'
    index = 0
    for split in ('train', 'val', 'test'):
        names = []
        for i in range(pairs_per_split):
            stem = f'{split}_{i}' if layout == 'prefix' else f'pair_{index:03d}'
            name = stem + suffix
            _write_pair(root, name, change_pair(rng, size, bands), label_scale)
            names.append(name)
            index += 1
        if layout == 'list':
            (root / 'list').mkdir(exist_ok=True)
            (root / 'list' / f'{split}.txt').write_text('\n'.join(names) + '\n')
    return root


def make_levircd(root: Path, size: int = 32, seed: int = 0) -> Path:
    """Write a tiny LEVIR-CD as TorchGeo 0.10's ``LEVIRCD`` reads it.

    ``LEVIRCD(root, split, download=False)`` checks that ``root/A``, ``root/B``
    and ``root/label`` exist (the three extracted archives ``train.zip``,
    ``val.zip`` and ``test.zip`` each hold these folders) and reads
    ``root/{A,B,label}/<split>*.png``: RGB images, labels 0/255. Pairs are named
    ``<split>_<n>.png`` with n from 1, as in LEVIR-CD; sizes are in
    :data:`LEVIRCD_PAIRS`.

    Args:
        root: Directory to write into (created if needed).
        size: Side of the images in pixels (LEVIR-CD: 1024).
        seed: Seed of the random content.

    Returns:
        *root*, to pass as ``LEVIRCD(root=...)``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in LEVIRCD_PAIRS.items():
        for n in range(1, count + 1):
            _write_pair(root, f'{split}_{n}.png', change_pair(rng, size), 255)
    return root


def make_oscd(root: Path, size: int = 32, seed: int = 0) -> Path:
    """Write a tiny OSCD as TorchGeo 0.10's ``OSCD`` reads it.

    ``OSCD(root, split, bands=..., download=False)`` finds the extracted
    archives by the name 'Onera Satellite Change Detection dataset - ...' under
    ``root``, takes the cities of a split from the label folder and reads::

        root/Onera Satellite Change Detection dataset - Images/<city>/
            imgs_1_rect/B01.tif ... B12.tif, B8A.tif   (date 1, one band each)
            imgs_2_rect/...                            (date 2)
            dates.txt                                  ('date_1: YYYYMMDD' lines)
        root/Onera Satellite Change Detection dataset - {Train,Test} Labels/
            <city>/cm/cm.png                           (0/255)

    Bands are uint16 reflectance-like values (about 1000-2000, the square 5000).
    Cities are in :data:`OSCD_CITIES` (5 train, 2 test); city *i* of a split is
    ``size + 2 * i`` pixels wide, as OSCD's cities differ in size.

    Args:
        root: Directory to write into (created if needed).
        size: Side of the smallest city image in pixels.
        seed: Seed of the random content.

    Returns:
        *root*, to pass as ``OSCD(root=...)``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    images = root / f'{_OSCD} - Images'
    for split, cities in OSCD_CITIES.items():
        labels = root / f'{_OSCD} - {split.capitalize()} Labels'
        for i, city in enumerate(cities):
            side = size + 2 * i
            image1, image2, label = change_pair(
                rng, side, len(OSCD_BANDS), dark=(1000, 2000), bright=5000
            )
            for date, image in ((1, image1), (2, image2)):
                folder = images / city / f'imgs_{date}_rect'
                folder.mkdir(parents=True)
                for b, band in enumerate(OSCD_BANDS):
                    array = image[..., b].astype(np.uint16)
                    Image.fromarray(array).save(folder / f'{band}.tif')
            (images / city / 'dates.txt').write_text(
                'date_1: 20151126\ndate_2: 20180330\n'
            )
            (labels / city / 'cm').mkdir(parents=True)
            Image.fromarray((label * 255).astype(np.uint8)).save(
                labels / city / 'cm' / 'cm.png'
            )
    return root
