"""Tiny generated data for the KTDA tests: the grass folder layout."""

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin


def make_grass(
    root: Path, counts: dict[str, int] | None = None, size: int = 24, bands: int = 3
) -> Path:
    """Write the grass layout: uint8 GeoTIFF images, PNG masks of classes 0-4.

    Pixel (i, j) of image n has red = n, green = i, blue = j, and its class is
    (i + j) % 5, except an ignored (255) first row.
    """
    counts = counts or {'train': 3, 'val': 2}
    rows, cols = np.mgrid[:size, :size]
    number = 0
    for split, count in counts.items():
        (root / 'img_dir' / split).mkdir(parents=True, exist_ok=True)
        (root / 'ann_dir' / split).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            image = np.stack([np.full_like(rows, number), rows, cols])
            image = np.concatenate([image, np.full((bands - 3, size, size), 200)])
            profile = {
                'driver': 'GTiff',
                'width': size,
                'height': size,
                'transform': from_origin(0, size, 1, 1),
            }
            path = root / 'img_dir' / split / f'{number}.tif'
            with rasterio.open(path, 'w', count=bands, dtype='uint8', **profile) as f:
                f.write(image.astype(np.uint8))
            mask = ((rows + cols) % 5).astype(np.uint8)
            mask[0] = 255
            Image.fromarray(mask).save(root / 'ann_dir' / split / f'{number}.png')
            number += 1
    return root
