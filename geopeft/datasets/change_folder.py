"""Bi-temporal change detection stored as ``A``/``B``/``label`` folders."""

import functools
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path as PathLibPath
from typing import ClassVar, Literal, get_args

import matplotlib.pyplot as plt
import numpy as np
import rasterio
import torch
from matplotlib.figure import Figure
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from torch import Tensor
from torchgeo.datasets import NonGeoDataset
from torchgeo.datasets.utils import Path, Sample, quantile_normalization

from .errors import DataNotFoundError

#: Where a split's pairs come from: split lists, file-name prefixes, or lists when
#: the split's list file exists and prefixes otherwise.
SplitSource = Literal['auto', 'prefix', 'list']

#: Stored label values accepted for binary change (0: no change; 1 or 255: change).
BINARY_LABEL_VALUES = (0, 1, 255)

#: File name endings read with rasterio (any band count and data type).
RASTERIO_EXTENSIONS = ('.tif', '.tiff')

#: PIL modes kept as they are; other modes (palette, RGBA, CMYK...) become RGB.
_PIL_IMAGE_MODES = {'L', 'I', 'I;16', 'I;16B', 'I;16L', 'F', 'RGB'}


class ChangeDatasetNotFoundError(DataNotFoundError):
    """Raised when a change dataset's folders, files or split are missing."""


def is_change_image_file(name: str) -> bool:
    """Tell whether a file name is a (non-hidden) image that ChangeFolder reads.

    Args:
        name: File name (or path).

    Returns:
        True for GeoTIFFs (:data:`RASTERIO_EXTENSIONS`) and every extension PIL can
        open, unless the name starts with a dot.
    """
    name = os.path.basename(name)
    if name.startswith('.'):
        return False
    extension = os.path.splitext(name)[1].lower()
    return extension in RASTERIO_EXTENSIONS or extension in _pil_extensions()


@functools.cache
def _pil_extensions() -> frozenset[str]:
    """Return the file name endings PIL can open."""
    extensions = Image.registered_extensions()
    return frozenset(ext for ext, fmt in extensions.items() if fmt in Image.OPEN)


def _format_values(values: Iterable[int], limit: int = 12) -> str:
    """Format label values for an error message, shortening long lists."""
    values = [int(v) for v in values]
    shown = ', '.join(str(v) for v in values[:limit])
    if len(values) > limit:
        shown += f', ... ({len(values)} values)'
    return f'[{shown}]'


def _image_names(folder: PathLibPath) -> set[str]:
    """Return the names of the image files directly in a folder."""
    with os.scandir(folder) as entries:
        return {e.name for e in entries if e.is_file() and is_change_image_file(e.name)}


def _read_list(path: PathLibPath) -> list[str]:
    """Read the non-empty lines of a split list."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class _FolderIndex:
    """The image file names of a folder, looked up by name or by stem."""

    def __init__(self, folder: PathLibPath) -> None:
        """Index the image files directly in a folder.

        Args:
            folder: The folder.
        """
        self.names = _image_names(folder)
        self.by_stem: dict[str, list[str]] = {}
        for name in sorted(self.names):
            self.by_stem.setdefault(os.path.splitext(name)[0], []).append(name)

    def find(self, name: str) -> str | None:
        """Find a file by exact name, or else by stem (another extension).

        Args:
            name: The file name, or a stem without extension.

        Returns:
            The matching file name, or None when none or several match.
        """
        if name in self.names:
            return name
        matches = self.by_stem.get(name) or self.by_stem.get(
            os.path.splitext(name)[0], []
        )
        return matches[0] if len(matches) == 1 else None


class ChangeFolder(NonGeoDataset):
    """A bi-temporal change detection dataset stored as ``A``/``B``/``label`` folders.

    The layout of LEVIR-CD, WHU-CD, DSIFN and others as published by the BIT and
    ChangeFormer repositories::

        root/A/<name>       image of date 1
        root/B/<name>       image of date 2 (same file name)
        root/label/<name>   change label (same file name, or same stem)
        root/list/<split>.txt  optional: one file name per line (BIT's split lists)

    Splits come from file-name prefixes (``train_*``, ``val_*``, ``test_*``, as in
    LEVIR-CD) or from the split lists, chosen by ``split_source``: 'prefix',
    'list', or 'auto' (the list when ``root/list/<split>.txt`` exists, otherwise the
    prefixes). A list line may omit the extension.

    Images are read with rasterio when they are GeoTIFFs (any band count and data
    type) and with PIL otherwise (PNG, JPEG, BMP...: 8-bit RGB, grey or 16-bit;
    palette and RGBA images become RGB). Values are kept as stored (0-255 for 8-bit
    images), as float32.

    Labels are single-band class values. Binary labels (the default) may be stored
    as 0/255 or 0/1: 0 is no change, 1 and 255 are change. For more classes pass
    ``label_values``, every stored value in class order (class *i* is stored as
    ``label_values[i]``), e.g. ``[0, 1, 2]`` or ``[0, 128, 255]``.

    Samples have the format of TorchGeo's :class:`~torchgeo.datasets.LEVIRCD`::

        {'image': float32 Tensor [2, C, H, W]  (date 1, date 2),
         'mask': int64 Tensor [1, H, W]}        (class index per pixel)

    Folders, twins and splits are checked when the dataset is built; band counts,
    sizes and label values when a sample is read (so opening a large dataset stays
    fast).
    """

    splits: ClassVar[tuple[str, ...]] = ('train', 'val', 'test', 'all')
    directories: ClassVar[tuple[str, str, str]] = ('A', 'B', 'label')

    def __init__(
        self,
        root: Path = 'data',
        split: str = 'train',
        split_source: SplitSource = 'auto',
        label_values: Sequence[int] | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new ChangeFolder instance.

        Args:
            root: Directory that holds the ``A``, ``B`` and ``label`` folders.
            split: One of 'train', 'val', 'test' or 'all' (every pair in the
                folder, whatever its prefix or list; for cross-validation).
            split_source: 'prefix' (files named ``<split>_*``), 'list'
                (``root/list/<split>.txt``) or 'auto' (the list if it exists, else
                the prefix).
            label_values: Stored label value of every class, in class order; None for
                binary labels stored as 0/255 or 0/1.
            transforms: A function/transform that takes an input sample and returns
                a transformed version.

        Raises:
            ValueError: If *split*, *split_source* or *label_values* is invalid.
            ChangeDatasetNotFoundError: If a folder is missing, an image of date 1
                has no twin in ``B`` or ``label``, or the split holds no pair.
        """
        if split not in self.splits:
            msg = f'ChangeFolder: unknown split {split!r}; choose one of {self.splits}'
            raise ValueError(msg)
        if split_source not in get_args(SplitSource):
            msg = (
                f'ChangeFolder: unknown split_source {split_source!r}; choose one of '
                f'{get_args(SplitSource)}'
            )
            raise ValueError(msg)
        self.root = PathLibPath(root)
        self.split = split
        self.split_source = split_source
        self.transforms = transforms
        self.label_values = self._check_label_values(label_values)
        self.value_to_class = self._value_to_class(self.label_values)
        self.num_classes = 2 if self.label_values is None else len(self.label_values)

        self._verify_folders()
        self.files = self._load_files()

    @staticmethod
    def _check_label_values(values: Sequence[int] | None) -> tuple[int, ...] | None:
        """Validate ``label_values``.

        Args:
            values: The ``label_values`` argument.

        Returns:
            The values as a tuple of ints, or None for binary labels.

        Raises:
            ValueError: If fewer than two or repeated values are given.
        """
        if values is None:
            return None
        values = tuple(int(v) for v in values)
        if len(values) < 2 or len(set(values)) != len(values):
            msg = (
                f'ChangeFolder: label_values={list(values)} must list at least two '
                'distinct stored values, one per class in class order (e.g. '
                '[0, 1, 2]); leave it None for binary 0/255 or 0/1 labels'
            )
            raise ValueError(msg)
        return values

    @staticmethod
    def _value_to_class(values: tuple[int, ...] | None) -> dict[int, int]:
        """Map each allowed stored label value to its class index."""
        if values is None:
            return {value: min(value, 1) for value in BINARY_LABEL_VALUES}
        return {value: index for index, value in enumerate(values)}

    def _verify_folders(self) -> None:
        """Check that ``root`` and its ``A``, ``B`` and ``label`` folders exist.

        Raises:
            ChangeDatasetNotFoundError: If one of them is missing.
        """
        layout = (
            f'Expected {self.root}{os.sep}A{os.sep}<name>, '
            f'{self.root}{os.sep}B{os.sep}<name> and '
            f'{self.root}{os.sep}label{os.sep}<name> (the A/B/label layout of '
            'LEVIR-CD, WHU-CD and BIT/ChangeFormer)'
        )
        if not self.root.is_dir():
            msg = (
                f'ChangeFolder: dataset directory {self.root} does not exist. {layout}.'
            )
            raise ChangeDatasetNotFoundError(msg)
        missing = [d for d in self.directories if not (self.root / d).is_dir()]
        if missing:
            msg = (
                f'ChangeFolder: folder(s) {", ".join(missing)} missing in '
                f'{self.root}. {layout}.'
            )
            raise ChangeDatasetNotFoundError(msg)

    @staticmethod
    def list_path(root: Path, split: str) -> PathLibPath:
        """Return the path of a split list, ``root/list/<split>.txt``.

        Args:
            root: Dataset directory.
            split: Split name.

        Returns:
            The path (which may not exist).
        """
        return PathLibPath(root) / 'list' / f'{split}.txt'

    @classmethod
    def resolve_split_source(
        cls, root: Path, split: str, split_source: SplitSource = 'auto'
    ) -> Literal['prefix', 'list']:
        """Return where a split's pairs come from.

        Args:
            root: Dataset directory.
            split: Split name.
            split_source: 'auto', 'prefix' or 'list'.

        Returns:
            'list' or 'prefix' ('auto' picks 'list' when the list file exists).
        """
        if split_source == 'auto':
            return 'list' if cls.list_path(root, split).is_file() else 'prefix'
        return split_source

    @classmethod
    def has_split(
        cls, root: Path, split: str, split_source: SplitSource = 'auto'
    ) -> bool:
        """Tell whether a split has at least one entry (twins are not checked).

        Args:
            root: Dataset directory.
            split: Split name.
            split_source: 'auto', 'prefix' or 'list'.

        Returns:
            True if the split list names a file, or (prefixes) a file in ``A``
            starts with ``<split>_``.
        """
        if cls.resolve_split_source(root, split, split_source) == 'list':
            path = cls.list_path(root, split)
            return path.is_file() and bool(_read_list(path))
        folder = PathLibPath(root) / 'A'
        return folder.is_dir() and any(
            name.startswith(f'{split}_') for name in _image_names(folder)
        )

    def _load_files(self) -> list[dict[str, PathLibPath]]:
        """List the split's pairs: the date 1, date 2 and label file of each.

        Returns:
            One dict with ``'image1'``, ``'image2'`` and ``'mask'`` paths per pair,
            sorted by file name.

        Raises:
            ChangeDatasetNotFoundError: If the split is empty, a list names a file
                missing from ``A``, or a file of ``A`` has no twin.
        """
        indexes = {d: _FolderIndex(self.root / d) for d in self.directories}
        source = self.resolve_split_source(self.root, self.split, self.split_source)
        if self.split == 'all':
            names = sorted(indexes['A'].names)
            if not names:
                raise self._empty_split_error(indexes['A'].names)
        elif source == 'list':
            names = self._names_from_list(indexes['A'])
        else:
            prefix = f'{self.split}_'
            names = sorted(n for n in indexes['A'].names if n.startswith(prefix))
            if not names:
                raise self._empty_split_error(indexes['A'].names)

        files = []
        missing: list[str] = []
        for name in names:
            twins = {d: indexes[d].find(name) for d in ('B', 'label')}
            for folder, twin in twins.items():
                if twin is None:
                    missing.append(f'{folder}{os.sep}{name}')
            if None not in twins.values():
                files.append(
                    {
                        'image1': self.root / 'A' / name,
                        'image2': self.root / 'B' / str(twins['B']),
                        'mask': self.root / 'label' / str(twins['label']),
                    }
                )
        if missing:
            shown = ', '.join(missing[:5])
            if len(missing) > 5:
                shown += f' and {len(missing) - 5} more'
            msg = (
                f'ChangeFolder: {len(missing)} twin file(s) missing in {self.root} '
                f'for the {self.split!r} split: {shown}. Every image in A needs a '
                'file with the same name in B and in label (label may differ in '
                'extension only).'
            )
            raise ChangeDatasetNotFoundError(msg)
        return files

    def _names_from_list(self, index_a: _FolderIndex) -> list[str]:
        """Resolve the entries of the split list to file names in ``A``.

        Args:
            index_a: The image files in ``A``.

        Returns:
            The file names, in list order.

        Raises:
            ChangeDatasetNotFoundError: If the list is missing or empty, or names a
                file that is not in ``A``.
        """
        path = self.list_path(self.root, self.split)
        if not path.is_file():
            msg = (
                f"ChangeFolder: split list {path} does not exist (split_source='list')."
                f" Write one file name per line, or use split_source='prefix' for "
                f'files named {self.split}_*.'
            )
            raise ChangeDatasetNotFoundError(msg)
        entries = _read_list(path)
        if not entries:
            msg = f'ChangeFolder: split list {path} lists no file (empty split).'
            raise ChangeDatasetNotFoundError(msg)
        names = [index_a.find(entry) for entry in entries]
        unknown = [e for e, n in zip(entries, names, strict=True) if n is None]
        if unknown:
            shown = ', '.join(unknown[:5])
            if len(unknown) > 5:
                shown += f' and {len(unknown) - 5} more'
            msg = (
                f'ChangeFolder: {len(unknown)} file(s) listed in {path} are not in '
                f'{self.root / "A"}: {shown}. Fix the list or add the files.'
            )
            raise ChangeDatasetNotFoundError(msg)
        return [str(n) for n in names]

    def _empty_split_error(self, index_a: set[str]) -> ChangeDatasetNotFoundError:
        """Build the error for a split with no file-name prefix match.

        Args:
            index_a: The image file names in ``A``.

        Returns:
            The error to raise.
        """
        prefixes = sorted({n.split('_', 1)[0] + '_*' for n in index_a if '_' in n})
        found = (
            f'prefixes found: {", ".join(prefixes)}'
            if prefixes
            else f'{len(index_a)} image(s) found, none with a split prefix'
        )
        lists = self.list_path(self.root, self.split)
        message = (
            f'ChangeFolder: no {self.split!r} pair in {self.root}: no file in '
            f'{self.root / "A"} is named {self.split}_* ({found})'
        )
        if self.split_source == 'auto':
            message += f', and the split list {lists} does not exist'
        message += (
            f'. Name the files train_*, val_* and test_*, or write split lists '
            f'{lists.parent}{os.sep}{{train,val,test}}.txt (one file name per line) '
            "with split_source='auto' or 'list'."
        )
        return ChangeDatasetNotFoundError(message)

    def __len__(self) -> int:
        """Return the number of image pairs in the split.

        Returns:
            Length of the dataset.
        """
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        """Return the image pair and change mask at an index.

        Args:
            index: Index to return.

        Returns:
            ``{'image': float32 [2, C, H, W], 'mask': int64 [1, H, W]}``.

        Raises:
            ValueError: If the two dates differ in band count or size, the label
                differs in size, or the label holds values outside the classes.
        """
        files = self.files[index]
        image1 = _read_image(files['image1'])
        image2 = _read_image(files['image2'])
        if image1.shape != image2.shape:
            msg = (
                f'ChangeFolder: the two dates of {files["image1"].name} differ: '
                f'{files["image1"]} has shape {tuple(image1.shape)} but '
                f'{files["image2"]} has shape {tuple(image2.shape)} (bands, height, '
                'width). Both dates must have the same band count and size: '
                'resample, crop or convert one of them.'
            )
            raise ValueError(msg)
        mask = self._load_mask(files['mask'])
        if mask.shape[-2:] != image1.shape[-2:]:
            msg = (
                f'ChangeFolder: label {files["mask"]} is {tuple(mask.shape[-2:])} '
                f'(height, width) but its images are {tuple(image1.shape[-2:])}; '
                'labels must cover the images pixel for pixel.'
            )
            raise ValueError(msg)
        sample: Sample = {'image': torch.stack([image1, image2]), 'mask': mask}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _load_mask(self, path: PathLibPath) -> Tensor:
        """Read a label and map its stored values to class indices.

        Args:
            path: Path of the label file.

        Returns:
            The class index of every pixel, int64 ``[1, H, W]``.

        Raises:
            ValueError: If the label has several different bands or holds values
                that are not a class.
        """
        array = _read_label(path)
        found = np.unique(array)
        allowed = np.array(sorted(self.value_to_class))
        unknown = np.setdiff1d(found, allowed)
        if unknown.size:
            if self.label_values is None:
                meaning = '(binary change labels: 0 = no change, 1 or 255 = change)'
                fix = (
                    f'For multiclass labels pass label_values with every stored '
                    f'value in class order, e.g. label_values={_format_values(found)}'
                )
            else:
                meaning = '(label_values: class i is stored as the i-th value)'
                fix = 'Add the missing values to label_values in class order'
            msg = (
                f'ChangeFolder: label {path} holds values {_format_values(found)} '
                f'but only {_format_values(allowed)} are allowed {meaning}; not '
                f'allowed: {_format_values(unknown)}. {fix}, or fix the file (a '
                'label saved as JPEG gets blurred edges: save labels as PNG or TIFF).'
            )
            raise ValueError(msg)
        mask = np.zeros(array.shape, dtype=np.int64)
        for value, index in self.value_to_class.items():
            if index:
                mask[array == value] = index
        return torch.from_numpy(mask)[None]

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure:
        """Plot a sample from the dataset: date 1, date 2, mask (and prediction).

        The first three bands are shown as RGB (a single band as grey), stretched
        between their 2nd and 98th percentiles.

        Args:
            sample: A sample returned by :meth:`__getitem__`, optionally with a
                ``'prediction'`` (``[1, H, W]`` or ``[H, W]`` class indices).
            show_titles: Whether to show titles above each panel.
            suptitle: Optional string to use as a suptitle.

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        panels = [
            ('Date 1', _display_image(sample['image'][0])),
            ('Date 2', _display_image(sample['image'][1])),
            ('Mask', _display_mask(sample['mask'])),
        ]
        if 'prediction' in sample:
            panels.append(('Prediction', _display_mask(sample['prediction'])))

        fig, axs = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
        for ax, (title, image) in zip(axs, panels, strict=True):
            if image.ndim == 2:
                ax.imshow(
                    image,
                    cmap='gray' if self.num_classes == 2 else 'viridis',
                    vmin=0,
                    vmax=self.num_classes - 1,
                    interpolation='none',
                )
            else:
                ax.imshow(image)
            ax.axis('off')
            if show_titles:
                ax.set_title(title)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig


def _read_raster(path: PathLibPath) -> np.typing.NDArray[np.generic]:
    """Read all bands of a GeoTIFF as ``[C, H, W]``."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()


def _read_image(path: PathLibPath) -> Tensor:
    """Read an image as float32 ``[C, H, W]``, values as stored.

    Args:
        path: Path of the image.

    Returns:
        The image.
    """
    if path.suffix.lower() in RASTERIO_EXTENSIONS:
        array = _read_raster(path)
    else:
        with Image.open(path) as img:
            if img.mode == '1':
                img = img.convert('L')
            elif img.mode not in _PIL_IMAGE_MODES:
                img = img.convert('RGB')
            array = np.array(img)
        array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return torch.from_numpy(array.astype(np.float32))


def _read_label(path: PathLibPath) -> np.typing.NDArray[np.int64]:
    """Read a label as int64 ``[H, W]`` stored values (palette indices for 'P').

    Args:
        path: Path of the label.

    Returns:
        The stored value of every pixel.

    Raises:
        ValueError: If the label has several bands that differ.
    """
    if path.suffix.lower() in RASTERIO_EXTENSIONS:
        array = _read_raster(path)
    else:
        with Image.open(path) as img:
            array = np.array(img)
        if array.ndim == 3:
            array = np.moveaxis(array, -1, 0)
            if img.mode in ('LA', 'RGBA'):
                array = array[:-1]
        else:
            array = array[None]
    if any(not np.array_equal(band, array[0]) for band in array[1:]):
        msg = (
            f'ChangeFolder: label {path} has {array.shape[0]} different bands; a '
            'label must be one band of class values (an RGB label may be used only '
            'when its bands are equal): convert it to single-band class values.'
        )
        raise ValueError(msg)
    return array[0].astype(np.int64)


def _display_image(image: Tensor) -> np.typing.NDArray[np.floating]:
    """Turn one date ``[C, H, W]`` into a stretched ``[H, W, 3]`` or ``[H, W]``."""
    image = image.detach().cpu().float()
    image = image[:3] if image.shape[0] >= 3 else image[:1]
    stretched = quantile_normalization(image.permute(1, 2, 0))
    return stretched.squeeze(-1).numpy()


def _display_mask(mask: Tensor) -> np.typing.NDArray[np.integer]:
    """Turn a mask or prediction ``[1, H, W]`` or ``[H, W]`` into ``[H, W]``."""
    mask = mask.detach().cpu()
    return (mask[0] if mask.ndim == 3 else mask).numpy()
