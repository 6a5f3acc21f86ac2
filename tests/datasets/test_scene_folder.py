from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from geopeft.datasets import AID, SceneDatasetNotFoundError, SceneFolder


def _write_images(folder: Path, count: int, size: int, suffix: str, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f'{folder.name}_{i}{suffix}')


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / 'scenes'
    _write_images(root / 'zebra', 2, 24, '.png', 0)
    _write_images(root / 'apple', 3, 32, '.jpg', 1)
    _write_images(root / 'mango', 2, 16, '.tif', 2)
    (root / '.hidden').mkdir()
    (root / 'apple' / 'notes.txt').write_text('not an image')
    return root


class TestSceneFolder:
    def test_classes_targets_and_samples(self, folder_root: Path) -> None:
        ds = SceneFolder(folder_root)
        assert ds.classes == ['apple', 'mango', 'zebra']
        assert sorted(ds.targets) == [0, 0, 0, 1, 1, 2, 2]
        assert len(ds) == 7
        sample = ds[0]
        assert sample['image'].shape == (3, 32, 32)
        assert sample['image'].dtype == torch.float32
        assert sample['label'].dtype == torch.int64
        assert ds[len(ds) - 1]['image'].shape == (3, 24, 24)

    def test_transforms(self, folder_root: Path) -> None:
        def halve(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {**sample, 'image': sample['image'] / 2}

        assert SceneFolder(folder_root, transforms=halve)[0]['image'].max() <= 127.5

    def test_plot(self, folder_root: Path) -> None:
        ds = SceneFolder(folder_root)
        sample = ds[0]
        fig = ds.plot(sample, suptitle='test')
        plt.close(fig)
        sample['prediction'] = torch.tensor(1)
        fig = ds.plot(sample, show_titles=False)
        assert fig.axes[0].get_title() == ''
        plt.close(fig)

    def test_missing_root(self, tmp_path: Path) -> None:
        missing = tmp_path / 'nowhere'
        with pytest.raises(DatasetNotFoundError, match='does not exist') as info:
            SceneFolder(missing)
        assert str(missing) in str(info.value)
        assert '<class>' in str(info.value)

    def test_empty_root(self, tmp_path: Path) -> None:
        with pytest.raises(SceneDatasetNotFoundError, match='no class folder'):
            SceneFolder(tmp_path)

    def test_empty_class_folder(self, folder_root: Path) -> None:
        (folder_root / 'empty').mkdir()
        with pytest.raises(SceneDatasetNotFoundError, match='no image in the class'):
            SceneFolder(folder_root)


AID_CLASSES = AID.expected_classes


@pytest.fixture(scope='module')
def aid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('aid') / 'AID'
    for i, name in enumerate(AID_CLASSES):
        _write_images(root / name, 2, 600 if i == 0 else 20, '.jpg', i)
    return root


class TestAID:
    def test_classes(self, aid_root: Path) -> None:
        ds = AID(aid_root)
        assert len(AID_CLASSES) == 30
        assert ds.classes == sorted(AID_CLASSES) == list(AID_CLASSES)
        assert len(ds) == 60
        assert sorted(set(ds.targets)) == list(range(30))
        assert ds[0]['image'].shape == (3, 600, 600)

    def test_parent_folder_named_aid(self, aid_root: Path) -> None:
        assert len(AID(aid_root.parent)) == 60

    def test_extra_folders_are_ignored(self, aid_root: Path) -> None:
        _write_images(aid_root / 'Unrelated', 1, 8, '.jpg', 0)
        try:
            assert len(AID(aid_root).classes) == 30
        finally:
            for file in (aid_root / 'Unrelated').iterdir():
                file.unlink()
            (aid_root / 'Unrelated').rmdir()

    def test_missing_classes(self, tmp_path: Path) -> None:
        for name in AID_CLASSES[:-2]:
            _write_images(tmp_path / name, 1, 8, '.jpg', 0)
        with pytest.raises(SceneDatasetNotFoundError) as info:
            AID(tmp_path)
        message = str(info.value)
        assert 'StorageTanks, Viaduct' in message
        assert '2 of 30' in message
        assert 'captain-whu' in message
        assert 'no stable automated download' in message

    def test_download_explains_manual_download(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match='download=True cannot fetch'):
            AID(tmp_path, download=True)
