"""``geopeft bench sampling``: patches per second, geopeft vs plain TorchGeo.

Random patches are read from the same rasters by:

* ``torchgeo``: TorchGeo 0.10's ``RasterDataset`` with ``RandomGeoSampler``
  (the baseline every ratio is relative to);
* ``geopeft``: :class:`~geopeft.datasets.RasterImages` with
  :class:`~geopeft.samplers.RandomRegionSampler` (one window read per file);
* ``geopeft+aligned``: the same with patch corners aligned with the files'
  internal tiles (:func:`~geopeft.samplers.block_alignment`, the data modules'
  ``block_aligned``: 256 px patches on multiples of 256 px in 512 px tiles, each
  inside one tile);
* ``raw``: ``rasterio`` window reads of random windows inside one open file, no
  dataset, no tensor: the ceiling.

The datasets run through a ``DataLoader`` (``--batch-size``, ``--workers``;
TorchGeo's ``stack_samples``), so rates include collation. Two sets of rasters:
one large tiled GeoTIFF and a mosaic of many files, generated on first use into
``--cache-dir`` (3-band uint16, DEFLATE, tiled, a smooth field plus noise that
compresses about as well as a real scene) or given with ``--raster`` and
``--mosaic`` (e.g. real data). Methods run in rotating order ``--repeats`` times
and each rate is the median.

Each set is measured with three GDAL block caches (``--cache``): ``cold``, 64 MB,
so that tiles decoded for one patch are rarely there for the next (data much
larger than memory: decoding dominates); ``default``, GDAL's own default (5 % of
the physical memory), each timed run starting with fresh handles and so an empty
cache (what a user gets without tuning GDAL: the first pass over rasters that fit
in it, tiles decoded once and then reused by later patches); and ``warm``, large
enough for every decoded tile, each method having read all pixels once through its
own handles before timing (a scene revisited every epoch: the per-patch overhead of
each method dominates). Each setting opens fresh handles, which (but for
``default``) stay open across repeats, as in training.
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import rasterio
import torch
from rasterio.errors import RasterioError
from rasterio.transform import from_origin
from rasterio.windows import Window
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import RandomGeoSampler

from ..datasets import RasterImages, find_raster_files
from ..samplers import GridRegionSampler, RandomRegionSampler, block_alignment
from .bench_sampling_real import real_sets
from .results import add_record_argument, save_command_record

#: GDAL block-cache settings, in table order.
CACHES = ('cold', 'default', 'warm')

#: The methods, in table order.
METHODS = ('torchgeo', 'geopeft', 'geopeft+aligned', 'raw')

#: Keys of every row.
ROW_KEYS = (
    'rasters',
    'files',
    'cache',
    'method',
    'samples',
    'seconds',
    'samples_per_s',
    'vs_torchgeo',
    'vs_raw',
)

#: Columns of a ``--record`` result record: the printed table's, in order.
RECORD_COLUMNS = (
    'rasters',
    'files',
    'cache',
    'method',
    'samples_per_s',
    'vs_torchgeo',
    'vs_raw',
)

#: GDAL block cache (MB) of the cold runs: a small fraction of the rasters.
COLD_CACHE_MB = 64

#: CRS and pixel size of the generated rasters (UTM 31N, 30 m like Landsat).
_CRS = 'EPSG:32631'
_RES = 30.0
_ORIGIN = (300_000.0, 5_000_000.0)


def _scene_block(
    rows: np.ndarray, cols: np.ndarray, bands: int, rng: np.random.Generator
) -> np.ndarray:
    """A smooth field plus noise at absolute pixel positions (uint16)."""
    y = rows.reshape(1, -1, 1).astype(np.float32)
    x = cols.reshape(1, 1, -1).astype(np.float32)
    band = np.arange(bands, dtype=np.float32).reshape(-1, 1, 1)
    field = (
        2000
        + 700 * np.sin(x / 310 + band)
        + 500 * np.cos(y / 470 - band)
        + 300 * np.sin((x + y) / 97)
    )
    noise = rng.normal(0, 40, field.shape).astype(np.float32)
    return np.clip(field + noise, 0, 65535).astype(np.uint16)


def write_scene(
    path: Path,
    *,
    size: int,
    tile: int,
    bands: int = 3,
    origin: tuple[float, float] = _ORIGIN,
    seed: int = 0,
) -> Path:
    """Write one tiled, DEFLATE-compressed uint16 GeoTIFF of the benchmark.

    Written block row by block row (memory stays at one row of tiles).

    Args:
        path: Output file.
        size: Side in pixels.
        tile: Internal tile side (a multiple of 16).
        bands: Number of bands.
        origin: ``(left, top)`` of the upper-left corner.
        seed: Seed of the noise.

    Returns:
        *path*.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix('.partial.tif')
    rng = np.random.default_rng(seed)
    row0 = round((_ORIGIN[1] - origin[1]) / _RES)
    col0 = round((origin[0] - _ORIGIN[0]) / _RES)
    profile = {
        'driver': 'GTiff',
        'width': size,
        'height': size,
        'count': bands,
        'dtype': 'uint16',
        'crs': _CRS,
        'transform': from_origin(origin[0], origin[1], _RES, _RES),
        'compress': 'deflate',
        'tiled': True,
        'blockxsize': tile,
        'blockysize': tile,
    }
    with rasterio.open(partial, 'w', **profile) as dst:
        for top in range(0, size, tile):
            height = min(tile, size - top)
            block = _scene_block(
                np.arange(row0 + top, row0 + top + height),
                np.arange(col0, col0 + size),
                bands,
                rng,
            )
            dst.write(block, window=Window(0, top, size, height))
    os.replace(partial, path)
    return path


def generated_scene(cache_dir: Path, *, size: int, tile: int, log: bool = False) -> str:
    """The benchmark's single large raster, generated once into *cache_dir*.

    Args:
        cache_dir: Folder of the generated files (reused when present).
        size: Side of the raster in pixels.
        tile: Internal tile side.
        log: Print progress to stderr.

    Returns:
        The file.
    """
    path = cache_dir / f'scene_{size}_t{tile}.tif'
    if not path.exists():
        if log:
            print(f'writing {path} ...', file=sys.stderr, flush=True)
        write_scene(path, size=size, tile=tile)
    return str(path)


def generated_mosaic(
    cache_dir: Path,
    *,
    grid: tuple[int, int],
    size: int,
    tile: int,
    log: bool = False,
) -> list[str]:
    """The benchmark's mosaic, generated once into *cache_dir*.

    Args:
        cache_dir: Folder of the generated files (reused when present).
        grid: ``(rows, cols)`` of files, edge to edge.
        size: Side of each file in pixels.
        tile: Internal tile side.
        log: Print progress to stderr.

    Returns:
        The files, row by row.
    """
    rows, cols = grid
    folder = cache_dir / f'mosaic_{rows}x{cols}_{size}_t{tile}'
    if log and not (folder / f'tile_{rows - 1}_{cols - 1}.tif').exists():
        print(f'writing {rows * cols} files into {folder} ...', file=sys.stderr)
    paths = []
    for row in range(rows):
        for col in range(cols):
            path = folder / f'tile_{row}_{col}.tif'
            if not path.exists():
                origin = (
                    _ORIGIN[0] + col * size * _RES,
                    _ORIGIN[1] - row * size * _RES,
                )
                write_scene(
                    path, size=size, tile=tile, origin=origin, seed=row * cols + col
                )
            paths.append(str(path))
    return paths


def _loader_rate(
    dataset: Any, sampler: Any, batch_size: int, workers: int, warmup: int
) -> tuple[int, float]:
    """Samples and seconds through a DataLoader, after *warmup* batches."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=stack_samples,
    )
    count, start = 0, None
    for index, batch in enumerate(loader):
        if index == warmup:
            start = time.perf_counter()
            count = 0
        count += len(batch['image'])
    if start is None:
        msg = f'the sampler gave no batch after {warmup} warm-up batch(es)'
        raise ValueError(msg)
    return count, time.perf_counter() - start


class _Methods:
    """The methods on one set of rasters: datasets and raw handles kept open.

    Handles stay open across repeats, so that GDAL's block cache (per handle)
    carries over as it does in training.
    """

    def __init__(self, files: Sequence[str], args: argparse.Namespace) -> None:
        self.files = list(files)
        self.args = args
        batches = args.samples // args.batch_size
        self.timed = batches * args.batch_size
        self.length = (batches + args.warmup) * args.batch_size
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            self.torchgeo = RasterDataset(paths=self.files)
        self.ours = RasterImages(self.files)
        self.align = block_alignment(self.ours.layer.block, args.patch_size)
        self.handles = [rasterio.open(f) for f in self.files]

    def close(self) -> None:
        """Close the raw handles."""
        for src in self.handles:
            src.close()

    def decoded_mb(self) -> float:
        """Size of all the files' pixels once decoded, in MB."""
        total = sum(
            src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
            for src in self.handles
        )
        return total / 2**20

    def warm_up(self) -> None:
        """Read every pixel once through each method's own handles (untimed)."""
        for src in self.handles:
            tile = src.block_shapes[0][0]
            for top in range(0, src.height, tile):
                height = min(tile, src.height - top)
                src.read(window=Window(0, top, src.width, height))
        x, y, _ = self.ours.bounds
        side = int(min(1024, (x.stop - x.start) / x.step, (y.stop - y.start) / y.step))
        for dataset in (self.torchgeo, self.ours):
            for index in GridRegionSampler(self.ours, size=side):
                dataset[index]

    def reopen(self, method: str) -> None:
        """Give *method* fresh handles: its next run starts from an empty cache."""
        if method == 'torchgeo':
            # TorchGeo keeps its handles in a class-level LRU cache: drop them.
            RasterDataset._cached_load_warp_file.cache_clear()
            gc.collect()
        elif method == 'raw':
            self.close()
            self.handles = [rasterio.open(f) for f in self.files]
        else:
            self.ours.layer.close()

    def run(self, method: str, repeat: int) -> tuple[int, float]:
        """Time one method: (samples, seconds)."""
        args = self.args
        seed = args.seed + repeat
        if method == 'raw':
            return self._raw(seed)
        if method == 'torchgeo':
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                sampler = RandomGeoSampler(
                    self.torchgeo,
                    size=args.patch_size,
                    length=self.length,
                    generator=torch.Generator().manual_seed(seed),
                )
            dataset: Any = self.torchgeo
        else:
            sampler = RandomRegionSampler(
                self.ours,
                size=args.patch_size,
                length=self.length,
                align=self.align if method == 'geopeft+aligned' else None,
                generator=seed,
            )
            dataset = self.ours
        return _loader_rate(
            dataset, sampler, args.batch_size, args.workers, args.warmup
        )

    def _raw(self, seed: int) -> tuple[int, float]:
        """Random window reads inside random open files (no dataset, no tensor)."""
        patch = self.args.patch_size
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        for _ in range(self.timed):
            src = self.handles[int(rng.integers(len(self.handles)))]
            col = int(rng.integers(0, src.width - patch + 1))
            row = int(rng.integers(0, src.height - patch + 1))
            src.read(window=Window(col, row, patch, patch))
        return self.timed, time.perf_counter() - start


def sampling_rows(
    argv: Sequence[str] = (), *, log: bool = False
) -> list[dict[str, Any]]:
    """Measure every method on every set of rasters of a command line.

    Args:
        argv: Arguments after ``bench sampling`` (``--json`` is ignored).
        log: Print progress to stderr.

    Returns:
        One row per (rasters, method) with the keys of :data:`ROW_KEYS`.
    """
    args = parse_args(argv)
    cache = Path(args.cache_dir)
    made: tuple[str, list[str]] | None = None
    if args.from_raster is not None and (args.raster is None or args.mosaic is None):
        made = real_sets(
            args.from_raster,
            cache,
            size=args.size,
            tile=args.tile,
            grid=tuple(args.mosaic_grid),
            mosaic_size=args.mosaic_tile_size,
            log=log,
        )
    if args.raster is not None:
        single = find_raster_files(args.raster)
    elif made is not None:
        single = [made[0]]
    else:
        single = [generated_scene(cache, size=args.size, tile=args.tile, log=log)]
    if args.mosaic is not None:
        mosaic = find_raster_files(args.mosaic)
    elif made is not None:
        mosaic = made[1]
    else:
        mosaic = generated_mosaic(
            cache,
            grid=tuple(args.mosaic_grid),
            size=args.mosaic_tile_size,
            tile=args.tile,
            log=log,
        )
    sets = {'single': single, 'mosaic': mosaic}
    rows = []
    for name, files in sets.items():
        for cache in args.cache:
            # Fresh handles for each cache setting: none starts with the blocks
            # another setting decoded.
            methods = _Methods(files, args)
            try:
                rows += _measure(name, cache, methods, log=log)
            finally:
                methods.close()
    return rows


def default_cache_mb() -> int:
    """GDAL's default block cache: 5 % of the physical memory, in MB."""
    return int(0.05 * psutil.virtual_memory().total / 2**20)


def _measure(
    name: str, cache: str, methods: _Methods, *, log: bool
) -> list[dict[str, Any]]:
    """The rows of one set of rasters with one GDAL block-cache setting."""
    args = methods.args
    cache_mb = COLD_CACHE_MB
    if cache == 'default':
        # Set explicitly: an earlier setting of this process may have changed it.
        cache_mb = default_cache_mb()
    if cache == 'warm':
        # Every method's handles hold their own copy of the decoded blocks.
        cache_mb = int(3 * methods.decoded_mb() * 1.1) + COLD_CACHE_MB
    rates: dict[str, list[tuple[int, float]]] = {m: [] for m in METHODS}
    # rasterio.Env passes an integer GDAL_CACHEMAX to GDAL in bytes, not MB.
    with rasterio.Env(GDAL_CACHEMAX=cache_mb * 2**20):
        if cache == 'warm':
            if log:
                print(f'{name}: warming the caches ...', file=sys.stderr, flush=True)
            methods.warm_up()
        for repeat in range(args.repeats):
            shift = repeat % len(METHODS)
            for method in METHODS[shift:] + METHODS[:shift]:
                if log:
                    print(
                        f'{name}, {cache} cache: {method} (repeat {repeat + 1}/'
                        f'{args.repeats}) ...',
                        file=sys.stderr,
                        flush=True,
                    )
                if cache == 'default':
                    methods.reopen(method)
                rates[method].append(methods.run(method, repeat))
    per_s = {
        m: statistics.median(n / s for n, s in values) for m, values in rates.items()
    }
    return [
        {
            'rasters': name,
            'files': len(methods.files),
            'cache': cache,
            'method': method,
            'samples': rates[method][0][0],
            'seconds': statistics.median(s for _, s in rates[method]),
            'samples_per_s': per_s[method],
            'vs_torchgeo': per_s[method] / per_s['torchgeo'],
            'vs_raw': per_s[method] / per_s['raw'],
        }
        for method in METHODS
    ]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render the rows as a text table.

    Args:
        rows: Rows from :func:`sampling_rows`.

    Returns:
        The table.
    """
    header = (
        f'{"rasters":<15}{"cache":<8}{"method":<17}{"samples/s":>10}'
        f'{"x torchgeo":>12}{"x raw":>8}'
    )
    lines = [header, '-' * len(header)]
    for row in rows:
        rasters = f'{row["rasters"]} ({row["files"]})'
        lines.append(
            f'{rasters:<15}{row["cache"]:<8}{row["method"]:<17}'
            f'{row["samples_per_s"]:>10.1f}{row["vs_torchgeo"]:>12.2f}'
            f'{row["vs_raw"]:>8.2f}'
        )
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``geopeft bench sampling``.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft bench sampling',
        description="Random patches per second from the same rasters: geopeft's "
        "raster dataset and sampler vs TorchGeo's RasterDataset + "
        'RandomGeoSampler, with raw rasterio window reads as the ceiling.',
    )
    parser.add_argument(
        '--raster', nargs='+', default=None, help='a large raster (default: generated)'
    )
    parser.add_argument(
        '--mosaic',
        nargs='+',
        default=None,
        help='mosaic files or their folder (default: generated)',
    )
    parser.add_argument(
        '--cache-dir',
        default=os.path.join(
            os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
            'geopeft',
            'bench_sampling',
        ),
        help='where generated rasters are written and reused',
    )
    parser.add_argument(
        '--from',
        dest='from_raster',
        default=None,
        metavar='RASTER',
        help='build both sets from this real raster (mirror-tiled, 3 bands, uint16; '
        'e.g. a Landsat scene) instead of generated noise',
    )
    parser.add_argument('--size', type=int, default=8192, help='single raster side')
    parser.add_argument('--tile', type=int, default=512, help='internal tile side')
    parser.add_argument(
        '--mosaic-grid',
        type=int,
        nargs=2,
        default=[10, 10],
        metavar=('ROWS', 'COLS'),
        help='files of the generated mosaic',
    )
    parser.add_argument(
        '--mosaic-tile-size', type=int, default=1024, help='side of each mosaic file'
    )
    parser.add_argument('--patch-size', type=int, default=256)
    parser.add_argument(
        '--samples', type=int, default=512, help='timed samples per method'
    )
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2, help='untimed batches')
    parser.add_argument('--workers', type=int, default=0, help='DataLoader workers')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--cache',
        nargs='+',
        choices=CACHES,
        default=list(CACHES),
        help=f'cold: GDAL block cache of {COLD_CACHE_MB} MB, decoded tiles rarely '
        "reused (data much larger than memory); default: GDAL's default cache (5 %% "
        'of the memory), empty at the start of each timed run (fresh handles); '
        'warm: a cache that holds every decoded tile, read once through each '
        'method before timing',
    )
    parser.add_argument('--json', action='store_true', help='print JSON rows')
    add_record_argument(parser)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check ``geopeft bench sampling`` arguments.

    Args:
        argv: Arguments after ``bench sampling``.

    Returns:
        The options.
    """
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if min(args.samples, args.batch_size, args.repeats, args.patch_size) < 1:
        parser.error('--samples, --batch-size, --repeats, --patch-size must be >= 1')
    if args.samples < args.batch_size:
        parser.error('--samples must be at least --batch-size')
    if args.warmup < 0 or args.workers < 0:
        parser.error('--warmup and --workers must be >= 0')
    if args.patch_size > min(args.size, args.mosaic_tile_size):
        parser.error('--patch-size must fit in --size and --mosaic-tile-size')
    if args.from_raster is not None and not Path(args.from_raster).is_file():
        parser.error(f'--from {args.from_raster}: no such file')
    return args


def main(argv: Sequence[str]) -> int:
    """Run ``geopeft bench sampling``: print a table, or JSON rows with --json.

    Args:
        argv: Arguments after ``bench sampling``.

    Returns:
        The exit status (0).
    """
    args = parse_args(argv)
    try:
        rows = sampling_rows(argv, log=not args.json)
    except (ValueError, RasterioError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    setting = (
        f'{args.patch_size} px random patches, batch {args.batch_size}, '
        f'{args.workers} worker(s), median of {args.repeats} run(s) of '
        f'{args.samples // args.batch_size * args.batch_size} samples'
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(setting)
        print(format_table(rows))
    if args.record is not None:
        made = 'generated'
        if args.from_raster is not None:
            made = f'made from {Path(args.from_raster).name}'
        single = ' '.join(args.raster) if args.raster else made
        mosaic = ' '.join(args.mosaic) if args.mosaic else made
        dataset = f'single: {single}; mosaic: {mosaic}'
        if args.raster is None and args.mosaic is None:
            dataset = f'{made} rasters'
        save_command_record(
            args,
            build_parser(),
            experiment='bench_sampling',
            command=['bench', 'sampling', *argv],
            title='Sampling random patches: geopeft vs TorchGeo vs raw window reads',
            dataset=dataset,
            columns=RECORD_COLUMNS,
            rows=rows,
            device='cpu',
            notes=f'{setting}; rasterio {rasterio.__version__}, GDAL '
            f'{rasterio.__gdal_version__}.',
        )
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
