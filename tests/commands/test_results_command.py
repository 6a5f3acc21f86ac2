"""``geopeft results`` and the ``--record`` option of the result-printing commands."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_bench_ktda import TINY_ARGV as KTDA_TINY
from test_bench_predict import TINY as PREDICT_TINY
from test_bench_sampling import TINY as SAMPLING_TINY
from test_cli import demo_argv

from geopeft.commands import (
    bench,
    bench_ktda,
    bench_ktda_worker,
    bench_predict,
    bench_sampling,
    bench_worker,
    workers,
)
from geopeft.commands import results as results_command
from geopeft.main import main
from geopeft.results import ResultRecord, load_records

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _keep_threads() -> Any:
    """In-process benchmark workers set the torch thread count; restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _record(mode: str = 'full', **fields: Any) -> ResultRecord:
    values = {
        'experiment': 'bench_x',
        'title': 'A table',
        'dataset': 'generated',
        'mode': mode,
        'command': 'geopeft bench x',
        'hardware': 'CPU: 2 cores',
        'date': '2026-11-26',
        'columns': ['name', 'value'],
        'rows': [{'name': 'a', 'value': 1.5}],
    }
    return ResultRecord(**(values | fields))


def test_committed_results_markdown_is_up_to_date(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """experiments/RESULTS.md is what the committed records render to."""
    argv = [
        'results',
        '--check',
        '--dir',
        str(ROOT / 'experiments' / 'results'),
        '--out',
        str(ROOT / 'experiments' / 'RESULTS.md'),
    ]
    status = main(argv)
    assert status == 0, (
        'experiments/RESULTS.md is out of date with experiments/results/*.json: '
        f'run `geopeft results` from the repository root\n{capsys.readouterr().err}'
    )


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = tmp_path / 'experiments' / 'results'
    _record().save(records)
    _record('smoke', experiment='bench_y').save(records)
    out = tmp_path / 'experiments' / 'RESULTS.md'
    argv = ['results', '--dir', str(records), '--out', str(out)]
    assert main(argv) == 0
    assert 'wrote' in capsys.readouterr().out
    text = out.read_text()
    # Laid out as the defaults: the header names the short command and the link.
    assert 'regenerate it with `geopeft results`' in text.lower()
    assert '[`results/`](results/)' in text
    assert text.index('## Full runs') < text.index('## Smoke runs')
    assert main([*argv, '--check']) == 0
    assert main(argv) == 0  # unchanged: not rewritten
    assert 'already up to date' in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name.startswith('.')]

    # A hand edit fails the check, which names the fix and shows the diff.
    out.write_text(text.replace('| 1.5 |', '| 1.6 |'))
    assert main([*argv, '--check']) == 1
    err = capsys.readouterr().err
    assert 'differs from its records' in err and 'geopeft results' in err
    assert '-| a | 1.6 |' in err and '+| a | 1.5 |' in err
    out.unlink()
    assert main([*argv, '--check']) == 1
    assert 'is missing' in capsys.readouterr().err
    assert not out.exists()


def test_other_layout_names_the_paths(tmp_path: Path) -> None:
    _record().save(tmp_path / 'records')
    out = tmp_path / 'docs' / 'numbers.md'
    assert main(['results', '--dir', str(tmp_path / 'records'), '--out', str(out)]) == 0
    text = out.read_text()
    assert '[`../records/`](../records/)' in text
    assert f'`geopeft results --dir {tmp_path / "records"} --out {out}`' in text


def test_bad_records_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / 'RESULTS.md'
    argv = ['results', '--dir', str(tmp_path), '--out', str(out)]
    bad = tmp_path / 'broken.json'
    bad.write_text('{"experiment": ')
    assert main(argv) == 2
    assert f'{bad} is not a valid result record' in capsys.readouterr().err
    bad.write_text(json.dumps(_record().to_dict() | {'rows': [1, 2]}))
    assert main(argv) == 2
    assert "'rows' must be a list of objects" in capsys.readouterr().err
    bad.write_text(json.dumps(_record().to_dict()))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f'rename it to {_record().name}.json' in err
    assert not out.exists()
    assert main(['results', '--dir', str(tmp_path / 'nope'), '--out', str(out)]) == 2
    assert 'no records folder' in capsys.readouterr().err


def test_smoke_rules_follow_the_defaults() -> None:
    parser = bench_predict.build_parser()
    full = parser.parse_args([])
    assert results_command.smoke_reasons('bench_predict', full, parser) == []
    tiny = parser.parse_args(PREDICT_TINY)
    assert results_command.smoke_reasons('bench_predict', tiny, parser) == [
        '--sizes 64 < 2048'
    ]
    parser = bench_sampling.build_parser()
    given = parser.parse_args(['--raster', 'a.tif', '--mosaic', 'm', '--size', '256'])
    assert results_command.smoke_reasons('bench_sampling', given, parser) == []
    generated = parser.parse_args(['--mosaic-grid', '10', '2'])
    assert results_command.smoke_reasons('bench_sampling', generated, parser) == [
        '--mosaic-grid 2 < 10'
    ]
    parser = bench_ktda.build_parser()
    resized = parser.parse_args(['--teacher-kwargs', '{"depth": 4}'])
    assert results_command.smoke_reasons('bench_ktda', resized, parser) == [
        '--teacher-kwargs resizes the teacher (depth)'
    ]
    kept = parser.parse_args(['--teacher-kwargs', '{"drop_path_rate": 0.1}'])
    assert results_command.smoke_reasons('bench_ktda', kept, parser) == []


def _only_record(directory: Path) -> ResultRecord:
    records = load_records(directory)
    assert len(records) == 1
    assert (directory / f'{records[0].name}.json').is_file()
    return records[0]


def _check_provenance(record: ResultRecord, command: str) -> None:
    assert record.command.startswith(command)
    assert record.hardware.startswith('CPU: ') and record.date.count('-') == 2
    assert record.rows and all(set(record.columns) <= row.keys() for row in record.rows)


def test_bench_peft_record(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_run = subprocess.run

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        if command[:3] != [sys.executable, '-m', 'geopeft.commands.bench_worker']:
            return real_run(command, **kwargs)  # git, for the record's commit
        row = bench_worker.measure(json.loads(command[-1]))
        return subprocess.CompletedProcess(command, 0, json.dumps(row), '')

    monkeypatch.setattr(workers.subprocess, 'run', run)
    argv = ['--backbone', 'convnext_atto', '--methods', 'linear', '--batch-size']
    argv += ['2', '--image-size', '32', '--steps', '1', '--warmup', '0']
    argv += ['--device', 'cpu', '--threads', '1', '--record', str(tmp_path)]
    assert main(['bench', 'peft', *argv]) == 0
    assert 'result record (smoke run)' in capsys.readouterr().err
    record = _only_record(tmp_path)
    _check_provenance(record, 'geopeft bench peft --backbone convnext_atto')
    assert record.command.endswith(f'--record {tmp_path}')
    assert record.experiment == 'bench_peft' and record.mode == 'smoke'
    assert record.columns == list(bench.RECORD_COLUMNS)
    assert [row['variant'] for row in record.rows] == ['linear']
    assert '--image-size 32 < 224' in record.notes
    assert record.dataset.endswith('torch threads 1')


def test_bench_predict_record(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fake_run(args: Any, scene: Path) -> dict[str, Any]:
        size = int(scene.name.split('_')[1][:-2])
        return {
            'size': size,
            'chips': size // 8,
            'seconds': 1.1,
            'model_seconds': 1.0,
            'overhead': 1.1,
            'peak_rss_mb': 500.0 + size,
            'device': 'cpu',
            'precision': '32',
            'threads': 1,
            'torch': torch.__version__,
        }

    monkeypatch.setattr(bench_predict, 'run_size', fake_run)
    records = tmp_path / 'records'
    argv = [*PREDICT_TINY, '--data-dir', str(tmp_path), '--json', '--record']
    assert main(['bench', 'predict', *argv, str(records)]) == 0
    assert json.loads(capsys.readouterr().out)  # --json output stays clean
    record = _only_record(records)
    _check_provenance(record, 'geopeft bench predict --sizes 64 96')
    assert record.mode == 'smoke' and '--sizes 64 < 2048' in record.notes
    assert [row['growth_mb'] for row in record.rows] == [0.0, 32.0]
    assert record.rows[0]['cpu_overhead'] is None  # a column the row lacked
    assert 'overhead at 96 px: 1.100 (target <= 1.15): met' in record.notes


def test_bench_sampling_record(tmp_path: Path) -> None:
    records = tmp_path / 'records'
    argv = [*SAMPLING_TINY, '--repeats', '1', '--cache', 'cold']
    argv += ['--cache-dir', str(tmp_path / 'cache'), '--record', str(records)]
    assert bench_sampling.main(argv) == 0
    record = _only_record(records)
    _check_provenance(record, 'geopeft bench sampling --size 256')
    assert record.dataset == 'generated rasters' and record.mode == 'smoke'
    assert record.columns == list(bench_sampling.RECORD_COLUMNS)
    assert len(record.rows) == 2 * len(bench_sampling.METHODS)
    assert 'GDAL' in record.notes


def test_bench_ktda_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = subprocess.run

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        if command[:3] != [sys.executable, '-m', 'geopeft.commands.bench_ktda_worker']:
            return real_run(command, **kwargs)  # git, for the record's commit
        row = bench_ktda_worker.measure(json.loads(command[-1]))
        return subprocess.CompletedProcess(command, 0, json.dumps(row), '')

    monkeypatch.setattr(workers.subprocess, 'run', run)
    argv = [*KTDA_TINY, '--variants', 'fam', '--record', str(tmp_path)]
    assert main(['bench', 'ktda', *argv]) == 0
    record = _only_record(tmp_path)
    _check_provenance(record, 'geopeft bench ktda --backbone convnext_atto')
    # The JSON option is quoted so that the command can be pasted into a shell.
    assert '\'{"embed_dim": 32, "depth": 4, "num_heads": 2}\'' in record.command
    assert record.mode == 'smoke' and 'resizes the teacher' in record.notes
    assert [row['variant'] for row in record.rows] == ['fam']


def test_demo_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = tmp_path / 'records'
    argv = demo_argv(tmp_path / 'demo', '--methods', 'linear', '--record')
    assert main([*argv, str(records)]) == 0
    record = _only_record(records)
    _check_provenance(record, 'geopeft demo --out')
    assert record.experiment == 'demo' and record.mode == 'smoke'
    assert '--weights none (random weights)' in record.notes
    assert '--epochs 1 < 6' in record.notes and '--per-class 2 < 40' in record.notes
    assert '--test-per-class 1 < 125' in record.notes
    (row,) = record.rows
    assert row['method'] == 'linear' and 0 <= row['test_accuracy_percent'] <= 100
    assert 0 <= row['scene_pixel_accuracy_percent'] <= 100  # it mapped the scene
    assert 'adapter_file' not in row  # no local paths in records
