"""Missing, empty, truncated and garbage checkpoints: one line naming the file."""

from pathlib import Path

import pytest
from rasters_data import make_raster

from geopeft.main import main


def _damaged(checkpoint: Path, folder: Path, damage: str) -> Path:
    path = folder / f'{damage}.ckpt'
    data = checkpoint.read_bytes()
    path.write_bytes(
        {'empty': b'', 'truncated': data[: len(data) // 2],
         'garbage': bytes(range(256)) * 40}[damage]
    )  # fmt: skip
    return path


CAUSES = {
    'empty': 'the file is empty',
    'truncated': 'not a complete torch.save archive: truncated',
    'garbage': 'not a complete torch.save archive: truncated',
}


@pytest.mark.parametrize('damage', ['missing', *CAUSES])
@pytest.mark.parametrize('command', ['export-adapter', 'predict-raster'])
def test_bad_checkpoints_are_one_line_naming_the_file(
    seg_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    command: str,
) -> None:
    if damage == 'missing':
        path = tmp_path / 'missing.ckpt'
    else:
        path = _damaged(seg_checkpoint, tmp_path, damage)
    out = tmp_path / 'out.file'
    if command == 'export-adapter':
        argv = ['export-adapter', str(path), str(out)]
    else:
        scene = make_raster(tmp_path / 'scene.tif', size=32, bands=1)
        argv = ['predict-raster', str(scene), str(out), '--ckpt', str(path)]
        argv += ['--no-progress']
    assert main(argv) == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if 'error' in x]
    assert len(errors) == 1 and str(path) in errors[0], errors
    cause = 'not found' if damage == 'missing' else CAUSES[damage]
    assert cause in errors[0]
    assert not out.exists()


def test_a_good_checkpoint_exports(seg_checkpoint: Path, tmp_path: Path) -> None:
    assert (
        main(['export-adapter', str(seg_checkpoint), str(tmp_path / 'a.safetensors')])
        == 0
    )
