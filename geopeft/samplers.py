"""Samplers of patches that lie fully inside a region, on the pixel grid, per rank.

TorchGeo's :class:`~torchgeo.samplers.RandomPatchSampler` and
:class:`~torchgeo.samplers.GriddedPatchSampler` draw patches that may stick out of
the region they sample (the grid's last patches are padded) and leave sharding to
Lightning's ``DistributedSamplerWrapper``. The samplers here:

* keep every patch fully inside its region (the dataset's footprint, intersected
  with a split's region: patches of different splits never overlap);
* put every patch on the dataset's pixel grid (whole pixels from the grid's
  origin, so that :mod:`geopeft.datasets.rasters` reads it with window reads), and
  optionally (``align``) on the files' internal tiles;
* shard themselves across distributed ranks: the rank and world size come from
  ``torch.distributed`` when it is initialised, or are passed explicitly. They
  are :class:`~torch.utils.data.DistributedSampler` instances, so Lightning does
  not wrap them again, and it calls :meth:`set_epoch` on them every epoch.

Sizes are in pixels (``units=Units.PIXELS``, the default) or CRS units, as in
TorchGeo. Samplers yield ``(slice(xmin, xmax), slice(ymin, ymax))``, which index
any TorchGeo dataset.
"""

import math
from collections.abc import Iterator

import numpy as np
import shapely
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler
from torchgeo.datasets import GeoDataset
from torchgeo.samplers import GeoSampler, Units

#: Patches are shrunk by this fraction of a pixel before the inside test, so that
#: patches flush with a region's edge count as inside despite rounding.
_EDGE_TOLERANCE = 1e-6

#: Random samplers enumerate every position when there are at most this many
#: (exact even for thin regions), and draw and reject beyond.
_ENUMERATE_LIMIT = 200_000


def distributed_shard(
    rank: int | None = None, world_size: int | None = None
) -> tuple[int, int]:
    """Resolve this process's rank and the world size.

    Args:
        rank: Rank given explicitly, or None.
        world_size: World size given explicitly, or None.

    Returns:
        ``(rank, world_size)``: those given, else torch.distributed's when it is
        initialised, else ``(0, 1)``.

    Raises:
        ValueError: If the rank is not in ``0 .. world_size - 1``.
    """
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if not 0 <= rank < world_size:
        msg = f'rank must be in 0..{world_size - 1}; got {rank}'
        raise ValueError(msg)
    return rank, world_size


def block_alignment(block: tuple[int, int], size: int | tuple[int, int]) -> int | None:
    """Patch-corner alignment that keeps patches on as few internal tiles as possible.

    Patches at least a tile wide start on tile corners (multiples of the tile);
    smaller patches on multiples of the greatest common divisor of tile and patch
    sides: with a patch that divides the tile (256 px in 512 px tiles) each patch
    lies inside one tile, and every pixel can still be drawn (snapping small
    patches to tile corners would only ever show each tile's corner).

    Args:
        block: ``(height, width)`` of the files' internal blocks.
        size: Patch side, or ``(height, width)``, in pixels.

    Returns:
        The alignment in pixels, or None when it would be 1 pixel or the files are
        not tiled in squares (striped files).
    """
    tile = block[0]
    if block[0] != block[1] or tile <= 1:
        return None
    sides = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(sides) >= tile:
        return tile
    align = math.gcd(tile, *sides)
    return align if align > 1 else None


def _pair(value: float | tuple[float, float]) -> tuple[float, float]:
    """``(height, width)`` from one value or a pair."""
    if isinstance(value, int | float):
        return float(value), float(value)
    return float(value[0]), float(value[1])


class _RegionSampler(GeoSampler, DistributedSampler):  # type: ignore[misc]
    """Shared state: the region, the grid, the patch size in pixels, the shard."""

    def __init__(
        self,
        dataset: GeoDataset,
        *,
        size: float | tuple[float, float],
        region: shapely.Geometry | None,
        units: Units,
        rank: int | None,
        world_size: int | None,
    ) -> None:
        """Resolve the region, the grid and the shard (see the subclasses)."""
        self.res = dataset.res
        height, width = _pair(size)
        if units == Units.CRS:
            height, width = height / self.res[1], width / self.res[0]
        if min(height, width) < 1 or not all(
            abs(v - round(v)) < 1e-6 for v in (height, width)
        ):
            msg = (
                f'patch size must be whole pixels >= 1; got {size} {units.name} at '
                f'res {self.res}'
            )
            raise ValueError(msg)
        self.size = (round(height), round(width))
        grid = getattr(dataset, 'grid', None)
        if grid is not None:
            self.origin = grid.origin
        else:
            x, y, _ = dataset.bounds
            self.origin = (float(x.start), float(y.stop))
        area = getattr(dataset, 'footprint', None)
        if area is None:
            area = dataset.index.geometry.union_all()
        if region is not None:
            area = shapely.intersection(area, region)
        self.region = area
        shapely.prepare(self.region)
        self.rank, self.num_replicas = distributed_shard(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which seeds the random draw of that epoch.

        Args:
            epoch: Epoch number.
        """
        self.epoch = epoch

    def _range(
        self, bounds: tuple[float, float, float, float], step: int
    ) -> tuple[int, int, int, int]:
        """Range of patch corners (in units of *step* pixels) inside bounds.

        Returns:
            ``(col_low, col_high, row_low, row_high)``, inclusive; empty when a
            low exceeds its high.
        """
        left, bottom, right, top = bounds
        xres, yres = self.res
        tol = _EDGE_TOLERANCE
        col_low = math.ceil((left - self.origin[0]) / xres / step - tol)
        col_high = math.floor(
            ((right - self.origin[0]) / xres - self.size[1]) / step + tol
        )
        row_low = math.ceil((self.origin[1] - top) / yres / step - tol)
        row_high = math.floor(
            ((self.origin[1] - bottom) / yres - self.size[0]) / step + tol
        )
        return col_low, col_high, row_low, row_high

    def _bounds(
        self, cols: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(left, bottom, right, top)`` arrays of patches by pixel corner."""
        xres, yres = self.res
        left = self.origin[0] + cols * xres
        top = self.origin[1] - rows * yres
        return left, top - self.size[0] * yres, left + self.size[1] * xres, top

    def _inside(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Which patches lie fully inside the region."""
        left, bottom, right, top = self._bounds(cols, rows)
        eps_x, eps_y = self.res[0] * _EDGE_TOLERANCE, self.res[1] * _EDGE_TOLERANCE
        boxes = shapely.box(left + eps_x, bottom + eps_y, right - eps_x, top - eps_y)
        return shapely.covers(self.region, boxes)

    def _slices(
        self, cols: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[slice, slice]]:
        """Patches as ``(x, y)`` slices."""
        left, bottom, right, top = self._bounds(cols, rows)
        for values in zip(left, right, bottom, top, strict=True):
            x0, x1, y0, y1 = map(float, values)
            yield slice(x0, x1), slice(y0, y1)

    def __len__(self) -> int:
        """Number of patches this rank yields per epoch."""
        return self.num_samples


class RandomRegionSampler(_RegionSampler):
    """Random patches fully inside a region, on the grid, sharded across ranks.

    Every epoch draws ``length`` patch positions uniformly among the positions
    that lie fully inside the region (the same draw on every rank, from the
    generator's seed and the epoch) and gives rank ``r`` positions ``r, r +
    world_size, ...``: the ranks' patches are different draws. Positions are
    whole pixels from the grid's origin, or whole multiples of ``align`` pixels
    (see :func:`block_alignment`: each patch then touches as few of the files'
    tiles as possible; fewer distinct positions).
    """

    def __init__(
        self,
        dataset: GeoDataset,
        *,
        size: float | tuple[float, float],
        length: int | None = None,
        region: shapely.Geometry | None = None,
        units: Units = Units.PIXELS,
        align: int | None = None,
        generator: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        """Initialize a new RandomRegionSampler instance.

        Args:
            dataset: Dataset to sample from (a :mod:`geopeft.datasets.rasters`
                dataset, whose grid and footprint are used, or any TorchGeo
                GeoDataset: its index's union and bounds).
            size: Patch size, one value or ``(height, width)``.
            length: Patches per epoch over all ranks (default: about as many as
                fit side by side in the region).
            region: Region the patches must lie inside (e.g. a split's), in the
                dataset's CRS; None for the whole footprint.
            units: Whether *size* is in pixels or CRS units.
            align: Put patch corners on multiples of this many pixels from the
                grid's origin; None for any pixel.
            generator: Seed of the draws; None takes ``torch.initial_seed()``
                (equal on all ranks after ``seed_everything``).
            rank: This process's rank (default: torch.distributed's, or 0).
            world_size: Number of ranks (default: torch.distributed's, or 1).

        Raises:
            ValueError: If no patch fits inside the region.
        """
        super().__init__(
            dataset,
            size=size,
            region=region,
            units=units,
            rank=rank,
            world_size=world_size,
        )
        self.align = align or 1
        self.seed = int(torch.initial_seed() if generator is None else generator)
        self.span = self._range(self.region.bounds, self.align)
        col_low, col_high, row_low, row_high = self.span
        positions = max(0, col_high - col_low + 1) * max(0, row_high - row_low + 1)
        self.candidates: tuple[np.ndarray, np.ndarray] | None = None
        if positions <= _ENUMERATE_LIMIT:
            cols, rows = np.meshgrid(
                np.arange(col_low, col_high + 1), np.arange(row_low, row_high + 1)
            )
            cols, rows = cols.ravel() * self.align, rows.ravel() * self.align
            inside = self._inside(cols, rows) if positions else np.zeros(0, bool)
            self.candidates = (cols[inside], rows[inside])
            fits = bool(inside.any())
        else:
            probe = np.random.default_rng(self.seed)
            fits = bool(self._draw(probe, 4096)[0].size)
        if not fits:
            msg = (
                f'no {self.size[0]}x{self.size[1]} px patch fits inside the region '
                f'{_describe(self.region.bounds)}'
                + (f' on multiples of align={align} px' if align else '')
                + ': lower patch_size (or align), or enlarge the region'
            )
            raise ValueError(msg)
        pixels = self.size[0] * self.size[1] * self.res[0] * self.res[1]
        self.length = length or max(1, int(self.region.area // pixels))
        self.num_samples = math.ceil(self.length / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def _draw(
        self, rng: np.random.Generator, count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw up to *count* positions and keep those inside the region."""
        col_low, col_high, row_low, row_high = self.span
        cols = rng.integers(col_low, col_high + 1, count) * self.align
        rows = rng.integers(row_low, row_high + 1, count) * self.align
        inside = self._inside(cols, rows)
        return cols[inside], rows[inside]

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's patch corners of all ranks, in grid pixels.

        Returns:
            ``(cols, rows)`` of ``total_size`` patches (rank ``r`` takes
            ``[r::world_size]``).
        """
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.candidates is not None:
            pick = rng.integers(0, len(self.candidates[0]), self.total_size)
            return self.candidates[0][pick], self.candidates[1][pick]
        cols: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        found, tries = 0, 0
        while found < self.total_size:
            batch = max(256, 2 * (self.total_size - found))
            new_cols, new_rows = self._draw(rng, batch)
            cols.append(new_cols)
            rows.append(new_rows)
            found += len(new_cols)
            tries += batch
            if tries > 1000 * self.total_size + 100_000 and found < self.total_size:
                msg = (
                    f'only {found} of {tries} random positions fit inside the region '
                    f'{_describe(self.region.bounds)}; lower patch_size or enlarge '
                    'the region'
                )
                raise ValueError(msg)
        return (
            np.concatenate(cols)[: self.total_size],
            np.concatenate(rows)[: self.total_size],
        )

    def __iter__(self) -> Iterator[tuple[slice, slice]]:
        """Yield this rank's patches of the epoch; the next epoch draws anew.

        Yields:
            ``(slice(xmin, xmax), slice(ymin, ymax))`` of each patch.
        """
        cols, rows = self.positions()
        step = slice(self.rank, None, self.num_replicas)
        self.epoch += 1
        yield from self._slices(cols[step], rows[step])


class GridRegionSampler(_RegionSampler):
    """A grid of patches fully inside a region, sharded across ranks.

    Over each part of the region (each polygon), patches start at its
    upper-left corner (snapped inwards to the grid) every ``stride`` pixels, plus
    one flush with its right and bottom edges, and only patches fully inside are
    kept: margins of irregular parts narrower than a patch are left out. Rank
    ``r`` takes patches ``r, r + world_size, ...``; with ``pad`` the list is
    first padded by repeating its first patches to a multiple of the world size
    (every rank then runs the same number of batches, as Lightning's
    ``DistributedSampler`` does), without ``pad`` the shards are disjoint.
    """

    def __init__(
        self,
        dataset: GeoDataset,
        *,
        size: float | tuple[float, float],
        stride: float | tuple[float, float] | None = None,
        region: shapely.Geometry | None = None,
        units: Units = Units.PIXELS,
        rank: int | None = None,
        world_size: int | None = None,
        pad: bool = True,
    ) -> None:
        """Initialize a new GridRegionSampler instance.

        Args:
            dataset: Dataset to sample from (see :class:`RandomRegionSampler`).
            size: Patch size, one value or ``(height, width)``.
            stride: Step between patches (default: *size*).
            region: Region the patches must lie inside, in the dataset's CRS; None
                for the whole footprint.
            units: Whether *size* and *stride* are in pixels or CRS units.
            rank: This process's rank (default: torch.distributed's, or 0).
            world_size: Number of ranks (default: torch.distributed's, or 1).
            pad: Repeat patches so that every rank gets as many.
        """
        super().__init__(
            dataset,
            size=size,
            region=region,
            units=units,
            rank=rank,
            world_size=world_size,
        )
        step = _pair(stride) if stride is not None else None
        if step is None:
            self.stride = self.size
        else:
            scale = (1.0, 1.0) if units == Units.PIXELS else (self.res[1], self.res[0])
            self.stride = (
                max(1, round(step[0] / scale[0])),
                max(1, round(step[1] / scale[1])),
            )
        self.pad = pad
        cols, rows = [], []
        parts = [p for p in shapely.get_parts(self.region) if p.area > 0]
        parts.sort(key=lambda p: (-p.bounds[3], p.bounds[0]))
        for part in parts:
            col_low, col_high, row_low, row_high = self._range(part.bounds, 1)
            if col_low > col_high or row_low > row_high:
                continue
            grid_cols = _steps(col_low, col_high, self.stride[1])
            grid_rows = _steps(row_low, row_high, self.stride[0])
            part_cols, part_rows = np.meshgrid(grid_cols, grid_rows)
            part_cols, part_rows = part_cols.ravel(), part_rows.ravel()
            inside = self._inside(part_cols, part_rows)
            cols.append(part_cols[inside])
            rows.append(part_rows[inside])
        self.cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        self.rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        count = len(self.cols)
        if pad:
            self.num_samples = math.ceil(count / self.num_replicas)
        else:
            self.num_samples = len(range(self.rank, count, self.num_replicas))
        self.total_size = self.num_samples * self.num_replicas

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's patch corners, in grid pixels.

        Returns:
            ``(cols, rows)`` of this rank's patches.
        """
        cols, rows = self.cols, self.rows
        if self.pad and len(cols) and len(cols) % self.num_replicas:
            extra = self.total_size - len(cols)
            reps = math.ceil(extra / len(cols))
            cols = np.concatenate([cols, np.tile(cols, reps)[:extra]])
            rows = np.concatenate([rows, np.tile(rows, reps)[:extra]])
        step = slice(self.rank, None, self.num_replicas)
        return cols[step], rows[step]

    def __iter__(self) -> Iterator[tuple[slice, slice]]:
        """Yield this rank's patches, row by row.

        Yields:
            ``(slice(xmin, xmax), slice(ymin, ymax))`` of each patch.
        """
        yield from self._slices(*self.positions())


def _steps(low: int, high: int, stride: int) -> np.ndarray:
    """``low, low + stride, ...`` up to *high*, plus *high* itself."""
    values = np.arange(low, high + 1, stride)
    if values[-1] != high:
        values = np.append(values, high)
    return values


def _describe(bounds: tuple[float, ...]) -> str:
    """Bounds rounded for messages."""
    return '(' + ', '.join(f'{v:.6g}' for v in bounds) + ')'
