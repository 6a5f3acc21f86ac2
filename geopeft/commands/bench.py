"""``geopeft bench peft``: PEFT methods side by side on one backbone.

Each method runs in a fresh subprocess so that peak memory is measured in
isolation: on CUDA the peak of ``torch.cuda.max_memory_allocated`` during the
training steps, on CPU the growth of the peak resident set size over the resident
size just before the first step (gradients, optimizer state and saved activations;
the weights themselves are excluded, they are the same for every method).
"""

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from .params import add_peft_arguments

DEFAULT_METHODS = ('full', 'linear', 'bitfit', 'lora', 'adapter', 'upetu')


def run_method(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Benchmark one method in a subprocess.

    Args:
        args: Parsed benchmark options.
        method: PEFT method name.

    Returns:
        The worker's measurements.

    Raises:
        RuntimeError: If the worker fails.
    """
    options = {
        'backbone': args.backbone,
        'method': method,
        'bits': args.bits,
        'hidden': args.hidden,
        'num_classes': args.num_classes,
        'in_channels': args.in_channels,
        'img_size': args.img_size,
        'batch_size': args.batch_size,
        'image_size': args.image_size,
        'steps': args.steps,
        'warmup': args.warmup,
        'device': args.device,
        'channels_last': args.channels_last,
    }
    proc = subprocess.run(
        [sys.executable, '-m', 'geopeft.commands.bench_worker', json.dumps(options)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        msg = f'benchmark of {method!r} failed:\n{proc.stderr[-3000:]}'
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render benchmark rows as a text table with ratios to full fine-tuning.

    Args:
        rows: One measurement dictionary per method.

    Returns:
        The table.
    """
    header = (
        f'{"method":<9}{"trainable %":>12}{"step ms":>10}{"x full":>8}'
        f'{"peak MB":>10}{"x full":>8}{"adapter bytes":>16}{"x full":>9}'
    )
    lines = [header, '-' * len(header)]
    for row in rows:
        lines.append(
            f'{row["method"]:<9}{row["trainable_percent"]:>12.3f}'
            f'{row["step_ms"]:>10.1f}{row.get("step_ratio", float("nan")):>8.2f}'
            f'{row["peak_mb"]:>10.1f}{row.get("memory_ratio", float("nan")):>8.2f}'
            f'{row["adapter_bytes"]:>16,}{row.get("adapter_ratio", float("nan")):>9.4f}'
        )
    return '\n'.join(lines)


def bench_peft(argv: Sequence[str]) -> int:
    """Run ``geopeft bench peft``.

    Args:
        argv: Arguments after ``bench peft``.

    Returns:
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft bench peft',
        description='Training step time, peak memory, trainable parameters and '
        'adapter size of PEFT methods side by side on one backbone (random '
        'weights, synthetic batch), each with its ratio to full fine-tuning.',
    )
    add_peft_arguments(parser)
    parser.set_defaults(backbone='convnext_tiny')
    parser.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS))
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--steps', type=int, default=5, help='timed steps')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--json', action='store_true', help='print JSON rows')
    args = parser.parse_args(argv)

    methods = list(dict.fromkeys(['full', *args.methods]))
    rows = []
    for method in methods:
        if not args.json:
            print(f'running {method} ...', file=sys.stderr, flush=True)
        rows.append(run_method(args, method))
    full = rows[0]
    for row in rows:
        row['step_ratio'] = row['step_ms'] / full['step_ms']
        row['memory_ratio'] = row['peak_mb'] / full['peak_mb']
        row['adapter_ratio'] = row['adapter_bytes'] / full['adapter_bytes']
    rows = [row for row in rows if row['method'] in args.methods]
    if args.json:
        print(json.dumps(rows))
    else:
        first = rows[0]
        print(
            f'{args.backbone}, batch {args.batch_size}, {args.image_size} px, '
            f'{args.steps} steps on {first["device"]} (torch {first["torch"]})'
        )
        print(format_table(rows))
    return 0


def main(argv: Sequence[str]) -> int:
    """Dispatch ``geopeft bench <name>``.

    Args:
        argv: Arguments after ``bench``.

    Returns:
        Exit status.
    """
    benches = {'peft': bench_peft}
    if not argv or argv[0] not in benches:
        print(
            f'usage: geopeft bench {{{",".join(benches)}}} [options]', file=sys.stderr
        )
        return 2
    return benches[argv[0]](argv[1:])
