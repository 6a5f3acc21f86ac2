"""Faults around outputs: concurrent writers, outputs that are inputs, stale locks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasters_data import make_raster
from torch import Tensor

from geopeft.commands import predict_raster as command
from geopeft.predict import partial_path, predict_raster, progress_path
from geopeft.predict.encoding import OutputEncoding
from geopeft.predict.lock import OutputBusyError, OutputLock, lock_path
from geopeft.predict.windows import RasterGrid
from geopeft.predict.writer import GeoTIFFStripWriter

FAST = {'progress': False, 'blocksize': 16, 'batch_size': 8, 'overlap': 4}


def two_classes(x: Tensor) -> Tensor:
    return torch.cat([x[:, :1], -x[:, :1]], dim=1)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return make_raster(tmp_path / 'scene.tif', size=(40, 40), values='random')


def test_a_second_writer_of_the_same_output_is_refused(
    tmp_path: Path, scene: Path
) -> None:
    out = tmp_path / 'map.tif'
    with rasterio.open(scene) as dataset:
        grid = RasterGrid.of(dataset)
    first = GeoTIFFStripWriter(out, grid, OutputEncoding('classes', 2), blocksize=16)
    first.open()
    first.write(0, np.zeros((1, 16, grid.width), np.uint8))
    before = partial_path(out).read_bytes()
    with pytest.raises(OutputBusyError, match=rf'pid {os.getpid()}'):
        predict_raster(two_classes, scene, out, chip_size=16, **FAST)
    # The refused run touched nothing of the first one's files.
    assert partial_path(out).read_bytes() == before
    assert progress_path(out).exists() and not out.exists()
    first.close()
    assert not lock_path(out).exists()
    # Once the first writer let go, the same prediction runs (and resumes).
    predict_raster(two_classes, scene, out, chip_size=16, **FAST)
    assert out.exists() and not lock_path(out).exists()
    assert not partial_path(out).exists()


def test_a_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / 'map.tif'
    holder = subprocess.Popen(
        [
            sys.executable,
            '-c',
            'import sys, time; from geopeft.predict.lock import OutputLock; '
            'lock = OutputLock(sys.argv[1]); lock.acquire(); '
            'print("locked", flush=True); time.sleep(60)',
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(OutputBusyError, match=rf'pid {holder.pid} on '):
            OutputLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(out).exists()  # left behind by kill -9, but not locked
    with OutputLock(out) as lock:
        assert lock.held
    assert not lock_path(out).exists()


def test_a_failed_prediction_lets_go_of_its_output(tmp_path: Path, scene: Path) -> None:
    out = tmp_path / 'map.tif'

    def failing(x: Tensor) -> Tensor:
        raise RuntimeError('model failed')

    for _ in range(2):  # the second attempt is not refused by the first
        with pytest.raises(RuntimeError, match='model failed'):
            predict_raster(failing, scene, out, chip_size=16, **FAST)
    assert not lock_path(out).exists()


@pytest.mark.parametrize('through', ['path', 'symlink', 'relative'])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(
    tmp_path: Path,
    seg_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    through: str,
) -> None:
    scene = make_raster(tmp_path / 'scene.tif', size=(40, 40), values='random')
    before = scene.read_bytes()
    ckpt = seg_checkpoint
    out = str(scene)
    if through == 'symlink':
        (tmp_path / 'link.tif').symlink_to(scene)
        out = str(tmp_path / 'link.tif')
    elif through == 'relative':
        monkeypatch.chdir(tmp_path)
        out = 'scene.tif'
    argv = [str(scene), out, '--ckpt', str(ckpt), '--overwrite', '--no-progress']
    assert command.main([*argv, '--chip-size', '32', '--blocksize', '16']) == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if 'error' in x]
    assert len(errors) == 1 and 'is the input' in errors[0], errors
    assert scene.read_bytes() == before
    assert not partial_path(Path(out)).exists()


def _rows_done(out: Path) -> int:
    try:
        return int(json.loads(progress_path(out).read_text())['rows_done'])
    except (OSError, ValueError, KeyError):
        return 0


def test_predict_raster_killed_and_rerun_writes_the_uninterrupted_map(
    tmp_path: Path, seg_checkpoint: Path
) -> None:
    source = make_raster(
        tmp_path / 'scene.tif', size=(768, 96), bands=1, values='random', tile=16
    )
    options = ['--ckpt', str(seg_checkpoint), '--mean', '0', '--std', '1']
    options += ['--chip-size', '32', '--overlap', '8', '--batch-size', '1']
    options += ['--blocksize', '16', '--output', 'probabilities', '--no-progress']
    whole = tmp_path / 'whole.tif'
    assert command.main([str(source), str(whole), *options]) == 0

    out = tmp_path / 'map.tif'
    argv = [sys.executable, '-m', 'geopeft.main', 'predict-raster', str(source)]
    run = subprocess.Popen([*argv, str(out), *options], stderr=subprocess.DEVNULL)
    try:
        while _rows_done(out) == 0 and run.poll() is None:
            time.sleep(0.01)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    done = _rows_done(out)
    assert run.returncode == -signal.SIGKILL and 0 < done < 768, (run.returncode, done)
    assert not out.exists() and partial_path(out).exists()
    assert lock_path(out).exists()  # left by kill -9, not held

    assert command.main([str(source), str(out), *options]) == 0
    assert not partial_path(out).exists() and not lock_path(out).exists()
    with rasterio.open(whole) as a, rasterio.open(out) as b:
        assert a.profile.keys() == b.profile.keys()
        assert all(str(a.profile[k]) == str(b.profile[k]) for k in a.profile)
        assert np.array_equal(a.read(), b.read(), equal_nan=True)
