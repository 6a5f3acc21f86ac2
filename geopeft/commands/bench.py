"""``geopeft bench peft``: PEFT methods side by side on one backbone.

Each variant (a method with a training setting: activation checkpointing, precision)
runs in a fresh subprocess so that peak memory is measured in isolation: on CUDA the
peak of ``torch.cuda.max_memory_allocated`` during the training steps, on CPU the
growth of the peak resident set size over the resident size just before the first
step (gradients, optimizer state and saved activations; the weights themselves are
excluded, they are the same for every method). On CPU the resident set also holds
freed memory that malloc keeps for reuse, so the worker reports the peak of live
heap bytes as well (``live_mb``; on CUDA it equals ``peak_mb``).

Every row is compared with full fine-tuning at the base setting, measured in the
same invocation. ``--compare`` and ``--variants`` add rows with checkpointing or
bfloat16 autocast, and ``--repeats`` runs all variants several times in rotating
order and keeps the median of each measurement, so that ratios come from one run
on the same (possibly noisy) machine.
"""

import argparse
import importlib
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..peft import METHODS
from .params import add_peft_arguments
from .results import add_record_argument, save_command_record
from .workers import run_worker

DEFAULT_METHODS = ('full', 'linear', 'bitfit', 'lora', 'adapter', 'upetu')
#: Modifiers of a variant: activation checkpointing, bfloat16 autocast.
MODIFIERS = ('ckpt', 'bf16')
#: Measurements merged over repeats by their median.
_MEASURED = (
    'step_ms',
    'forward_ms',
    'backward_ms',
    'optimizer_ms',
    'cpu_ms',
    'peak_mb',
    'live_mb',
    'saved_mb',
)
#: Ratio to full fine-tuning: (row key, measurement).
_RATIOS = (
    ('step_ratio', 'step_ms'),
    ('cpu_ratio', 'cpu_ms'),
    ('memory_ratio', 'peak_mb'),
    ('live_ratio', 'live_mb'),
    ('adapter_ratio', 'adapter_bytes'),
)


#: Columns of a ``--record`` result record: the printed tables' columns, in order.
RECORD_COLUMNS = (
    'variant',
    'trainable_percent',
    'step_ms',
    'step_ratio',
    'peak_mb',
    'memory_ratio',
    'live_mb',
    'live_ratio',
    'adapter_bytes',
    'adapter_ratio',
    'forward_ms',
    'backward_ms',
    'optimizer_ms',
    'cpu_ms',
    'cpu_ratio',
    'saved_mb',
)


@dataclass(frozen=True)
class Variant:
    """A PEFT method with a training setting.

    Attributes:
        method: PEFT method name.
        grad_checkpointing: Checkpoint the backbone's blocks.
        precision: ``'32'`` or ``'bf16'`` (bfloat16 autocast of forward + loss).
    """

    method: str
    grad_checkpointing: bool = False
    precision: str = '32'

    @property
    def label(self) -> str:
        """``method[+ckpt][+bf16]``."""
        label = self.method
        if self.grad_checkpointing:
            label += '+ckpt'
        if self.precision == 'bf16':
            label += '+bf16'
        return label

    def with_modifiers(self, modifiers: Sequence[str]) -> 'Variant':
        """Return this variant with checkpointing and/or bf16 switched on.

        Args:
            modifiers: Items of :data:`MODIFIERS`.

        Returns:
            The new variant.
        """
        return Variant(
            self.method,
            grad_checkpointing=self.grad_checkpointing or 'ckpt' in modifiers,
            precision='bf16' if 'bf16' in modifiers else self.precision,
        )


def parse_modifiers(text: str) -> list[str]:
    """Split ``'ckpt+bf16'`` into modifiers.

    Args:
        text: ``+``-separated items of :data:`MODIFIERS`.

    Returns:
        The modifiers.

    Raises:
        ValueError: If one is unknown.
    """
    modifiers = [item for item in text.split('+') if item]
    unknown = [item for item in modifiers if item not in MODIFIERS]
    if unknown or not modifiers:
        msg = f'{text!r}: modifiers are {" and ".join(MODIFIERS)}, joined by "+"'
        raise ValueError(msg)
    return modifiers


def parse_variant(text: str, base: Variant) -> Variant:
    """Parse ``METHOD[+ckpt][+bf16]`` on top of a base setting.

    Args:
        text: The variant, e.g. ``'upetu+ckpt'``.
        base: Setting of a plain method (its ``method`` is ignored).

    Returns:
        The variant.

    Raises:
        ValueError: If the method or a modifier is unknown.
    """
    method, _, rest = text.partition('+')
    if method not in METHODS:
        msg = f'{text!r}: unknown method {method!r} (one of {", ".join(METHODS)})'
        raise ValueError(msg)
    variant = replace(base, method=method)
    return variant.with_modifiers(parse_modifiers(rest)) if rest else variant


def plan_variants(
    methods: Sequence[str],
    base: Variant,
    compare: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[Variant]:
    """List the variants to report, grouped by method.

    Args:
        methods: Methods to run at the base setting.
        base: The base setting.
        compare: Modifier sets (e.g. ``'ckpt'``, ``'ckpt+bf16'``) to run every
            method with as well.
        extra: Further variants, ``METHOD[+ckpt][+bf16]``.

    Returns:
        Distinct variants: each method at the base setting followed by its
        modified variants.

    Raises:
        ValueError: If a method, modifier or variant is unknown.
    """
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        msg = f'unknown methods {unknown} (one of {", ".join(METHODS)})'
        raise ValueError(msg)
    modifier_sets = [parse_modifiers(text) for text in compare]
    variants = []
    for method in methods:
        plain = replace(base, method=method)
        variants.append(plain)
        variants.extend(plain.with_modifiers(mods) for mods in modifier_sets)
    variants.extend(parse_variant(text, base) for text in extra)
    order = list(dict.fromkeys(variant.method for variant in variants))
    variants.sort(key=lambda variant: order.index(variant.method))
    return list(dict.fromkeys(variants))


def _model_image_size(args: argparse.Namespace) -> int | None:
    """The ``img_size`` of the benchmarked model: ``--image-size`` if it takes one.

    ViT and Swin are built for the batch's size; other models take none.
    """
    if args.img_size is not None:
        return args.img_size
    import timm
    import torch

    with torch.device('meta'):
        try:
            timm.create_model(args.backbone, num_classes=0, img_size=args.image_size)
        except TypeError:
            return None
    return args.image_size


def run_variant(args: argparse.Namespace, variant: Variant) -> dict[str, Any]:
    """Benchmark one variant in a subprocess.

    Args:
        args: Parsed benchmark options.
        variant: Method and training setting.

    Returns:
        The worker's measurements, with the variant's ``label`` as ``variant``.

    Raises:
        RuntimeError: If the worker fails.
    """
    options = {
        'backbone': args.backbone,
        'method': variant.method,
        'grad_checkpointing': variant.grad_checkpointing,
        'precision': variant.precision,
        'threads': getattr(args, 'threads', None),
        'bits': args.bits,
        'hidden': args.hidden,
        'num_classes': args.num_classes,
        'in_channels': args.in_channels,
        'img_size': _model_image_size(args),
        'batch_size': args.batch_size,
        'image_size': args.image_size,
        'steps': args.steps,
        'warmup': args.warmup,
        'device': args.device,
        'channels_last': args.channels_last,
    }
    row = run_worker('geopeft.commands.bench_worker', options, repr(variant.label))
    return {'variant': variant.label} | row


def run_method(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Benchmark one method at the base setting of *args* in a subprocess.

    Args:
        args: Parsed benchmark options.
        method: PEFT method name.

    Returns:
        The worker's measurements.
    """
    return run_variant(args, replace(_base(args), method=method))


def merge_repeats(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge the rows of one variant from several repeats.

    Args:
        runs: The rows, one per repeat.

    Returns:
        The first row with every measurement replaced by its median over *runs*
        and ``repeats`` set.
    """
    row = dict(runs[0])
    for key in _MEASURED:
        values = [run[key] for run in runs if run.get(key) is not None]
        row[key] = statistics.median(values) if values else None
    row['repeats'] = len(runs)
    return row


def add_ratios(rows: Sequence[dict[str, Any]], reference: dict[str, Any]) -> None:
    """Set each row's ratios to the reference (full fine-tuning) in place.

    Args:
        rows: Measurement rows.
        reference: The full fine-tuning row.
    """
    for row in rows:
        for ratio, key in _RATIOS:
            value, base = row.get(key), reference.get(key)
            row[ratio] = value / base if value is not None and base else None


def _number(value: float | None, width: int, digits: int) -> str:
    """Format a number right-aligned, ``-`` for a missing one."""
    if value is None:
        return f'{"-":>{width}}'
    return f'{value:>{width},.{digits}f}'


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render benchmark rows as text tables with ratios to full fine-tuning.

    The first table has the headline figures (time, peak resident memory, live heap
    memory, adapter size); the second splits the step into forward + loss, backward
    and optimizer and gives the process CPU time per step and the bytes saved for
    backward.

    Args:
        rows: One measurement dictionary per variant.

    Returns:
        The tables.
    """
    labels = [row.get('variant', row['method']) for row in rows]
    width = max(9, *(len(label) + 2 for label in labels))
    title = 'method' if labels == [row['method'] for row in rows] else 'variant'
    header = (
        f'{title:<{width}}{"trainable %":>12}{"step ms":>10}{"x full":>8}'
        f'{"peak MB":>10}{"x full":>8}{"live MB":>10}{"x full":>8}'
        f'{"adapter bytes":>16}{"x full":>9}'
    )
    lines = [header, '-' * len(header)]
    for label, row in zip(labels, rows, strict=True):
        lines.append(
            f'{label:<{width}}{row["trainable_percent"]:>12.3f}'
            f'{_number(row["step_ms"], 10, 1)}{_number(row.get("step_ratio"), 8, 2)}'
            f'{_number(row["peak_mb"], 10, 1)}'
            f'{_number(row.get("memory_ratio"), 8, 2)}'
            f'{_number(row.get("live_mb"), 10, 1)}'
            f'{_number(row.get("live_ratio"), 8, 2)}'
            f'{row["adapter_bytes"]:>16,}{_number(row.get("adapter_ratio"), 9, 4)}'
        )
    header = (
        f'{title:<{width}}{"fwd ms":>10}{"bwd ms":>10}{"opt ms":>10}'
        f'{"cpu ms":>10}{"x full":>8}{"saved MB":>10}'
    )
    lines += ['', header, '-' * len(header)]
    for label, row in zip(labels, rows, strict=True):
        lines.append(
            f'{label:<{width}}{_number(row.get("forward_ms"), 10, 1)}'
            f'{_number(row.get("backward_ms"), 10, 1)}'
            f'{_number(row.get("optimizer_ms"), 10, 1)}'
            f'{_number(row.get("cpu_ms"), 10, 1)}'
            f'{_number(row.get("cpu_ratio"), 8, 2)}'
            f'{_number(row.get("saved_mb"), 10, 1)}'
        )
    return '\n'.join(lines)


def _base(args: argparse.Namespace) -> Variant:
    """The base setting given by ``--grad-checkpointing`` and ``--precision``."""
    return Variant(
        'full',
        grad_checkpointing=getattr(args, 'grad_checkpointing', False),
        precision=getattr(args, 'precision', '32'),
    )


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
        'weights, synthetic batch), each with its ratio to full fine-tuning at the '
        'base setting, measured in the same run.',
    )
    add_peft_arguments(parser)
    parser.set_defaults(backbone='convnext_tiny')
    parser.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS))
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument(
        '--image-size',
        type=int,
        default=224,
        help='batch image size, and the input size of models that take one (ViT)',
    )
    # Before --image-size fed the models too: the ViT/Swin input size alone.
    parser.add_argument('--img-size', type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument('--steps', type=int, default=5, help='timed steps')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument(
        '--grad-checkpointing',
        action='store_true',
        help="recompute the backbone blocks' activations in backward (base setting "
        'of every method, the full fine-tuning reference included)',
    )
    parser.add_argument(
        '--precision',
        choices=['32', 'bf16'],
        default='32',
        help='32-bit, or bfloat16 autocast of forward + loss (base setting)',
    )
    parser.add_argument(
        '--compare',
        nargs='+',
        default=[],
        metavar='MODS',
        help="also run every method with these modifier sets: 'ckpt', 'bf16', "
        "'ckpt+bf16'",
    )
    parser.add_argument(
        '--variants',
        nargs='+',
        default=[],
        metavar='METHOD[+MODS]',
        help="further rows, e.g. 'upetu+ckpt' 'upetu+bf16'",
    )
    parser.add_argument(
        '--repeats',
        type=int,
        default=1,
        help='run all variants this many times in rotating order and keep the '
        'median of each measurement (for noisy machines)',
    )
    parser.add_argument(
        '--threads', type=int, default=None, help='torch threads in each worker'
    )
    parser.add_argument('--json', action='store_true', help='print JSON rows')
    add_record_argument(parser)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.steps < 1:
        parser.error('--repeats and --steps must be >= 1')

    base = _base(args)
    try:
        variants = plan_variants(args.methods, base, args.compare, args.variants)
    except ValueError as err:
        parser.error(str(err))
    reference = replace(base, method='full')
    runs_of = list(dict.fromkeys([reference, *variants]))
    runs: dict[Variant, list[dict[str, Any]]] = {v: [] for v in runs_of}
    for repeat in range(args.repeats):
        shift = repeat % len(runs_of)
        for variant in runs_of[shift:] + runs_of[:shift]:
            if not args.json:
                print(
                    f'running {variant.label} ({repeat + 1}/{args.repeats}) ...',
                    file=sys.stderr,
                    flush=True,
                )
            runs[variant].append(run_variant(args, variant))
    merged = {variant: merge_repeats(rows) for variant, rows in runs.items()}
    rows = [merged[variant] for variant in variants]
    add_ratios(rows, merged[reference])
    for row in rows:
        if row.get('params_without_grad'):
            print(
                f'warning: {row["variant"]}: {row["params_without_grad"]} trainable '
                'parameters got no gradient (a module the method hooks was skipped)',
                file=sys.stderr,
            )
    first = rows[0]
    setting = (
        f'{args.backbone}, batch {args.batch_size}, {args.image_size} px, '
        f'{args.steps} steps (median of {args.repeats} run(s)) on '
        f'{first["device"]}, {first["threads"]} thread(s) (torch {first["torch"]})'
    )
    if args.json:
        print(json.dumps(rows))
    else:
        print(setting)
        print(format_table(rows))
    if args.record is not None:
        modifiers = base.label.removeprefix('full').replace('+', ', ')
        threads = f', torch threads {args.threads}' if args.threads else ''
        save_command_record(
            args,
            parser,
            experiment='bench_peft',
            command=['bench', 'peft', *argv],
            title=f'PEFT methods on {args.backbone}: step time, memory, adapter size',
            dataset=f'synthetic {args.batch_size} x {args.image_size} px batch, '
            f'{args.backbone}{modifiers}{threads}',
            columns=RECORD_COLUMNS,
            rows=rows,
            device=first['device'],
            notes=f'{setting}. Ratios (x full) to full fine-tuning in the same run.',
        )
    return 0


def main(argv: Sequence[str]) -> int:
    """Dispatch ``geopeft bench <name>``.

    Args:
        argv: Arguments after ``bench``.

    Returns:
        Exit status.
    """
    # The other benches live in their own modules, imported on use.
    others = {
        'ktda': ('bench_ktda', 'bench_ktda'),
        'sampling': ('bench_sampling', 'main'),
        'predict': ('bench_predict', 'main'),
        'accuracy': ('bench_accuracy', 'main'),
    }
    names = ['peft', *others]
    if not argv or argv[0] not in names:
        print(f'usage: geopeft bench {{{",".join(names)}}} [options]', file=sys.stderr)
        return 2
    if argv[0] == 'peft':
        return bench_peft(argv[1:])
    module, function = others[argv[0]]
    bench = importlib.import_module(f'geopeft.commands.{module}')
    return getattr(bench, function)(argv[1:])
