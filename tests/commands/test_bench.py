"""``geopeft bench peft``: variants, repeats, ratios and the worker's measurements."""

import json
import subprocess
from typing import Any

import pytest
import torch

from geopeft.commands import bench, bench_worker, workers
from geopeft.commands.bench import Variant, parse_variant, plan_variants
from geopeft.main import main

TINY = {
    'backbone': 'convnext_atto',
    'bits': None,
    'hidden': None,
    'num_classes': 3,
    'in_channels': 3,
    'img_size': None,
    'batch_size': 2,
    'image_size': 32,
    'steps': 1,
    'warmup': 0,
    'device': 'cpu',
    'channels_last': False,
}
NEW_FIELDS = (
    'variant',
    'grad_checkpointing',
    'precision',
    'threads',
    'forward_ms',
    'backward_ms',
    'optimizer_ms',
    'cpu_ms',
    'cpu_ratio',
    'live_mb',
    'live_ratio',
    'saved_mb',
    'params_without_grad',
    'repeats',
)
OLD_FIELDS = (
    'method',
    'trainable_percent',
    'step_ms',
    'peak_mb',
    'adapter_bytes',
    'step_ratio',
    'memory_ratio',
    'adapter_ratio',
    'device',
    'torch',
)


@pytest.fixture(autouse=True)
def _keep_threads() -> Any:
    """The in-process worker sets the torch thread count; restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_plan_variants_groups_by_method() -> None:
    base = Variant('full')
    variants = plan_variants(
        ['linear', 'upetu'], base, compare=['ckpt'], extra=['upetu+bf16', 'full']
    )
    assert [v.label for v in variants] == [
        'linear',
        'linear+ckpt',
        'upetu',
        'upetu+ckpt',
        'upetu+bf16',
        'full',
    ]
    # The base setting applies to every row; modifiers add to it.
    base = Variant('full', grad_checkpointing=True)
    labels = [v.label for v in plan_variants(['upetu'], base, compare=['bf16'])]
    assert labels == ['upetu+ckpt', 'upetu+ckpt+bf16']


def test_parse_variant() -> None:
    base = Variant('full', precision='bf16')
    assert parse_variant('upetu', base) == Variant('upetu', precision='bf16')
    assert parse_variant('lora+ckpt', base).label == 'lora+ckpt+bf16'


@pytest.mark.parametrize('text', ['upetu+fp16', 'nope+ckpt'])
def test_parse_variant_rejects(text: str) -> None:
    with pytest.raises(ValueError, match='unknown method|modifiers are'):
        parse_variant(text, Variant('full'))


def test_merge_repeats_and_ratios() -> None:
    runs = [
        {'method': 'upetu', 'step_ms': s, 'peak_mb': 10.0, 'live_mb': None}
        for s in (3.0, 1.0, 2.0)
    ]
    row = bench.merge_repeats(runs) | {'adapter_bytes': 5}
    assert row['step_ms'] == 2.0 and row['repeats'] == 3 and row['live_mb'] is None
    reference = {'step_ms': 4.0, 'peak_mb': 20.0, 'live_mb': 8.0, 'adapter_bytes': 50}
    bench.add_ratios([row], reference)
    assert row['step_ratio'] == 0.5 and row['memory_ratio'] == 0.5
    assert row['adapter_ratio'] == 0.1 and row['live_ratio'] is None


def test_measure_checkpointing_bf16() -> None:
    options = TINY | {
        'method': 'upetu',
        'grad_checkpointing': True,
        'precision': 'bf16',
        'threads': 1,
    }
    row = bench_worker.measure(options)
    assert row['grad_checkpointing'] is True and row['precision'] == 'bf16'
    assert row['threads'] == 1
    assert row['params_without_grad'] == 0
    parts = row['forward_ms'] + row['backward_ms'] + row['optimizer_ms']
    assert row['step_ms'] == pytest.approx(parts)
    assert row['saved_mb'] > 0 and row['cpu_ms'] > 0
    if bench_worker.heap_in_use() is not None:
        assert row['live_mb'] > 0


def test_measure_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match='precision'):
        bench_worker.measure(TINY | {'method': 'linear', 'precision': 'fp16'})


def test_bench_variants_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line reaches the worker (run in-process here to stay fast)."""
    seen: list[dict[str, Any]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        options = json.loads(command[-1])
        seen.append(options)
        row = bench_worker.measure(options)
        return subprocess.CompletedProcess(command, 0, json.dumps(row), '')

    monkeypatch.setattr(workers.subprocess, 'run', run)
    argv = [
        'bench',
        'peft',
        '--backbone',
        'convnext_atto',
        '--methods',
        'upetu',
        '--compare',
        'ckpt',
        '--variants',
        'upetu+bf16',
        '--batch-size',
        '2',
        '--image-size',
        '32',
        '--steps',
        '1',
        '--warmup',
        '0',
        '--threads',
        '1',
        '--json',
        '--device',
        'cpu',
    ]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row['variant'] for row in rows] == ['upetu', 'upetu+ckpt', 'upetu+bf16']
    assert [(o['method'], o['grad_checkpointing'], o['precision']) for o in seen] == [
        ('full', False, '32'),
        ('upetu', False, '32'),
        ('upetu', True, '32'),
        ('upetu', False, 'bf16'),
    ]
    for row in rows:
        assert set(OLD_FIELDS + NEW_FIELDS) <= row.keys()
        assert row['method'] == 'upetu' and row['params_without_grad'] == 0
        assert row['step_ms'] > 0 and row['peak_mb'] >= 0 and row['saved_mb'] > 0
        assert row['adapter_ratio'] < 0.1 and row['repeats'] == 1
    assert rows[1]['grad_checkpointing'] and rows[2]['precision'] == 'bf16'
    # Checkpointing keeps block inputs instead of the activations inside blocks.
    assert rows[1]['saved_mb'] < rows[0]['saved_mb']

    table = bench.format_table(rows)
    assert 'upetu+ckpt' in table and 'live MB' in table and 'saved MB' in table


def test_the_batch_image_size_sizes_models_that_take_one() -> None:
    import argparse

    from geopeft.commands.bench import _model_image_size

    def size(backbone: str, img_size: int | None = None) -> int | None:
        args = argparse.Namespace(backbone=backbone, image_size=112, img_size=img_size)
        return _model_image_size(args)

    assert size('convnext_atto') is None
    assert size('vit_tiny_patch16_224') == 112
    assert size('vit_tiny_patch16_224', img_size=96) == 96  # the old --img-size
