"""The grass-coverage segmentation set of KTDA (``img_dir``/``ann_dir`` folders)."""

import os
import warnings
from collections.abc import Callable
from pathlib import Path as PathLibPath
from typing import ClassVar

import matplotlib.pyplot as plt
import numpy as np
import rasterio
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from torch import Tensor
from torchgeo.datasets import NonGeoDataset
from torchgeo.datasets.utils import Path, Sample, quantile_normalization

from .errors import DataNotFoundError

#: Image file name endings GrassSegmentation lists (GeoTIFFs are read with rasterio,
#: the others with PIL).
GRASS_IMAGE_EXTENSIONS = ('.tif', '.tiff', '.png', '.jpg', '.jpeg')

#: File name endings read with rasterio.
_RASTERIO_EXTENSIONS = ('.tif', '.tiff')


class GrassDatasetNotFoundError(DataNotFoundError):
    """Raised when the grass folders, a split or a mask is missing."""


def _shorten(names: list[str], limit: int = 5) -> str:
    """Join names for an error message, shortening long lists."""
    shown = ', '.join(names[:limit])
    if len(names) > limit:
        shown += f' and {len(names) - limit} more'
    return shown


def _read_array(path: PathLibPath) -> np.typing.NDArray[np.generic]:
    """Read a raster as ``[C, H, W]``: GeoTIFFs with rasterio, others with PIL.

    Args:
        path: Path of the file.

    Returns:
        The stored values, one plane per band.
    """
    if path.suffix.lower() in _RASTERIO_EXTENSIONS:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read()
    with Image.open(path) as img:
        if img.mode not in ('L', 'P', 'RGB', 'I', 'I;16'):
            img = img.convert('RGB')
        array = np.array(img)
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def read_rgb(path: PathLibPath, dataset: str) -> Tensor:
    """Read the first three bands of an image as float32 ``[3, H, W]``.

    Args:
        path: Path of the image.
        dataset: Name of the dataset, for the error message.

    Returns:
        The image, values as stored (0-255 for 8-bit images).

    Raises:
        ValueError: If the image has fewer than three bands.
    """
    array = _read_array(path)
    if array.shape[0] < 3:
        msg = (
            f'{dataset}: image {path} has {array.shape[0]} band(s); an RGB image '
            '(at least three bands, the first three red, green, blue) is expected'
        )
        raise ValueError(msg)
    return torch.from_numpy(array[:3].astype(np.float32))


def read_mask(
    path: PathLibPath, num_classes: int, ignore_index: int, dataset: str
) -> Tensor:
    """Read a mask of class indices and check its values.

    Args:
        path: Path of the mask (one band; a palette PNG gives its indices).
        num_classes: Classes are ``0 .. num_classes - 1``.
        ignore_index: The value of pixels without a class.
        dataset: Name of the dataset, for the error messages.

    Returns:
        The mask, int64 ``[H, W]``.

    Raises:
        ValueError: If the mask has several different bands, or values that are
            neither a class nor *ignore_index*.
    """
    array = _read_array(path)
    if any(not np.array_equal(band, array[0]) for band in array[1:]):
        msg = (
            f'{dataset}: mask {path} has {array.shape[0]} different bands; a mask '
            'must be one band of class indices'
        )
        raise ValueError(msg)
    mask = array[0].astype(np.int64)
    values = np.unique(mask)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.size:
        msg = (
            f'{dataset}: mask {path} holds values {bad.tolist()} that are no class: '
            f'expected class indices 0-{num_classes - 1} and {ignore_index} for '
            'pixels to ignore (is it a colour-coded or 0/255 mask instead of a '
            'mask of class indices?)'
        )
        raise ValueError(msg)
    return torch.from_numpy(mask)


def plot_segmentation(
    sample: Sample,
    classes: tuple[str, ...],
    ignore_index: int,
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Plot an image, its mask and optionally a prediction side by side.

    Args:
        sample: ``{'image': [3, H, W], 'mask': [H, W]}`` and optionally
            ``'prediction'`` (``[H, W]`` or ``[1, H, W]`` class indices).
        classes: Class names, in index order (for the colour bar).
        ignore_index: Mask value drawn in black (no class).
        show_titles: Whether to show titles above each panel.
        suptitle: Optional string to use as a suptitle.

    Returns:
        A matplotlib Figure with the rendered sample.
    """
    image = sample['image'].detach().cpu().float()[:3]
    if image.min() >= 0 and image.max() <= 255:
        shown = (image / 255).permute(1, 2, 0).numpy()
    else:  # normalised or another scale: stretch for display
        shown = quantile_normalization(image.permute(1, 2, 0)).numpy()
    panels: list[tuple[str, np.typing.NDArray[np.generic]]] = [('Image', shown)]
    for key, title in (('mask', 'Mask'), ('prediction', 'Prediction')):
        if key in sample:
            mask = sample[key].detach().cpu()
            mask = mask[0] if mask.ndim == 3 else mask
            panels.append((title, mask.numpy()))

    colours = plt.get_cmap('viridis')(np.linspace(0, 1, len(classes)))
    cmap = ListedColormap(colours).with_extremes(bad='black')
    fig, axs = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    axs = np.atleast_1d(axs)
    for ax, (title, array) in zip(axs, panels, strict=True):
        if array.ndim == 2:
            masked = np.ma.masked_equal(array, ignore_index)
            ax.imshow(
                masked,
                cmap=cmap,
                vmin=-0.5,
                vmax=len(classes) - 0.5,
                interpolation='none',
            )
        else:
            ax.imshow(np.clip(array, 0, 1))
        ax.axis('off')
        if show_titles:
            ax.set_title(title)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


class ImageMaskDataset(NonGeoDataset):
    """Base of the KTDA datasets: pairs of an RGB image and a mask of class indices.

    Subclasses set :attr:`classes`, :attr:`ignore_index` and ``self.files`` (one
    dict with ``'image'`` and ``'mask'`` paths per sample).

    Samples::

        {'image': float32 Tensor [3, H, W]  (values as stored, 0-255),
         'mask': int64 Tensor [H, W]}        (class index, ignore_index for none)
    """

    classes: ClassVar[tuple[str, ...]] = ()
    ignore_index: ClassVar[int] = 255

    files: list[dict[str, PathLibPath]]
    transforms: Callable[[Sample], Sample] | None

    @property
    def num_classes(self) -> int:
        """Number of classes (the ignore index is none)."""
        return len(self.classes)

    def __len__(self) -> int:
        """Return the number of samples in the split.

        Returns:
            Length of the dataset.
        """
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        """Return the image and mask at an index.

        Args:
            index: Index to return.

        Returns:
            ``{'image': float32 [3, H, W], 'mask': int64 [H, W]}``.

        Raises:
            ValueError: If the image is not RGB, the mask holds values that are no
                class, or the two differ in size.
        """
        name = type(self).__name__
        files = self.files[index]
        image = read_rgb(files['image'], name)
        mask = read_mask(files['mask'], self.num_classes, self.ignore_index, name)
        if mask.shape != image.shape[-2:]:
            msg = (
                f'{name}: mask {files["mask"]} is {tuple(mask.shape)} (height, '
                f'width) but its image {files["image"]} is '
                f'{tuple(image.shape[-2:])}; masks must cover the images pixel for '
                'pixel'
            )
            raise ValueError(msg)
        sample: Sample = {'image': image, 'mask': mask}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure:
        """Plot a sample from the dataset: image, mask (and prediction).

        Images in the 0-255 scale are shown as they are; others (e.g. normalised)
        are stretched between their 2nd and 98th percentiles. Ignored pixels are
        black.

        Args:
            sample: A sample returned by :meth:`__getitem__`, optionally with a
                ``'prediction'`` (``[H, W]`` class indices).
            show_titles: Whether to show titles above each panel.
            suptitle: Optional string to use as a suptitle.

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        return plot_segmentation(
            sample, self.classes, self.ignore_index, show_titles, suptitle
        )


class GrassSegmentation(ImageMaskDataset):
    """The grass-coverage segmentation set introduced by KTDA.

    Five ordinal classes of grass coverage: ``low``, ``middle-low``, ``middle``,
    ``middle-high`` and ``high`` (mask indices 0-4); 255 in a mask means no class
    (ignored by the loss and the metrics). The data is ``grass.zip`` (about 180 MB,
    CC-BY-NC-4.0) in the Hugging Face dataset ``XavierJiezou/ktda-datasets``, split
    80/20 at random (seed 42) by its authors; download and extract it yourself::

        root/img_dir/{train,val}/<name>.tif   RGB images (8-bit)
        root/ann_dir/{train,val}/<name>.png   class indices 0-4, 255 = ignore

    Images and masks are paired by file stem. Images are read with rasterio
    (GeoTIFFs) or PIL; only the first three bands are used, as red, green, blue.
    There is no test split: the paper reports the ``val`` split.

    Samples::

        {'image': float32 Tensor [3, H, W]  (0-255),
         'mask': int64 Tensor [H, W]}

    Folders and pairs are checked when the dataset is built; mask values when a
    sample is read.
    """

    splits: ClassVar[tuple[str, ...]] = ('train', 'val')
    classes: ClassVar[tuple[str, ...]] = (
        'low',
        'middle-low',
        'middle',
        'middle-high',
        'high',
    )
    ignore_index: ClassVar[int] = 255

    def __init__(
        self,
        root: Path = 'data',
        split: str = 'train',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new GrassSegmentation instance.

        Args:
            root: Directory that holds ``img_dir`` and ``ann_dir``.
            split: One of 'train' or 'val'.
            transforms: A function/transform that takes an input sample and returns
                a transformed version.

        Raises:
            ValueError: If *split* is invalid.
            GrassDatasetNotFoundError: If a folder is missing, the split holds no
                image, or an image has no mask.
        """
        if split not in self.splits:
            msg = (
                f'GrassSegmentation: unknown split {split!r}; choose one of '
                f'{self.splits} (the grass set has no test split: the paper reports '
                "'val')"
            )
            raise ValueError(msg)
        self.root = PathLibPath(root)
        self.split = split
        self.transforms = transforms
        self.files = self._load_files()

    def _layout(self) -> str:
        """Describe the expected layout and where the data comes from."""
        sep = os.sep
        return (
            f'Expected {self.root}{sep}img_dir{sep}{{train,val}}{sep}<name>.tif and '
            f'{self.root}{sep}ann_dir{sep}{{train,val}}{sep}<name>.png: extract '
            'grass.zip from the Hugging Face dataset XavierJiezou/ktda-datasets '
            '(https://huggingface.co/datasets/XavierJiezou/ktda-datasets, '
            'CC-BY-NC-4.0) and pass the folder that holds img_dir and ann_dir as root'
        )

    def _load_files(self) -> list[dict[str, PathLibPath]]:
        """List the split's image and mask pairs.

        Returns:
            One dict with ``'image'`` and ``'mask'`` paths per pair, sorted by name.

        Raises:
            GrassDatasetNotFoundError: If a folder is missing, the split is empty,
                or an image has no mask.
        """
        images = self.root / 'img_dir' / self.split
        masks = self.root / 'ann_dir' / self.split
        if not self.root.is_dir():
            msg = (
                f'GrassSegmentation: dataset directory {self.root} does not exist. '
                f'{self._layout()}.'
            )
            raise GrassDatasetNotFoundError(msg)
        missing = [str(d) for d in (images, masks) if not d.is_dir()]
        if missing:
            hint = ''
            nested = [p.parent for p in self.root.glob('*/img_dir')]
            if nested:
                hint = f' (found img_dir in {nested[0]}: pass that as root?)'
            msg = (
                f'GrassSegmentation: folder(s) {", ".join(missing)} missing{hint}. '
                f'{self._layout()}.'
            )
            raise GrassDatasetNotFoundError(msg)

        image_files = sorted(
            p
            for p in images.iterdir()
            if p.is_file()
            and not p.name.startswith('.')
            and p.suffix.lower() in GRASS_IMAGE_EXTENSIONS
        )
        if not image_files:
            msg = (
                f'GrassSegmentation: no image in {images} (looked for '
                f'{", ".join(GRASS_IMAGE_EXTENSIONS)} files). {self._layout()}.'
            )
            raise GrassDatasetNotFoundError(msg)
        mask_by_stem: dict[str, PathLibPath] = {}
        for path in sorted(masks.iterdir()):
            if path.is_file() and path.suffix.lower() in GRASS_IMAGE_EXTENSIONS:
                mask_by_stem.setdefault(path.stem, path)
        files = []
        unpaired: list[str] = []
        for image in image_files:
            mask = mask_by_stem.get(image.stem)
            if mask is None:
                unpaired.append(image.name)
            else:
                files.append({'image': image, 'mask': mask})
        if unpaired:
            msg = (
                f'GrassSegmentation: {len(unpaired)} image(s) in {images} have no '
                f'mask in {masks}: {_shorten(unpaired)}. Every image needs a mask '
                'with the same stem (e.g. 12.tif and 12.png).'
            )
            raise GrassDatasetNotFoundError(msg)
        return files
