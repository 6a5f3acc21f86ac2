"""``geopeft bench predict``: scenes, the worker's measurements, table and targets."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

from geopeft.commands import bench_predict, bench_predict_worker

TINY = ['--sizes', '64', '96', '--chip-size', '32', '--overlap', '8', '--tile', '32']


@pytest.fixture(autouse=True)
def _keep_threads() -> Any:
    """The in-process worker may set the torch thread count; restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_make_scene_is_a_tiled_compressed_geotiff(tmp_path: Path) -> None:
    path = bench_predict.make_scene(tmp_path / 's.tif', 80, dtype='uint16', tile=32)
    with rasterio.open(path) as scene:
        assert (scene.width, scene.height, scene.count) == (80, 80, 3)
        assert scene.block_shapes[0] == (32, 32) and scene.compression is not None
        data = scene.read()
    assert data.dtype == np.uint16 and 0 < data.std() and data.max() <= 4095
    assert [p.name for p in tmp_path.iterdir()] == ['s.tif']  # no temporaries


def test_measure_times_the_model_on_the_same_chips(tmp_path: Path) -> None:
    scene = bench_predict.make_scene(tmp_path / 's.tif', 64, tile=32)
    row = bench_predict_worker.measure(
        {
            'scene': str(scene),
            'arch': 'unet',
            'encoder': 'resnet18',
            'in_channels': 3,
            'classes': 2,
            'chip_size': 32,
            'overlap': 8,
            'batch_size': 2,
            'device': 'cpu',
            'precision': 'auto',
            'threads': 1,
        }
    )
    assert row['size'] == 64 and row['chips'] == row['model_chips'] == 9
    assert row['overhead'] == pytest.approx(row['seconds'] / row['model_seconds'])
    assert row['model_seconds'] == pytest.approx(
        (row['model_seconds_before'] + row['model_seconds_after']) / 2
    )
    assert row['cpu_overhead'] > 0
    assert row['peak_rss_mb'] >= row['rss_before_mb'] > 0  # peak: lifetime max
    assert row['precision'] == '32' and row['device'] == 'cpu'


def test_bench_prints_table_and_targets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fake_run(args: Any, scene: Path) -> dict[str, Any]:
        size = int(scene.name.split('_')[1][:-2])
        return {
            'size': size,
            'chips': size // 8,
            'seconds': 1.1 if size == 64 else 2.4,
            'model_seconds': 1.0 if size == 64 else 2.0,
            'overhead': 1.1 if size == 64 else 1.2,
            'peak_rss_mb': 500.0 if size == 64 else 650.0,
            'device': 'cpu',
            'precision': '32',
            'threads': 1,
            'torch': torch.__version__,
        }

    monkeypatch.setattr(bench_predict, 'run_size', fake_run)
    argv = [*TINY, '--data-dir', str(tmp_path)]
    assert bench_predict.main(argv) == 0
    out = capsys.readouterr().out
    assert 'overhead' in out and 'peak RSS MB' in out
    assert 'overhead at 96 px: 1.200 (target <= 1.15): NOT met' in out
    assert 'peak RSS at 96 px - at 64 px: 150 MB (target <= 200 MB): met' in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'scene_64px_3b_uint8_tile32.tif',
        'scene_96px_3b_uint8_tile32.tif',
    ]
    assert bench_predict.main([*argv, '--json']) == 0  # scenes are reused
    rows = json.loads(capsys.readouterr().out)
    assert [row['growth_mb'] for row in rows] == [0.0, 150.0]


def test_worker_runs_in_a_subprocess(tmp_path: Path) -> None:
    args = bench_predict.build_parser().parse_args(
        [*TINY, '--threads', '1', '--data-dir', str(tmp_path)]
    )
    scene = bench_predict.make_scene(tmp_path / 's.tif', 64, tile=32)
    row = bench_predict.run_size(args, scene)
    assert row['size'] == 64 and row['chips'] == 9 and row['threads'] == 1
