"""Result records (geopeft.results) and their Markdown (geopeft.results_markdown)."""

import json
from pathlib import Path
from typing import Any

import pytest

from geopeft.results import (
    NOT_RECORDED,
    ResultRecord,
    load_record,
    load_records,
)
from geopeft.results_markdown import format_column, render_results, render_table


def _record(mode: str = 'full', **fields: Any) -> ResultRecord:
    values = {
        'experiment': 'bench_x',
        'title': 'A table',
        'dataset': 'generated',
        'mode': mode,
        'command': 'geopeft bench x --steps 5',
        'hardware': 'CPU: 2 cores',
        'date': '2026-11-26',
        'columns': ['name', 'value'],
        'rows': [{'name': 'a', 'value': 1.5}],
        'commit': 'abc1234',
    }
    return ResultRecord(**(values | fields))


@pytest.mark.parametrize('date', ['2026-11-26', '2026-11-25/2026-11-26', NOT_RECORDED])
def test_dates(date: str) -> None:
    assert _record(date=date).date == date


@pytest.mark.parametrize('date', ['26/11/2026', '2026-11-25/26', 'yesterday', ''])
def test_bad_dates(date: str) -> None:
    with pytest.raises(ValueError, match='ISO date'):
        _record(date=date)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    first = _record(rows=[{'name': 'a', 'value': 1.5, 'extra': [1, 2]}])
    path = first.save(tmp_path)
    assert path.name == 'bench_x-generated-full.json'
    second = _record('smoke', experiment='a_first')
    second.save(tmp_path)
    assert load_record(path) == first
    assert [r.experiment for r in load_records(tmp_path)] == ['a_first', 'bench_x']
    assert load_records(tmp_path / 'missing') == []


@pytest.mark.parametrize(
    ('content', 'message'),
    [
        ('{"experiment": ', 'Expecting value'),
        ('[1, 2]', 'a record is a JSON object, not list'),
        (
            json.dumps(_record().to_dict() | {'columns': 'name'}),
            "'columns' must be a list of strings",
        ),
        (
            json.dumps(_record().to_dict() | {'rows': [['a', 1.5]]}),
            "'rows' must be a list of objects",
        ),
        (json.dumps(_record().to_dict() | {'title': 3}), "'title' must be a str"),
        (json.dumps(_record().to_dict() | {'rows': [{}]}), 'lacks columns'),
        (json.dumps(_record().to_dict() | {'speed': 1}), 'unknown result-record'),
        (json.dumps(_record().to_dict() | {'mode': 'quick'}), 'mode must be one of'),
    ],
)
def test_bad_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / 'bad.json'
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_records(tmp_path)
    assert str(err.value).startswith(f'{path} is not a valid result record')


def test_format_column_numbers() -> None:
    # One number of decimals per column; never more than a value holds.
    assert format_column('step_ms', [1337.4, 401.9, None]) == ['1,337.4', '401.9', '-']
    assert format_column('ratio', [1.0, 0.75, 0.3]) == ['1.00', '0.75', '0.30']
    assert format_column('ratio', [1.0, 0.0006]) == ['1.0000', '0.0006']
    assert format_column('percent', [100.0, 0.058]) == ['100.000', '0.058']
    # Measured floats: 4 significant digits, at most 4 decimals.
    assert format_column('ms', [1337.41234, 2.0]) == ['1,337.4', '2.0']
    assert format_column('f1', [0.812345, 0.5]) == ['0.8123', '0.5000']
    assert format_column('share', [0.000123]) == ['0.0001']
    assert format_column('growth', [0.0, 67.0]) == ['0', '67']
    # Integers stay exact, in any column.
    assert format_column('n', [111365932, 3]) == ['111,365,932', '3']
    assert format_column('mixed', [394, 146.9]) == ['394', '146.9']
    assert format_column('x', [float('nan'), 1.5]) == ['nan', '1.5']


def test_format_column_bytes_text_and_objects() -> None:
    assert format_column('adapter_bytes', [211620, 111365932, 0, None]) == [
        '0.202 MB',
        '106 MB',
        '0 MB',
        '-',
    ]
    assert format_column('note', ['a | b', 'two\nlines', True, [1, 2]]) == [
        'a \\| b',
        'two lines',
        'yes',
        '[1, 2]',
    ]


def test_render_table_aligns_numbers() -> None:
    record = _record(
        columns=['name', 'value', 'text'],
        rows=[
            {'name': 'a', 'value': 1, 'text': 'x'},
            {'name': 'b', 'value': None, 'text': 2},
        ],
    )
    assert render_table(record).splitlines() == [
        '| name | value | text |',
        '|---|---:|---|',
        '| a | 1 | x |',
        '| b | - | 2 |',
    ]
    assert render_table(_record(rows=[])) == '(no rows)'


def test_render_results() -> None:
    smoke = _record('smoke', experiment='a_smoke', title='Tiny check')
    full = _record(
        experiment='z_full',
        title='Real\nrun',
        commit='',
        notes='Read me.',
        command='geopeft x --json \'{"a": 1}\' ```',
    )
    unknown = _record(
        experiment='y_transcribed', command=NOT_RECORDED, date=NOT_RECORDED
    )
    text = render_results([smoke, full, unknown])
    assert text.startswith('# Results\n')
    assert 'This file is generated: do not edit it.' in text
    assert 'Regenerate it with `geopeft results`' in text
    assert '3 record(s): 2 full run(s), 1 smoke run(s).' in text
    # Summary: full runs first, each linked to its section.
    summary = text[text.index('## Summary') : text.index('## Full runs')]
    assert summary.index('Real run') < summary.index('Tiny check')
    assert f'| [Tiny check](#{smoke.name}) | smoke | 2026-11-26 | CPU: 2 cores |' in (
        summary
    )
    sections = text[text.index('## Full runs') :]
    assert sections.index('### Real run') < sections.index('## Smoke runs')
    assert sections.index('## Smoke runs') < sections.index('### Tiny check')
    assert f'<a id="{full.name}"></a>**full run**' in text
    assert '**smoke run (pipeline check, not a result)**' in text
    assert f'[`results/{full.name}.json`](results/{full.name}.json)' in text
    assert '- commit: not recorded' in text and '- commit: `abc1234`' in text
    assert '- date: not recorded' in text and f'Command: {NOT_RECORDED}.' in text
    # A command holding backticks gets a longer fence.
    assert '````bash\ngeopeft x --json \'{"a": 1}\' ```\n````' in text
    assert 'Read me.' in text and '| a | 1.5 |' in text
    # The same records in another order render the same.
    assert render_results([unknown, full, smoke]) == text


def test_render_results_edge_cases() -> None:
    assert 'No records yet.' in render_results([])
    assert '## Full runs' not in render_results([])
    same = [_record(), _record()]
    text = render_results(same, records_link='../records', command='geopeft results')
    name = same[0].name
    assert f'(#{name})' in text and f'(#{name}-2)' in text
    assert f'[`../records/{name}.json`]' in text
