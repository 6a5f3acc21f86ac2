"""Benchmark settings, data checks and small end-to-end runs on generated data."""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from change_data import make_levircd, make_oscd
from PIL import Image

from geopeft.benchmarks import (
    ChangeBenchmarkSettings,
    SceneBenchmarkSettings,
    make_smoke_change_folder,
    prediction_samples,
    run_change_benchmark,
    run_scene_benchmark,
)
from geopeft.datasets.errors import DataNotFoundError


def test_unknown_dataset_is_named_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match='Did you mean "levircd"'):
        ChangeBenchmarkSettings(dataset='levir-cd')
    with pytest.raises(ValueError, match='ucm55, aid28, aid55, folder, smoke'):
        SceneBenchmarkSettings(dataset='eurosat')


def test_presets_fill_only_what_is_left_none() -> None:
    settings = ChangeBenchmarkSettings(dataset='oscd', epochs=3).resolve()
    assert (settings.root, settings.epochs, settings.patch_size) == ('data/oscd', 3, 64)
    assert settings.in_channels == 13 and settings.bands[3] == 'B04'
    assert settings.rgb == (3, 2, 1)
    levircd = ChangeBenchmarkSettings().resolve()
    assert (levircd.arch, levircd.batch_size, levircd.patch_size) == ('upernet', 8, 256)
    scene = SceneBenchmarkSettings(dataset='aid28').resolve()
    assert (scene.root, scene.image_size, scene.epochs) == ('data/AID', 224, 100)
    assert SceneBenchmarkSettings(weights='none').weights is None


def test_smoke_settings_keep_the_accelerator_and_output(tmp_path: Path) -> None:
    settings = ChangeBenchmarkSettings(accelerator='cpu', out_dir=str(tmp_path))
    smoke = settings.smoke()
    assert smoke.is_smoke and smoke.weights is None and smoke.accelerator == 'cpu'
    assert smoke.root == str(tmp_path / 'smoke_data')
    # The smoke dataset without a root is generated under out_dir too.
    resolved = SceneBenchmarkSettings(dataset='smoke', out_dir=str(tmp_path)).resolve()
    assert resolved.root == str(tmp_path / 'smoke_data')


@pytest.mark.parametrize(
    ('settings', 'match'),
    [
        (ChangeBenchmarkSettings(dataset='levircd', root='{tmp}'), 'download True'),
        (ChangeBenchmarkSettings(dataset='oscd', root='{tmp}'), 'download True'),
        (ChangeBenchmarkSettings(dataset='folder', root='{tmp}'), 'lacks A, B, label'),
        (SceneBenchmarkSettings(dataset='ucm55', root='{tmp}'), 'download True'),
        (SceneBenchmarkSettings(dataset='aid28', root='{tmp}/AID'), 'no automated'),
        (SceneBenchmarkSettings(dataset='folder', root='{tmp}/x'), 'one sub-folder'),
    ],
)
def test_missing_data_fails_before_any_fit(
    tmp_path: Path, settings, match: str
) -> None:
    settings.root = settings.root.format(tmp=tmp_path)
    run = (
        run_change_benchmark
        if isinstance(settings, ChangeBenchmarkSettings)
        else run_scene_benchmark
    )
    lines: list[str] = []
    with pytest.raises(DataNotFoundError, match=match):
        run(settings, methods='full', seeds=0, progress=lines.append)
    assert lines == []


def test_folder_needs_a_root() -> None:
    with pytest.raises(ValueError, match='needs root'):
        run_change_benchmark(ChangeBenchmarkSettings(dataset='folder'), methods='full')


def test_unknown_method_fails_before_any_fit(tmp_path: Path) -> None:
    settings = ChangeBenchmarkSettings(out_dir=str(tmp_path)).smoke()
    with pytest.raises(ValueError, match='Did you mean "lora"'):
        run_change_benchmark(settings, methods='full,lroa')
    assert not (tmp_path / 'smoke_data').exists()


def test_smoke_change_folder_has_a_known_answer(tmp_path: Path) -> None:
    root = make_smoke_change_folder(tmp_path, size=32, pairs={'train': 2, 'test': 1})
    a = np.asarray(Image.open(root / 'A' / 'train_0.png')).astype(int)
    b = np.asarray(Image.open(root / 'B' / 'train_0.png')).astype(int)
    label = np.asarray(Image.open(root / 'label' / 'train_0.png'))
    changed = np.abs(a - b).sum(-1) > 0
    assert set(np.unique(label)) == {0, 255}
    assert np.array_equal(changed, label == 255)
    assert sorted(p.name for p in (root / 'A').iterdir()) == [
        'test_0.png',
        'train_0.png',
        'train_1.png',
    ]


def test_change_benchmark_on_smoke_data(tmp_path: Path) -> None:
    settings = ChangeBenchmarkSettings(accelerator='cpu', out_dir=str(tmp_path)).smoke()
    lines: list[str] = []
    result = run_change_benchmark(
        settings, methods='linear,upetu', seeds=0, progress=lines.append
    )
    assert [row['method'] for row in result.table()] == ['linear', 'upetu-1bit']
    assert len(lines) == 1 + 2 * 2  # header, then start and result per run
    assert 'F1' in lines[2] and 'step' in lines[2]
    for run in result.runs:
        assert 0 <= run.scores['test_ChangedF1'] <= 1
        assert run.measurement.step_seconds > 0
        assert len(run.samples) == settings.render_pairs
        assert run.samples[0]['image'].shape == (2, 3, 32, 32)
        assert run.samples[0]['prediction'].shape == (32, 32)
    linear, upetu = result.table()
    assert linear['trainable'] < upetu['trainable']
    assert list(prediction_samples(result)) == [
        'linear probe (frozen backbone)',
        'UPetu 1-bit',
    ]
    assert (tmp_path / 'runs' / 'upetu-1bit-seed0' / 'metrics.csv').is_file()


def test_scene_benchmark_over_two_split_seeds(tmp_path: Path) -> None:
    settings = SceneBenchmarkSettings(accelerator='cpu', out_dir=str(tmp_path)).smoke()
    result = run_scene_benchmark(settings, methods='linear', seeds='0,1', progress=str)
    assert [(run.method.name, run.seed) for run in result.runs] == [
        ('linear', 0),
        ('linear', 1),
    ]
    (row,) = result.table()
    assert 0 <= row['OA %'] <= 100 and row['OA % std'] >= 0
    assert result.dataset_name == 'generated synthetic scenes'


@pytest.mark.parametrize(
    ('dataset', 'make', 'bands'),
    [('levircd', make_levircd, 3), ('oscd', make_oscd, 13)],
)
def test_change_benchmark_through_torchgeo_datasets(
    dataset: str, make: Callable[..., Path], bands: int, tmp_path: Path
) -> None:
    # Tiny files laid out as TorchGeo's LEVIRCD / OSCD read them.
    root = make(tmp_path / 'data', size=32)
    smoke = ChangeBenchmarkSettings(accelerator='cpu', out_dir=str(tmp_path)).smoke()
    settings = dataclasses.replace(smoke, dataset=dataset, root=str(root), epochs=1)
    result = run_change_benchmark(settings, methods='linear', seeds=0, progress=str)
    (run,) = result.runs
    assert 0 <= run.scores['test_ChangedF1'] <= 1
    assert run.samples[0]['image'].shape == (2, bands, 32, 32)
