"""Benchmark tables and records: rows, rounding, std columns, round trip."""

import json
import shlex
from pathlib import Path

import pytest

from geopeft.benchmarks import (
    METHODS,
    ChangeBenchmarkSettings,
    SceneBenchmarkSettings,
    benchmark_record,
    papermill_command,
)
from geopeft.benchmarks.change import CHANGE_METRICS
from geopeft.benchmarks.measure import Measurement
from geopeft.benchmarks.runs import BenchmarkResult, RunResult
from geopeft.benchmarks.scene import SCENE_METRICS
from geopeft.results import ResultRecord, load_records


def _run(name: str, seed: int, f1: float) -> RunResult:
    scores = {
        'test_ChangedF1': f1,
        'test_ChangedIoU': f1 / 2,
        'test_ChangedPrecision': 0.6,
        'test_ChangedRecall': 0.4,
        'test_OverallAccuracy': f1,
        'test_AverageAccuracy': f1 - 0.01,
    }
    return RunResult(
        method=METHODS[name],
        seed=seed,
        scores=scores,
        trainable=1234,
        total=5000,
        trainable_percent=24.68,
        adapter_bytes=3 * 2**20,
        measurement=Measurement(0.0123456, 4, 5 * 2**20, 'cpu heap', 'cpu'),
        fit_seconds=12.34,
    )


def _result(settings, metrics, seeds: list[int]) -> BenchmarkResult:
    settings = settings.resolve()
    result = BenchmarkResult(
        settings=settings,
        methods=[METHODS['full'], METHODS['upetu-1bit']],
        seeds=seeds,
        metrics=metrics,
        dataset_name=settings.dataset_name(),
    )
    for index, row in enumerate(result.methods):
        for seed in seeds:
            result.runs.append(_run(row.name, seed, 0.5 + 0.1 * index + 0.02 * seed))
    return result


def test_one_seed_table_and_record_round_trip(tmp_path: Path) -> None:
    settings = ChangeBenchmarkSettings(dataset='folder', root=str(tmp_path / 'pairs'))
    result = _result(settings, CHANGE_METRICS, [0])
    assert result.mode == 'full'
    assert result.dataset_name == 'pairs'
    assert result.record_columns == [
        'method',
        'F1',
        'IoU',
        'precision',
        'recall',
        'trainable',
        'trainable %',
        'adapter MB',
        'step ms',
        'peak MB',
        'fit s',
    ]
    rows = result.record_rows()
    assert [row['method'] for row in rows] == ['full', 'upetu-1bit']
    assert rows[1]['F1'] == 0.6
    assert rows[0]['adapter MB'] == 3.0
    assert rows[0]['step ms'] == 12.3
    assert rows[0]['peak MB'] == 5.0
    command = papermill_command('in.ipynb', 'out.ipynb', result.notebook_parameters())
    record = benchmark_record(
        result, experiment='change_detection_benchmark', title='t', command=command
    )
    path = record.save(tmp_path / 'results')
    assert path.name == 'change_detection_benchmark-pairs-full.json'
    (loaded,) = load_records(tmp_path / 'results')
    assert loaded == record
    assert loaded.to_dict() == json.loads(path.read_text())
    assert 'last epoch' in loaded.notes and 'warm-up steps' in loaded.notes
    assert loaded.hardware.startswith('CPU')
    assert 'F1' in result.format_table()


def test_several_seeds_give_std_columns(tmp_path: Path) -> None:
    settings = SceneBenchmarkSettings(out_dir=str(tmp_path)).smoke()
    result = _result(settings, SCENE_METRICS, [0, 1])
    assert result.mode == 'smoke'
    assert result.record_columns[:5] == [
        'method',
        'OA %',
        'OA % std',
        'AA %',
        'AA % std',
    ]
    (full, upetu) = result.record_rows()
    assert full['OA %'] == pytest.approx(51.0)  # mean of 50 % and 52 %, in percent
    assert full['OA % std'] == pytest.approx(1.41, abs=0.01)
    assert '+-' in result.format_table()
    record = benchmark_record(
        result, experiment='scene_classification_benchmark', title='t', command='c'
    )
    assert record.mode == 'smoke'
    assert ResultRecord.from_dict(record.to_dict()) == record


def test_papermill_command_quotes_and_types() -> None:
    command = papermill_command(
        'experiments/notebooks/x.ipynb',
        'out dir/x.ipynb',
        {
            'root': '../data/my folder',
            'weights': None,
            'smoke': False,
            'lr': 0.001,
            'epochs': 20,
            'seeds': [0, 1, 2],
            'decoder_kwargs': {'decoder_channels': [16, 8]},
        },
    )
    parts = shlex.split(command)
    assert parts[:3] == [
        'papermill',
        'experiments/notebooks/x.ipynb',
        'out dir/x.ipynb',
    ]
    pairs = {parts[i + 1]: parts[i + 2] for i, part in enumerate(parts) if part == '-p'}
    assert pairs == {
        'root': '../data/my folder',
        'weights': 'None',
        'smoke': 'False',
        'lr': '0.001',
        'epochs': '20',
        'seeds': '0,1,2',
    }
    yaml = parts[parts.index('-y') + 1]
    assert json.loads(yaml) == {'decoder_kwargs': {'decoder_channels': [16, 8]}}
