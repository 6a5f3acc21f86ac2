"""geopeft.samplers: patches inside regions, on the grid, sharded across ranks."""

import warnings
from pathlib import Path

import pytest
import shapely
from rasters_data import DEFAULT_ORIGIN, make_mosaic, make_raster, pixel_box
from torch.utils.data import DistributedSampler
from torchgeo.datasets import RasterDataset
from torchgeo.samplers import Units

import geopeft.samplers
from geopeft.datasets import RasterImages
from geopeft.samplers import GridRegionSampler, RandomRegionSampler, block_alignment

X0, Y0 = DEFAULT_ORIGIN
RES = 10.0


def _boxes(sampler) -> list[shapely.Polygon]:
    return [shapely.box(x.start, y.start, x.stop, y.stop) for x, y in sampler]


def _pixel(value: float, origin: float) -> float:
    return (value - origin) / RES


@pytest.fixture
def dataset(tmp_path: Path) -> RasterImages:
    make_mosaic(tmp_path / 'm', grid=(2, 3), tile_size=(40, 32), tile=16)
    return RasterImages(tmp_path / 'm')


def test_random_patches_lie_inside_the_region_on_the_grid(
    dataset: RasterImages,
) -> None:
    # An L-shaped region: rejection of patches that stick out is exact.
    region = shapely.union(
        pixel_box(DEFAULT_ORIGIN, RES, rows=(0, 20), cols=(0, 96)),
        pixel_box(DEFAULT_ORIGIN, RES, rows=(0, 80), cols=(60, 96)),
    )
    sampler = RandomRegionSampler(
        dataset, size=16, length=300, region=region, generator=3
    )
    assert len(sampler) == 300
    boxes = _boxes(sampler)
    assert len(boxes) == 300
    for box in boxes:
        assert region.covers(box)
        left, bottom, right, top = box.bounds
        assert right - left == top - bottom == 16 * RES
        assert _pixel(left, X0).is_integer() and _pixel(top, Y0).is_integer()
    # Both arms of the L are drawn from.
    lefts = [b.bounds[0] for b in boxes]
    tops = [b.bounds[3] for b in boxes]
    assert min(lefts) < X0 + 40 * RES and min(tops) < Y0 - 40 * RES


def test_random_draws_are_seeded_per_epoch(dataset: RasterImages) -> None:
    sampler = RandomRegionSampler(dataset, size=8, length=20, generator=0)
    first, second = list(sampler), list(sampler)
    assert first != second  # each pass is a new epoch
    sampler.set_epoch(0)
    assert list(sampler) == first
    again = RandomRegionSampler(dataset, size=8, length=20, generator=0)
    assert list(again) == first


def test_block_aligned_corners(dataset: RasterImages) -> None:
    sampler = RandomRegionSampler(dataset, size=16, length=50, align=16, generator=0)
    for box in _boxes(sampler):
        left, _, _, top = box.bounds
        assert _pixel(left, X0) % 16 == 0 and _pixel(top, Y0) % 16 == 0


def test_large_regions_are_sampled_by_rejection(tmp_path: Path) -> None:
    # More than 200,000 positions: drawn and rejected instead of enumerated.
    path = make_raster(tmp_path / 'big.tif', size=(460, 500), bands=1, compress=None)
    dataset = RasterImages(path)
    region = shapely.Polygon([(X0, Y0), (X0 + 5000, Y0), (X0, Y0 - 4600)])  # a triangle
    sampler = RandomRegionSampler(dataset, size=32, length=100, region=region)
    assert sampler.candidates is None
    assert all(region.covers(box) for box in _boxes(sampler))


def test_no_patch_fits_is_a_clear_error(dataset: RasterImages) -> None:
    thin = pixel_box(DEFAULT_ORIGIN, RES, rows=(0, 4), cols=(0, 90))
    with pytest.raises(ValueError, match='no 8x8 px patch fits.*lower patch_size'):
        RandomRegionSampler(dataset, size=8, region=thin)


def test_random_shards_split_one_draw_between_ranks(dataset: RasterImages) -> None:
    whole = RandomRegionSampler(dataset, size=8, length=30, generator=5)
    cols, rows = whole.positions()
    shards = [
        RandomRegionSampler(
            dataset, size=8, length=30, generator=5, rank=r, world_size=3
        )
        for r in range(3)
    ]
    assert [len(s) for s in shards] == [10, 10, 10]
    drawn = [list(s) for s in shards]
    for r, patches in enumerate(drawn):
        expected = list(whole._slices(cols[r::3], rows[r::3]))
        assert patches == expected
    # The shards are disjoint draws: no position is handed to two ranks.
    positions = [(x.start, y.stop) for p in drawn for x, y in p]
    assert len(positions) == 30


def test_grid_covers_the_region_once(dataset: RasterImages) -> None:
    # 96 x 80 px with 16 px patches: 6 columns, 5 rows, none overlapping.
    sampler = GridRegionSampler(dataset, size=16)
    boxes = _boxes(sampler)
    assert len(boxes) == len(sampler) == 30
    assert shapely.union_all(boxes).equals(dataset.footprint)
    assert sum(b.area for b in boxes) == pytest.approx(dataset.footprint.area)


def test_grid_adds_a_patch_flush_with_the_far_edges(dataset: RasterImages) -> None:
    sampler = GridRegionSampler(dataset, size=32, stride=32)
    boxes = _boxes(sampler)
    assert shapely.union_all(boxes).equals(dataset.footprint)
    assert len(boxes) == 3 * 3  # 0, 32, 64 across; 0, 32, 48 down
    for box in boxes:
        assert dataset.footprint.covers(box)


def test_grid_keeps_to_each_part_of_a_region(dataset: RasterImages) -> None:
    parts = shapely.union(
        pixel_box(DEFAULT_ORIGIN, RES, rows=(0, 20), cols=(0, 20)),
        pixel_box(DEFAULT_ORIGIN, RES, rows=(40, 80), cols=(50, 90)),
    )
    sampler = GridRegionSampler(dataset, size=16, stride=8, region=parts)
    boxes = _boxes(sampler)
    assert all(parts.covers(b) for b in boxes)
    assert shapely.union_all(boxes).equals(parts)


@pytest.mark.parametrize('world_size', [2, 3, 5])
def test_grid_shards_are_disjoint_and_cover_the_grid(
    dataset: RasterImages, world_size: int
) -> None:
    whole = [(x.start, y.start) for x, y in GridRegionSampler(dataset, size=16)]
    assert len(whole) == 30  # 6 x 5
    shards = [
        [
            (x.start, y.start)
            for x, y in GridRegionSampler(
                dataset, size=16, rank=r, world_size=world_size, pad=False
            )
        ]
        for r in range(world_size)
    ]
    flat = [p for shard in shards for p in shard]
    assert len(flat) == len(set(flat)) == len(whole)
    assert set(flat) == set(whole)
    padded = [
        GridRegionSampler(dataset, size=16, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    lengths = {len(s) for s in padded}
    assert lengths == {-(-30 // world_size)}
    covered = {(x.start, y.start) for s in padded for x, y in s}
    assert covered == set(whole)


def test_rank_and_world_size_from_torch_distributed(
    dataset: RasterImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = geopeft.samplers.dist
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'get_rank', lambda: 1)
    monkeypatch.setattr(dist, 'get_world_size', lambda: 2)
    sampler = GridRegionSampler(dataset, size=16, pad=False)
    assert (sampler.rank, sampler.num_replicas) == (1, 2)
    assert len(sampler) == 15
    # Lightning does not wrap DistributedSamplers again.
    assert isinstance(sampler, DistributedSampler)
    explicit = RandomRegionSampler(dataset, size=8, rank=0, world_size=4)
    assert (explicit.rank, explicit.num_replicas) == (0, 4)
    with pytest.raises(ValueError, match='rank must be in 0..1'):
        GridRegionSampler(dataset, size=8, rank=2)


def test_samplers_index_torchgeo_datasets_too(tmp_path: Path) -> None:
    paths = make_mosaic(tmp_path / 'm', grid=(2, 2), tile_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        theirs = RasterDataset(paths=[str(p) for p in paths])
    random = RandomRegionSampler(theirs, size=(16, 24), length=10, generator=0)
    for index in random:
        assert theirs[index]['image'].shape == (3, 16, 24)
    grid = GridRegionSampler(theirs, size=160.0, units=Units.CRS)
    assert len(grid) == 16


def test_size_must_be_whole_pixels(dataset: RasterImages) -> None:
    with pytest.raises(ValueError, match='whole pixels'):
        GridRegionSampler(dataset, size=15.0, units=Units.CRS)


@pytest.mark.parametrize(
    ('block', 'size', 'expected'),
    [
        ((512, 512), 256, 256),  # inside one tile, every pixel reachable
        ((512, 512), 512, 512),
        ((256, 256), 512, 256),  # whole tiles
        ((256, 256), (384, 384), 256),
        ((512, 512), 224, 32),
        ((512, 512), (256, 128), 128),
        ((512, 512), 255, None),
        ((1, 1024), 256, None),  # striped file
    ],
)
def test_block_alignment(block, size, expected) -> None:
    assert block_alignment(block, size) == expected


def test_small_aligned_patches_reach_every_pixel(tmp_path: Path) -> None:
    dataset = RasterImages(make_raster(tmp_path / 'a.tif', size=64, tile=32))
    align = block_alignment(dataset.layer.block, 16)
    sampler = RandomRegionSampler(dataset, size=16, length=400, align=align)
    corners = {(x.start, y.stop) for x, y in sampler}
    assert len(corners) == 16  # every 16 px cell of the 64 px raster
    for x, y in sampler:  # each patch inside one 32 px tile
        col, row = _pixel(x.start, X0), _pixel(Y0, y.stop)
        assert col // 32 == (col + 15) // 32 and row // 32 == (row + 15) // 32
