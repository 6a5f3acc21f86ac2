import pytest
import torch
from torch import Tensor

from geopeft.datamodules import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ChangeAugmentation,
    DatewisePhotometric,
    change_eval_augmentation,
    change_train_augmentation,
)

SIZE, PATCH = 32, 24
MEAN = torch.tensor(IMAGENET_MEAN)
STD = torch.tensor(IMAGENET_STD)


def _l_shape() -> Tensor:
    """An asymmetric mark (no flip or rotation maps it onto itself), off-center."""
    mark = torch.zeros(SIZE, SIZE, dtype=torch.int64)
    mark[4:18, 6:9] = 1  # long vertical arm
    mark[15:18, 9:14] = 1  # short horizontal arm
    mark[24:27, 22:25] = 1  # a separate dot
    return mark


def _pattern_batch(batch_size: int = 8) -> dict[str, Tensor]:
    """Both dates and the mask carry the same pattern: grey 60, mark 200."""
    mark = _l_shape()
    date = (60 + 140 * mark).float().expand(3, SIZE, SIZE)
    image = date.expand(batch_size, 2, 3, SIZE, SIZE).clone()
    mask = mark.expand(batch_size, 1, SIZE, SIZE).clone()
    return {'image': image, 'mask': mask}


def _mark_of(date: Tensor) -> Tensor:
    """Find the bright mark in one normalised date [C, H, W] (band 0)."""
    band = date[0]
    low, high = band.min(), band.max()
    if high - low < 1e-3:
        return torch.zeros_like(band, dtype=torch.int64)
    return (band > (low + high) / 2).long()


def _key(mask: Tensor) -> tuple[int, ...]:
    return tuple(mask.flatten().tolist())


def _dihedral_crops(mark: Tensor, size: int) -> set[tuple[int, ...]]:
    """All crops of all flips and 90-degree rotations of a square mask."""
    variants = [torch.rot90(v, k) for v in (mark, mark.flip(-1)) for k in range(4)]
    span = mark.shape[-1] - size + 1
    return {
        _key(v[top : top + size, left : left + size])
        for v in variants
        for top in range(span)
        for left in range(span)
    }


class TestTrainAugmentation:
    def test_same_geometry_for_both_dates_and_mask(self) -> None:
        aug = change_train_augmentation(MEAN, STD, PATCH)
        batch = _pattern_batch()
        allowed = _dihedral_crops(_l_shape(), PATCH)
        placements = set()
        for seed in range(20):
            torch.manual_seed(seed)
            out = aug({k: v.clone() for k, v in batch.items()})
            image, mask = out['image'], out['mask']
            assert image.shape == (8, 2, 3, PATCH, PATCH)
            assert mask.shape == (8, 1, PATCH, PATCH)
            assert mask.dtype == torch.int64
            assert set(mask.unique().tolist()) <= {0, 1}
            for b in range(8):
                # The mask is a crop of a flip/rotation of the input, not resampled.
                assert _key(mask[b, 0]) in allowed
                # Both dates carry the pattern exactly where the mask has it.
                for t in range(2):
                    assert torch.equal(_mark_of(image[b, t]), mask[b, 0])
                # Photometry is drawn per date: the identical dates now differ.
                assert not torch.allclose(image[b, 0], image[b, 1], atol=1e-3)
                placements.add(_key(mask[b, 0]))
        assert len(placements) > 20  # the geometry really is random

    def test_masks_without_channel_and_extra_keys(self) -> None:
        batch = _pattern_batch(4)
        batch['mask'] = batch['mask'][:, 0]
        batch['name'] = torch.arange(4)
        torch.manual_seed(0)
        out = change_train_augmentation(MEAN, STD, PATCH)(batch)
        assert out['mask'].shape == (4, PATCH, PATCH)
        assert torch.equal(out['name'], torch.arange(4))
        for b in range(4):
            assert torch.equal(_mark_of(out['image'][b, 1]), out['mask'][b])

    def test_pads_small_images_with_no_change(self) -> None:
        batch = _pattern_batch(2)
        out = change_train_augmentation(MEAN, STD, 48, photometric=False)(batch)
        assert out['image'].shape == (2, 2, 3, 48, 48)
        assert out['mask'].sum() == 2 * _l_shape().sum()

    def test_without_photometry_dates_stay_identical(self) -> None:
        batch = _pattern_batch(4)
        out = change_train_augmentation(MEAN, STD, PATCH, photometric=False)(batch)
        assert torch.equal(out['image'][:, 0], out['image'][:, 1])
        values = set(out['image'][:, :, 0].flatten().tolist())
        expected = {(v - IMAGENET_MEAN[0]) / IMAGENET_STD[0] for v in (60.0, 200.0)}
        assert all(min(abs(v - e) for e in expected) < 1e-4 for v in values)

    def test_crop_only(self) -> None:
        batch = _pattern_batch(4)
        aug = change_train_augmentation(0, 255, (16, 24), False, geometric=False)
        out = aug(batch)
        assert out['image'].shape == (4, 2, 3, 16, 24)
        assert out['image'].max() <= 1

    def test_rectangular_patches_are_not_rotated(self) -> None:
        aug = change_train_augmentation(0, 255, (16, 24))
        assert aug.geometric is not None
        names = [type(t).__name__ for t in aug.geometric.children()]
        assert 'RandomRotation90' not in names
        square = change_train_augmentation(0, 255, 16).geometric
        assert square is not None
        assert 'RandomRotation90' in [type(t).__name__ for t in square.children()]


class TestPhotometric:
    def test_rgb_is_jittered_per_date_and_clipped(self) -> None:
        torch.manual_seed(0)
        image = torch.full((16, 2, 3, 8, 8), 128.0)
        image[..., 0, :, :] = 200
        out = DatewisePhotometric()(image)
        assert out.shape == image.shape
        assert 0 <= out.min() and out.max() <= 255
        per_date = out.mean((2, 3, 4))
        assert (per_date[:, 0] - per_date[:, 1]).abs().gt(1e-3).all()

    def test_multiband_brightness_and_contrast(self) -> None:
        torch.manual_seed(0)
        image = torch.rand(4, 2, 13, 8, 8) * 8000 + 1000
        out = DatewisePhotometric(value_range=10000)(image)
        assert out.shape == image.shape
        assert not torch.allclose(out[:, 0], image[:, 0])
        # Saturation and hue need RGB: bands keep their order within a pixel.
        assert torch.equal(image.argsort(2), out.argsort(2))

    def test_noise(self) -> None:
        torch.manual_seed(0)
        image = torch.full((2, 2, 3, 8, 8), 100.0)
        jitter = DatewisePhotometric(0, 0, 0, 0, noise_std=0.05)
        noisy = jitter(image)
        assert 5 < (noisy - image).std() < 20


class TestEvalAugmentation:
    def test_normalises_only(self) -> None:
        batch = _pattern_batch(2)
        out = change_eval_augmentation(MEAN, STD)(dict(batch))
        expected = (batch['image'] - MEAN.view(1, 1, 3, 1, 1)) / STD.view(1, 1, 3, 1, 1)
        assert torch.allclose(out['image'], expected, atol=1e-5)
        assert torch.equal(out['mask'], batch['mask'])

    def test_center_crop(self) -> None:
        batch = _pattern_batch(2)
        out = change_eval_augmentation(0, 255, 16)(batch)
        assert out['image'].shape == (2, 2, 3, 16, 16)
        assert torch.equal(out['mask'][:, 0], batch['mask'][:, 0, 8:24, 8:24])
        assert out['mask'].dtype == torch.int64


def test_errors() -> None:
    aug = ChangeAugmentation(MEAN, STD)
    with pytest.raises(ValueError, match=r'\[B, T, C, H, W\].*\(2, 3, 8, 8\)'):
        aug({'image': torch.zeros(2, 3, 8, 8)})
    with pytest.raises(ValueError, match='mean has 3 values but the images have 13'):
        aug({'image': torch.zeros(1, 2, 13, 8, 8)})
    assert ChangeAugmentation(0, 255)({'image': torch.zeros(1, 2, 13, 8, 8)})
