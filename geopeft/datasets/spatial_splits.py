"""Spatial train/val/test splits of a raster's area.

A split is a region (a shapely geometry in the grid's CRS); the samplers of
:mod:`geopeft.samplers` draw only patches that lie fully inside the region of
their split, so patches of different splits never overlap. Regions come from:

* :func:`block_split_regions`: the area cut into square blocks of whole pixels,
  aligned with the grid, each assigned to one split in a seeded random order
  until every split holds its fraction of the area;
* :func:`vector_split_regions`: polygons of a vector file with a split column
  (values ``train``, ``val``, ``test``).
"""

from collections.abc import Sequence

import numpy as np
import shapely
from rasterio.crs import CRS
from torchgeo.datasets.utils import Path

from .raster_files import RasterInputError, TargetGrid
from .vector_labels import read_vector

#: Split names, in the priority order used where vector regions overlap.
SPLITS = ('train', 'val', 'test')


def block_split_regions(
    area: shapely.Geometry,
    grid: TargetGrid,
    *,
    block_size: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, shapely.Geometry]:
    """Cut an area into grid-aligned blocks and assign them to splits.

    Blocks are ``block_size`` pixels square, their corners whole multiples of
    ``block_size`` pixels from the grid's origin (so with a block size that is a
    multiple of the files' tile size they follow the files' tiles). The blocks
    that overlap the area are visited in a random order drawn with *seed*: the
    first go to ``val`` until it holds its fraction of the area, the next to
    ``test``, the rest to ``train``. A split with a positive fraction gets at
    least one block.

    Args:
        area: Where the data is (e.g. the datasets' footprint).
        grid: The pixel grid.
        block_size: Side of a block in pixels; a split's patches must fit in its
            blocks, so at least the patch size (several times it, so that blocks
            hold whole patches in all positions).
        fractions: Fractions of the area for ``train``, ``val`` and ``test``
            (normalised to sum 1; 0 for no such split).
        seed: Seed of the block order.

    Returns:
        Split name -> its region (clipped to *area*); splits of fraction 0 are
        left out.

    Raises:
        ValueError: If *fractions* are not three non-negative numbers with a
            positive train fraction, or the area holds too few blocks.
    """
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0:
        msg = (
            'split fractions must be (train, val, test) >= 0 with train > 0; got '
            f'{tuple(fractions)}'
        )
        raise ValueError(msg)
    if block_size < 1:
        msg = f'block_size must be >= 1 pixel; got {block_size}'
        raise ValueError(msg)
    total = float(sum(fractions))
    shares = dict(zip(SPLITS, (f / total for f in fractions), strict=True))
    col, row, width, height = grid.snap(area.bounds)
    c0, r0 = col // block_size, row // block_size
    c1, r1 = -(-(col + width) // block_size), -(-(row + height) // block_size)
    shapely.prepare(area)
    blocks, areas = [], []
    for r in range(r0, r1):
        for c in range(c0, c1):
            box = shapely.box(
                *grid.to_bounds(c * block_size, r * block_size, block_size, block_size)
            )
            part = shapely.intersection(area, box)
            if part.area > 0:
                blocks.append(part)
                areas.append(part.area)
    wanted = [s for s in SPLITS if shares[s] > 0]
    if len(blocks) < len(wanted):
        msg = (
            f'the area holds {len(blocks)} block(s) of {block_size} px, too few for '
            f'the splits {wanted}: lower split_block_size (by default 4 x the '
            'patch size), or give split_regions'
        )
        raise ValueError(msg)
    order = np.random.default_rng(seed).permutation(len(blocks))
    whole = float(sum(areas))
    assigned: dict[str, list[int]] = {s: [] for s in SPLITS}
    position = 0
    for split in ('val', 'test'):
        if shares[split] == 0:
            continue
        held = 0.0
        while position < len(order) - 1 and (
            not assigned[split] or held < shares[split] * whole
        ):
            held += areas[order[position]]
            assigned[split].append(int(order[position]))
            position += 1
    assigned['train'] = [int(i) for i in order[position:]]
    if not assigned['train']:
        msg = (
            f'no block of {block_size} px is left for training; lower the split '
            'block size or the val/test fractions'
        )
        raise ValueError(msg)
    return {
        split: shapely.union_all([blocks[i] for i in indexes])
        for split, indexes in assigned.items()
        if indexes
    }


def vector_split_regions(
    path: Path,
    crs: CRS,
    *,
    column: str = 'split',
    layer: str | int | None = None,
) -> dict[str, shapely.Geometry]:
    """Read split regions from polygons with a split column.

    Where regions of different splits overlap, ``test`` keeps the overlap over
    ``val`` and ``train``, and ``val`` over ``train``, so that the regions are
    disjoint.

    Args:
        path: Vector file (any format geopandas reads).
        crs: CRS of the grid.
        column: Column holding ``train``, ``val`` or ``test`` for each polygon.
        layer: Layer of a multi-layer file, or None.

    Returns:
        Split name -> its region.

    Raises:
        RasterInputError: If the file cannot be used, holds other split names, or
            no train region.
    """
    frame = read_vector(path, crs, column=column, layer=layer, what='split regions')
    names = sorted({str(v) for v in frame[column]})
    unknown = [n for n in names if n not in SPLITS]
    if unknown:
        msg = (
            f'split regions: column {column!r} of {path} holds {unknown}; use only '
            f'{list(SPLITS)}'
        )
        raise RasterInputError(msg)
    regions = {
        str(name): shapely.union_all(group.geometry.to_numpy())
        for name, group in frame.groupby(frame[column].astype(str))
    }
    if 'train' not in regions:
        msg = f'split regions: {path} has no polygon with {column} = train'
        raise RasterInputError(msg)
    taken = None
    for split in reversed(SPLITS):
        if split not in regions:
            continue
        if taken is not None:
            regions[split] = shapely.difference(regions[split], taken)
        taken = (
            regions[split] if taken is None else shapely.union(taken, regions[split])
        )
    return regions
