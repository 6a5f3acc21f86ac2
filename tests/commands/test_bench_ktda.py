"""``geopeft bench ktda``: variants, rows, table, JSON and the worker subprocess."""

import json
import subprocess
from typing import Any

import pytest
import torch

from geopeft.commands import bench_ktda, bench_ktda_worker, workers
from geopeft.main import main

TINY_ARGV = [
    '--backbone',
    'convnext_atto',
    '--image-size',
    '56',
    '--batch-size',
    '2',
    '--steps',
    '1',
    '--warmup',
    '0',
    '--teacher-kwargs',
    '{"embed_dim": 32, "depth": 4, "num_heads": 2}',
    '--teacher-taps',
    '1',
    '2',
    '3',
    '4',
    '--fmm-heads',
    '2',
    '--head-channels',
    '8',
    '--aux-channels',
    '8',
    '--threads',
    '1',
    '--device',
    'cpu',
]
COLUMNS = (
    'variant',
    'peft',
    'fmm',
    'fmm_depth',
    'distill_pass',
    'total',
    'deployable',
    'trainable',
    'trainable_percent',
    'teacher_params',
    'teacher_ratio',
    'infer_ms',
    'infer_ratio',
    'step_ms',
    'step_ratio',
    'peak_mb',
    'memory_ratio',
    'device',
    'threads',
    'precision',
)


@pytest.fixture(autouse=True)
def _keep_threads() -> Any:
    """The in-process worker sets the torch thread count; restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Run the workers in this process (fast); returns the options they got."""
    seen: list[dict[str, Any]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        assert command[1:3] == ['-m', 'geopeft.commands.bench_ktda_worker']
        options = json.loads(command[-1])
        seen.append(options)
        row = bench_ktda_worker.measure(options)
        return subprocess.CompletedProcess(command, 0, json.dumps(row), '')

    monkeypatch.setattr(workers.subprocess, 'run', run)
    return seen


def test_variants_table() -> None:
    variants = bench_ktda.VARIANTS
    assert list(variants)[0] == bench_ktda.REFERENCE == 'reference'
    assert variants['reference'].fmm_depth == 4 and variants['light'].fmm_depth == 1
    assert variants['peft'].peft == 'upetu' and variants['fam'].fmm == 'none'
    assert variants['reference+second'].distill_pass == 'second'
    assert variants['teacher'].teacher_only
    names = ['light', 'teacher', 'light']
    assert [v.name for v in bench_ktda.parse_variants(names)] == ['light', 'teacher']


def test_unknown_variant_names_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="'nope'.*reference, light, mlp, fam"):
        bench_ktda.parse_variants(['light', 'nope'])
    with pytest.raises(SystemExit) as err:
        main(['bench', 'ktda', '--variants', 'nope', 'teacher'])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "'nope'" in message
    assert all(name in message for name in bench_ktda.VARIANTS)


def test_bad_json_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(['bench', 'ktda', '--teacher-kwargs', '[1, 2]'])
    assert 'JSON object' in capsys.readouterr().err


def test_bench_ktda_table(
    in_process: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    variants = ['fam', 'light', 'peft', 'teacher']
    assert main(['bench', 'ktda', *TINY_ARGV, '--variants', *variants]) == 0
    out = capsys.readouterr().out
    # The reference is measured first for the ratios, but not listed.
    assert [o['variant'] for o in in_process] == ['reference', *variants]
    assert in_process[0]['teacher_kwargs'] == {
        'embed_dim': 32,
        'depth': 4,
        'num_heads': 2,
    }
    lines = out.splitlines()
    assert lines[0].startswith('KTDA students (convnext_atto)')
    assert 'random weights' in lines[0] and '56 px, batch 2' in lines[0]
    assert 'cpu, 1 thread(s)' in lines[0]
    header = lines[1].split()
    for column in ('params', 'deploy', 'train', 'infer', 'step', 'peak', 'ref'):
        assert column in header
    table = {line.split()[0]: line.split() for line in lines[3:7]}
    assert list(table) == variants
    assert table['peft'][1:3] == ['upetu', 'vit']
    assert table['teacher'][-4:] == ['-'] * 4
    assert 'Random teacher weights' in out and 'per image' in out


def test_bench_ktda_rows_json(
    in_process: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    variants = ['reference', 'light', 'fam', 'peft', 'teacher']
    assert main(['bench', 'ktda', *TINY_ARGV, '--json', '--variants', *variants]) == 0
    rows = {row['variant']: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == variants
    assert len(in_process) == len(variants)
    for name, row in rows.items():
        assert set(COLUMNS) <= row.keys(), name
        assert row['infer_ms'] > 0 and row['device'] == 'cpu'
    reference, teacher = rows['reference'], rows['teacher']
    for name in ('reference', 'light', 'fam', 'peft'):
        row = rows[name]
        assert row['deployable'] < row['total']
        assert row['total'] - row['deployable'] == row['groups']['aux_head']
        assert row['step_ms'] > 0 and row['peak_mb'] >= 0
        assert row['params_without_grad'] == 0
        assert row['teacher_params'] == teacher['total']
        assert row['teacher_ratio'] == pytest.approx(
            row['deployable'] / teacher['total']
        )
    assert rows['fam']['total'] < rows['light']['total'] < reference['total']
    assert rows['peft']['trainable'] < reference['trainable']
    assert reference['trainable'] == reference['total']
    assert reference['step_ratio'] == 1.0
    # In-process workers share one resident set, whose peak may not grow (0 MB):
    # then there is no memory ratio.
    expected = 1.0 if reference['peak_mb'] else None
    assert reference['memory_ratio'] == expected
    assert reference['infer_ratio'] == 1.0
    assert (reference['fmm'], reference['fmm_depth']) == ('vit', 4)
    assert (rows['fam']['fmm'], rows['peft']['peft']) == ('none', 'upetu')
    assert teacher['trainable'] == 0 and teacher['teacher_ratio'] == 1.0
    assert teacher['step_ms'] is None and teacher['step_ratio'] is None
    assert teacher['peak_mb'] is None and teacher['infer_ratio'] > 0


def test_second_pass_runs_the_student_again() -> None:
    """``reference+second`` runs the student's backbone and FAM twice per step."""
    args = bench_ktda.parse_args(TINY_ARGV)
    calls = []
    model_align = bench_ktda_worker.KTDAModel.align

    def align(self: Any, x: torch.Tensor) -> list[torch.Tensor]:
        calls.append(x.shape)
        return model_align(self, x)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench_ktda_worker.KTDAModel, 'align', align)
        for name, count in (('reference', 2), ('reference+second', 3)):
            calls.clear()
            variant = bench_ktda.VARIANTS[name]
            row = bench_ktda_worker.measure(bench_ktda.worker_options(args, variant))
            # One training step (forward_train + maybe a second pass), one inference.
            assert len(calls) == count, name
            assert row['distill_pass'] == variant.distill_pass


def test_worker_subprocess() -> None:
    """The worker runs as ``python -m`` from the installed package."""
    args = bench_ktda.parse_args(TINY_ARGV)
    row = bench_ktda.run_variant(
        bench_ktda.worker_options(args, bench_ktda.VARIANTS['teacher'])
    )
    assert row['variant'] == 'teacher' and row['total'] == row['teacher_params']
    assert row['threads'] == 1 and row['infer_ms'] > 0


def test_worker_failure_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(command, 1, '', 'Traceback: boom')

    monkeypatch.setattr(workers.subprocess, 'run', run)
    assert main(['bench', 'ktda', *TINY_ARGV, '--variants', 'light']) == 1
    assert (
        "benchmark of 'reference' failed:\nTraceback: boom" in capsys.readouterr().err
    )
