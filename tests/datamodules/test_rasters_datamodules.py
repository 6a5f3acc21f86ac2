"""Raster data modules: spatial splits, samplers, batches, augmentation, errors."""

from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from rasters_data import (
    DEFAULT_ORIGIN,
    make_labelled_scene,
    make_raster,
    make_vector_labels,
    pixel_box,
)

from geopeft.datamodules import (
    RasterChangeDataModule,
    RasterSegmentationDataModule,
    SegmentationAugmentation,
)
from geopeft.datasets import (
    RasterInputError,
    RasterSegmentationDataset,
    block_split_regions,
    vector_split_regions,
)

RES = 10.0


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp('scene')
    return make_labelled_scene(root, size=128, num_classes=3, block=8, tile=16)


def _box(x: slice, y: slice) -> shapely.Polygon:
    return shapely.box(x.start, y.start, x.stop, y.stop)


def test_block_splits_are_disjoint_and_cover_the_area(
    scene: tuple[Path, Path],
) -> None:
    dataset = RasterSegmentationDataset(scene[0])
    regions = block_split_regions(
        dataset.footprint,
        dataset.grid,
        block_size=16,
        fractions=(0.6, 0.2, 0.2),
        seed=1,
    )
    assert set(regions) == {'train', 'val', 'test'}
    names = list(regions)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert shapely.intersection(regions[a], regions[b]).area == 0
    union = shapely.union_all(list(regions.values()))
    assert union.symmetric_difference(dataset.footprint).area == 0
    area = dataset.footprint.area
    assert regions['val'].area / area == pytest.approx(0.2, abs=0.02)
    assert regions['test'].area / area == pytest.approx(0.2, abs=0.02)
    again = block_split_regions(
        dataset.footprint, dataset.grid, block_size=16, fractions=(6, 2, 2), seed=1
    )
    assert all(again[k].equals(regions[k]) for k in regions)
    other = block_split_regions(
        dataset.footprint, dataset.grid, block_size=16, fractions=(6, 2, 2), seed=2
    )
    assert not other['val'].equals(regions['val'])


def test_block_split_errors(scene: tuple[Path, Path]) -> None:
    dataset = RasterSegmentationDataset(scene[0])
    with pytest.raises(ValueError, match='train > 0'):
        block_split_regions(
            dataset.footprint, dataset.grid, block_size=16, fractions=(0, 1, 0)
        )
    with pytest.raises(ValueError, match='too few'):
        block_split_regions(dataset.footprint, dataset.grid, block_size=256)


def test_train_patches_never_overlap_val_or_test(scene: tuple[Path, Path]) -> None:
    dm = RasterSegmentationDataModule(
        *scene,
        batch_size=4,
        patch_size=16,
        length=400,
        split_fractions=(0.6, 0.2, 0.2),
        split_block_size=32,
    )
    dm.setup('fit')
    dm.setup('test')
    train = [_box(x, y) for x, y in dm.train_sampler]
    assert len(train) == 400
    for split in ('val', 'test'):
        region = dm.regions[split]
        sampler = dm.val_sampler if split == 'val' else dm.test_sampler
        patches = [_box(x, y) for x, y in sampler]
        assert patches
        assert all(region.covers(p) for p in patches)
        for patch in train:
            assert shapely.intersection(patch, region).area == 0
            assert dm.regions['train'].covers(patch)
        for patch in patches:
            assert all(shapely.intersection(patch, t).area == 0 for t in train)


def test_split_regions_from_a_vector_file(
    scene: tuple[Path, Path], tmp_path: Path
) -> None:
    origin = DEFAULT_ORIGIN
    polygons = [
        pixel_box(origin, RES, rows=(0, 128), cols=(0, 80)),
        pixel_box(origin, RES, rows=(0, 64), cols=(64, 128)),  # overlaps train
        pixel_box(origin, RES, rows=(64, 128), cols=(80, 128)),
    ]
    path = make_vector_labels(
        tmp_path / 'splits.gpkg',
        polygons,
        ['train', 'val', 'test'],
        column='fold',
    )
    dm = RasterSegmentationDataModule(
        *scene, patch_size=16, split_regions=path, split_column='fold'
    )
    dm.setup('fit')
    # val wins over train where they overlap.
    expected_train = pixel_box(origin, RES, rows=(0, 128), cols=(0, 80)).difference(
        polygons[1]
    )
    assert dm.regions['train'].equals(expected_train)
    assert shapely.intersection(dm.regions['train'], dm.regions['val']).area == 0
    for x, y in dm.train_sampler:
        assert expected_train.covers(_box(x, y))
    bad = make_vector_labels(
        tmp_path / 'bad.gpkg', polygons, ['train', 'valid', 'test'], column='split'
    )
    with pytest.raises(RasterInputError, match=r"\['valid'\]"):
        vector_split_regions(bad, dm.dataset.grid.crs)


def test_segmentation_batches_and_augmentation(scene: tuple[Path, Path]) -> None:
    dm = RasterSegmentationDataModule(
        *scene,
        batch_size=4,
        patch_size=32,
        length=8,
        split_block_size=32,
        split_fractions=(0.5, 0.25, 0.25),
        mean=[1000.0, 1000.0, 1000.0],
        std=[100.0],
    )
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert batch['image'].shape == (4, 3, 32, 32)
    assert batch['mask'].shape == (4, 32, 32)
    assert batch['bounds'].shape == (4, 9) and batch['transform'].shape == (4, 9)
    # The scene's image is 1000 * (class + 1) + noise < 200 in every band: after
    # any flip or rotation the mask must still match the image pixel by pixel.
    torch.manual_seed(0)
    for _ in range(4):
        out = dm.train_aug(dict(batch))
        classes = torch.div(
            out['image'][:, 0] * 100 + 1000, 1000, rounding_mode='floor'
        )
        assert torch.equal(classes.long() - 1, out['mask'])
        assert out['mask'].dtype == torch.int64
    evaluated = dm.aug(dict(batch))
    torch.testing.assert_close(evaluated['image'], (batch['image'] - 1000) / 100)
    val = next(iter(dm.val_dataloader()))
    assert val['image'].shape[1:] == (3, 32, 32)


def test_change_batches(tmp_path: Path) -> None:
    a, labels = make_labelled_scene(tmp_path, size=64, name='a', num_classes=2)
    b, _ = make_labelled_scene(tmp_path, size=64, name='b', seed=1)
    dm = RasterChangeDataModule(
        a,
        b,
        labels,
        batch_size=2,
        patch_size=16,
        length=4,
        split_block_size=16,
        in_channels=3,
    )
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert batch['image'].shape == (2, 2, 3, 16, 16)
    assert batch['mask'].shape == (2, 1, 16, 16)
    out = dm.train_aug(dict(batch))
    assert out['image'].shape == (2, 2, 3, 16, 16)
    assert out['mask'].shape == (2, 1, 16, 16)
    # The same geometry for both dates and the mask: date A still matches it.
    classes = torch.div(out['image'][:, 0, 0], 1000, rounding_mode='floor') - 1
    assert torch.equal(classes.long(), out['mask'][:, 0])


def test_block_aligned_training_patches(tmp_path: Path) -> None:
    image, mask = make_labelled_scene(tmp_path, size=128, tile=32)
    dm = RasterSegmentationDataModule(
        image, mask, patch_size=32, block_aligned=True, split_block_size=64
    )
    dm.setup('fit')
    assert dm.train_sampler.align == 32
    x0, y0 = DEFAULT_ORIGIN
    for x, y in dm.train_sampler:
        assert (x.start - x0) / RES % 32 == 0 and (y0 - y.stop) / RES % 32 == 0


def test_no_val_fraction_skips_validation(scene: tuple[Path, Path]) -> None:
    dm = RasterSegmentationDataModule(
        *scene, patch_size=16, split_fractions=(0.9, 0.0, 0.1), split_block_size=32
    )
    dm.setup('fit')
    assert dm.val_dataloader() == []
    dm.setup('predict')
    assert len(dm.predict_sampler) > 0


def test_band_count_checks(scene: tuple[Path, Path]) -> None:
    dm = RasterSegmentationDataModule(*scene, patch_size=16, in_channels=4)
    with pytest.raises(RasterInputError, match='3 band.*in_channels is 4.*bands'):
        dm.setup('fit')
    dm = RasterSegmentationDataModule(
        *scene, patch_size=16, bands=[1, 3], in_channels=2, split_block_size=32
    )
    dm.setup('fit')
    assert next(iter(dm.train_dataloader()))['image'].shape[1] == 2
    dm = RasterSegmentationDataModule(*scene, patch_size=16, mean=[0, 0], std=[1, 1])
    with pytest.raises(RasterInputError, match='mean has 2 values.*3 bands'):
        dm.setup('fit')
    with pytest.raises(ValueError, match='both mean and std'):
        RasterSegmentationDataModule(*scene, mean=[0.0])


def test_mask_with_nodata_image_reaches_the_batch(tmp_path: Path) -> None:
    values = np.full((3, 64, 64), 300, 'uint16')
    values[:, :, :8] = 0  # a nodata margin
    image = make_raster(tmp_path / 'i.tif', size=64, nodata=0, values=values)
    mask = make_raster(tmp_path / 'm.tif', size=64, values=np.zeros((64, 64), 'uint8'))
    dm = RasterSegmentationDataModule(
        image, mask, patch_size=64, split_fractions=(1, 0, 0), length=1, batch_size=1
    )
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert (batch['mask'][0, :, :8] == 255).all()
    assert (batch['mask'][0, :, 8:] == 0).all()


def test_segmentation_augmentation_passes_other_keys() -> None:
    aug = SegmentationAugmentation(0.0, 1.0, geometric=True, square=False)
    batch = {
        'image': torch.rand(2, 3, 8, 12),
        'mask': torch.randint(0, 2, (2, 8, 12)),
        'bounds': torch.zeros(2, 9, dtype=torch.float64),
    }
    out = aug(batch)
    assert out['image'].shape == (2, 3, 8, 12)
    assert out['bounds'] is batch['bounds']
