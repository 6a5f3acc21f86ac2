"""Benchmark rasters built from a real image: ``geopeft bench sampling --from``.

Generated noise decodes slowly and has no nodata; real scenes are neither. This
module mirror-tiles one real raster (for example a Landsat scene with its nodata
collar) into the benchmark's two sets: one large tiled GeoTIFF and a mosaic of
edge-to-edge files, 3 bands of uint16 (8-bit sources are scaled by 257), DEFLATE
with the horizontal predictor, the source's CRS, pixel size and nodata. Written
once into the cache folder and reused.
"""

import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


def _mirror_tiled(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Repeat *image* ``[C, h, w]`` over ``height x width``, mirrored.

    Every other copy is flipped, so that no seam is a jump.
    """
    _, h, w = image.shape
    flipped_rows = image[:, ::-1]
    rows = []
    for i in range(-(-height // h)):
        band = flipped_rows if i % 2 else image
        copies = [band[:, :, ::-1] if j % 2 else band for j in range(-(-width // w))]
        rows.append(np.concatenate(copies, axis=2))
    return np.ascontiguousarray(np.concatenate(rows, axis=1)[:, :height, :width])


def real_sets(
    source: str | os.PathLike[str],
    cache_dir: Path,
    *,
    size: int,
    tile: int,
    grid: tuple[int, int],
    mosaic_size: int,
    log: bool = False,
) -> tuple[str, list[str]]:
    """The single raster and the mosaic made from *source* (cached).

    Args:
        source: A real raster with at least 3 bands (the first three are used).
        cache_dir: Folder of the generated files.
        size: Side of the single raster.
        tile: Internal tile side of every file.
        grid: ``(rows, cols)`` of mosaic files.
        mosaic_size: Side of each mosaic file.
        log: Print progress to stderr.

    Returns:
        The single file and the mosaic's files, row by row.

    Raises:
        ValueError: If *source* has fewer than 3 bands or no CRS.
    """
    source = Path(source)
    folder = (
        cache_dir
        / f'real_{source.stem}_{size}_{grid[0]}x{grid[1]}_{mosaic_size}_t{tile}'
    )
    single = folder / f'single_{size}.tif'
    mosaic = [
        folder / 'mosaic' / f'tile_{row}_{col}.tif'
        for row in range(grid[0])
        for col in range(grid[1])
    ]
    if single.exists() and all(path.exists() for path in mosaic):
        return str(single), [str(path) for path in mosaic]
    with rasterio.open(source) as src:
        if src.count < 3 or src.crs is None:
            msg = (
                f'{source} has {src.count} band(s) and CRS {src.crs}: --from needs a '
                'georeferenced raster with at least 3 bands'
            )
            raise ValueError(msg)
        image = src.read([1, 2, 3])
        crs, transform, nodata = src.crs, src.transform, src.nodata
    if image.dtype == np.uint8:
        image = image.astype(np.uint16) * 257
        nodata = None if nodata is None else nodata * 257
    image = image.astype(np.uint16)
    if log:
        print(f'writing rasters made from {source} into {folder} ...', file=sys.stderr)
    side = max(size, grid[0] * mosaic_size, grid[1] * mosaic_size)
    big = _mirror_tiled(image, side, side)
    profile = {
        'driver': 'GTiff',
        'count': 3,
        'dtype': 'uint16',
        'crs': crs,
        'nodata': nodata,
        'tiled': True,
        'blockxsize': tile,
        'blockysize': tile,
        'compress': 'deflate',
        'predictor': 2,
    }
    res_x, res_y = transform.a, -transform.e

    def write(path: Path, row: int, col: int, height: int, width: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f'.{path.name}.partial')
        origin = from_origin(
            transform.c + col * res_x, transform.f - row * res_y, res_x, res_y
        )
        with rasterio.open(
            partial, 'w', width=width, height=height, transform=origin, **profile
        ) as dst:
            dst.write(big[:, row : row + height, col : col + width])
        os.replace(partial, path)

    write(single, 0, 0, size, size)
    for path in mosaic:
        row, col = (int(v) for v in path.stem.split('_')[1:])
        write(path, row * mosaic_size, col * mosaic_size, mosaic_size, mosaic_size)
    return str(single), [str(path) for path in mosaic]
