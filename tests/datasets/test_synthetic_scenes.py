import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geopeft.datasets import SceneFolder, generate_synthetic_scenes
from geopeft.datasets.synthetic_scenes import CLASSES, DESCRIPTION, MANIFEST

PER_CLASS = 3
SIZE = 32


@pytest.fixture(scope='module')
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('synthetic')
    return generate_synthetic_scenes(
        root, per_class=PER_CLASS, size=SIZE, seed=0, progress=False
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob('*.png'))
    }


def test_layout_and_counts(generated: Path) -> None:
    ds = SceneFolder(generated)
    assert ds.classes == list(CLASSES) == sorted(CLASSES)
    assert len(CLASSES) == 8
    assert np.bincount(ds.targets).tolist() == [PER_CLASS] * len(CLASSES)
    with Image.open(next(generated.rglob('*.png'))) as image:
        assert image.size == (SIZE, SIZE)
        assert image.mode == 'RGB'
    manifest = json.loads((generated / MANIFEST).read_text())
    assert manifest['seed'] == 0
    assert manifest['size'] == SIZE
    assert manifest['per_class'] == PER_CLASS


def test_deterministic_for_a_seed(generated: Path, tmp_path: Path) -> None:
    again = generate_synthetic_scenes(
        tmp_path / 'again', per_class=PER_CLASS, size=SIZE, seed=0, progress=False
    )
    assert _files(again) == _files(generated)
    other = generate_synthetic_scenes(
        tmp_path / 'other', per_class=1, size=SIZE, seed=1, progress=False
    )
    first = {k: v for k, v in _files(generated).items() if k.endswith('_0000.png')}
    assert all(first[k] != v for k, v in _files(other).items())


def test_second_call_skips_generation(generated: Path) -> None:
    stamps = {path: path.stat().st_mtime_ns for path in generated.rglob('*.png')}
    generate_synthetic_scenes(
        generated, per_class=PER_CLASS, size=SIZE, seed=0, progress=False
    )
    assert {p: p.stat().st_mtime_ns for p in generated.rglob('*.png')} == stamps


def test_changed_parameters_regenerate_and_drop_stale_files(tmp_path: Path) -> None:
    root = generate_synthetic_scenes(tmp_path, per_class=2, size=16, progress=False)
    (root / 'river' / 'mine.txt').write_text('user file')
    generate_synthetic_scenes(root, per_class=1, size=16, progress=False)
    assert np.bincount(SceneFolder(root).targets).tolist() == [1] * len(CLASSES)
    assert (root / 'river' / 'mine.txt').exists()
    assert json.loads((root / MANIFEST).read_text())['per_class'] == 1


def test_images_differ_across_classes(generated: Path) -> None:
    images = [
        np.asarray(Image.open(generated / name / f'{name}_0000.png'))
        for name in CLASSES
    ]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])
    # Not flat: every image has texture/structure.
    assert all(image.std() > 3 for image in images)


def test_honest_description() -> None:
    assert 'synthetic' in DESCRIPTION.lower()
    assert 'not real' in DESCRIPTION.lower()


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='per_class'):
        generate_synthetic_scenes(tmp_path, per_class=0, progress=False)
