import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from change_data import make_change_folder, make_levircd
from PIL import Image
from torchgeo.datasets import LEVIRCD, DatasetNotFoundError

from geopeft.datasets import ChangeDatasetNotFoundError, ChangeFolder


@pytest.fixture(scope='module')
def prefix_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_change_folder(tmp_path_factory.mktemp('prefix'), pairs_per_split=3)


@pytest.fixture(scope='module')
def list_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BIT layout: no prefixes, split lists, 4-band GeoTIFFs, PNG labels."""
    return make_change_folder(
        tmp_path_factory.mktemp('lists'), pairs_per_split=2, layout='list', bands=4
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh prefix layout that a test may break."""
    return make_change_folder(tmp_path / 'cd', size=16, pairs_per_split=2)


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array.astype(np.uint8)).save(path)


class TestSamples:
    def test_sample_format_equals_levircd(self, tmp_path: Path) -> None:
        root = make_levircd(tmp_path)
        for split in ('train', 'val', 'test'):
            ours, theirs = ChangeFolder(root, split), LEVIRCD(root, split)
            assert len(ours) == len(theirs)
            for index in range(len(ours)):
                a, b = ours[index], theirs[index]
                assert a.keys() == b.keys() == {'image', 'mask'}
                for key in a:
                    assert a[key].shape == b[key].shape
                    assert a[key].dtype == b[key].dtype
                    assert torch.equal(a[key], b[key])
        sample = ChangeFolder(root)[0]
        assert sample['image'].shape == (2, 3, 32, 32)
        assert sample['image'].dtype == torch.float32
        assert sample['image'].max() > 200  # 0-255 scale kept
        assert sample['mask'].shape == (1, 32, 32)
        assert sample['mask'].dtype == torch.int64
        assert set(sample['mask'].unique().tolist()) == {0, 1}

    def test_pattern_change_is_where_the_label_is(self, prefix_root: Path) -> None:
        sample = ChangeFolder(prefix_root)[0]
        changed = (sample['image'][1] != sample['image'][0]).any(0)
        assert torch.equal(changed, sample['mask'][0].bool())

    def test_prefix_splits(self, prefix_root: Path) -> None:
        for split in ('train', 'val', 'test'):
            ds = ChangeFolder(prefix_root, split, split_source='prefix')
            assert len(ds) == 3
            assert all(f['image1'].name.startswith(f'{split}_') for f in ds.files)
            assert [f['image1'].name for f in ds.files] == [
                f['image2'].name for f in ds.files
            ]

    def test_list_splits_multiband_tifs(self, list_root: Path) -> None:
        names = {}
        for split in ('train', 'val', 'test'):
            ds = ChangeFolder(list_root, split)
            assert ds.resolve_split_source(list_root, split) == 'list'
            assert len(ds) == 2
            names[split] = {f['image1'].name for f in ds.files}
            sample = ds[1]
            assert sample['image'].shape == (2, 4, 32, 32)
            assert sample['mask'].shape == (1, 32, 32)
            assert ds.files[0]['mask'].suffix == '.png'  # twin by stem
        assert not names['train'] & names['val']
        assert not names['train'] & names['test']

    def test_list_entries_without_extension(self, tmp_path: Path) -> None:
        root = make_change_folder(tmp_path, size=16, pairs_per_split=2, layout='list')
        (root / 'list' / 'val.txt').write_text('pair_003\n\npair_002\n')
        ds = ChangeFolder(root, 'val')
        assert [f['image1'].name for f in ds.files] == ['pair_003.png', 'pair_002.png']

    def test_auto_prefers_lists(self, root: Path) -> None:
        (root / 'list').mkdir()
        (root / 'list' / 'train.txt').write_text('test_0.png\n')
        assert len(ChangeFolder(root, 'train')) == 1
        assert len(ChangeFolder(root, 'train', split_source='prefix')) == 2
        assert ChangeFolder(root, 'val').resolve_split_source(root, 'val') == 'prefix'

    def test_has_split(self, root: Path, list_root: Path) -> None:
        assert ChangeFolder.has_split(root, 'val')
        assert ChangeFolder.has_split(list_root, 'val')
        assert not ChangeFolder.has_split(list_root, 'val', 'prefix')
        for file in (root / 'A').glob('val_*'):
            file.unlink()
        assert not ChangeFolder.has_split(root, 'val')
        assert not ChangeFolder.has_split(root, 'val', 'list')

    def test_binary_labels_stored_as_0_1(self, tmp_path: Path) -> None:
        root = make_change_folder(tmp_path, size=16, pairs_per_split=1, label_scale=1)
        mask = ChangeFolder(root)[0]['mask']
        assert set(mask.unique().tolist()) == {0, 1}

    def test_multiclass_label_values(self, root: Path) -> None:
        label = np.zeros((16, 16), dtype=np.uint8)
        label[:4], label[4:8] = 128, 255
        _save(label, root / 'label' / 'train_0.png')
        ds = ChangeFolder(root, label_values=[0, 128, 255])
        assert ds.num_classes == 3
        mask = ds[0]['mask']
        assert mask[0, :4].eq(1).all() and mask[0, 4:8].eq(2).all()
        assert mask[0, 8:].eq(0).all()

    def test_palette_and_rgb_labels(self, root: Path) -> None:
        label = np.zeros((16, 16), dtype=np.uint8)
        label[:5] = 1
        palette = Image.fromarray(label, mode='L').convert('P')
        palette.save(root / 'label' / 'train_0.png')
        rgb = np.repeat((label * 255)[..., None], 3, axis=-1)
        _save(rgb, root / 'label' / 'train_1.png')
        ds = ChangeFolder(root)
        for index in (0, 1):
            assert ds[index]['mask'][0, :5].eq(1).all()
            assert ds[index]['mask'][0, 5:].eq(0).all()

    def test_transforms(self, prefix_root: Path) -> None:
        def halve(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {**sample, 'image': sample['image'] / 2}

        ds = ChangeFolder(prefix_root, transforms=halve)
        assert ds[0]['image'].max() <= 127.5

    def test_plot(self, prefix_root: Path, list_root: Path) -> None:
        ds = ChangeFolder(prefix_root)
        sample = ds[0]
        fig = ds.plot(sample, suptitle='pair')
        assert [ax.get_title() for ax in fig.axes] == ['Date 1', 'Date 2', 'Mask']
        plt.close(fig)
        sample['prediction'] = sample['mask'].clone()
        fig = ds.plot(sample, show_titles=False)
        assert len(fig.axes) == 4
        assert all(ax.get_title() == '' for ax in fig.axes)
        plt.close(fig)
        multiband = ChangeFolder(list_root)
        fig = multiband.plot({**multiband[0], 'prediction': sample['mask'][0]})
        plt.close(fig)


class TestErrors:
    def test_missing_root(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match='does not exist') as info:
            ChangeFolder(tmp_path / 'nowhere')
        assert 'label' in str(info.value)

    @pytest.mark.parametrize('folder', ['A', 'B', 'label'])
    def test_missing_folder(self, root: Path, folder: str) -> None:
        shutil.rmtree(root / folder)
        with pytest.raises(
            ChangeDatasetNotFoundError, match=rf'folder\(s\) {folder} missing'
        ):
            ChangeFolder(root)

    @pytest.mark.parametrize('folder', ['B', 'label'])
    def test_missing_twin(self, root: Path, folder: str) -> None:
        (root / folder / 'train_1.png').unlink()
        with pytest.raises(ChangeDatasetNotFoundError, match='twin') as info:
            ChangeFolder(root)
        assert f'{folder}/train_1.png' in str(info.value)
        assert len(ChangeFolder(root, 'val')) == 2  # other splits are fine

    def test_dates_of_different_size(self, root: Path) -> None:
        _save(np.zeros((12, 16, 3)), root / 'B' / 'train_0.png')
        with pytest.raises(ValueError, match='two dates of train_0.png') as info:
            ChangeFolder(root)[0]
        message = str(info.value)
        assert '(3, 16, 16)' in message and '(3, 12, 16)' in message

    def test_dates_with_different_bands(self, root: Path) -> None:
        _save(np.zeros((16, 16)), root / 'B' / 'train_1.png')
        with pytest.raises(ValueError, match=r'\(3, 16, 16\).*\(1, 16, 16\)'):
            ChangeFolder(root)[1]

    def test_label_of_different_size(self, root: Path) -> None:
        _save(np.zeros((8, 8)), root / 'label' / 'train_0.png')
        with pytest.raises(ValueError, match='pixel for pixel'):
            ChangeFolder(root)[0]

    def test_binary_label_values_outside(self, root: Path) -> None:
        label = np.zeros((16, 16), dtype=np.uint8)
        label[0, :3] = [1, 2, 7]
        _save(label, root / 'label' / 'train_0.png')
        with pytest.raises(ValueError) as info:
            ChangeFolder(root)[0]
        message = str(info.value)
        assert 'train_0.png' in message
        assert 'holds values [0, 1, 2, 7]' in message
        assert 'only [0, 1, 255] are allowed' in message
        assert 'not allowed: [2, 7]' in message
        assert 'label_values=[0, 1, 2, 7]' in message

    def test_multiclass_label_values_outside(self, root: Path) -> None:
        with pytest.raises(ValueError, match=r'255.*only \[0, 1, 2\].*label_values'):
            ChangeFolder(root, label_values=[0, 1, 2])[0]

    def test_label_bands_differ(self, root: Path) -> None:
        rgb = np.zeros((16, 16, 3))
        rgb[..., 0] = 255
        _save(rgb, root / 'label' / 'train_0.png')
        with pytest.raises(ValueError, match='3 different bands'):
            ChangeFolder(root)[0]

    def test_empty_prefix_split(self, root: Path) -> None:
        for file in (root / 'A').glob('val_*'):
            file.unlink()
        with pytest.raises(ChangeDatasetNotFoundError) as info:
            ChangeFolder(root, 'val')
        message = str(info.value)
        assert "no 'val' pair" in message
        assert 'val_*' in message
        assert 'test_*, train_*' in message  # the prefixes found
        assert 'list' in message and 'val.txt' in message

    def test_other_prefixes(self, list_root: Path) -> None:
        with pytest.raises(ChangeDatasetNotFoundError, match=r'found: pair_\*\)'):
            ChangeFolder(list_root, 'train', split_source='prefix')

    def test_no_prefix_at_all(self, root: Path) -> None:
        for folder in ('A', 'B', 'label'):
            for file in (root / folder).iterdir():
                file.rename(file.with_name(file.name.replace('_', '')))
        with pytest.raises(ChangeDatasetNotFoundError, match='6 image.*none with a'):
            ChangeFolder(root)

    def test_empty_or_missing_list(self, root: Path) -> None:
        with pytest.raises(ChangeDatasetNotFoundError, match='train.txt does not'):
            ChangeFolder(root, split_source='list')
        (root / 'list').mkdir()
        (root / 'list' / 'train.txt').write_text('\n')
        with pytest.raises(ChangeDatasetNotFoundError, match='lists no file'):
            ChangeFolder(root)

    def test_list_names_a_missing_file(self, root: Path) -> None:
        (root / 'list').mkdir()
        (root / 'list' / 'train.txt').write_text('train_0.png\nghost.png\n')
        with pytest.raises(ChangeDatasetNotFoundError, match='ghost.png'):
            ChangeFolder(root)

    def test_bad_arguments(self, root: Path) -> None:
        with pytest.raises(ValueError, match="unknown split 'valid'"):
            ChangeFolder(root, 'valid')
        with pytest.raises(ValueError, match='unknown split_source'):
            ChangeFolder(root, split_source='names')  # type: ignore[arg-type]
        with pytest.raises(ValueError, match='two distinct'):
            ChangeFolder(root, label_values=[0, 0])
