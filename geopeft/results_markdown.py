"""``experiments/RESULTS.md``: result records rendered as one Markdown file.

:func:`render_results` turns :class:`~geopeft.results.ResultRecord` objects into
the Markdown that ``geopeft results`` writes: a header saying the file is
generated, a summary table of the records, then one section per record (full runs
first, smoke runs after), each with its provenance, its command and its table.
The output depends on the records only (no clock, no paths of the machine), so
``geopeft results --check`` can tell whether the committed file is up to date.

Cells are formatted per column, the same way for every record:

* integers with thousands separators (``111,365,932``), in any column;
  ``true``/``false`` as ``yes``/``no``; a missing value (``null``) as ``-``;
* floats with one number of decimals per column: the most any of its floats
  needs, where a float needs what shows it to 4 significant digits (at least one
  decimal when it is not integral), at most 4 decimals and never more than it
  holds (``98.4`` stays ``98.4``, ``0.0006`` stays ``0.0006``, ``1337.41``
  becomes ``1,337.4``; beside ``0.75``, ``1.0`` shows as ``1.00``);
* columns named ``*_bytes`` in MB (2**20 bytes, as ``peak MB`` elsewhere in the
  project) with 3 significant digits: ``211620`` is ``0.202 MB``;
* text as it is, lists and objects as compact JSON.
"""

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from .results import NOT_RECORDED, ResultRecord

#: The line under each record's title that says what kind of run it is.
MODE_LINES = {
    'full': '**full run**',
    'smoke': '**smoke run (pipeline check, not a result)**',
}

#: Significant digits and the most decimals a float cell shows.
SIGNIFICANT = 4
MAX_DECIMALS = 4


def _is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimals(value: float) -> int:
    """Decimals that show *value* to :data:`SIGNIFICANT` digits (see module)."""
    if value == 0 or not math.isfinite(value):
        return 0
    integral = float(value).is_integer()
    needed = max(
        SIGNIFICANT - 1 - math.floor(math.log10(abs(value))), 0 if integral else 1
    )
    exact = next(
        (k for k in range(MAX_DECIMALS + 1) if round(value, k) == value),
        MAX_DECIMALS,
    )
    return min(needed, exact, MAX_DECIMALS)


def _megabytes(value: float) -> str:
    """Bytes as MB (2**20) with 3 significant digits."""
    megabytes = value / 2**20
    if megabytes == 0:
        return '0 MB'
    decimals = max(0, 2 - math.floor(math.log10(abs(megabytes))))
    return f'{megabytes:,.{decimals}f} MB'


def _text(value: Any) -> str:
    """A non-number cell, safe inside a Markdown table."""
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if not isinstance(value, str):
        value = json.dumps(value, separators=(', ', ': '))
    return value.replace('|', '\\|').replace('\n', ' ')


def format_column(column: str, values: Sequence[Any]) -> list[str]:
    """Format the cells of one table column (rules in the module docstring).

    Args:
        column: The column's name (``*_bytes`` columns are shown in MB).
        values: Its values, one per row.

    Returns:
        The cells, in order.
    """
    numbers = [value for value in values if _is_number(value)]
    if column.endswith('_bytes'):
        return [_megabytes(v) if _is_number(v) else _text(v) for v in values]
    if not any(isinstance(value, float) for value in numbers):
        return [f'{v:,}' if _is_number(v) else _text(v) for v in values]
    decimals = max(_decimals(value) for value in numbers)
    cells = []
    for value in values:
        if not _is_number(value):
            cells.append(_text(value))
        elif isinstance(value, int):
            cells.append(f'{value:,}')
        elif not math.isfinite(value):
            cells.append(str(float(value)))
        else:
            cells.append(f'{value:,.{decimals}f}')
    return cells


def render_table(record: ResultRecord) -> str:
    """The record's rows as a Markdown table (numeric columns right-aligned).

    Args:
        record: The record.

    Returns:
        The table, or a line saying it has no rows.
    """
    if not record.rows:
        return '(no rows)'
    cells = {
        column: format_column(column, [row[column] for row in record.rows])
        for column in record.columns
    }
    numeric = [
        all(_is_number(row[c]) or row[c] is None for row in record.rows)
        and any(_is_number(row[c]) for row in record.rows)
        for c in record.columns
    ]
    lines = [
        '| ' + ' | '.join(_text(column) for column in record.columns) + ' |',
        '|' + '|'.join('---:' if right else '---' for right in numeric) + '|',
    ]
    for index in range(len(record.rows)):
        row = [cells[column][index] for column in record.columns]
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in *text*."""
    longest = max((len(run) for run in re.findall(r'`+', text)), default=0)
    return '`' * max(3, longest + 1)


def _order(records: Sequence[ResultRecord]) -> list[ResultRecord]:
    """Full runs first, then smoke runs; by record name within each."""
    return sorted(records, key=lambda r: (r.mode != 'full', r.name, r.title))


def _anchors(records: Sequence[ResultRecord]) -> list[str]:
    """A distinct HTML anchor per record (its name; a suffix for repeats)."""
    anchors: list[str] = []
    for record in records:
        anchor, number = record.name, 2
        while anchor in anchors:
            anchor, number = f'{record.name}-{number}', number + 1
        anchors.append(anchor)
    return anchors


def render_record(record: ResultRecord, anchor: str, records_link: str) -> str:
    """One record's section: title, kind of run, provenance, command, notes, table.

    Args:
        record: The record.
        anchor: Its HTML anchor (the summary links to it).
        records_link: Relative link from the Markdown file to the records folder,
            ending in ``/``.

    Returns:
        The section (ends with a newline).
    """
    title = ' '.join(record.title.split())
    link = f'{records_link}{record.name}.json'
    commit = f'`{record.commit}`' if record.commit else NOT_RECORDED
    parts = [
        f'### {title}',
        f'<a id="{anchor}"></a>{MODE_LINES[record.mode]} · record [`{link}`]({link})',
        '\n'.join(
            [
                f'- dataset: {record.dataset}',
                f'- date: {record.date}',
                f'- hardware: {record.hardware}',
                f'- commit: {commit}',
            ]
        ),
    ]
    if record.command.strip() and record.command != NOT_RECORDED:
        fence = _fence(record.command)
        parts.append(f'{fence}bash\n{record.command.strip()}\n{fence}')
    else:
        parts.append(f'Command: {NOT_RECORDED}.')
    if record.notes.strip():
        parts.append(record.notes.strip())
    parts.append(render_table(record))
    return '\n\n'.join(parts) + '\n'


def render_results(
    records: Sequence[ResultRecord],
    *,
    records_link: str = 'results/',
    command: str = 'geopeft results',
) -> str:
    """Render every record into the text of ``experiments/RESULTS.md``.

    Args:
        records: The records, in any order.
        records_link: Relative link from the Markdown file to the records folder.
        command: The command that regenerates the file (named in its header).

    Returns:
        The Markdown text (ends with a newline).
    """
    if not records_link.endswith('/'):
        records_link += '/'
    ordered = _order(records)
    anchors = _anchors(ordered)
    full = sum(record.mode == 'full' for record in ordered)
    smoke = len(ordered) - full
    lines = [
        '# Results',
        '',
        f'<!-- Generated by `{command}`: do not edit; edit or add the records in '
        f'{records_link} and regenerate. -->',
        '',
        f'**This file is generated: do not edit it.** Every number below comes from '
        f'a record in [`{records_link}`]({records_link}): one JSON file per table, '
        'with the command that printed it, the hardware, the date, the commit and '
        'whether it is a full run or a smoke run (tiny settings: a check that the '
        f'pipeline runs, not a result). Regenerate it with `{command}`; '
        f'`{command} --check` fails when it differs from the records. Commands '
        'given `--record` write records (see `docs/benchmarks.md`, "Where results '
        'live").',
        '',
        f'{len(ordered)} record(s): {full} full run(s), {smoke} smoke run(s).',
        '',
        '## Summary',
        '',
    ]
    if ordered:
        lines += ['| record | mode | date | hardware |', '|---|---|---|---|']
        for record, anchor in zip(ordered, anchors, strict=True):
            title = _text(' '.join(record.title.split()))
            lines.append(
                f'| [{title}](#{anchor}) | {record.mode} | {record.date} | '
                f'{_text(record.hardware)} |'
            )
    else:
        lines.append('No records yet.')
    text = '\n'.join(lines) + '\n'
    groups = (
        ('full', '## Full runs'),
        ('smoke', '## Smoke runs (pipeline checks, not results)'),
    )
    for mode, heading in groups:
        sections = [
            render_record(record, anchor, records_link)
            for record, anchor in zip(ordered, anchors, strict=True)
            if record.mode == mode
        ]
        if sections:
            text += f'\n{heading}\n\n' + '\n'.join(sections)
    return text
