"""KTDA's cloud set: 512-px patches cut from TorchGeo's L8 Biome scenes.

:func:`prepare_l8biome_patches` cuts the scenes of TorchGeo's
:class:`~torchgeo.datasets.L8Biome` (Landsat-8, 96 scenes, 30 m) into
non-overlapping patches once, on disk; :class:`L8BiomePatches` reads them. The
recipe follows the KTDA reference (red, green, blue = bands 4, 3, 2; patches kept
when their mask has any labelled pixel; a random 60/20/20 split into 7,931 / 2,643 /
2,643 train / val / test patches) with two documented differences:

* fill pixels (outside the scene footprint) become the ignore index 255; the
  reference turned them into ``clear``;
* the 16-bit bands become 8-bit with a per-scene percentile stretch (see
  :func:`prepare_l8biome_patches`); the reference's 8-bit conversion is not
  published.
"""

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path as PathLibPath
from typing import Any, ClassVar

import numpy as np
import pyproj
import rasterio
from PIL import Image
from rasterio.transform import Affine, from_origin
from torchgeo.datasets import L8Biome
from torchgeo.datasets.l8biome import L8BiomeMask
from torchgeo.datasets.utils import Path, Sample
from tqdm import tqdm

from ..io import atomic_output, atomic_write_text
from .errors import DataNotFoundError
from .grass import ImageMaskDataset

_logger = logging.getLogger(__name__)

#: The reference's patch counts per split (13,217 patches of 512 x 512 px).
L8BIOME_SPLIT_COUNTS: dict[str, int] = {'train': 7931, 'val': 2643, 'test': 2643}

#: KTDA's class names, by class index; fill pixels get :data:`L8BIOME_IGNORE_INDEX`.
L8BIOME_CLASSES = ('clear', 'cloud shadow', 'thin cloud', 'cloud')

#: Mask value of fill pixels (no data) in the patches.
L8BIOME_IGNORE_INDEX = 255

#: KTDA class of each TorchGeo L8BiomeMask class (0 fill, 1 cloud shadow, 2 clear,
#: 3 thin cloud, 4 cloud; from the raw values 0, 64, 128, 192, 255).
TORCHGEO_TO_KTDA = (L8BIOME_IGNORE_INDEX, 1, 0, 2, 3)

#: Percentiles of each band (over a scene's non-fill pixels) mapped to 0 and 255.
STRETCH_PERCENTILES = (2.0, 98.0)

#: The RGB bands read from the scenes (Landsat-8 red, green, blue).
RGB_BANDS = ('B4', 'B3', 'B2')

#: Name of the split file, written last: a root with it is prepared.
SPLITS_FILE = 'splits.json'

#: Version of the prepared layout (stored in the split file and scene records).
_FORMAT = 1

_SPLITS = ('train', 'val', 'test')


class L8BiomePatchesNotFoundError(DataNotFoundError):
    """Raised when the L8 Biome scenes or the prepared patches are missing."""


def l8biome_split_counts(
    total: int, split_counts: Mapping[str, float] | None = None
) -> dict[str, int]:
    """Return the number of patches of each split for *total* patches.

    *split_counts* gives a weight per split ('train', 'val', 'test'; a missing
    split gets 0): counts or fractions. Counts that sum to *total* are used as
    they are; otherwise the weights are scaled to *total* by the largest-remainder
    method (floors first, then one more patch to the splits with the largest
    remainders, ties in train, val, test order), so the counts always sum to
    *total*. The default, the reference's 7,931 / 2,643 / 2,643, is exact for its
    13,217 patches and 60/20/20 % otherwise.

    Args:
        total: Number of patches to split.
        split_counts: Weight of each split; None for :data:`L8BIOME_SPLIT_COUNTS`.

    Returns:
        ``{'train': n, 'val': n, 'test': n}``.

    Raises:
        ValueError: If *total* is negative, a split is unknown, a weight is
            negative, or all weights are 0.
    """
    weights = dict(L8BIOME_SPLIT_COUNTS if split_counts is None else split_counts)
    unknown = sorted(set(weights) - set(_SPLITS))
    if unknown:
        msg = f'unknown split(s) {unknown} in split_counts; use {list(_SPLITS)}'
        raise ValueError(msg)
    if total < 0:
        msg = f'total must be >= 0; got {total}'
        raise ValueError(msg)
    # Fractions of the decimal text, so that 0.6 / 0.2 / 0.2 are exact.
    fractions = [Fraction(str(weights.get(split, 0))) for split in _SPLITS]
    if any(f < 0 for f in fractions) or sum(fractions) == 0:
        msg = (
            f'split_counts={weights} needs non-negative weights with a positive sum '
            '(counts such as 7931/2643/2643, or fractions such as 0.6/0.2/0.2)'
        )
        raise ValueError(msg)
    quotas = [f * total / sum(fractions) for f in fractions]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(_SPLITS)), key=lambda i: (counts[i] - quotas[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return dict(zip(_SPLITS, counts, strict=True))


def find_l8biome_scenes(
    l8biome_root: Path,
) -> list[tuple[str, PathLibPath, PathLibPath]]:
    """Find the scenes of an extracted L8 Biome download.

    A scene is a ``LC8*_fixedmask.TIF`` mask (TorchGeo's ``L8BiomeMask`` files)
    beside its image ``LC8*.TIF`` (``L8BiomeImage``), anywhere under the root, as
    in TorchGeo's layout ``root/<biome>/<scene>/<scene>.TIF``.

    Args:
        l8biome_root: Root of the extracted download (TorchGeo's ``paths``).

    Returns:
        ``(scene id, image path, mask path)`` per scene, sorted by scene id.

    Raises:
        L8BiomePatchesNotFoundError: If the root holds no scene, or a mask has no
            image.
        ValueError: If two scenes share a folder.
    """
    root = PathLibPath(l8biome_root)
    suffix = L8BiomeMask.filename_glob.removeprefix('LC8*')  # '_fixedmask.TIF'
    masks = sorted(root.glob(f'**/{L8BiomeMask.filename_glob}'))
    if not masks:
        archives = sorted(p.name for p in root.glob('*.tar.gz'))
        found = (
            f'only archives ({", ".join(archives)}): extract them, e.g. with '
            f"torchgeo.datasets.L8Biome('{root}')"
            if archives
            else 'none'
        )
        msg = (
            f'prepare_l8biome_patches: no L8 Biome scene (<scene>{suffix} beside '
            f'<scene>.TIF) under {root}; found {found}. Download and extract the '
            f"scenes first: torchgeo.datasets.L8Biome('{root}', download=True)."
        )
        raise L8BiomePatchesNotFoundError(msg)
    scenes = []
    missing = []
    for mask in masks:
        scene = mask.name.removesuffix(suffix)
        image = mask.with_name(f'{scene}.TIF')
        if image.is_file():
            scenes.append((scene, image, mask))
        else:
            missing.append(str(image))
    if missing:
        msg = (
            f'prepare_l8biome_patches: {len(missing)} L8 Biome mask(s) have no image '
            f'beside them: {", ".join(missing[:5])}. Re-extract those scenes.'
        )
        raise L8BiomePatchesNotFoundError(msg)
    folders: dict[PathLibPath, str] = {}
    for scene, image, _ in scenes:
        other = folders.setdefault(image.parent, scene)
        if other != scene:
            msg = (
                f'prepare_l8biome_patches: scenes {other} and {scene} share the '
                f'folder {image.parent}; every scene needs its own folder, as '
                "TorchGeo's archives extract them (root/<biome>/<scene>/)"
            )
            raise ValueError(msg)
    return sorted(scenes)


def stretch_limits(
    histogram: np.typing.NDArray[np.int64],
    percentiles: tuple[float, float] = STRETCH_PERCENTILES,
) -> tuple[int, int]:
    """Return the values at two percentiles of a histogram of integer values.

    The percentile *q* is the smallest value with at least ``q %`` of the counts at
    or below it (NumPy's ``method='inverted_cdf'``). The upper limit is at least
    the lower one plus 1.

    Args:
        histogram: Count of every value ``0 .. len - 1``.
        percentiles: Lower and upper percentile, 0-100.

    Returns:
        The lower and upper value.
    """
    cumulative = np.cumsum(histogram)
    total = int(cumulative[-1])
    limits = []
    for q in percentiles:
        rank = max(1, math.ceil(round(q * total / 100, 9)))
        limits.append(int(np.searchsorted(cumulative, rank, side='left')))
    low, high = limits
    return low, max(high, low + 1)


def _stretch(
    image: np.typing.NDArray[np.floating], limits: list[tuple[int, int]]
) -> np.typing.NDArray[np.uint8]:
    """Map every band linearly from its limits to 0-255, rounded and clipped."""
    out = np.empty(image.shape, dtype=np.uint8)
    for band, (low, high) in enumerate(limits):
        scaled = (image[band].astype(np.float64) - low) * (255 / (high - low))
        out[band] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return out


class _Scene:
    """One L8 Biome scene read through TorchGeo on its own pixel grid."""

    def __init__(self, image: PathLibPath, mask: PathLibPath) -> None:
        """Open a scene.

        Args:
            image: The scene's multi-band image.
            mask: The scene's mask.

        Raises:
            ValueError: If the image and mask differ in grid, or the image has an
                unsupported data type.
        """
        with rasterio.open(mask) as src:
            self.crs = src.crs
            self.transform: Affine = src.transform
            self.height, self.width = src.height, src.width
        with rasterio.open(image) as src:
            grid = (src.crs, src.transform, src.height, src.width)
            dtype = src.dtypes[0]
        if grid != (self.crs, self.transform, self.height, self.width):
            msg = (
                f'prepare_l8biome_patches: {image} and {mask} differ in CRS, '
                'transform or size; the patches need them on one pixel grid'
            )
            raise ValueError(msg)
        if dtype not in ('uint8', 'uint16'):
            msg = (
                f'prepare_l8biome_patches: {image} is {dtype}; the 8-bit stretch '
                "expects L8 Biome's integer digital numbers (uint16)"
            )
            raise ValueError(msg)
        if self.transform.b != 0 or self.transform.d != 0 or self.transform.e >= 0:
            msg = (
                f'prepare_l8biome_patches: {mask} is rotated or south-up '
                f'({self.transform}); only north-up grids are supported'
            )
            raise ValueError(msg)
        self.xres, self.yres = self.transform.a, -self.transform.e
        # crs=None would make TorchGeo warp to EPSG:3857: keep the scene's own CRS
        # and resolution so that reads are plain window reads.
        self.dataset = L8Biome(
            paths=[image.parent],
            crs=pyproj.CRS.from_user_input(self.crs.to_wkt()),
            res=(self.xres, self.yres),
            bands=RGB_BANDS,
        )

    def read(self, row: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Read full-width rows of the scene.

        Args:
            row: First row.
            height: Number of rows.

        Returns:
            The RGB image (float32 ``[3, height, width]``, digital numbers) and
            TorchGeo's mask classes (int64 ``[height, width]``, 0 = fill).
        """
        left = self.transform.c
        top = self.transform.f - row * self.yres
        sample = self.dataset[
            left : left + self.width * self.xres : self.xres,
            top - height * self.yres : top : self.yres,
        ]
        return sample['image'].numpy(), sample['mask'].numpy()

    def window_transform(self, row: int, col: int) -> Affine:
        """Return the transform of the window whose top-left pixel is (row, col)."""
        return from_origin(
            self.transform.c + col * self.xres,
            self.transform.f - row * self.yres,
            self.xres,
            self.yres,
        )


def _scene_histograms(scene: _Scene, strip: int) -> np.ndarray:
    """Count every digital number of each RGB band over the non-fill pixels.

    Args:
        scene: The scene.
        strip: Rows read at a time.

    Returns:
        int64 ``[3, 65536]`` counts.
    """
    histograms = np.zeros((len(RGB_BANDS), 65536), dtype=np.int64)
    for row in range(0, scene.height, strip):
        image, mask = scene.read(row, min(strip, scene.height - row))
        valid = mask != 0
        for band in range(len(RGB_BANDS)):
            values = image[band][valid].astype(np.int64)
            histograms[band] += np.bincount(values, minlength=65536)
    return histograms


def _write_patch(
    image: np.ndarray,
    mask: np.ndarray,
    name: str,
    output_root: PathLibPath,
    crs: rasterio.crs.CRS,
    transform: Affine,
) -> None:
    """Write one patch atomically: a uint8 GeoTIFF image and a uint8 PNG mask."""
    profile = {
        'driver': 'GTiff',
        'width': image.shape[-1],
        'height': image.shape[-2],
        'count': image.shape[0],
        'dtype': 'uint8',
        'crs': crs,
        'transform': transform,
        'compress': 'deflate',
    }
    with atomic_output(output_root / 'images' / f'{name}.tif') as temporary:
        with rasterio.open(temporary, 'w', **profile) as dst:
            dst.write(image)
    with atomic_output(output_root / 'masks' / f'{name}.png') as temporary:
        Image.fromarray(mask).save(temporary, format='PNG')


def _prepare_scene(
    scene_id: str,
    image_path: PathLibPath,
    mask_path: PathLibPath,
    output_root: PathLibPath,
    patch_size: int,
) -> dict[str, Any]:
    """Cut one scene into patches and write them and the scene's record.

    Args:
        scene_id: Scene name (the image's stem); patch names start with it.
        image_path: The scene's image.
        mask_path: The scene's mask.
        output_root: Root of the prepared patches.
        patch_size: Side of the patches in pixels.

    Returns:
        The scene's record (also written to ``scenes/<scene id>.json``).
    """
    scene = _Scene(image_path, mask_path)
    rows, cols = scene.height // patch_size, scene.width // patch_size
    histograms = _scene_histograms(scene, patch_size)
    limits = None
    if histograms[0].sum():
        limits = [stretch_limits(h) for h in histograms]
    lut = np.array(TORCHGEO_TO_KTDA, dtype=np.uint8)
    patches = []
    for row in range(rows if limits is not None else 0):
        image, classes = scene.read(row * patch_size, patch_size)
        for col in range(cols):
            window = np.s_[..., col * patch_size : (col + 1) * patch_size]
            if not (classes[window] != 0).any():
                continue  # only fill: dropped, as in the reference
            name = f'{scene_id}_{row:03d}_{col:03d}'
            _write_patch(
                _stretch(image[window], limits),
                lut[classes[window]],
                name,
                output_root,
                scene.crs,
                scene.window_transform(row * patch_size, col * patch_size),
            )
            patches.append(name)
    record = {
        'format': _FORMAT,
        'scene': scene_id,
        'image': str(image_path),
        'patch_size': patch_size,
        'size': [scene.height, scene.width],
        'windows': rows * cols,
        'stretch_percentiles': list(STRETCH_PERCENTILES),
        'stretch': None
        if limits is None
        else dict(zip(RGB_BANDS, limits, strict=True)),
        'patches': patches,
    }
    atomic_write_text(
        output_root / 'scenes' / f'{scene_id}.json', json.dumps(record, indent=1)
    )
    return record


def _scene_record(
    output_root: PathLibPath, scene_id: str, patch_size: int
) -> dict[str, Any] | None:
    """Return the record of a scene prepared before with these settings, or None."""
    path = output_root / 'scenes' / f'{scene_id}.json'
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if (
        record.get('format') != _FORMAT
        or record.get('patch_size') != patch_size
        or record.get('stretch_percentiles') != list(STRETCH_PERCENTILES)
    ):
        return None
    for name in record['patches']:
        if (
            not (output_root / 'images' / f'{name}.tif').is_file()
            or not (output_root / 'masks' / f'{name}.png').is_file()
        ):
            return None
    return record


#: What :func:`prepare_l8biome_patches` writes at the top of its output root.
_OWN_ENTRIES = ('images', 'masks', 'scenes', SPLITS_FILE)


def _recorded_patches(output_root: PathLibPath) -> dict[str, list[str]]:
    """Patch names per scene, from the scene records an earlier run wrote."""
    recorded: dict[str, list[str]] = {}
    for path in sorted((output_root / 'scenes').glob('*.json')):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get('format') == _FORMAT:
            recorded[path.stem] = list(record.get('patches', []))
    return recorded


def _patch_files(output_root: PathLibPath, name: str) -> tuple[PathLibPath, ...]:
    """The two files of one patch."""
    return output_root / 'images' / f'{name}.tif', output_root / 'masks' / f'{name}.png'


def _orphans(output_root: PathLibPath, scene_ids: set[str]) -> set[str]:
    """Patches of *scene_ids* on disk that no record lists (an interrupted scene).

    Only names of the form ``<scene>_<row>_<col>`` of a scene being prepared
    count: the names this function writes, never a user's other files.
    """
    names = set()
    for folder, suffix in (('images', '.tif'), ('masks', '.png')):
        for path in (output_root / folder).glob(f'*{suffix}'):
            parts = path.stem.rsplit('_', 2)
            if (
                len(parts) == 3
                and parts[0] in scene_ids
                and all(len(part) >= 3 and part.isdigit() for part in parts[1:])
            ):
                names.add(path.stem)
    return names


def _remove_prepared(output_root: PathLibPath) -> None:
    """Remove what an earlier run wrote, as its records list it, and nothing else.

    The folders go only when they are left empty.
    """
    recorded = _recorded_patches(output_root)
    listed = {name for names in recorded.values() for name in names}
    for name in listed | _orphans(output_root, set(recorded)):
        for path in _patch_files(output_root, name):
            path.unlink(missing_ok=True)
    for scene_id in recorded:
        (output_root / 'scenes' / f'{scene_id}.json').unlink(missing_ok=True)
    (output_root / SPLITS_FILE).unlink(missing_ok=True)
    for folder in ('scenes', 'images', 'masks'):
        try:
            (output_root / folder).rmdir()
        except OSError:  # missing, or holds files this function did not write
            pass


def _remove_stale_patches(
    output_root: PathLibPath,
    names: set[str],
    previous: set[str],
    scene_ids: set[str],
) -> None:
    """Delete patch files of earlier runs with other settings.

    Args:
        output_root: The output root.
        names: The patches of this run.
        previous: The patches the records listed before this run.
        scene_ids: The scenes of this run (their unlisted patches are orphans of
            an interrupted run).
    """
    for name in (previous | _orphans(output_root, scene_ids)) - names:
        for path in _patch_files(output_root, name):
            path.unlink(missing_ok=True)


def _check_foreign(output_root: PathLibPath, overwrite: bool) -> None:
    """Refuse an output root that holds files this function did not write.

    Raises:
        FileExistsError: Naming some of them, unless *overwrite* (then they are
            left alone).
    """
    if not output_root.is_dir() or overwrite:
        return
    foreign = sorted(
        path.name
        for path in output_root.iterdir()
        if path.name not in _OWN_ENTRIES and not path.name.startswith('.')
    )
    if foreign:
        shown = ', '.join(foreign[:5]) + (' ...' if len(foreign) > 5 else '')
        msg = (
            f'{output_root} holds files geopeft did not write ({shown}): choose a '
            'new or empty output folder, or pass --overwrite (overwrite=True) to '
            'write beside them (they are left untouched)'
        )
        raise FileExistsError(msg)


def _check_prepared(
    splits: dict[str, Any],
    patch_size: int,
    seed: int,
    split_counts: Mapping[str, float] | None,
    scene_ids: list[str] | None,
    output_root: PathLibPath,
) -> None:
    """Raise when a prepared root was made with other settings or scenes."""
    requested = {
        'patch_size': patch_size,
        'seed': seed,
        'split_counts': None if split_counts is None else dict(split_counts),
    }
    stored = {key: splits.get(key) for key in requested}
    if scene_ids is not None and scene_ids != splits.get('scenes'):
        requested['scenes'] = f'{len(scene_ids)} scenes found now'
        stored['scenes'] = f'{len(splits.get("scenes", []))} scenes'
    if requested != stored:
        msg = (
            f'prepare_l8biome_patches: {output_root} was prepared with {stored}, '
            f'not {requested}; pass overwrite=True to prepare it again'
        )
        raise ValueError(msg)


def prepare_l8biome_patches(
    l8biome_root: Path,
    output_root: Path,
    *,
    patch_size: int = 512,
    seed: int = 0,
    split_counts: Mapping[str, float] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Cut TorchGeo's L8 Biome scenes into KTDA's cloud-segmentation patches.

    Every scene (:func:`find_l8biome_scenes`) is read through its own
    :class:`~torchgeo.datasets.L8Biome` (bands B4, B3, B2) in the scene's CRS and
    resolution, so nothing is reprojected (TorchGeo would warp to EPSG:3857 by
    default), and cut into non-overlapping ``patch_size`` windows on the scene's
    pixel grid from its top-left corner; partial windows at the right and bottom
    edges are dropped, and so are windows whose mask is fill only.

    Masks: TorchGeo's classes (0 fill, 1 cloud shadow, 2 clear, 3 thin cloud, 4
    cloud; raw values 0, 64, 128, 192, 255) become KTDA's (0 clear, 1 cloud shadow,
    2 thin cloud, 3 cloud) and fill becomes 255, the ignore index. The reference
    made fill ``clear``, which counts the no-data border as clear sky.

    Images: each band of a scene is stretched from 16 bits to 8 bits: value *v*
    becomes ``round(255 * (v - p2) / (p98 - p2))`` clipped to 0-255, with *p2* and
    *p98* the band's 2nd and 98th percentiles (:func:`stretch_limits`) over all
    non-fill pixels of the whole scene (not of the patch), so patches of a scene
    share one stretch. The limits are stored in ``scenes/<scene>.json``.

    Splits: the patches (of all scenes, sorted by name) are shuffled with *seed*
    and cut into train, val and test by :func:`l8biome_split_counts` (the
    reference's 7,931 / 2,643 / 2,643 when there are 13,217 patches, scaled
    proportionally otherwise, with a log message). Like the reference, the split
    is by patch, so one scene may feed several splits.

    Output::

        output_root/images/<scene>_<row>_<col>.tif  uint8 RGB GeoTIFF (scene CRS)
        output_root/masks/<scene>_<row>_<col>.png   uint8 classes 0-3, 255 = fill
        output_root/scenes/<scene>.json             per-scene record and stretch
        output_root/splits.json                     patch names per split

    Every file is written to a temporary name and renamed, and ``splits.json``
    comes last, so an interrupted run leaves no partial file and a root without
    ``splits.json`` is not prepared. Re-running resumes: scenes whose record
    exists (same patch size) are not read again. On a prepared root a re-run is a
    no-op (it raises when the settings or the scenes differ) unless *overwrite*.

    Args:
        l8biome_root: Root of the extracted L8 Biome download (e.g. the ``paths``
            of TorchGeo's ``L8Biome(paths, download=True)``).
        output_root: Folder for the patches (created).
        patch_size: Side of the patches in pixels.
        seed: Seed of the split.
        split_counts: Counts or fractions per split for
            :func:`l8biome_split_counts`; None for the reference's counts.
        overwrite: Delete an earlier preparation in *output_root* (the files its
            records list, nothing else) and start over; also write into a folder
            that holds other files (left untouched).
        progress: Show a progress bar over the scenes.

    Returns:
        The number of patches per split.

    Raises:
        ValueError: If *patch_size* is not positive, or *output_root* was prepared
            with other settings or scenes and *overwrite* is False.
        FileExistsError: If *output_root* holds files this function did not
            write and *overwrite* is False.
        L8BiomePatchesNotFoundError: If *l8biome_root* holds no scene.
    """
    if patch_size < 1:
        msg = f'patch_size must be >= 1; got {patch_size}'
        raise ValueError(msg)
    output_root = PathLibPath(output_root)
    splits_path = output_root / SPLITS_FILE
    _check_foreign(output_root, overwrite)
    if overwrite:
        _remove_prepared(output_root)
    elif splits_path.is_file():
        prepared = json.loads(splits_path.read_text())
        try:  # the scenes may be gone once prepared: then nothing to compare
            scene_ids = [s[0] for s in find_l8biome_scenes(l8biome_root)]
        except L8BiomePatchesNotFoundError:
            scene_ids = None
        _check_prepared(
            prepared, patch_size, seed, split_counts, scene_ids, output_root
        )
        _logger.info('%s is prepared already; nothing to do', output_root)
        return {split: len(names) for split, names in prepared['splits'].items()}

    scenes = find_l8biome_scenes(l8biome_root)
    previous = {
        name for names in _recorded_patches(output_root).values() for name in names
    }
    records = []
    for scene_id, image, mask in tqdm(
        scenes, desc='L8 Biome scenes', unit='scene', disable=not progress
    ):
        record = _scene_record(output_root, scene_id, patch_size)
        if record is None:
            record = _prepare_scene(scene_id, image, mask, output_root, patch_size)
        records.append(record)

    names = sorted(name for record in records for name in record['patches'])
    _remove_stale_patches(
        output_root, set(names), previous, {scene_id for scene_id, _, _ in scenes}
    )
    counts = l8biome_split_counts(len(names), split_counts)
    requested = L8BIOME_SPLIT_COUNTS if split_counts is None else split_counts
    if sum(requested.values()) != len(names):
        _logger.warning(
            'L8 Biome: %d patches kept (the reference has 13,217); split_counts %s '
            'scaled proportionally to %s',
            len(names),
            dict(requested),
            counts,
        )
    order = np.random.default_rng(seed).permutation(len(names))
    splits: dict[str, list[str]] = {}
    start = 0
    for split in _SPLITS:
        chosen = order[start : start + counts[split]]
        splits[split] = sorted(names[i] for i in chosen)
        start += counts[split]

    summary = {
        'format': _FORMAT,
        'patch_size': patch_size,
        'seed': seed,
        'split_counts': None if split_counts is None else dict(split_counts),
        'classes': list(L8BIOME_CLASSES),
        'ignore_index': L8BIOME_IGNORE_INDEX,
        'bands': list(RGB_BANDS),
        'scenes': [scene_id for scene_id, _, _ in scenes],
        'splits': splits,
    }
    atomic_write_text(splits_path, json.dumps(summary, indent=1))
    return {split: len(splits[split]) for split in _SPLITS}


class L8BiomePatches(ImageMaskDataset):
    """KTDA's cloud-segmentation patches of L8 Biome.

    Made once by :func:`prepare_l8biome_patches`. Classes ``clear``, ``cloud
    shadow``, ``thin cloud``, ``cloud`` (mask indices 0-3); 255 marks fill pixels
    (outside the Landsat scene), ignored by the loss and the metrics. Images are
    the 8-bit stretched red, green and blue bands (B4, B3, B2) of Landsat-8, 30 m.

    Samples::

        {'image': float32 Tensor [3, 512, 512]  (0-255),
         'mask': int64 Tensor [512, 512]}

    (the side is the ``patch_size`` of the preparation).
    """

    splits: ClassVar[tuple[str, ...]] = _SPLITS
    classes: ClassVar[tuple[str, ...]] = L8BIOME_CLASSES
    ignore_index: ClassVar[int] = L8BIOME_IGNORE_INDEX

    def __init__(
        self,
        root: Path = 'data',
        split: str = 'train',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new L8BiomePatches instance.

        Args:
            root: The ``output_root`` of :func:`prepare_l8biome_patches`.
            split: One of 'train', 'val' or 'test'.
            transforms: A function/transform that takes an input sample and returns
                a transformed version.

        Raises:
            ValueError: If *split* is invalid.
            L8BiomePatchesNotFoundError: If *root* is not prepared, the split is
                empty, or a listed patch is missing.
        """
        if split not in self.splits:
            msg = (
                f'L8BiomePatches: unknown split {split!r}; choose one of {self.splits}'
            )
            raise ValueError(msg)
        self.root = PathLibPath(root)
        self.split = split
        self.transforms = transforms
        self.files = self._load_files()

    def _load_files(self) -> list[dict[str, PathLibPath]]:
        """List the split's patches from ``splits.json``.

        Returns:
            One dict with ``'image'`` and ``'mask'`` paths per patch.

        Raises:
            L8BiomePatchesNotFoundError: If the split file, the split or a patch is
                missing.
        """
        path = self.root / SPLITS_FILE
        if not path.is_file():
            msg = (
                f'L8BiomePatches: {self.root} is not prepared ({path} does not '
                'exist). Cut the L8 Biome scenes into patches first: geopeft '
                f'prepare l8biome data/l8biome {self.root} (or '
                'geopeft.datasets.prepare_l8biome_patches; download the scenes with '
                "torchgeo.datasets.L8Biome('data/l8biome', download=True))."
            )
            raise L8BiomePatchesNotFoundError(msg)
        names = json.loads(path.read_text())['splits'].get(self.split, [])
        if not names:
            msg = f'L8BiomePatches: {path} lists no {self.split!r} patch'
            raise L8BiomePatchesNotFoundError(msg)
        files = [
            {
                'image': self.root / 'images' / f'{name}.tif',
                'mask': self.root / 'masks' / f'{name}.png',
            }
            for name in names
        ]
        present = {
            folder: set(os.listdir(self.root / folder))
            if (self.root / folder).is_dir()
            else set()
            for folder in ('images', 'masks')
        }
        missing = [
            f'{f[key].parent.name}/{f[key].name}'
            for f in files
            for key, folder in (('image', 'images'), ('mask', 'masks'))
            if f[key].name not in present[folder]
        ]
        if missing:
            msg = (
                f'L8BiomePatches: {len(missing)} file(s) listed in {path} are '
                f'missing: {", ".join(missing[:5])}. Prepare the root again with '
                'prepare_l8biome_patches(..., overwrite=True).'
            )
            raise L8BiomePatchesNotFoundError(msg)
        return files
