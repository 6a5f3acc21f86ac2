import json
import logging
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin
from torchgeo.datasets import DatasetNotFoundError

from geopeft.datasets import (
    L8BIOME_CLASSES,
    L8BIOME_SPLIT_COUNTS,
    L8BiomePatches,
    L8BiomePatchesNotFoundError,
    l8biome_split_counts,
    prepare_l8biome_patches,
)
from geopeft.datasets.l8biome_patches import find_l8biome_scenes, stretch_limits

PATCH = 32

#: Fake scenes: id, biome folder, (height, width), EPSG code. Scene A has 2 x 3 full
#: windows of 32 px (plus partial edges) and one of them is fill only; scene B has
#: 2 x 2 windows, all labelled.
SCENE_A = 'LC80420082013220LGN00'
SCENE_B = 'LC80070662014234LGN00'
SCENES = {
    SCENE_A: ('barren', (75, 100), 32633),
    SCENE_B: ('forest', (64, 64), 32610),
}
ORIGIN = (339885.0, 8286915.0)
KEPT = 5 + 4


def band_values(band: int, shape: tuple[int, int]) -> np.ndarray:
    """Digital numbers of a fake band (1-based): a different ramp per band."""
    rows, cols = np.indices(shape)
    return 1000 * band + (rows * 7 + cols * (band + 1)) % 997


def make_l8biome(root: Path) -> Path:
    """Write a fake L8 Biome tree that TorchGeo's L8Biome reads.

    Images: 11 uint16 bands, 0 on fill pixels. Masks: raw values 128 (clear)
    except the known pixels of scene A's first window, its fill-only window
    (rows 0-31, columns 64-95) and fill borders; scene B holds every raw value.
    """
    rng = np.random.default_rng(0)
    for scene, (biome, shape, epsg) in SCENES.items():
        folder = root / biome / scene
        folder.mkdir(parents=True)
        mask = np.full(shape, 128, dtype=np.uint8)
        if scene == SCENE_A:
            mask[1, 1:6] = [64, 192, 255, 0, 128]
            mask[:PATCH, 2 * PATCH : 3 * PATCH] = 0
            mask[40:, 90:] = 0  # fill on a kept window and the edges
        else:
            values = np.array([0, 64, 128, 192, 255], dtype=np.uint8)
            mask = rng.choice(values, size=shape)
        image = np.stack([band_values(b, shape) for b in range(1, 12)])
        image[:, mask == 0] = 0
        profile = {
            'driver': 'GTiff',
            'width': shape[1],
            'height': shape[0],
            'crs': CRS.from_epsg(epsg),
            'transform': from_origin(*ORIGIN, 30, 30),
        }
        with rasterio.open(
            folder / f'{scene}.TIF', 'w', count=11, dtype='uint16', **profile
        ) as dst:
            dst.write(image.astype(np.uint16))
        with rasterio.open(
            folder / f'{scene}_fixedmask.TIF', 'w', count=1, dtype='uint8', **profile
        ) as dst:
            dst.write(mask[None])
    return root


@pytest.fixture(scope='module')
def l8_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_l8biome(tmp_path_factory.mktemp('l8biome'))


@pytest.fixture(scope='module')
def prepared(l8_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp('patches')
    prepare_l8biome_patches(l8_root, output, patch_size=PATCH, progress=False)
    return output


def _splits(root: Path) -> dict[str, list[str]]:
    return json.loads((root / 'splits.json').read_text())['splits']


def _mask(root: Path, name: str) -> np.ndarray:
    return np.array(Image.open(root / 'masks' / f'{name}.png'))


def _mtimes(root: Path) -> dict[str, tuple[int, int]]:
    """Inode and modification time of every file (an atomic rewrite changes both)."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob('*')
        if p.is_file()
    }


class TestSplitCounts:
    def test_reference_counts_exact(self) -> None:
        assert sum(L8BIOME_SPLIT_COUNTS.values()) == 13217
        assert l8biome_split_counts(13217) == L8BIOME_SPLIT_COUNTS
        counts = {'train': 7931, 'val': 2643, 'test': 2643}
        assert l8biome_split_counts(13217, counts) == counts

    def test_proportional_largest_remainder(self) -> None:
        assert l8biome_split_counts(9) == {'train': 5, 'val': 2, 'test': 2}
        assert l8biome_split_counts(100) == {'train': 60, 'val': 20, 'test': 20}
        assert l8biome_split_counts(1) == {'train': 1, 'val': 0, 'test': 0}
        fractions = {'train': 0.8, 'val': 0.2}
        assert l8biome_split_counts(11, fractions) == {'train': 9, 'val': 2, 'test': 0}
        for total in range(60):
            assert sum(l8biome_split_counts(total).values()) == total

    def test_bad_weights(self) -> None:
        with pytest.raises(ValueError, match='unknown split'):
            l8biome_split_counts(10, {'training': 1})
        with pytest.raises(ValueError, match='non-negative'):
            l8biome_split_counts(10, {'train': 1, 'val': -1})
        with pytest.raises(ValueError, match='positive sum'):
            l8biome_split_counts(10, {'train': 0})

    def test_stretch_limits_are_inverted_cdf_percentiles(self) -> None:
        rng = np.random.default_rng(1)
        for size in (1, 7, 50, 1001):
            values = rng.integers(0, 300, size)
            expected = np.percentile(values, [2, 98], method='inverted_cdf')
            low, high = stretch_limits(np.bincount(values, minlength=65536))
            assert low == expected[0]
            assert high == max(expected[1], low + 1)


class TestPrepare:
    def test_patch_count_and_names(self, prepared: Path) -> None:
        splits = _splits(prepared)
        names = sorted(n for split in splits.values() for n in split)
        assert len(names) == KEPT
        a = [n for n in names if n.startswith(SCENE_A)]
        assert a == [
            f'{SCENE_A}_{r:03d}_{c:03d}'
            for r, c in [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
        ]
        assert len([n for n in names if n.startswith(SCENE_B)]) == 4
        assert sorted(p.stem for p in (prepared / 'images').iterdir()) == names
        assert sorted(p.stem for p in (prepared / 'masks').iterdir()) == names

    def test_class_mapping(self, prepared: Path) -> None:
        mask = _mask(prepared, f'{SCENE_A}_000_000')
        assert mask.dtype == np.uint8 and mask.shape == (PATCH, PATCH)
        assert mask[1, 1:6].tolist() == [1, 2, 3, 255, 0]  # 64 192 255 0 128
        assert (mask[2:] == 0).all()
        mask = _mask(prepared, f'{SCENE_A}_001_002')
        assert (mask[8:, 26:] == 255).all() and (mask[:8] == 0).all()
        raw = np.random.default_rng(0).choice(
            np.array([0, 64, 128, 192, 255]), size=(64, 64)
        )
        expected = np.select(
            [raw == 0, raw == 64, raw == 128, raw == 192, raw == 255],
            [255, 1, 0, 2, 3],
        )
        mask = _mask(prepared, f'{SCENE_B}_001_000')
        assert np.array_equal(mask, expected[PATCH:, :PATCH])

    def test_images_stretched_per_scene_in_band_order(self, prepared: Path) -> None:
        shape = SCENES[SCENE_A][1]
        raw_mask = np.full(shape, 128)
        raw_mask[1, 4] = 0
        raw_mask[:PATCH, 2 * PATCH : 3 * PATCH] = 0
        raw_mask[40:, 90:] = 0
        valid = raw_mask != 0
        with rasterio.open(prepared / 'images' / f'{SCENE_A}_001_001.tif') as src:
            patch = src.read()
            assert src.dtypes == ('uint8',) * 3
            assert src.crs == CRS.from_epsg(32633)
            x, y = src.transform.c, src.transform.f
            assert (x, y) == (ORIGIN[0] + PATCH * 30, ORIGIN[1] - PATCH * 30)
        record = json.loads((prepared / 'scenes' / f'{SCENE_A}.json').read_text())
        for channel, band in enumerate((4, 3, 2)):
            values = band_values(band, shape)
            low, high = np.percentile(values[valid], [2, 98], method='inverted_cdf')
            assert record['stretch'][f'B{band}'] == [low, high]
            window = values[PATCH : 2 * PATCH, PATCH : 2 * PATCH]
            expected = np.clip(np.rint((window - low) * 255 / (high - low)), 0, 255)
            assert np.array_equal(patch[channel], expected)

    def test_splits_disjoint_seeded_proportional(
        self,
        l8_root: Path,
        prepared: Path,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        splits = _splits(prepared)
        assert {k: len(v) for k, v in splits.items()} == {
            'train': 5,
            'val': 2,
            'test': 2,
        }
        sets = [set(v) for v in splits.values()]
        assert sum(len(s) for s in sets) == len(set.union(*sets)) == KEPT
        with caplog.at_level(logging.WARNING):
            counts = prepare_l8biome_patches(
                l8_root, tmp_path / 'same', patch_size=PATCH, progress=False
            )
        assert counts == {'train': 5, 'val': 2, 'test': 2}
        assert 'scaled proportionally' in caplog.text
        assert _splits(tmp_path / 'same') == splits
        prepare_l8biome_patches(
            l8_root, tmp_path / 'other', patch_size=PATCH, seed=1, progress=False
        )
        assert _splits(tmp_path / 'other') != splits
        assert {k: len(v) for k, v in _splits(tmp_path / 'other').items()} == {
            'train': 5,
            'val': 2,
            'test': 2,
        }

    def test_rerun_is_a_noop_and_overwrite(self, l8_root: Path, tmp_path: Path) -> None:
        output = tmp_path / 'patches'
        first = prepare_l8biome_patches(
            l8_root, output, patch_size=PATCH, progress=False
        )
        before = _mtimes(output)
        again = prepare_l8biome_patches(
            l8_root, output, patch_size=PATCH, progress=False
        )
        assert again == first
        gone = tmp_path / 'deleted_scenes'  # the raw scenes are not needed any more
        assert prepare_l8biome_patches(gone, output, patch_size=PATCH) == first
        assert _mtimes(output) == before
        with pytest.raises(ValueError, match='overwrite=True'):
            prepare_l8biome_patches(l8_root, output, patch_size=16, progress=False)
        with pytest.raises(ValueError, match='overwrite=True'):
            prepare_l8biome_patches(
                l8_root, output, patch_size=PATCH, seed=3, progress=False
            )
        counts = prepare_l8biome_patches(
            l8_root, output, patch_size=64, overwrite=True, progress=False
        )
        assert sum(counts.values()) == 2  # one 64-px window per scene
        assert len(list((output / 'images').iterdir())) == 2

    def test_resumes_an_interrupted_run(self, l8_root: Path, tmp_path: Path) -> None:
        output = tmp_path / 'patches'
        prepare_l8biome_patches(l8_root, output, patch_size=PATCH, progress=False)
        before = _mtimes(output)
        # As if interrupted during scene B: no split file, no record of B.
        (output / 'splits.json').unlink()
        (output / 'scenes' / f'{SCENE_B}.json').unlink()
        (output / 'masks' / f'{SCENE_B}_000_000.png').unlink()
        prepare_l8biome_patches(l8_root, output, patch_size=PATCH, progress=False)
        after = _mtimes(output)
        assert after.keys() == before.keys()
        for name, mtime in after.items():
            assert (mtime == before[name]) == (
                SCENE_B not in name and 'splits' not in name
            )
        assert not [p for p in output.rglob('.*')]  # no temporary file left
        # Resumed with another patch size: the 32-px patches go.
        (output / 'splits.json').unlink()
        counts = prepare_l8biome_patches(l8_root, output, patch_size=64, progress=False)
        assert sum(counts.values()) == 2
        assert len(list((output / 'images').iterdir())) == 2
        assert len(list((output / 'masks').iterdir())) == 2

    def test_files_it_did_not_write_are_never_deleted(
        self, l8_root: Path, tmp_path: Path
    ) -> None:
        output = tmp_path / 'patches'
        output.mkdir()
        notes = output / 'notes.txt'
        notes.write_text('mine')
        # A folder holding other files is refused, and nothing is written.
        with pytest.raises(FileExistsError, match=r'notes.txt.*--overwrite'):
            prepare_l8biome_patches(l8_root, output, patch_size=PATCH, progress=False)
        assert sorted(p.name for p in output.iterdir()) == ['notes.txt']
        # Told to, it writes beside them; user files inside its folders survive
        # a rerun with other settings and --overwrite, which clears only its own.
        prepare_l8biome_patches(
            l8_root, output, patch_size=PATCH, overwrite=True, progress=False
        )
        keep = [output / 'images' / 'my_map.tif', output / 'masks' / 'README']
        for path in keep:
            path.write_text('mine')
        prepare_l8biome_patches(
            l8_root, output, patch_size=64, overwrite=True, progress=False
        )
        assert notes.read_text() == 'mine'
        assert all(path.read_text() == 'mine' for path in keep)
        assert len(list((output / 'images').glob('LC8*.tif'))) == 2
        # Resumed with other settings after an interruption: the stale patches go,
        # the user's files in its folders stay.
        notes.unlink()
        (output / 'splits.json').unlink()
        counts = prepare_l8biome_patches(
            l8_root, output, patch_size=PATCH, progress=False
        )
        assert len(list((output / 'images').glob('LC8*.tif'))) == sum(counts.values())
        assert sum(counts.values()) > 2
        assert all(path.read_text() == 'mine' for path in keep)

    def test_scene_errors(self, tmp_path: Path) -> None:
        with pytest.raises(L8BiomePatchesNotFoundError, match='download=True'):
            prepare_l8biome_patches(tmp_path, tmp_path / 'out', progress=False)
        (tmp_path / 'barren.tar.gz').touch()
        with pytest.raises(L8BiomePatchesNotFoundError, match='extract them'):
            find_l8biome_scenes(tmp_path)
        folder = tmp_path / 'barren' / SCENE_A
        folder.mkdir(parents=True)
        (folder / f'{SCENE_A}_fixedmask.TIF').touch()
        with pytest.raises(L8BiomePatchesNotFoundError, match='no image'):
            find_l8biome_scenes(tmp_path)
        with pytest.raises(ValueError, match='patch_size'):
            prepare_l8biome_patches(tmp_path, tmp_path / 'out', patch_size=0)


class TestL8BiomePatches:
    def test_samples(self, prepared: Path) -> None:
        lengths = {}
        for split in ('train', 'val', 'test'):
            ds = L8BiomePatches(prepared, split)
            lengths[split] = len(ds)
            sample = ds[0]
            assert sample['image'].shape == (3, PATCH, PATCH)
            assert sample['image'].dtype == torch.float32
            assert 0 <= sample['image'].min() and sample['image'].max() <= 255
            assert sample['mask'].shape == (PATCH, PATCH)
            assert sample['mask'].dtype == torch.int64
            assert set(sample['mask'].unique().tolist()) <= {0, 1, 2, 3, 255}
        assert lengths == {'train': 5, 'val': 2, 'test': 2}
        assert L8BiomePatches.classes == L8BIOME_CLASSES
        assert L8BIOME_CLASSES == ('clear', 'cloud shadow', 'thin cloud', 'cloud')
        assert L8BiomePatches.ignore_index == 255

    def test_plot(self, prepared: Path) -> None:
        ds = L8BiomePatches(prepared, 'val')
        sample = ds[0]
        sample['prediction'] = sample['mask'].clamp(max=3)
        fig = ds.plot(sample, suptitle='cloud')
        assert [ax.get_title() for ax in fig.axes] == ['Image', 'Mask', 'Prediction']
        plt.close(fig)

    def test_not_prepared(self, tmp_path: Path) -> None:
        with pytest.raises(
            L8BiomePatchesNotFoundError, match='prepare_l8biome_patches'
        ) as err:
            L8BiomePatches(tmp_path)
        assert 'geopeft prepare l8biome' in str(err.value)
        assert isinstance(err.value, DatasetNotFoundError)
        with pytest.raises(ValueError, match='unknown split'):
            L8BiomePatches(tmp_path, 'validation')

    def test_missing_patch(self, prepared: Path, tmp_path: Path) -> None:
        root = tmp_path / 'copy'
        shutil.copytree(prepared, root)
        name = _splits(root)['val'][0]
        (root / 'masks' / f'{name}.png').unlink()
        with pytest.raises(L8BiomePatchesNotFoundError, match=f'masks/{name}.png'):
            L8BiomePatches(root, 'val')
        assert len(L8BiomePatches(root, 'test')) == 2


def test_prepare_command(
    l8_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from geopeft.main import main

    output = tmp_path / 'patches'
    args = ['prepare', 'l8biome', str(l8_root), str(output), '--patch-size', str(PATCH)]
    assert main([*args, '--no-progress']) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sum(report['patches'].values()) == KEPT
    assert len(L8BiomePatches(output, split='train')) == report['patches']['train']
