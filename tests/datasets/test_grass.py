from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from ktda_data import make_grass
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from geopeft.datasets import GrassDatasetNotFoundError, GrassSegmentation
from geopeft.datasets.errors import DataNotFoundError


@pytest.fixture(scope='module')
def grass_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_grass(tmp_path_factory.mktemp('grass'))


class TestGrassSegmentation:
    def test_splits_and_samples(self, grass_root: Path) -> None:
        train, val = GrassSegmentation(grass_root), GrassSegmentation(grass_root, 'val')
        assert (len(train), len(val)) == (3, 2)
        assert [f['image'].name for f in val.files] == ['3.tif', '4.tif']
        sample = val[1]
        assert sample.keys() == {'image', 'mask'}
        assert sample['image'].shape == (3, 24, 24)
        assert sample['image'].dtype == torch.float32
        assert sample['mask'].shape == (24, 24)
        assert sample['mask'].dtype == torch.int64
        assert sample['image'][0].eq(4).all()  # values as stored, file 4.tif
        rows, cols = sample['image'][1].long(), sample['image'][2].long()
        assert torch.equal(sample['mask'][1:], ((rows + cols) % 5)[1:])
        assert sample['mask'][0].eq(255).all()
        assert GrassSegmentation.classes == (
            'low',
            'middle-low',
            'middle',
            'middle-high',
            'high',
        )
        assert (train.num_classes, train.ignore_index) == (5, 255)

    def test_first_three_bands_of_multiband_tifs(self, tmp_path: Path) -> None:
        root = make_grass(tmp_path, {'train': 1}, size=8, bands=4)
        image = GrassSegmentation(root)[0]['image']
        assert image.shape == (3, 8, 8)
        assert image.max() < 200  # the fourth band (200) is dropped

    def test_png_images_and_palette_masks(self, tmp_path: Path) -> None:
        root = make_grass(tmp_path, {'val': 1}, size=8)
        (root / 'img_dir' / 'val' / '0.tif').unlink()
        rgb = np.full((8, 8, 3), 50, dtype=np.uint8)
        Image.fromarray(rgb).save(root / 'img_dir' / 'val' / '0.png')
        mask = np.full((8, 8), 3, dtype=np.uint8)
        Image.fromarray(mask).convert('P').save(root / 'ann_dir' / 'val' / '0.png')
        sample = GrassSegmentation(root, 'val')[0]
        assert sample['image'].eq(50).all()
        assert sample['mask'].eq(3).all()

    def test_transforms(self, grass_root: Path) -> None:
        def halve(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {**sample, 'image': sample['image'] / 2}

        ds = GrassSegmentation(grass_root, transforms=halve)
        assert ds[2]['image'][0].eq(1).all()

    def test_plot(self, grass_root: Path) -> None:
        ds = GrassSegmentation(grass_root)
        sample = ds[0]
        fig = ds.plot(sample, suptitle='grass')
        assert [ax.get_title() for ax in fig.axes] == ['Image', 'Mask']
        plt.close(fig)
        sample['prediction'] = sample['mask'].clone()
        sample['image'] = (sample['image'] - 100) / 50  # normalised images too
        fig = ds.plot(sample, show_titles=False)
        assert len(fig.axes) == 3
        plt.close(fig)


class TestGrassErrors:
    def test_missing_root(self, tmp_path: Path) -> None:
        with pytest.raises(GrassDatasetNotFoundError, match='does not exist') as err:
            GrassSegmentation(tmp_path / 'nowhere')
        message = str(err.value)
        assert 'img_dir' in message and 'ann_dir' in message
        assert 'grass.zip' in message and 'XavierJiezou/ktda-datasets' in message
        assert isinstance(err.value, DataNotFoundError)
        assert isinstance(err.value, DatasetNotFoundError)

    def test_missing_split_folder_and_nested_root(self, tmp_path: Path) -> None:
        make_grass(tmp_path / 'grass', {'train': 1}, size=8)
        with pytest.raises(GrassDatasetNotFoundError, match='pass that as root'):
            GrassSegmentation(tmp_path)
        with pytest.raises(GrassDatasetNotFoundError, match=r'val.*missing'):
            GrassSegmentation(tmp_path / 'grass', 'val')

    def test_no_test_split(self, grass_root: Path) -> None:
        with pytest.raises(ValueError, match="no test split.*'val'"):
            GrassSegmentation(grass_root, 'test')

    def test_empty_split(self, tmp_path: Path) -> None:
        root = make_grass(tmp_path, {'train': 1}, size=8)
        for folder in ('img_dir', 'ann_dir'):
            (root / folder / 'val').mkdir()
        with pytest.raises(GrassDatasetNotFoundError, match='no image in'):
            GrassSegmentation(root, 'val')

    def test_image_without_mask(self, tmp_path: Path) -> None:
        root = make_grass(tmp_path, {'train': 2}, size=8)
        (root / 'ann_dir' / 'train' / '1.png').unlink()
        with pytest.raises(GrassDatasetNotFoundError, match=r'no mask.*: 1\.tif'):
            GrassSegmentation(root)

    def test_mask_values_out_of_range(self, tmp_path: Path) -> None:
        root = make_grass(tmp_path, {'train': 1}, size=8)
        mask = np.zeros((8, 8), dtype=np.uint8)
        mask[0, :3] = [5, 9, 255]
        path = root / 'ann_dir' / 'train' / '0.png'
        Image.fromarray(mask).save(path)
        with pytest.raises(ValueError, match=rf'{path.name} holds values \[5, 9\]'):
            GrassSegmentation(root)[0]

    def test_grey_image_and_size_mismatch(self, tmp_path: Path) -> None:
        root = make_grass(tmp_path, {'train': 2}, size=8)
        grey = np.zeros((8, 8), dtype=np.uint8)
        Image.fromarray(grey).save(root / 'img_dir' / 'train' / '0.png')
        (root / 'img_dir' / 'train' / '0.tif').unlink()
        Image.fromarray(np.zeros((4, 8), np.uint8)).save(
            root / 'ann_dir' / 'train' / '1.png'
        )
        ds = GrassSegmentation(root)
        with pytest.raises(ValueError, match='1 band'):
            ds[0]
        with pytest.raises(ValueError, match='pixel for pixel'):
            ds[1]
