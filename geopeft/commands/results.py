"""``geopeft results``: the result records rendered into ``experiments/RESULTS.md``.

``geopeft results [--dir experiments/results] [--out experiments/RESULTS.md]
[--check]`` reads every record (``*.json``, :mod:`geopeft.results`) and writes the
Markdown of :func:`~geopeft.results_markdown.render_results` atomically;
``--check`` writes nothing and exits 1 when the file differs from what the records
render to (a hand edit, or a record added without regenerating).

This module also holds the ``--record [DIR]`` option of the commands that print
result tables (``geopeft bench peft|predict|sampling|ktda``, ``geopeft demo``):
:func:`add_record_argument` and :func:`save_command_record`, which saves the table
as a record with the command line, the hardware, the date and the commit. A run is
a **smoke** run when one of the command's workload settings
(:data:`WORKLOAD_SETTINGS`) is below the command's default (for a list, its
smallest value below the default's smallest), or in the cases
:func:`smoke_reasons` lists (a resized KTDA teacher, the demo's random weights);
otherwise it is a **full** run. The record's notes say what made it a smoke run.
"""

import argparse
import difflib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from ..results import (
    RESULTS_DIR,
    ResultRecord,
    git_commit,
    hardware_summary,
    load_record,
    today,
)
from ..results_markdown import render_results

#: Where ``geopeft results`` writes by default, relative to the repository root.
RESULTS_MARKDOWN = Path('experiments/RESULTS.md')

#: Per experiment, the settings below whose default a run is a smoke run.
WORKLOAD_SETTINGS: dict[str, tuple[str, ...]] = {
    'bench_peft': ('batch_size', 'image_size', 'steps', 'warmup'),
    'bench_ktda': (
        'image_size',
        'batch_size',
        'steps',
        'warmup',
        'fmm_heads',
        'head_channels',
        'aux_channels',
    ),
    'bench_predict': ('sizes',),
    'bench_sampling': ('samples', 'repeats', 'patch_size'),
    'demo': ('epochs', 'image_size'),
    **{
        f'bench_accuracy_{task}': ('epochs', 'folds', 'seeds', 'train_repeats')
        for task in ('change', 'segmentation', 'classification')
    },
}

#: Teacher arguments that shrink the KTDA teacher (``--teacher-kwargs``).
_TEACHER_SIZE_KEYS = ('embed_dim', 'depth', 'num_heads')


def add_record_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--record [DIR]`` to a command that prints a result table.

    Args:
        parser: The command's parser.
    """
    parser.add_argument(
        '--record',
        nargs='?',
        const=str(RESULTS_DIR),
        default=None,
        metavar='DIR',
        help='also save the table as a result record (JSON) in DIR (default '
        f'{RESULTS_DIR}, relative to the working directory; `geopeft results` '
        'renders the records into experiments/RESULTS.md). Settings below the '
        "defaults make it a 'smoke' record",
    )


def _flag(name: str) -> str:
    """``image_size`` -> ``--image-size``."""
    return '--' + name.replace('_', '-')


def _below_default(
    args: argparse.Namespace, parser: argparse.ArgumentParser, name: str
) -> str | None:
    """Why setting *name* is below its default, or None when it is not."""
    value, default = getattr(args, name), parser.get_default(name)
    if isinstance(default, list | tuple):
        value, default = min(value), min(default)
    if value < default:
        return f'{_flag(name)} {value} < {default}'
    return None


def smoke_reasons(
    experiment: str, args: argparse.Namespace, parser: argparse.ArgumentParser
) -> list[str]:
    """Why a run of a command is a smoke run (empty: a full run).

    The settings of :data:`WORKLOAD_SETTINGS` below their defaults, and:

    * ``bench_ktda``: ``--teacher-kwargs`` that set the teacher's
      ``embed_dim``, ``depth`` or ``num_heads`` (a resized teacher);
    * ``bench_sampling``: the generated rasters smaller than the defaults
      (``--size``, ``--mosaic-grid``, ``--mosaic-tile-size``; not checked for
      rasters given with ``--raster`` / ``--mosaic``);
    * ``demo``: ``--weights none`` (random weights), and ``--per-class`` below
      its default on the generated data (not with ``--data-root``).

    Args:
        experiment: A key of :data:`WORKLOAD_SETTINGS`.
        args: The command's parsed options.
        parser: Its parser (for the defaults).

    Returns:
        One phrase per reason.
    """
    names = list(WORKLOAD_SETTINGS[experiment])
    extra = []
    if experiment == 'bench_ktda':
        resized = sorted(set(args.teacher_kwargs or {}) & set(_TEACHER_SIZE_KEYS))
        if resized:
            extra.append(f'--teacher-kwargs resizes the teacher ({", ".join(resized)})')
    elif experiment == 'bench_sampling':
        if args.raster is None:
            names.append('size')
        if args.mosaic is None:
            names += ['mosaic_grid', 'mosaic_tile_size']
    elif experiment == 'demo':
        if args.weights is None:
            extra.append('--weights none (random weights)')
        if args.data_root is None:
            names += ['per_class', 'val_per_class', 'test_per_class']
    reasons = [_below_default(args, parser, name) for name in names]
    return [reason for reason in reasons if reason] + extra


def save_command_record(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    *,
    experiment: str,
    command: Sequence[str],
    title: str,
    dataset: str,
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    device: str | None,
    notes: str = '',
) -> Path:
    """Save the table a command printed as a result record in ``args.record``.

    Args:
        args: The command's parsed options (``record`` is the folder).
        parser: Its parser (for the defaults that decide the mode).
        experiment: Record experiment, a key of :data:`WORKLOAD_SETTINGS`.
        command: The command line after ``geopeft`` (e.g. ``['bench', 'peft',
            *argv]``).
        title: Human title of the table.
        dataset: What the numbers were measured on.
        columns: Columns shown, in order (keys of every row).
        rows: The rows (kept whole: keys beyond *columns* are stored too; a
            column a row lacks is stored as null).
        device: Where it ran (``'cpu'``, ``'cuda'``, ``'cuda:0'``): for
            :func:`~geopeft.results.hardware_summary`.
        notes: What a reader needs to read the numbers right.

    Returns:
        The record's path.
    """
    reasons = smoke_reasons(experiment, args, parser)
    if reasons:
        smoke = (
            f'Smoke run: {"; ".join(reasons)} (below the settings of a full run: '
            'the numbers check that the pipeline runs, they are not results).'
        )
        notes = f'{notes}\n\n{smoke}' if notes else smoke
    if device is not None and str(device).startswith('cuda'):
        # A GPU run is another record than a CPU run of the same data.
        dataset = f'{dataset}, on GPU'
    record = ResultRecord(
        experiment=experiment,
        title=title,
        dataset=dataset,
        mode='smoke' if reasons else 'full',
        command=shlex.join(['geopeft', *command]),
        hardware=hardware_summary(device),
        date=today(),
        columns=list(columns),
        rows=[dict.fromkeys(columns) | dict(row) for row in rows],
        notes=notes,
        commit=git_commit(Path(__file__).parent),
    )
    path = record.save(args.record)
    print(f'result record ({record.mode} run): {path}', file=sys.stderr)
    return path


def load_record_files(directory: Path) -> list[ResultRecord]:
    """Read every record of *directory*, each file named as its record.

    Args:
        directory: The records folder.

    Returns:
        The records, sorted by file name.

    Raises:
        ValueError: A file is not a valid record, or its name is not the
            record's (``<experiment>-<dataset>-<mode>.json``, the name
            :meth:`~geopeft.results.ResultRecord.save` gives, so that a newer
            run replaces the file of the older one); the message names the file.
    """
    records = []
    for path in sorted(directory.glob('*.json')):
        record = load_record(path)
        if path.stem != record.name:
            msg = (
                f'{path} holds the record named {record.name!r} (experiment, '
                f'dataset and mode): rename it to {record.name}.json'
            )
            raise ValueError(msg)
        records.append(record)
    return records


def _regenerate_command(directory: Path, out: Path) -> str:
    """The command that regenerates *out* from *directory*, as short as it can be.

    ``geopeft results`` when they are laid out as the defaults (a ``results``
    folder beside ``RESULTS.md``), else with the paths given.
    """
    default_layout = (
        out.name == RESULTS_MARKDOWN.name
        and out.parent.name == RESULTS_MARKDOWN.parent.name
        and directory.resolve() == (out.parent / RESULTS_DIR.name).resolve()
    )
    if default_layout:
        return 'geopeft results'
    return shlex.join(
        ['geopeft', 'results', '--dir', str(directory), '--out', str(out)]
    )


def render_directory(directory: Path, out: Path) -> tuple[str, list[ResultRecord]]:
    """What the records of *directory* render to, for the file *out*.

    Args:
        directory: The records folder.
        out: The Markdown file (links to the records are relative to it).

    Returns:
        The Markdown text and the records.

    Raises:
        ValueError: A record file is not valid (named in the message).
    """
    records = load_record_files(directory)
    link = Path(os.path.relpath(directory.resolve(), out.resolve().parent))
    text = render_results(
        records,
        records_link=link.as_posix() + '/',
        command=_regenerate_command(directory, out),
    )
    return text, records


def build_parser() -> argparse.ArgumentParser:
    """The ``geopeft results`` argument parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft results',
        description='Render every result record (JSON) into one Markdown file: '
        'full runs first, then smoke runs, each with its command, hardware, date '
        'and commit. --check only compares (exit 1 when the file is out of date).',
    )
    parser.add_argument(
        '--dir', type=Path, default=RESULTS_DIR, help='records folder (*.json)'
    )
    parser.add_argument(
        '--out', type=Path, default=RESULTS_MARKDOWN, help='the Markdown file'
    )
    parser.add_argument(
        '--check',
        action='store_true',
        help='write nothing; exit 1 when --out differs from what the records render to',
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``geopeft results``.

    Args:
        argv: Arguments after ``results``.

    Returns:
        0 when written (or up to date with ``--check``), 1 when ``--check``
        finds the file out of date, 2 for a missing folder or a bad record.
    """
    args = build_parser().parse_args(list(argv))
    if not args.dir.is_dir():
        print(f'error: no records folder {args.dir}', file=sys.stderr)
        return 2
    try:
        text, records = render_directory(args.dir, args.out)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    current = args.out.read_text() if args.out.is_file() else None
    full = sum(record.mode == 'full' for record in records)
    counts = f'{len(records)} records: {full} full, {len(records) - full} smoke'
    if args.check:
        if current == text:
            print(f'{args.out} is up to date ({counts})')
            return 0
        command = _regenerate_command(args.dir, args.out)
        state = 'is missing' if current is None else 'differs from its records'
        print(
            f'{args.out} {state} ({args.dir}, {counts}): run `{command}` to '
            'regenerate it (do not edit it by hand)',
            file=sys.stderr,
        )
        if current is not None:
            diff = difflib.unified_diff(
                current.splitlines(),
                text.splitlines(),
                f'{args.out} (on disk)',
                f'{args.out} (from the records)',
                lineterm='',
            )
            lines = list(diff)
            print('\n'.join(lines[:40]), file=sys.stderr)
            if len(lines) > 40:
                print(f'... ({len(lines) - 40} more diff lines)', file=sys.stderr)
        return 1
    if current != text:
        atomic_write_text(args.out, text)
        print(f'wrote {args.out} ({counts})')
    else:
        print(f'{args.out} is already up to date ({counts})')
    return 0
