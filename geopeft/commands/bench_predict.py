"""``geopeft bench predict``: what whole-scene prediction costs beyond the model.

One model (by default an SMP U-Net on ResNet-18 with random weights, 3 bands, 2
classes) predicts over generated scenes of each size (2048 and 8192 pixels square
by default; tiled, DEFLATE-compressed 8-bit GeoTIFFs written once into
``--data-dir``). Each size runs in its own subprocess
(``geopeft/commands/bench_predict_worker.py``), which reports

* the **overhead**: the end-to-end time of :func:`~geopeft.predict.predict_raster`
  (reading, inference, blending, writing the GeoTIFF) over the time of the model's
  forward passes alone on exactly the chips it ran, in the same batches, measured
  in the same process (the mean of a pass before and one after the prediction);
  the **CPU overhead** is the same ratio of process CPU time;
* the **peak resident set size** of the process (``ru_maxrss``), which must not
  grow with the scene: the prediction holds strips, never the scene.

The issue's targets: overhead <= 1.15 at 8192 pixels, and peak RSS at 8192 at most
200 MB above that at 2048.
"""

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from ..io import atomic_output
from .results import add_record_argument, save_command_record
from .workers import run_worker

#: Scene sides measured by default, in pixels.
DEFAULT_SIZES = (2048, 8192)
#: Largest end-to-end time over pure model time at the largest size.
TARGET_OVERHEAD = 1.15
#: Largest growth of the peak resident set from the smallest to the largest size.
TARGET_GROWTH_MB = 200.0
#: Columns of a ``--record`` result record: the printed table's, in order.
RECORD_COLUMNS = (
    'size',
    'chips',
    'seconds',
    'model_seconds',
    'overhead',
    'cpu_overhead',
    'in_run_model_seconds',
    'peak_rss_mb',
    'growth_mb',
)


def scene_path(data_dir: Path, size: int, bands: int, dtype: str, tile: int) -> Path:
    """Where the generated scene of *size* pixels lives.

    Args:
        data_dir: Folder of generated scenes.
        size: Side in pixels.
        bands: Bands.
        dtype: ``'uint8'`` or ``'uint16'``.
        tile: Internal tile side.

    Returns:
        The path (the file may not exist yet).
    """
    return data_dir / f'scene_{size}px_{bands}b_{dtype}_tile{tile}.tif'


def make_scene(
    path: Path, size: int, *, bands: int = 3, dtype: str = 'uint8', tile: int = 512
) -> Path:
    """Write a synthetic, compressible scene, one block-row at a time.

    Smooth waves of a few hundred pixels plus a little seeded noise: it compresses
    like imagery, not like white noise. The file appears complete or not at all.

    Args:
        path: Output GeoTIFF.
        size: Side in pixels.
        bands: Bands.
        dtype: ``'uint8'`` or ``'uint16'``.
        tile: Internal tile side.

    Returns:
        *path*.
    """
    rng = np.random.default_rng(0)
    high = 255 if dtype == 'uint8' else 4095
    cols = np.arange(size)
    profile = {
        'driver': 'GTiff',
        'width': size,
        'height': size,
        'count': bands,
        'dtype': dtype,
        'crs': 'EPSG:32631',
        'transform': from_origin(500_000.0, 4_000_000.0, 1.0, 1.0),
        'tiled': True,
        'blockxsize': tile,
        'blockysize': tile,
        'compress': 'deflate',
        'predictor': 2,
        'bigtiff': 'if_safer',
    }
    with (
        atomic_output(path) as temporary,
        rasterio.open(temporary, 'w', **profile) as dst,
    ):
        for top in range(0, size, tile):
            rows = np.arange(top, min(top + tile, size))[:, None]
            block = np.empty((bands, len(rows), size), dtype=dtype)
            for band in range(bands):
                wave = np.sin(rows / (97 + 31 * band)) * np.cos(
                    cols / (149 + 17 * band)
                )
                noise = rng.normal(0, 0.05, (len(rows), size))
                block[band] = np.clip((0.5 + 0.4 * wave + noise) * high, 0, high)
            dst.write(block, window=Window(0, top, size, len(rows)))
    return path


def run_size(args: argparse.Namespace, scene: Path) -> dict[str, Any]:
    """Measure one scene in a fresh subprocess.

    Args:
        args: Parsed ``geopeft bench predict`` options.
        scene: The scene's GeoTIFF.

    Returns:
        The worker's measurements.

    Raises:
        RuntimeError: If the worker fails.
    """
    options = {
        'scene': str(scene),
        'arch': args.arch,
        'encoder': args.encoder,
        'in_channels': args.bands,
        'classes': args.classes,
        'chip_size': args.chip_size,
        'overlap': args.overlap,
        'batch_size': args.batch_size,
        'device': args.device,
        'precision': args.precision,
        'threads': args.threads,
    }
    return run_worker('geopeft.commands.bench_predict_worker', options, scene.name)


def bench_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Generate the scenes (once) and measure each size in its own process.

    Args:
        args: Parsed ``geopeft bench predict`` options.

    Returns:
        One row per size, in the order given, each with ``growth_mb``: its peak
        resident set minus that of the smallest size.
    """
    rows = []
    data_dir = Path(args.data_dir)
    for size in args.sizes:
        scene = scene_path(data_dir, size, args.bands, args.dtype, args.tile)
        if not scene.exists():
            if not args.json:
                print(f'generating {scene} ...', file=sys.stderr, flush=True)
            make_scene(scene, size, bands=args.bands, dtype=args.dtype, tile=args.tile)
        if not args.json:
            print(f'predicting over {size} x {size} ...', file=sys.stderr, flush=True)
        rows.append(run_size(args, scene))
    smallest = min(rows, key=lambda row: row['size'])
    for row in rows:
        row['growth_mb'] = row['peak_rss_mb'] - smallest['peak_rss_mb']
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render the rows as a text table.

    ``model s`` is the pure model time (mean of the passes before and after the
    prediction), ``in-run model s`` the time inside model calls during the
    prediction itself: the end-to-end time minus it is what reading, blending and
    writing added on the main thread.

    Args:
        rows: Measurements, one per size.

    Returns:
        The table.
    """
    header = (
        f'{"scene px":>10}{"chips":>8}{"end-to-end s":>14}{"model s":>10}'
        f'{"overhead":>10}{"CPU overhead":>14}{"in-run model s":>16}'
        f'{"peak RSS MB":>13}{"growth MB":>11}'
    )
    lines = [header, '-' * len(header)]
    for row in rows:
        cpu, in_run = row.get('cpu_overhead'), row.get('in_run_model_seconds')
        lines.append(
            f'{row["size"]:>10}{row["chips"]:>8}{row["seconds"]:>14.1f}'
            f'{row["model_seconds"]:>10.1f}{row["overhead"]:>10.3f}'
            f'{"-" if cpu is None else f"{cpu:.3f}":>14}'
            f'{"-" if in_run is None else f"{in_run:.1f}":>16}'
            f'{row["peak_rss_mb"]:>13.0f}{row["growth_mb"]:>11.0f}'
        )
    return '\n'.join(lines)


def check_targets(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Compare the largest size's figures with the issue's targets.

    Args:
        rows: Measurements, one per size.

    Returns:
        One line per target: the figure, the target, met or not.
    """
    largest = max(rows, key=lambda row: row['size'])
    smallest = min(rows, key=lambda row: row['size'])
    overhead, growth = largest['overhead'], largest['growth_mb']
    return [
        f'overhead at {largest["size"]} px: {overhead:.3f} (target <= '
        f'{TARGET_OVERHEAD}): {"met" if overhead <= TARGET_OVERHEAD else "NOT met"}',
        f'peak RSS at {largest["size"]} px - at {smallest["size"]} px: '
        f'{growth:.0f} MB (target <= {TARGET_GROWTH_MB:.0f} MB): '
        f'{"met" if growth <= TARGET_GROWTH_MB else "NOT met"}',
    ]


def build_parser() -> argparse.ArgumentParser:
    """The ``geopeft bench predict`` argument parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft bench predict',
        description='End-to-end time of whole-scene prediction over the pure model '
        'time on the same chips, and peak resident memory, per scene size (each in '
        'its own process).',
    )
    parser.add_argument(
        '--sizes', type=int, nargs='+', default=list(DEFAULT_SIZES), help='scene px'
    )
    parser.add_argument(
        '--model', '--arch', dest='arch', default='unet', help='SMP architecture'
    )
    parser.add_argument(
        '--backbone',
        '--encoder',
        dest='encoder',
        default='resnet18',
        help="the encoder (SMP's name)",
    )
    parser.add_argument('--bands', type=int, default=3)
    parser.add_argument('--classes', type=int, default=2)
    parser.add_argument('--dtype', choices=['uint8', 'uint16'], default='uint8')
    parser.add_argument('--tile', type=int, default=512, help="scenes' tile side")
    parser.add_argument('--chip-size', type=int, default=512)
    parser.add_argument('--overlap', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda'")
    parser.add_argument('--precision', choices=['auto', '32', 'bf16'], default='auto')
    parser.add_argument('--threads', type=int, default=None, help='torch threads')
    parser.add_argument(
        '--data-dir',
        default=str(Path(tempfile.gettempdir()) / 'geopeft-bench-predict'),
        help='where the generated scenes are kept (reused)',
    )
    parser.add_argument('--json', action='store_true', help='print JSON rows')
    add_record_argument(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``geopeft bench predict``.

    Args:
        argv: Arguments after ``bench predict``.

    Returns:
        Exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    rows = bench_rows(args)
    first = rows[0]
    setting = (
        f'{args.arch} / {args.encoder} (random weights), {args.bands} bands, '
        f'{args.classes} classes; chips {args.chip_size} px, overlap {args.overlap}, '
        f'batch {args.batch_size}; {first["device"]} ({first["precision"]}), '
        f'{first["threads"]} thread(s), torch {first["torch"]}'
    )
    if args.json:
        print(json.dumps(rows))
    else:
        print(setting)
        print(format_table(rows))
        for line in check_targets(rows):
            print(line)
    if args.record is not None:
        sizes = ', '.join(str(size) for size in args.sizes)
        save_command_record(
            args,
            parser,
            experiment='bench_predict',
            command=['bench', 'predict', *argv],
            title='Whole-scene prediction: overhead over the model and peak memory',
            dataset=f'generated {sizes} px scenes, {args.arch} / {args.encoder}',
            columns=RECORD_COLUMNS,
            rows=rows,
            device=first['device'],
            notes=f'{setting}.\n\n' + '; '.join(check_targets(rows)) + '.',
        )
    return 0
