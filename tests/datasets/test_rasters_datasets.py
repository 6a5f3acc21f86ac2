"""geopeft.datasets.rasters: the fast read path against TorchGeo, labels, errors."""

import os
import pickle
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject
from rasters_data import (
    DEFAULT_ORIGIN,
    make_labelled_scene,
    make_mosaic,
    make_raster,
    make_vector_labels,
    pixel_box,
    ramp_for_bounds,
    truncate_file,
)
from torchgeo.datasets import RasterDataset, stack_samples

from geopeft.datasets import (
    RasterChangeDataset,
    RasterImages,
    RasterInputError,
    RasterSegmentationDataset,
)
from geopeft.datasets.errors import DataNotFoundError

X0, Y0 = DEFAULT_ORIGIN
RES = 10.0
#: A CRS that is UTM 31N moved 100 m east: reprojection is an exact shift.
SHIFTED_UTM = (
    '+proj=tmerc +lat_0=0 +lon_0=3 +k=0.9996 +x_0=500100 +y_0=0 +datum=WGS84 '
    '+units=m +no_defs'
)


def _patch(col: int, row: int, size: int, origin: tuple[float, float] = DEFAULT_ORIGIN):
    """Slices of a square patch by its upper-left pixel from *origin*."""
    left, top = origin[0] + col * RES, origin[1] - row * RES
    return slice(left, left + size * RES), slice(top - size * RES, top)


def _torchgeo(paths: list[Path], **kwargs) -> RasterDataset:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return RasterDataset(paths=[str(p) for p in paths], **kwargs)


def test_patch_inside_one_file_equals_torchgeo(tmp_path: Path) -> None:
    path = make_raster(tmp_path / 'a.tif', size=96, tile=32, values='random')
    ours, theirs = RasterImages(path), _torchgeo([path])
    assert ours.bounds[:2] == theirs.bounds[:2]
    for col, row in [(0, 0), (5, 17), (64, 64), (31, 2)]:
        index = _patch(col, row, 32)
        a, b = ours[index], theirs[index]
        assert a['image'].dtype == torch.float32
        torch.testing.assert_close(a['image'], b['image'], rtol=0, atol=0)
        torch.testing.assert_close(a['bounds'].float(), b['bounds'])
        torch.testing.assert_close(a['transform'].float(), b['transform'])
        assert a['bounds'].dtype == a['transform'].dtype == torch.float64


def test_patch_across_mosaic_borders_equals_torchgeo(tmp_path: Path) -> None:
    paths = make_mosaic(tmp_path / 'm', grid=(3, 3), tile_size=32, tile=16)
    ours, theirs = RasterImages(tmp_path / 'm'), _torchgeo(paths)
    assert len(ours) == 9
    # Corners of four files, an edge of two, inside one.
    for col, row in [(20, 20), (40, 5), (33, 33), (50, 44)]:
        index = _patch(col, row, 24)
        a = ours[index]['image']
        torch.testing.assert_close(a, theirs[index]['image'], rtol=0, atol=0)
        left, top = X0 + col * RES, Y0 - row * RES
        bounds = (left, top - 24 * RES, left + 24 * RES, top)
        expected = ramp_for_bounds(bounds, RES, 3).astype(np.float32)
        np.testing.assert_array_equal(a.numpy(), expected)


def test_reprojection_by_an_exact_shift_equals_torchgeo(tmp_path: Path) -> None:
    # The file's CRS is UTM 31N shifted 100 m east: it needs a WarpedVRT, and
    # warping is exact, so TorchGeo (which resamples twice) agrees pixel by pixel.
    path = make_raster(
        tmp_path / 's.tif',
        size=64,
        crs=SHIFTED_UTM,
        origin=(X0 + 100, Y0),
        values='random',
    )
    ours = RasterImages(path, crs='EPSG:32631', res=RES, resampling='nearest')
    theirs = _torchgeo([path], crs=ours.crs, res=RES)
    assert bool(ours.layer.warped[0])
    assert ours.bounds[0].start == X0 and ours.bounds[1].stop == Y0
    for col, row in [(5, 7), (0, 0), (32, 30)]:
        index = _patch(col, row, 32)
        torch.testing.assert_close(
            ours[index]['image'], theirs[index]['image'], rtol=0, atol=0
        )


def test_reprojection_to_another_zone_equals_a_direct_warp(tmp_path: Path) -> None:
    # UTM 31N -> 32N: the patch is what one nearest-neighbour warp of the file onto
    # the target grid gives (TorchGeo warps to its own grid first, then resamples).
    path = make_raster(
        tmp_path / 'r.tif', size=96, origin=(699_000.0, Y0), values='random'
    )
    ours = RasterImages(path, crs='EPSG:32632', res=RES, resampling='nearest')
    x, y, _ = ours.bounds
    left, top = x.start + 20 * RES, y.stop - 20 * RES
    image = ours[slice(left, left + 400), slice(top - 400, top)]['image']
    expected = np.zeros((3, 40, 40), np.float32)
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, [1, 2, 3]),
            expected,
            dst_transform=from_origin(left, top, RES, RES),
            dst_crs='EPSG:32632',
            resampling=Resampling.nearest,
        )
    np.testing.assert_array_equal(image.numpy(), expected)


def test_files_off_the_grid_are_warped_and_first_file_wins(tmp_path: Path) -> None:
    # b.tif is shifted by half a pixel: it is warped onto a.tif's grid. Where the
    # files overlap, the first one (a.tif) wins, as rasterio.merge does.
    a = make_raster(
        tmp_path / 'a.tif', size=32, values=np.full((1, 32, 32), 1, 'uint8')
    )
    b = make_raster(
        tmp_path / 'b.tif',
        origin=(X0 + 16 * RES + RES / 2, Y0),
        size=32,
        values=np.full((1, 32, 32), 2, 'uint8'),
    )
    dataset = RasterImages([a, b], resampling='nearest')
    assert list(dataset.layer.warped) == [False, True]
    image = dataset[_patch(0, 0, 48)]['image'][0]
    assert (image[:32, :32] == 1).all()
    assert (image[:32, 33:] == 2).all()  # column 32 is half covered by b
    assert (image[32:] == 0).all()  # below both files


def test_nodata_and_uncovered_pixels_get_ignore_index(tmp_path: Path) -> None:
    values = np.full((2, 32, 32), 500, 'uint16')
    values[1, 3:5, 6:9] = 0  # nodata in one band
    image = make_raster(tmp_path / 'i.tif', size=32, nodata=0, values=values)
    mask = make_raster(
        tmp_path / 'm.tif', size=48, values=np.ones((1, 48, 48), 'uint8')
    )
    dataset = RasterSegmentationDataset(image, mask, ignore_index=255)
    sample = dataset[_patch(0, 0, 32)]
    assert sample['mask'].shape == (32, 32)
    assert sample['mask'].dtype == torch.int64
    assert (sample['mask'][3:5, 6:9] == 255).all()
    assert int((sample['mask'] == 255).sum()) == 6
    # ignore_index=None leaves the mask as read.
    plain = RasterSegmentationDataset(image, mask, ignore_index=None)
    assert (plain[_patch(0, 0, 32)]['mask'] == 1).all()


def test_vector_labels_land_on_exactly_the_covered_pixels(tmp_path: Path) -> None:
    image = make_raster(tmp_path / 'i.tif', size=64)
    polygons = [
        pixel_box(DEFAULT_ORIGIN, RES, rows=(4, 10), cols=(2, 7)),
        pixel_box(DEFAULT_ORIGIN, RES, rows=(30, 40), cols=(30, 60)),
        # Overlaps the first: later polygons win.
        pixel_box(DEFAULT_ORIGIN, RES, rows=(8, 12), cols=(5, 9)),
    ]
    labels = make_vector_labels(tmp_path / 'l.gpkg', polygons, [1, 2, 3])
    dataset = RasterSegmentationDataset(image, labels)
    mask = dataset[_patch(0, 0, 64)]['mask'].numpy()
    expected = np.zeros((64, 64), np.int64)
    expected[4:10, 2:7] = 1
    expected[30:40, 30:60] = 2
    expected[8:12, 5:9] = 3
    np.testing.assert_array_equal(mask, expected)
    # A patch that cuts the polygons: same pixels, shifted.
    part = dataset[_patch(3, 6, 32)]['mask'].numpy()
    np.testing.assert_array_equal(part, expected[6:38, 3:35])


def test_vector_labels_all_touched_false_semantics(tmp_path: Path) -> None:
    # A polygon covers a pixel when it covers the pixel's centre.
    image = make_raster(tmp_path / 'i.tif', size=16)
    left, top = X0 + 2.6 * RES, Y0 - 2.6 * RES  # past the centre of pixel 2
    polygon = (left, top - 2.8 * RES, left + 2.8 * RES, top)  # to 5.4: before 5.5
    labels = make_vector_labels(tmp_path / 'l.geojson', [polygon], [1])
    mask = RasterSegmentationDataset(image, labels)[_patch(0, 0, 16)]['mask']
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert sorted(set(rows.tolist())) == [3, 4]
    assert sorted(set(cols.tolist())) == [3, 4]
    assert int(mask.sum()) == 4


def test_vector_labels_reprojected_from_another_crs(tmp_path: Path) -> None:
    image = make_raster(tmp_path / 'i.tif', size=32)
    box = pixel_box(DEFAULT_ORIGIN, RES, rows=(0, 16), cols=(0, 16))
    frame = gpd.GeoDataFrame({'class': [1]}, geometry=[box], crs='EPSG:32631')
    path = tmp_path / 'l.gpkg'
    frame.to_crs('EPSG:4326').to_file(path)
    mask = RasterSegmentationDataset(image, path)[_patch(0, 0, 32)]['mask']
    # Corners move by far less than a pixel: the interior is exact.
    assert (mask[1:15, 1:15] == 1).all()
    assert (mask[17:, :] == 0).all() and (mask[:, 17:] == 0).all()


def test_change_dataset_stacks_two_dates(tmp_path: Path) -> None:
    a = make_mosaic(tmp_path / 'a', grid=(1, 2), tile_size=32)
    b = make_raster(tmp_path / 'b.tif', size=(32, 64), values='random')
    labels = make_raster(
        tmp_path / 'l.tif', size=(32, 64), values=np.ones((1, 32, 64), 'uint8')
    )
    dataset = RasterChangeDataset(a, [b], labels)
    sample = dataset[_patch(16, 0, 32)]
    assert sample['image'].shape == (2, 3, 32, 32)
    assert sample['mask'].shape == (1, 32, 32)
    expected = ramp_for_bounds((X0 + 160, Y0 - 320, X0 + 480, Y0), RES, 3)
    np.testing.assert_array_equal(sample['image'][0].numpy(), expected)
    with rasterio.open(b) as src:
        np.testing.assert_array_equal(
            sample['image'][1].numpy(), src.read()[:, :, 16:48]
        )


def test_handles_reopen_after_fork_and_never_pickle(tmp_path: Path) -> None:
    path = make_raster(tmp_path / 'a.tif', size=32)
    dataset = RasterImages(path)
    first = dataset[_patch(0, 0, 16)]['image']
    handle = dataset.layer._handle(0)
    assert dataset.layer._handle(0) is handle  # cached in this process
    clone = pickle.loads(pickle.dumps(dataset))
    assert not clone.layer._handles
    torch.testing.assert_close(clone[_patch(0, 0, 16)]['image'], first)
    dataset.layer._pid = os.getpid() + 1  # as seen from a forked worker
    assert dataset.layer._handle(0) is not handle


def test_close_releases_the_handles_and_reads_reopen(tmp_path: Path) -> None:
    path = make_raster(tmp_path / 'a.tif', size=32)
    dataset = RasterImages(path)
    first = dataset[_patch(0, 0, 16)]['image']
    handle = dataset.layer._handle(0)
    dataset.layer.close()
    assert handle.closed and not dataset.layer._handles
    torch.testing.assert_close(dataset[_patch(0, 0, 16)]['image'], first)
    assert dataset.layer._handle(0) is not handle


def test_grid_from_the_files_and_block_size(tmp_path: Path) -> None:
    path = make_raster(tmp_path / 'a.tif', size=64, tile=32, res=30.0)
    image, _ = make_labelled_scene(tmp_path / 's', size=64, tile=16)
    assert RasterImages(path).res == (30.0, 30.0)
    dataset = RasterSegmentationDataset(image)
    assert dataset.block == (16, 16)
    assert dataset.count == 3
    assert 'mask' not in dataset[_patch(0, 0, 16)]


def test_bands_selects_and_checks(tmp_path: Path) -> None:
    path = make_raster(tmp_path / 'a.tif', size=16, bands=4)
    image = RasterImages(path, bands=[3, 1])[_patch(0, 0, 16)]['image']
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(image.numpy(), src.read([3, 1]))
    with pytest.raises(RasterInputError, match=r'bands \[5\].*have 4'):
        RasterImages(path, bands=[5])


def test_different_crs_without_target_grid_is_an_error(tmp_path: Path) -> None:
    a = make_raster(tmp_path / 'a.tif', size=16)
    b = make_raster(tmp_path / 'b.tif', size=16, crs='EPSG:32632')
    with pytest.raises(RasterInputError, match='EPSG:32631.*EPSG:32632.*crs'):
        RasterImages([a, b])
    with pytest.raises(RasterInputError, match='resolution.*res'):
        RasterImages([a, b], crs='EPSG:3857')
    assert RasterImages([a, b], crs='EPSG:32631', res=RES).layer.warped.tolist() == [
        False,
        True,
    ]


def test_different_resolutions_without_res_is_an_error(tmp_path: Path) -> None:
    a = make_raster(tmp_path / 'a.tif', size=16)
    b = make_raster(tmp_path / 'b.tif', size=16, res=20.0)
    with pytest.raises(RasterInputError, match=r'different resolutions.*res'):
        RasterImages([a, b])


def test_corrupt_and_missing_files_are_named(tmp_path: Path) -> None:
    path = truncate_file(make_raster(tmp_path / 'a.tif', size=64, tile=16))
    with pytest.raises(RasterInputError, match=r'a\.tif.*corrupt, truncated'):
        RasterImages(path)
    with pytest.raises(DataNotFoundError, match=r'nope\.tif does not exist'):
        RasterImages(tmp_path / 'nope.tif')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataNotFoundError, match='holds no'):
        RasterImages(tmp_path / 'empty')


def test_vector_labels_without_the_class_column_names_the_columns(
    tmp_path: Path,
) -> None:
    image = make_raster(tmp_path / 'i.tif', size=16)
    box = pixel_box(DEFAULT_ORIGIN, RES, rows=(0, 4), cols=(0, 4))
    labels = make_vector_labels(
        tmp_path / 'l.gpkg', [box], [1], column='landcover', extra={'id': [7]}
    )
    missing = r"no column 'class'.*'landcover', 'id'.*label_column=None"
    with pytest.raises(RasterInputError, match=missing):
        RasterSegmentationDataset(image, labels)
    strings = make_vector_labels(tmp_path / 's.gpkg', [box], ['forest'])
    with pytest.raises(RasterInputError, match='integer class'):
        RasterSegmentationDataset(image, strings)


def test_vector_labels_without_a_class_column_burn_every_polygon_as_class_1(
    tmp_path: Path,
) -> None:
    image = make_raster(tmp_path / 'i.tif', size=16)
    box = pixel_box(DEFAULT_ORIGIN, RES, rows=(0, 4), cols=(2, 6))
    labels = make_vector_labels(
        tmp_path / 'footprints.geojson', [box], ['house'], column='building'
    )
    mask = RasterSegmentationDataset(image, labels, label_column=None)[
        _patch(0, 0, 16)
    ]['mask']
    expected = torch.zeros(16, 16, dtype=mask.dtype)
    expected[0:4, 2:6] = 1
    torch.testing.assert_close(mask, expected)


def test_rasters_that_do_not_overlap_are_an_error(tmp_path: Path) -> None:
    image = make_raster(tmp_path / 'i.tif', size=16)
    far = (X0 + 10_000, Y0)
    mask = make_raster(tmp_path / 'm.tif', size=16, origin=far)
    with pytest.raises(RasterInputError, match='label rasters.*do not overlap'):
        RasterSegmentationDataset(image, mask)
    other = make_raster(tmp_path / 'o.tif', size=16, origin=far)
    with pytest.raises(RasterInputError, match='images_b.*do not overlap images_a'):
        RasterChangeDataset(image, other)
    box = pixel_box(far, RES, rows=(0, 4), cols=(0, 4))
    labels = make_vector_labels(tmp_path / 'l.gpkg', [box], [1])
    with pytest.raises(RasterInputError, match='no polygon.*overlaps the images'):
        RasterSegmentationDataset(image, labels)


def test_dates_with_different_band_counts_are_an_error(tmp_path: Path) -> None:
    a = make_raster(tmp_path / 'a.tif', size=16, bands=3)
    b = make_raster(tmp_path / 'b.tif', size=16, bands=4)
    with pytest.raises(RasterInputError, match='different band counts'):
        RasterChangeDataset(a, b)
    # bands picks the same bands of both.
    assert RasterChangeDataset(a, b, bands=[1, 2]).count == 2


def test_slices_outside_or_at_another_resolution(tmp_path: Path) -> None:
    dataset = RasterImages(make_raster(tmp_path / 'a.tif', size=16))
    with pytest.raises(IndexError, match='not found'):
        dataset[_patch(100, 100, 8)]
    x, y = _patch(0, 0, 8)
    with pytest.raises(ValueError, match='grid resolution'):
        dataset[slice(x.start, x.stop, 5.0), y]
    with pytest.raises(ValueError, match='fixed grid'):
        dataset.res = 5.0


def test_patch_off_the_grid_is_resampled_like_torchgeo(tmp_path: Path) -> None:
    path = make_raster(tmp_path / 'a.tif', size=32, values='random')
    ours, theirs = RasterImages(path, resampling='nearest'), _torchgeo([path])
    index = (slice(X0 + 32.0, X0 + 192.0), slice(Y0 - 200.0, Y0 - 40.0))
    a, b = ours[index]['image'], theirs[index]['image']
    assert a.shape == b.shape == (3, 16, 16)
    # TorchGeo resamples float images bilinearly: compare with a nearest read.
    with rasterio.open(path) as src:
        expected = src.read(window=rasterio.windows.Window(3, 4, 16, 16))
    np.testing.assert_array_equal(a.numpy(), expected)


def test_dataloader_workers_read_the_same_patches(tmp_path: Path) -> None:
    paths = make_mosaic(tmp_path / 'm', grid=(2, 2), tile_size=32, tile=16)
    dataset = RasterImages(paths)
    dataset[_patch(0, 0, 8)]  # handles opened in the parent before the fork
    indexes = [_patch(c, r, 16) for c, r in [(0, 0), (24, 24), (40, 8), (10, 44)]]
    loader = torch.utils.data.DataLoader(
        dataset,
        sampler=indexes,
        batch_size=2,
        num_workers=2,
        collate_fn=stack_samples,
    )
    images = torch.cat([batch['image'] for batch in loader])
    expected = torch.stack([dataset[i]['image'] for i in indexes])
    torch.testing.assert_close(images, expected, rtol=0, atol=0)
