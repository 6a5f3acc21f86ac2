"""Scene-classification data modules with seeded, stratified split protocols."""

from collections.abc import Sequence
from typing import Any, Literal

import kornia.augmentation as K
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import UCMerced
from torchgeo.datasets.utils import Path, Sample

from ..datasets import AID, SceneFolder
from .change_augmentation import _statistics
from .folds import check_folds, train_test_indices
from .splits import PROTOCOLS, SplitProtocol, stratified_split

#: ImageNet mean and std of the RGB bands, in the 0-255 scale of the images.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class ResizeImage:
    """Resize a sample's image to a square (CPU transform, one sample at a time).

    Bilinear with antialiasing, so that images of different sizes (e.g. AID's
    600x600 and UC Merced's 256x256 with a few odd ones) batch together.
    """

    def __init__(self, size: int) -> None:
        """Initialize a new ResizeImage instance.

        Args:
            size: Side of the output image in pixels.
        """
        self.size = size

    def __call__(self, sample: Sample) -> Sample:
        """Resize ``sample['image']`` (``[C, H, W]``) to ``[C, size, size]``.

        Args:
            sample: A sample with an ``'image'``.

        Returns:
            The sample with the image resized (other keys unchanged).
        """
        image = sample['image']
        if image.shape[-2:] != (self.size, self.size):
            image = F.interpolate(
                image[None].float(),
                size=(self.size, self.size),
                mode='bilinear',
                align_corners=False,
                antialias=True,
            )[0]
        return {**sample, 'image': image}

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(size={self.size})'


class SceneClassificationDataModule(NonGeoDataModule):
    """Base data module for scene classification with a stratified split.

    The whole dataset is built once; :func:`~geopeft.datamodules.stratified_split`
    then draws a seeded per-class split into ``train_dataset``, ``val_dataset`` and
    ``test_dataset`` (:class:`~torch.utils.data.Subset` views of it). The validation
    set is carved out of the training part, so the train : test ratio of the
    protocol is kept. Prediction runs over the test split.

    On the CPU every sample is only resized to ``image_size``; on the device,
    ``aug`` normalises (ImageNet statistics by default) and ``train_aug`` also flips
    and rotates by multiples of 90 degrees.

    Subclasses provide the dataset by overriding :meth:`build_dataset`.
    """

    def __init__(
        self,
        root: Path = 'data',
        *,
        train_fraction: float,
        val_fraction: float = 0.1,
        seed: int = 0,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        dataset_class: type[SceneFolder] | type[UCMerced] = SceneFolder,
        folds: int | None = None,
        fold: int = 0,
        fold_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """Initialize a new SceneClassificationDataModule instance.

        Args:
            root: Root directory of the dataset.
            train_fraction: Fraction of each class for training (+ validation); the
                rest is the test set.
            val_fraction: Fraction of each class's training part held out for
                validation (0 for none).
            seed: Seed of the split (the protocols use seeds 0-4).
            image_size: Side of the square images fed to the model, in pixels.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' 0-255 scale.
            std: Per-band standard deviation used for normalisation.
            dataset_class: Class of the dataset, built with ``root``,
                ``transforms`` and *kwargs*.
            folds: Stratified k-fold cross-validation instead of the fractions:
                fold *fold* of *folds* is the test split, the others train (less
                ``val_fraction`` of each class for validation). None: the
                fractions.
            fold: The test fold.
            fold_seed: Seed of the deal into folds (fixed across methods and
                training seeds).
            **kwargs: Additional keyword arguments passed to the dataset.
        """
        super().__init__(dataset_class, batch_size, num_workers, **kwargs)
        self.folds = folds
        self.fold = fold
        self.fold_seed = fold_seed
        self.root = root
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.seed = seed
        self.image_size = image_size
        self.mean = _statistics(mean, 'mean')
        self.std = _statistics(std, 'std')

        self.full_dataset: Dataset[Sample] | None = None
        self.targets: list[int] = []
        self._classes: list[str] = []
        self.split_indices: dict[str, list[int]] = {}

        self.aug = K.AugmentationSequential(
            K.Normalize(mean=self.mean, std=self.std), data_keys=None, keepdim=True
        )
        self.train_aug = K.AugmentationSequential(
            K.Normalize(mean=self.mean, std=self.std),
            K.RandomHorizontalFlip(),
            K.RandomVerticalFlip(),
            K.RandomRotation90(times=(0, 3), p=1.0, resample='nearest'),
            data_keys=None,
            keepdim=True,
        )

    def build_dataset(self) -> tuple[Dataset[Sample], list[int], list[str]]:
        """Build the whole dataset (all splits), with :class:`ResizeImage`.

        Returns:
            The dataset, the class index of every sample and the class names.
        """
        dataset = self.dataset_class(
            root=self.root, transforms=ResizeImage(self.image_size), **self.kwargs
        )
        return dataset, list(dataset.targets), list(dataset.classes)

    def _build(self) -> None:
        """Build the dataset and draw the split, once."""
        if self.full_dataset is not None:
            return
        dataset, targets, classes = self.build_dataset()
        if self.folds is None:
            self.split_indices = stratified_split(
                targets,
                self.train_fraction,
                seed=self.seed,
                val_fraction=self.val_fraction,
            )
        else:
            self.split_indices = self._fold_split(targets)
        self.full_dataset, self.targets, self._classes = dataset, targets, classes

    def _fold_split(self, targets: list[int]) -> dict[str, list[int]]:
        """Split by stratified k-fold: fold ``fold`` tests, the others train.

        Args:
            targets: Class index of every sample.

        Returns:
            ``{'train', 'val', 'test'}`` indices; validation is carved out of the
            training folds per class (``val_fraction``), seeded with ``seed``.
        """
        assert self.folds is not None
        check_folds(self.folds, self.fold, len(targets), what='images')
        train, test = train_test_indices(
            len(targets), self.folds, self.fold, seed=self.fold_seed, labels=targets
        )
        val: list[int] = []
        if self.val_fraction > 0:
            inner = stratified_split(
                [targets[i] for i in train],
                1.0 - self.val_fraction,
                seed=self.seed,
            )
            val = sorted(train[i] for i in inner['test'])
            train = sorted(train[i] for i in inner['train'])
        return {'train': train, 'val': val, 'test': test}

    @property
    def classes(self) -> list[str]:
        """Class names, in label order (builds the dataset if needed)."""
        self._build()
        return self._classes

    @property
    def num_classes(self) -> int:
        """Number of classes (builds the dataset if needed)."""
        return len(self.classes)

    def setup(self, stage: str) -> None:
        """Build the dataset once and set the train, val and test subsets.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict' (all splits are
                set whatever the stage; the split does not depend on it).
        """
        self._build()
        assert self.full_dataset is not None
        self.train_dataset = Subset(self.full_dataset, self.split_indices['train'])
        self.val_dataset = Subset(self.full_dataset, self.split_indices['val'])
        self.test_dataset = Subset(self.full_dataset, self.split_indices['test'])
        self.predict_dataset = self.test_dataset

    def val_dataloader(self) -> DataLoader[Sample] | list[DataLoader[Sample]]:
        """Return the validation data loader, or no loader when ``val_fraction=0``.

        Returns:
            A data loader over the validation split, or an empty list (Lightning
            then skips validation) when the split is empty.
        """
        if self.val_dataset is not None and len(self.val_dataset) == 0:
            return []
        return super().val_dataloader()

    def plot(self, *args: Any, **kwargs: Any) -> Figure | None:
        """Run the plot method of the underlying dataset.

        Args:
            *args: Arguments passed to the dataset's ``plot``.
            **kwargs: Keyword arguments passed to the dataset's ``plot``.

        Returns:
            A matplotlib Figure, or None before :meth:`setup`.
        """
        dataset = self.full_dataset
        if isinstance(dataset, ConcatDataset):
            dataset = dataset.datasets[0]
        if dataset is None or not hasattr(dataset, 'plot'):
            return None
        return dataset.plot(*args, **kwargs)


class SceneFolderDataModule(SceneClassificationDataModule):
    """Any folder-per-class dataset (:class:`~geopeft.datasets.SceneFolder`).

    Used by ``geopeft demo`` on the embedded synthetic scenes and for your own
    chips, UC Merced's ``Images`` folder or any ``root/<class>/<image>`` layout.
    """

    def __init__(
        self,
        root: Path = 'data',
        train_fraction: float = 0.5,
        val_fraction: float = 0.1,
        seed: int = 0,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        folds: int | None = None,
        fold: int = 0,
        fold_seed: int = 0,
    ) -> None:
        """Initialize a new SceneFolderDataModule instance.

        Args:
            root: Directory that holds one folder per class.
            train_fraction: Fraction of each class for training (+ validation); the
                rest is the test set.
            val_fraction: Fraction of each class's training part held out for
                validation (0 for none).
            seed: Seed of the split.
            image_size: Side of the square images fed to the model, in pixels.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' 0-255 scale.
            std: Per-band standard deviation used for normalisation.
            folds: Stratified k-fold cross-validation instead of the fractions
                (see :class:`SceneClassificationDataModule`).
            fold: The test fold.
            fold_seed: Seed of the deal into folds.
        """
        super().__init__(
            root,
            folds=folds,
            fold=fold,
            fold_seed=fold_seed,
            train_fraction=train_fraction,
            val_fraction=val_fraction,
            seed=seed,
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            mean=mean,
            std=std,
        )


class AIDDataModule(SceneClassificationDataModule):
    """AID (:class:`~geopeft.datasets.AID`) under the AID-28 or AID-55 protocol.

    AID-28 trains on 20 % of every class and tests on the other 80 %; AID-55 splits
    50 : 50. Report the mean +- std of the test accuracy over seeds 0-4.
    """

    def __init__(
        self,
        root: Path = 'data',
        protocol: Literal['aid28', 'aid55'] = 'aid28',
        seed: int = 0,
        val_fraction: float = 0.1,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Initialize a new AIDDataModule instance.

        Args:
            root: Directory that holds AID's 30 class folders (or its parent folder
                named ``AID``).
            protocol: 'aid28' (train : test = 20 : 80) or 'aid55' (50 : 50).
            seed: Seed of the split (the protocol uses seeds 0-4).
            val_fraction: Fraction of each class's training part held out for
                validation (0 for none, as in the papers).
            image_size: Side of the square images fed to the model, in pixels.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' 0-255 scale.
            std: Per-band standard deviation used for normalisation.

        Raises:
            ValueError: If *protocol* is not an AID protocol.
        """
        split = _protocol(protocol, 'aid')
        super().__init__(
            root,
            train_fraction=split.train_fraction,
            val_fraction=val_fraction,
            seed=seed,
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            mean=mean,
            std=std,
            dataset_class=AID,
        )
        self.protocol = protocol


class UCMercedProtocolDataModule(SceneClassificationDataModule):
    """UC Merced (:class:`torchgeo.datasets.UCMerced`) under the UCM-55 protocol.

    UCM-55 splits all 2,100 images 50 : 50 per class, so TorchGeo's train, val and
    test splits are concatenated before :func:`stratified_split` draws the
    protocol's split. TorchGeo reads ``root/UCMerced_LandUse/Images`` and the split
    files ``root/uc_merced-{train,val,test}.txt``; ``download=True`` fetches both.
    """

    def __init__(
        self,
        root: Path = 'data',
        protocol: Literal['ucm55'] = 'ucm55',
        seed: int = 0,
        val_fraction: float = 0.1,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        download: bool = False,
        checksum: bool = False,
    ) -> None:
        """Initialize a new UCMercedProtocolDataModule instance.

        Args:
            root: Root directory given to :class:`torchgeo.datasets.UCMerced`.
            protocol: 'ucm55' (train : test = 50 : 50).
            seed: Seed of the split (the protocol uses seeds 0-4).
            val_fraction: Fraction of each class's training part held out for
                validation (0 for none, as in the papers).
            image_size: Side of the square images fed to the model, in pixels.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' 0-255 scale.
            std: Per-band standard deviation used for normalisation.
            download: If True, let TorchGeo download the data and split files.
            checksum: If True, let TorchGeo verify the MD5/SHA256 of downloads.

        Raises:
            ValueError: If *protocol* is not a UC Merced protocol.
        """
        split = _protocol(protocol, 'ucmerced')
        super().__init__(
            root,
            train_fraction=split.train_fraction,
            val_fraction=val_fraction,
            seed=seed,
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            mean=mean,
            std=std,
            dataset_class=UCMerced,
            download=download,
            checksum=checksum,
        )
        self.protocol = protocol

    def prepare_data(self) -> None:
        """Download UC Merced and its split files if asked to."""
        if self.kwargs.get('download', False):
            UCMerced(root=self.root, split='train', **self.kwargs)

    def build_dataset(self) -> tuple[Dataset[Sample], list[int], list[str]]:
        """Concatenate TorchGeo's train, val and test splits of UC Merced.

        Returns:
            The dataset of all images, the class index of every image and the class
            names.

        Raises:
            ValueError: If TorchGeo's splits disagree on the classes.
        """
        parts = [
            UCMerced(
                root=self.root,
                split=split,
                transforms=ResizeImage(self.image_size),
                **self.kwargs,
            )
            for split in UCMerced.splits
        ]
        classes = list(parts[0].classes)
        if any(list(part.classes) != classes for part in parts[1:]):
            msg = f'UC Merced splits under {self.root} disagree on the class folders'
            raise ValueError(msg)
        targets = [target for part in parts for target in part.targets]
        return ConcatDataset(parts), targets, classes


def _protocol(key: str, dataset: str) -> SplitProtocol:
    """Look up a split protocol of a dataset.

    Args:
        key: Key in :data:`~geopeft.datamodules.splits.PROTOCOLS`.
        dataset: The dataset the protocol must be for.

    Returns:
        The :class:`~geopeft.datamodules.splits.SplitProtocol`.

    Raises:
        ValueError: If the key is unknown or the protocol is for another dataset.
    """
    protocol = PROTOCOLS.get(key)
    if protocol is None or protocol.dataset != dataset:
        choices = [k for k, p in PROTOCOLS.items() if p.dataset == dataset]
        msg = f'unknown {dataset} protocol {key!r}; choose one of {choices}'
        raise ValueError(msg)
    return protocol
