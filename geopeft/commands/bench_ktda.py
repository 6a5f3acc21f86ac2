"""``geopeft bench ktda``: KTDA student variants side by side.

Each variant is a KTDA student (:func:`~geopeft.distill.build_ktda_model`: a PEFT
method for the student backbone, an FMM kind and depth) trained as
:class:`~geopeft.tasks.KTDASegmentation` trains it, with the distillation loss from
the training pass's aligned features or from a second student pass. Each runs in a
fresh subprocess (``geopeft/commands/bench_ktda_worker.py``) so that peak training
memory is measured in isolation, as ``geopeft bench peft`` measures it: on CUDA the
growth of ``torch.cuda.max_memory_allocated`` over the memory allocated before the
first step, on CPU the growth of the peak resident set over the resident set just
before the first step. Weights are excluded; the teacher's forward pass, which
training needs, is included.

Rows give the parameters (all, deployable: what inference needs, i.e. without the
auxiliary head; trainable), the inference time per image of the deployable model,
the training step time and the peak training memory, with ratios to the
``reference`` student (the paper's) measured in the same invocation and the
parameters relative to the teacher's. A ``teacher`` row counts and times the
teacher alone. The teacher's weights are random: the figures are about cost, not
accuracy.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..distill import FMMKind, teacher_spec
from .results import add_record_argument, save_command_record
from .workers import run_worker


@dataclass(frozen=True)
class KTDAVariant:
    """A row of ``geopeft bench ktda``.

    Attributes:
        name: Name given to ``--variants``.
        description: What it is, for ``--help`` and the docs.
        peft: PEFT method of the student (``'full'``: all of it trains).
        fmm: FMM kind: ``'vit'``, ``'mlp'`` or ``'none'``.
        fmm_depth: ViT blocks (or bottleneck MLPs) per pyramid level.
        distill_pass: ``'reuse'`` the training pass's aligned features for the
            distillation loss, or run the student a ``'second'`` time.
        teacher_only: The teacher alone (no student, no training).
    """

    name: str
    description: str
    peft: str = 'full'
    fmm: FMMKind = 'vit'
    fmm_depth: int = 4
    distill_pass: str = 'reuse'
    teacher_only: bool = False


#: The reference student, which every ratio is relative to.
REFERENCE = 'reference'

#: The rows ``--variants`` can name, in their default order.
VARIANTS: dict[str, KTDAVariant] = {
    variant.name: variant
    for variant in (
        KTDAVariant(REFERENCE, "full student, ViT-block FMM depth 4 (the paper's)"),
        KTDAVariant('light', 'full student, ViT-block FMM depth 1', fmm_depth=1),
        KTDAVariant(
            'mlp', 'full student, one bottleneck-MLP FMM', fmm='mlp', fmm_depth=1
        ),
        KTDAVariant('fam', 'full student, no FMM (FAM only)', fmm='none'),
        KTDAVariant(
            'peft', 'UPetu student, ViT-block FMM depth 1', peft='upetu', fmm_depth=1
        ),
        KTDAVariant(
            'reference+second',
            'the reference with the distillation loss from a second student pass '
            "(distill_pass='second', as the reference code does)",
            distill_pass='second',
        ),
        KTDAVariant('teacher', 'the teacher alone', teacher_only=True),
    )
}

#: Columns of a ``--record`` result record: the printed table's, in order.
RECORD_COLUMNS = (
    'variant',
    'peft',
    'fmm',
    'fmm_depth',
    'total',
    'deployable',
    'trainable',
    'trainable_percent',
    'teacher_ratio',
    'infer_ms',
    'infer_ratio',
    'step_ms',
    'step_ratio',
    'peak_mb',
    'memory_ratio',
)

#: Ratios to the reference: (row key, measurement).
_RATIOS = (
    ('infer_ratio', 'infer_ms'),
    ('step_ratio', 'step_ms'),
    ('memory_ratio', 'peak_mb'),
)


def parse_variants(names: Sequence[str]) -> list[KTDAVariant]:
    """Look up variants by name.

    Args:
        names: Keys of :data:`VARIANTS`.

    Returns:
        The variants, in the order given, each once.

    Raises:
        ValueError: If a name is unknown (naming the known ones).
    """
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        msg = (
            f'unknown KTDA variant(s) {", ".join(map(repr, unknown))}: the '
            f'variants are {", ".join(VARIANTS)}'
        )
        raise ValueError(msg)
    return [VARIANTS[name] for name in dict.fromkeys(names)]


def worker_options(args: argparse.Namespace, variant: KTDAVariant) -> dict[str, Any]:
    """Collect what the worker needs to measure one variant.

    Args:
        args: Parsed ``geopeft bench ktda`` options.
        variant: The variant.

    Returns:
        The worker's options (JSON-serialisable).
    """
    return {
        'variant': variant.name,
        'teacher_only': variant.teacher_only,
        'peft': variant.peft,
        'fmm': variant.fmm,
        'fmm_depth': variant.fmm_depth,
        'distill_pass': variant.distill_pass,
        'backbone': args.backbone,
        'teacher': args.teacher,
        'teacher_taps': args.teacher_taps,
        'teacher_kwargs': args.teacher_kwargs,
        'model_kwargs': args.model_kwargs,
        'fmm_heads': args.fmm_heads,
        'head_channels': args.head_channels,
        'aux_channels': args.aux_channels,
        'num_classes': args.num_classes,
        'image_size': args.image_size,
        'batch_size': args.batch_size,
        'steps': args.steps,
        'warmup': args.warmup,
        'device': args.device,
        'precision': args.precision,
        'threads': args.threads,
    }


def run_variant(options: dict[str, Any]) -> dict[str, Any]:
    """Measure one variant in a subprocess.

    Args:
        options: From :func:`worker_options`.

    Returns:
        The worker's row.

    Raises:
        RuntimeError: If the worker fails (with the end of its error output).
    """
    return run_worker(
        'geopeft.commands.bench_ktda_worker', options, repr(options['variant'])
    )


def add_ratios(rows: Sequence[dict[str, Any]], reference: dict[str, Any]) -> None:
    """Set each row's ratios to the reference in place.

    Args:
        rows: Measurement rows.
        reference: The reference student's row.
    """
    for row in rows:
        for ratio, key in _RATIOS:
            value, base = row.get(key), reference.get(key)
            row[ratio] = value / base if value is not None and base else None
        teacher = row.get('teacher_params')
        row['teacher_ratio'] = row['deployable'] / teacher if teacher else None


def collect_rows(
    args: argparse.Namespace, *, log: bool = False
) -> list[dict[str, Any]]:
    """Measure the variants of parsed options, one subprocess each.

    The reference is measured even when it is not listed, for the ratios.

    Args:
        args: From :func:`parse_args`.
        log: Print progress to stderr.

    Returns:
        One row per listed variant, with its ratios to the reference.
    """
    variants = parse_variants(args.variants)
    runs = list(dict.fromkeys([VARIANTS[REFERENCE], *variants]))
    measured = {}
    for index, variant in enumerate(runs, 1):
        if log:
            print(
                f'running {variant.name} ({index}/{len(runs)}) ...',
                file=sys.stderr,
                flush=True,
            )
        measured[variant.name] = run_variant(worker_options(args, variant))
    rows = [measured[variant.name] for variant in variants]
    add_ratios(rows, measured[REFERENCE])
    return rows


def ktda_rows(argv: Sequence[str]) -> list[dict[str, Any]]:
    """Measure the variants a ``geopeft bench ktda`` command line asks for.

    Args:
        argv: Arguments after ``bench ktda`` (``--json`` is ignored).

    Returns:
        The rows :func:`collect_rows` gives.
    """
    return collect_rows(parse_args(argv))


def _number(value: float | None, width: int, digits: int) -> str:
    """Format a number right-aligned, ``-`` for a missing one."""
    if value is None:
        return f'{"-":>{width}}'
    return f'{value:>{width},.{digits}f}'


def _fmm_label(row: dict[str, Any]) -> str:
    """``vit x4``, ``mlp``, ``none``, or ``-`` for the teacher."""
    if row.get('fmm') is None:
        return '-'
    return row['fmm'] if row['fmm'] == 'none' else f'{row["fmm"]} x{row["fmm_depth"]}'


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render the rows as a text table.

    Parameters are in millions; ``x teacher`` is the deployable parameters over the
    teacher's, ``x ref`` the ratio of the column before it to the reference.

    Args:
        rows: Rows from :func:`collect_rows`.

    Returns:
        The table.
    """
    width = max(10, *(len(row['variant']) + 2 for row in rows))
    header = (
        f'{"variant":<{width}}{"student":<9}{"fmm":<8}{"params M":>10}'
        f'{"deploy M":>10}{"train M":>10}{"train %":>9}{"x teacher":>11}'
        f'{"infer ms":>10}{"x ref":>7}{"step ms":>11}{"x ref":>7}'
        f'{"peak MB":>10}{"x ref":>7}'
    )
    lines = [header, '-' * len(header)]
    for row in rows:
        lines.append(
            f'{row["variant"]:<{width}}{row.get("peft") or "-":<9}'
            f'{_fmm_label(row):<8}{row["total"] / 1e6:>10,.2f}'
            f'{row["deployable"] / 1e6:>10,.2f}{row["trainable"] / 1e6:>10,.2f}'
            f'{row["trainable_percent"]:>9.1f}'
            f'{_number(row.get("teacher_ratio"), 11, 2)}'
            f'{_number(row["infer_ms"], 10, 1)}'
            f'{_number(row.get("infer_ratio"), 7, 2)}'
            f'{_number(row["step_ms"], 11, 1)}'
            f'{_number(row.get("step_ratio"), 7, 2)}'
            f'{_number(row["peak_mb"], 10, 1)}'
            f'{_number(row.get("memory_ratio"), 7, 2)}'
        )
    return '\n'.join(lines)


def format_header(args: argparse.Namespace, rows: Sequence[dict[str, Any]]) -> str:
    """Describe the setting of a run.

    Args:
        args: The parsed options.
        rows: Its rows (for the device, threads and torch version).

    Returns:
        One line.
    """
    first = rows[0]
    teacher = args.teacher
    if args.teacher_kwargs:
        teacher += f' {json.dumps(args.teacher_kwargs)}'
    return (
        f'KTDA students ({args.backbone}) and teacher {teacher} (random '
        f'weights), {args.image_size} px, batch {args.batch_size}, {args.steps} '
        f'timed step(s) after {args.warmup} warm-up, precision {args.precision}, '
        f'on {first["device"]}, {first["threads"]} thread(s) (torch {first["torch"]})'
    )


NOTE = (
    'Random teacher weights: the figures are cost, not accuracy. infer ms: per '
    'image, model(x) in eval mode\nunder no_grad (the student only; for the '
    'teacher row the teacher alone). step ms: per batch: forward_train,\nCE + '
    '0.4 aux CE + distillation against the teacher (no_grad), backward, AdamW. '
    'peak MB: training peak over the\nmemory before the first step (weights '
    "excluded, the teacher's forward included). x teacher: deployable\nparameters "
    "(without the auxiliary head) / the teacher's. x ref: ratio to the reference."
)


def _json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object given on the command line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        msg = f'not JSON: {text!r} ({err})'
        raise argparse.ArgumentTypeError(msg) from None
    if not isinstance(value, dict):
        msg = f'a JSON object is needed, e.g. \'{{"depth": 4}}\', not {text!r}'
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``geopeft bench ktda``.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft bench ktda',
        description='Parameters, inference time per image, training step time and '
        'peak training memory of KTDA student variants side by side (random '
        'weights, teacher included, synthetic batch), with ratios to the '
        'reference student measured in the same run. Variants: '
        + '; '.join(f'{v.name}: {v.description}' for v in VARIANTS.values())
        + '.',
    )
    parser.add_argument('--backbone', default='convnext_base', help='student (timm)')
    parser.add_argument('--teacher', default='dinov2_vitb14', help='DINOv2 size')
    parser.add_argument(
        '--variants', nargs='+', default=list(VARIANTS), help=', '.join(VARIANTS)
    )
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--steps', type=int, default=2, help='timed steps')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument(
        '--precision',
        choices=['32', 'bf16'],
        default='32',
        help='32-bit, or bfloat16 autocast of the student (the teacher runs in '
        'bf16 on an accelerator and in fp32 on the CPU, as the task runs it)',
    )
    parser.add_argument(
        '--threads', type=int, default=None, help='torch threads in each worker'
    )
    parser.add_argument('--num-classes', type=int, default=5)
    parser.add_argument(
        '--teacher-taps',
        type=int,
        nargs='+',
        default=None,
        help="teacher blocks tapped (1-based); default the teacher's",
    )
    parser.add_argument(
        '--teacher-kwargs',
        type=_json_object,
        default=None,
        metavar='JSON',
        help='timm arguments of the teacher, e.g. \'{"embed_dim": 32, "depth": 4, '
        '"num_heads": 2}\'',
    )
    parser.add_argument(
        '--model-kwargs',
        type=_json_object,
        default=None,
        metavar='JSON',
        help='timm arguments of the student, e.g. \'{"drop_path_rate": 0.4}\'',
    )
    parser.add_argument('--fmm-heads', type=int, default=8)
    parser.add_argument('--head-channels', type=int, default=512)
    parser.add_argument('--aux-channels', type=int, default=256)
    parser.add_argument('--json', action='store_true', help='print JSON rows')
    add_record_argument(parser)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check ``geopeft bench ktda`` arguments.

    Args:
        argv: Arguments after ``bench ktda``.

    Returns:
        The options.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error('--steps and --batch-size must be >= 1, --warmup >= 0')
    try:
        parse_variants(args.variants)
        teacher_spec(args.teacher)
    except ValueError as err:
        parser.error(str(err))
    return args


def bench_ktda(argv: Sequence[str]) -> int:
    """Run ``geopeft bench ktda``.

    Args:
        argv: Arguments after ``bench ktda``.

    Returns:
        Exit status.
    """
    args = parse_args(argv)
    try:
        rows = collect_rows(args, log=not args.json)
    except RuntimeError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for row in rows:
        if row.get('params_without_grad'):
            print(
                f'warning: {row["variant"]}: {row["params_without_grad"]} trainable '
                'parameters got no gradient',
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_header(args, rows))
        print(format_table(rows))
        print(NOTE)
    if args.record is not None:
        threads = f', torch threads {args.threads}' if args.threads else ''
        save_command_record(
            args,
            build_parser(),
            experiment='bench_ktda',
            command=['bench', 'ktda', *argv],
            title=f'KTDA student variants ({args.backbone}, teacher {args.teacher}): '
            'parameters, time, training memory',
            dataset=f'synthetic {args.batch_size} x {args.image_size} px batch, '
            f'{args.backbone} / {args.teacher}{threads}',
            columns=RECORD_COLUMNS,
            rows=rows,
            device=rows[0]['device'],
            notes=f'{format_header(args, rows)}.\n\n{" ".join(NOTE.split())}',
        )
    return 0
