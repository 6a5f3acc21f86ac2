"""Folder-per-class scene classification datasets."""

import os
from collections.abc import Callable
from pathlib import Path as PathLibPath
from typing import ClassVar, cast

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torchgeo.datasets import NonGeoClassificationDataset
from torchgeo.datasets.utils import Path, Sample

from .errors import DataNotFoundError

#: File name endings read as images (case-insensitive).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff')


class SceneDatasetNotFoundError(DataNotFoundError):
    """Raised when a scene dataset's folder is missing, empty or incomplete."""


def is_image_file(path: Path) -> bool:
    """Tell whether a file is a (non-hidden) image that a scene dataset reads.

    Args:
        path: Path of the file.

    Returns:
        True if the name ends with one of :data:`IMAGE_EXTENSIONS` and does not
        start with a dot.
    """
    name = os.path.basename(path)
    return not name.startswith('.') and name.lower().endswith(IMAGE_EXTENSIONS)


def _has_image(directory: PathLibPath) -> bool:
    """Tell whether a directory (or any sub-directory) holds at least one image."""
    for _, _, names in os.walk(directory, followlinks=True):
        if any(is_image_file(name) for name in names):
            return True
    return False


class SceneFolder(NonGeoClassificationDataset):
    """A scene classification dataset stored as one folder per class.

    Reads any dataset laid out as ``root/<class>/<image>`` (images may also sit in
    sub-folders of a class folder), with images in one of :data:`IMAGE_EXTENSIONS`.
    Images are read with PIL and converted to 8-bit RGB, so every sample is
    ``{'image': float Tensor [3, H, W] in 0-255, 'label': long Tensor []}``. Classes
    are the folder names, sorted; hidden folders and files are ignored. Images may
    differ in size; resize them in ``transforms`` to batch them.

    Subclasses for a known benchmark set :attr:`expected_classes` to read exactly
    those class folders (others are ignored) and to check that all are present.

    Splits are not part of the dataset: take :class:`torch.utils.data.Subset` views
    (see :func:`geopeft.datamodules.stratified_split`).
    """

    #: Class folders of a known benchmark (None: discover them under ``root``).
    expected_classes: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        root: Path = 'data',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialize a new SceneFolder instance.

        Args:
            root: Directory that holds one folder per class.
            transforms: A function/transform that takes an input sample and returns
                a transformed version.

        Raises:
            SceneDatasetNotFoundError: If ``root`` does not exist, holds no class
                folder, or a class folder holds no image.
        """
        directory = self._locate(PathLibPath(root))
        self._verify(directory)
        super().__init__(
            root=directory, transforms=transforms, is_valid_file=is_image_file
        )

    def _locate(self, root: PathLibPath) -> PathLibPath:
        """Return the directory that holds the class folders.

        Args:
            root: The ``root`` argument.

        Returns:
            The directory to read.
        """
        return root

    def _download_hint(self) -> str:
        """Return where to get the data, appended to error messages."""
        return ''

    def _not_found(
        self, problem: str, directory: PathLibPath
    ) -> SceneDatasetNotFoundError:
        """Build the error for a missing dataset, explaining the expected layout.

        Args:
            problem: What is wrong.
            directory: The directory that was searched.

        Returns:
            The error to raise.
        """
        extensions = '|'.join(ext.lstrip('.') for ext in IMAGE_EXTENSIONS)
        message = (
            f'{self.__class__.__name__}: {problem}. Expected one folder per class '
            f'with images inside: {directory}{os.sep}<class>{os.sep}<image>'
            f'.({extensions}).'
        )
        hint = self._download_hint()
        if hint:
            message += f' {hint}'
        return SceneDatasetNotFoundError(message)

    def _verify(self, directory: PathLibPath) -> None:
        """Check that the class folders exist and hold images.

        Args:
            directory: Directory that should hold the class folders.

        Raises:
            SceneDatasetNotFoundError: If the layout is not as expected.
        """
        if not directory.is_dir():
            raise self._not_found(
                f'dataset directory {directory} does not exist', directory
            )
        if self.expected_classes is None:
            classes = self._class_folders(directory)
            if not classes:
                raise self._not_found(
                    f'no class folder found in {directory}', directory
                )
        else:
            classes = list(self.expected_classes)
            missing = [name for name in classes if not (directory / name).is_dir()]
            if missing:
                found = len(classes) - len(missing)
                raise self._not_found(
                    f'{len(missing)} of {len(classes)} class folders missing in '
                    f'{directory} ({found} found): {", ".join(missing)}',
                    directory,
                )
        empty = [name for name in classes if not _has_image(directory / name)]
        if empty:
            raise self._not_found(
                f'no image in the class folder(s) {", ".join(empty)} of {directory}',
                directory,
            )

    @staticmethod
    def _class_folders(directory: Path) -> list[str]:
        """List the non-hidden sub-directories of a directory, sorted."""
        with os.scandir(directory) as entries:
            return sorted(
                entry.name
                for entry in entries
                if entry.is_dir() and not entry.name.startswith('.')
            )

    def find_classes(self, directory: Path) -> tuple[list[str], dict[str, int]]:
        """Find the class folders (ImageFolder hook).

        Args:
            directory: Directory that holds the class folders.

        Returns:
            The sorted class names and the mapping from class name to index.
        """
        if self.expected_classes is None:
            classes = self._class_folders(directory)
        else:
            classes = sorted(self.expected_classes)
        return classes, {name: index for index, name in enumerate(classes)}

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure:
        """Plot a sample from the dataset.

        Args:
            sample: A sample returned by :meth:`__getitem__`, optionally with a
                ``'prediction'`` (class index).
            show_titles: Whether to show the label (and prediction) above the image.
            suptitle: Optional string to use as a suptitle.

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        image = np.moveaxis(sample['image'].detach().cpu().float().numpy(), 0, -1)
        if image.max() > 1:
            image = image / 255.0
        image = np.clip(image, 0, 1)

        label = self.classes[cast(int, sample['label'].item())]
        title = f'Label: {label}'
        if 'prediction' in sample:
            prediction = self.classes[cast(int, sample['prediction'].item())]
            title += f'\nPrediction: {prediction}'

        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(image)
        ax.axis('off')
        if show_titles:
            ax.set_title(title)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig
