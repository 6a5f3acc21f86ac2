import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import pytest
import rasterio
import torch
from ktda_data import make_grass
from PIL import Image
from rasterio.transform import from_origin

from geopeft.datamodules import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    GrassDataModule,
    KTDAAugmentation,
    L8BiomePatchesDataModule,
    PhotoMetricDistortion,
    ktda_eval_augmentation,
    ktda_train_augmentation,
)
from geopeft.datasets import GrassSegmentation, L8BiomePatches

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _trainer(stage: str) -> MagicMock:
    trainer = MagicMock()
    trainer.training = stage == 'train'
    trainer.validating = stage == 'val'
    trainer.sanity_checking = False
    trainer.testing = stage == 'test'
    trainer.predicting = stage == 'predict'
    return trainer


def _transfer(dm: Any, batch: dict, stage: str) -> dict:
    dm.trainer = _trainer(stage)
    return dm.on_after_batch_transfer({k: v.clone() for k, v in batch.items()}, 0)


def _write_tif(path: Path, image: np.ndarray) -> None:
    profile = {
        'driver': 'GTiff',
        'width': image.shape[-1],
        'height': image.shape[-2],
        'count': image.shape[0],
        'dtype': 'uint8',
        'transform': from_origin(0, image.shape[-2], 1, 1),
    }
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(image.astype(np.uint8))


def _random_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 256, (3, size, size))
    mask = rng.integers(0, 5, (size, size))
    mask[0, 0] = 255
    return image, mask


@pytest.fixture(scope='module')
def grass_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_grass(tmp_path_factory.mktemp('grass'))


@pytest.fixture(scope='module')
def l8_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared L8 Biome patch root (what prepare_l8biome_patches writes)."""
    root = tmp_path_factory.mktemp('l8')
    (root / 'images').mkdir()
    (root / 'masks').mkdir()
    rng = np.random.default_rng(1)
    splits: dict[str, list[str]] = {}
    for split, count in (('train', 4), ('val', 2), ('test', 2)):
        splits[split] = []
        for index in range(count):
            name = f'LC8_{split}_{index:03d}'
            image, mask = _random_pair(rng, 32)
            _write_tif(root / 'images' / f'{name}.tif', image)
            mask = np.where(mask == 4, 3, mask).astype(np.uint8)
            Image.fromarray(mask).save(root / 'masks' / f'{name}.png')
            splits[split].append(name)
    (root / 'splits.json').write_text(json.dumps({'splits': splits}))
    return root


def _position_batch(size: int, batch: int = 16) -> dict[str, torch.Tensor]:
    """Images that encode the pixel position (red = 5 row, green = 5 col, blue 100)
    and masks derived from it, (row + col) % 4.
    """
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    image = torch.stack([rows * 5.0, cols * 5.0, torch.full_like(rows, 100.0)])
    mask = (rows + cols) % 4
    return {
        'image': image.expand(batch, -1, -1, -1).clone(),
        'mask': mask.expand(batch, -1, -1).clone(),
    }


def _check_aligned(out: dict[str, torch.Tensor], patch: int) -> None:
    """Check the mask still follows the (unnormalised) image on every pixel."""
    image = out['image'] * STD + MEAN
    assert image.shape[-2:] == out['mask'].shape[-2:] == (patch, patch)
    assert out['mask'].dtype == torch.int64
    rows, cols = (image[:, 0] / 5).round().long(), (image[:, 1] / 5).round().long()
    labelled = out['mask'] != 255
    assert labelled.any()
    assert torch.equal(out['mask'][labelled], ((rows + cols) % 4)[labelled])
    # Padded pixels: image 0, mask ignored.
    assert torch.allclose(
        image[~labelled[:, None].expand_as(image)], torch.tensor(0.0), atol=1e-3
    )
    assert (image[:, 2][labelled] - 100).abs().max() < 1e-3


class TestKTDAAugmentation:
    def test_crop_and_flip_keep_the_mask_aligned(self) -> None:
        torch.manual_seed(0)
        aug = ktda_train_augmentation(
            16, IMAGENET_MEAN, IMAGENET_STD, photometric=False
        )
        out = aug(_position_batch(40))
        _check_aligned(out, 16)
        assert not (out['mask'] == 255).any()
        image = out['image'] * STD + MEAN
        starts = image[:, 1, 0, 0]  # green = 5 x column of the top-left pixel
        ends = image[:, 1, 0, -1]
        flipped = starts > ends
        assert flipped.any() and (~flipped).any()  # p=0.5 over 16 samples
        assert len(set(image[:, 0, 0, 0].tolist())) > 1  # random crop positions

    def test_pads_small_images_with_ignore(self) -> None:
        torch.manual_seed(0)
        aug = ktda_train_augmentation(
            24, IMAGENET_MEAN, IMAGENET_STD, photometric=False
        )
        batch = _position_batch(20)
        out = aug(batch)
        _check_aligned(out, 24)
        assert (out['mask'] == 255).sum() == 16 * (24 * 24 - 20 * 20)
        channel_mask = aug({**batch, 'mask': batch['mask'][:, None]})['mask']
        assert channel_mask.shape == (16, 1, 24, 24)

    def test_photometric_leaves_the_geometry(self) -> None:
        batch = _position_batch(40)
        plain = ktda_train_augmentation(
            16, IMAGENET_MEAN, IMAGENET_STD, photometric=False
        )
        full = ktda_train_augmentation(16, IMAGENET_MEAN, IMAGENET_STD)
        torch.manual_seed(3)
        expected = plain(batch)
        torch.manual_seed(3)
        out = full(batch)
        assert torch.equal(out['mask'], expected['mask'])
        assert not torch.allclose(out['image'], expected['image'])
        assert out['image'].shape == (16, 3, 16, 16)

    def test_eval_normalises_only(self) -> None:
        batch = _position_batch(20, batch=2)
        out = ktda_eval_augmentation(IMAGENET_MEAN, IMAGENET_STD)(batch)
        assert torch.equal(out['mask'], batch['mask'])
        assert torch.allclose(out['image'] * STD + MEAN, batch['image'], atol=1e-4)

    def test_bad_batches(self) -> None:
        aug = ktda_eval_augmentation(IMAGENET_MEAN, IMAGENET_STD)
        with pytest.raises(ValueError, match=r'\[B, C, H, W\]'):
            aug({'image': torch.zeros(1, 2, 3, 8, 8)})
        with pytest.raises(ValueError, match='mean has 3 values but the images have 4'):
            aug({'image': torch.zeros(1, 4, 8, 8)})
        assert isinstance(aug, KTDAAugmentation)


class TestPhotoMetricDistortion:
    def test_probability_zero_is_identity(self) -> None:
        image = torch.rand(4, 3, 8, 8) * 255
        assert torch.equal(PhotoMetricDistortion(p=0)(image), image)

    def test_brightness_offset_per_image(self) -> None:
        torch.manual_seed(0)
        distort = PhotoMetricDistortion(
            contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0, p=1
        )
        image = torch.rand(32, 3, 8, 8) * 100 + 80
        shift = distort(image) - image
        per_image = shift.flatten(1)
        assert torch.allclose(
            per_image, per_image[:, :1].expand_as(per_image), atol=1e-4
        )
        assert per_image.abs().max() <= 32 and per_image.abs().max() > 16

    def test_hue_keeps_value_and_chroma_grey_stays_grey(self) -> None:
        torch.manual_seed(0)
        distort = PhotoMetricDistortion(
            brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1), p=1
        )
        image = torch.rand(8, 3, 8, 8) * 255
        out = distort(image)
        assert not torch.allclose(out, image, atol=1)
        assert torch.allclose(out.amax(1), image.amax(1), atol=1e-3)
        assert torch.allclose(out.amin(1), image.amin(1), atol=1e-3)
        grey = torch.rand(8, 1, 8, 8).expand(-1, 3, -1, -1) * 255
        full = PhotoMetricDistortion(p=1)(grey)
        assert torch.allclose(full, full[:, :1].expand_as(full), atol=1e-3)
        assert full.min() >= 0 and full.max() <= 255

    def test_multiband_skips_colour_steps(self) -> None:
        torch.manual_seed(0)
        out = PhotoMetricDistortion(p=1)(torch.rand(2, 4, 8, 8) * 255)
        assert out.shape == (2, 4, 8, 8)


class TestGrassDataModule:
    def test_defaults(self) -> None:
        dm = GrassDataModule()
        assert (dm.batch_size, dm.patch_size) == (4, 256)
        assert (dm.num_classes, dm.ignore_index) == (5, 255)
        assert dm.classes == GrassSegmentation.classes

    def test_stages_and_batches(self, grass_root: Path) -> None:
        dm = GrassDataModule(root=grass_root, batch_size=2, patch_size=16)
        dm.setup('fit')
        assert (len(dm.train_dataset), len(dm.val_dataset)) == (3, 2)
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 3, 24, 24)
        assert batch['mask'].shape == (2, 24, 24)
        assert batch['mask'].dtype == torch.int64

        train = _transfer(dm, batch, 'train')
        assert train['image'].shape == (2, 3, 16, 16)
        assert train['mask'].shape == (2, 16, 16)
        assert train['mask'].dtype == torch.int64
        assert abs(train['image'].mean().item()) < 2
        for stage in ('val', 'test', 'predict'):
            out = _transfer(dm, batch, stage)
            assert out['image'].shape == (2, 3, 24, 24)
            assert torch.equal(out['mask'], batch['mask'])
            restored = out['image'] * STD + MEAN
            assert torch.allclose(restored, batch['image'], atol=1e-3)

        dm.setup('test')
        dm.setup('predict')
        for dataset in (dm.test_dataset, dm.predict_dataset):
            assert isinstance(dataset, GrassSegmentation)
            assert dataset.split == 'val'  # no test split: test = val
        assert len(next(iter(dm.test_dataloader()))['image']) == 2

    def test_batch_larger_than_training_set(self, grass_root: Path) -> None:
        dm = GrassDataModule(root=grass_root, batch_size=4)
        with pytest.raises(ValueError, match='fewer than batch_size=4'):
            dm.setup('fit')
        dm.setup('validate')  # validation does not need full batches
        assert len(dm.val_dataset) == 2


class TestL8BiomePatchesDataModule:
    def test_defaults(self) -> None:
        dm = L8BiomePatchesDataModule()
        assert (dm.batch_size, dm.patch_size) == (2, 512)
        assert (dm.num_classes, dm.ignore_index) == (4, 255)

    def test_stages_and_batches(self, l8_root: Path) -> None:
        dm = L8BiomePatchesDataModule(root=l8_root, patch_size=32)
        dm.setup('fit')
        assert (len(dm.train_dataset), len(dm.val_dataset)) == (4, 2)
        batch = next(iter(dm.train_dataloader()))
        train = _transfer(dm, batch, 'train')
        assert train['image'].shape == (2, 3, 32, 32)
        assert train['mask'].shape == (2, 32, 32)
        assert set(train['mask'].unique().tolist()) <= {0, 1, 2, 3, 255}
        assert train['mask'].eq(255).sum() == 2  # the one ignored pixel per patch
        dm.setup('test')
        dm.setup('predict')
        assert dm.test_dataset.split == dm.predict_dataset.split == 'test'
        assert isinstance(dm.predict_dataset, L8BiomePatches)
        test_batch = next(iter(dm.test_dataloader()))
        out = _transfer(dm, test_batch, 'test')
        assert out['image'].shape == (2, 3, 32, 32)
        assert torch.equal(out['mask'], test_batch['mask'])
