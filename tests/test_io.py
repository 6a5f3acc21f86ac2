from pathlib import Path

import pytest

from geopeft.io import atomic_output, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / 'sub' / 'out.json'
    assert atomic_write_text(path, 'first') == 5
    atomic_write_text(path, 'second')
    assert path.read_text() == 'second'
    assert [p.name for p in path.parent.iterdir()] == ['out.json']


def test_failure_leaves_previous_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / 'out.txt'
    path.write_text('old')
    with pytest.raises(RuntimeError), atomic_output(path) as temporary:
        temporary.write_text('half')
        raise RuntimeError('interrupted')
    assert path.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['out.txt']
