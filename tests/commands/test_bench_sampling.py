"""``geopeft bench sampling`` on tiny generated rasters."""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasters_data import make_mosaic, make_raster

from geopeft.commands import bench_sampling

TINY = [
    '--size',
    '256',
    '--tile',
    '64',
    '--mosaic-grid',
    '2',
    '3',
    '--mosaic-tile-size',
    '128',
    '--patch-size',
    '32',
    '--samples',
    '16',
    '--batch-size',
    '4',
    '--warmup',
    '1',
    '--repeats',
    '2',
]


def test_rows_on_generated_rasters(tmp_path: Path) -> None:
    rows = bench_sampling.sampling_rows([*TINY, '--cache-dir', str(tmp_path)])
    assert [(r['rasters'], r['cache'], r['method']) for r in rows] == [
        (name, cache, method)
        for name in ('single', 'mosaic')
        for cache in ('cold', 'default', 'warm')
        for method in bench_sampling.METHODS
    ]
    for row in rows:
        assert tuple(row) == bench_sampling.ROW_KEYS
        assert row['samples'] == 16
        assert row['samples_per_s'] > 0 and row['seconds'] > 0
        assert row['files'] == (1 if row['rasters'] == 'single' else 6)
    for name in ('single', 'mosaic'):
        for cache in bench_sampling.CACHES:
            by_method = {
                r['method']: r
                for r in rows
                if r['rasters'] == name and r['cache'] == cache
            }
            assert by_method['torchgeo']['vs_torchgeo'] == 1
            assert by_method['raw']['vs_raw'] == 1
    # The generated files: tiled, DEFLATE, uint16, 3 bands; reused next time.
    scene = tmp_path / 'scene_256_t64.tif'
    with rasterio.open(scene) as src:
        assert (src.width, src.count, src.dtypes[0]) == (256, 3, 'uint16')
        assert src.block_shapes[0] == (64, 64)
        assert src.compression.name == 'deflate'
    stamp = scene.stat().st_mtime_ns
    warm = bench_sampling.sampling_rows(
        [*TINY, '--cache-dir', str(tmp_path), '--repeats', '1', '--cache', 'warm']
    )
    assert {r['cache'] for r in warm} == {'warm'}
    assert scene.stat().st_mtime_ns == stamp


def test_given_rasters_json_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raster = make_raster(tmp_path / 'r.tif', size=96, tile=32)
    make_mosaic(tmp_path / 'm', grid=(2, 2), tile_size=64, tile=32)
    argv = [
        '--raster',
        str(raster),
        '--mosaic',
        str(tmp_path / 'm'),
        '--patch-size',
        '32',
        '--samples',
        '8',
        '--batch-size',
        '4',
        '--repeats',
        '1',
        '--cache-dir',
        str(tmp_path / 'unused'),
    ]
    assert bench_sampling.main([*argv, '--json']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r['rasters']: r['files'] for r in rows} == {'single': 1, 'mosaic': 4}
    assert len(rows) == 2 * len(bench_sampling.CACHES) * len(bench_sampling.METHODS)
    assert not (tmp_path / 'unused').exists()
    assert bench_sampling.main(argv) == 0
    table = capsys.readouterr().out
    assert 'x torchgeo' in table and 'geopeft+aligned' in table


def test_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        bench_sampling.parse_args(['--patch-size', '512', '--size', '256'])
    with pytest.raises(SystemExit):
        bench_sampling.parse_args(['--samples', '2', '--batch-size', '4'])


def test_sets_made_from_a_real_raster(tmp_path: Path) -> None:
    # A small georeferenced 8-bit source with a nodata collar, mirror-tiled.
    values = np.full((3, 40, 50), 7, dtype='uint8')
    values[:, :5] = 0
    source = make_raster(tmp_path / 'scene.tif', values=values, nodata=0)
    cache = tmp_path / 'cache'
    argv = [*TINY, '--repeats', '1', '--cache', 'cold', '--from', str(source)]
    rows = bench_sampling.sampling_rows([*argv, '--cache-dir', str(cache)])
    assert {r['rasters']: r['files'] for r in rows} == {'single': 1, 'mosaic': 6}
    (single,) = cache.glob('real_scene_*/single_*.tif')
    with rasterio.open(single) as src:
        assert (src.dtypes[0], src.count, src.nodata) == ('uint16', 3, 0)
        data = src.read()
        assert set(np.unique(data)) == {0, 7 * 257}
        # Mirrored copies: the collar comes back every other copy, flipped.
        assert (data[:, :5] == 0).all() and (data[:, 75:80] == 0).all()


def test_from_needs_an_existing_georeferenced_three_band_raster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        bench_sampling.main([*TINY, '--from', str(tmp_path / 'missing.tif')])
    assert 'missing.tif: no such file' in capsys.readouterr().err
    one_band = make_raster(tmp_path / 'one.tif', size=40, bands=1)
    argv = [*TINY, '--from', str(one_band), '--cache-dir', str(tmp_path / 'c')]
    assert bench_sampling.main(argv) == 1
    assert 'at least 3 bands' in capsys.readouterr().err
    assert not list((tmp_path / 'c').rglob('*.tif'))
