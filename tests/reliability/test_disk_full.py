"""A full disk (ENOSPC) midway leaves no file at the final path."""

import errno
import os
from pathlib import Path

import pytest
import timm
import torch
from rasters_data import make_raster
from torch import Tensor, nn

from geopeft.peft import apply_peft, save_adapter
from geopeft.predict import partial_path, predict_raster
from geopeft.predict import writer as writer_module


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_an_adapter_save_on_a_full_disk_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = nn.Sequential(timm.create_model('resnet18', num_classes=0))
    apply_peft(model[0], 'upetu', name='resnet18')
    path = tmp_path / 'adapter.safetensors'
    path.write_bytes(b'the previous adapter')
    monkeypatch.setattr(os, 'fsync', _no_space)
    with pytest.raises(OSError, match='No space left'):
        save_adapter(model, path)
    assert path.read_bytes() == b'the previous adapter'  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ['adapter.safetensors']


def test_a_prediction_on_a_full_disk_leaves_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_raster(tmp_path / 'scene.tif', size=64, values='random')
    out = tmp_path / 'map.tif'

    def model(x: Tensor) -> Tensor:
        return torch.cat([x[:, :1], -x[:, :1]], dim=1)

    flushes = []
    original = writer_module.GeoTIFFStripWriter._flush

    def flush_then_fill(self: writer_module.GeoTIFFStripWriter) -> None:
        flushes.append(1)
        if len(flushes) > 1:  # the disk fills after the first block-row
            _no_space()
        original(self)

    monkeypatch.setattr(writer_module.GeoTIFFStripWriter, '_flush', flush_then_fill)
    with pytest.raises(OSError, match='No space left') as info:
        predict_raster(
            model, scene, out, chip_size=32, overlap=8, blocksize=16, progress=False
        )
    assert not out.exists()
    assert partial_path(out).exists()  # kept to resume, as the note says
    assert 'run the same prediction again to resume' in ' '.join(info.value.__notes__)
