"""Change-detection data module over ``A``/``B``/``label`` folders."""

from collections.abc import Sequence
from typing import Any, Literal

import torch
from matplotlib.figure import Figure
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets.utils import Path, Sample

from ..datasets import ChangeFolder
from ..datasets.change_folder import SplitSource
from .change_augmentation import (
    TRAIN_PRESETS,
    change_eval_augmentation,
    change_train_augmentation,
)
from .folds import check_folds, train_test_indices
from .scene_classification import IMAGENET_MEAN, IMAGENET_STD


class ChangeFolderDataModule(NonGeoDataModule):
    """Bi-temporal change detection over a :class:`~geopeft.datasets.ChangeFolder`.

    Splits: ``train`` and ``test`` come from the folder (file-name prefixes or
    split lists, see ``split_source``). ``val`` too when the folder has one;
    otherwise a seeded ``val_split_pct`` of the training pairs is held out
    (0 for no validation). Prediction runs over the test split.

    Samples stay in their stored scale on the CPU (``image [2, C, H, W]``, ``mask
    [1, H, W]``); on the device, ``on_after_batch_transfer`` applies:

    * training: :func:`~geopeft.datamodules.change_train_augmentation`: a random
      crop of ``patch_size``, with ``augment`` True or 'full' the same flips and
      90-degree rotations for both dates and the mask and colour jitter drawn per
      date, with 'geometric' only the flips and rotations, with False or 'crop'
      nothing else; then normalisation;
    * validation and test: normalisation, after a center crop when
      ``eval_patch_size`` is set (whole images by default);
    * prediction: normalisation of whole images.

    Normalisation defaults to the ImageNet statistics (in the 0-255 scale) because
    the backbones are ImageNet-pretrained; TorchGeo's ``LEVIRCDDataModule`` uses 0
    and 255 instead. For other bands pass one mean and std per band.
    """

    def __init__(
        self,
        root: Path = 'data',
        batch_size: int = 8,
        patch_size: int | tuple[int, int] = 256,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        val_split_pct: float = 0.2,
        seed: int = 0,
        augment: bool | Literal['crop', 'geometric', 'full'] = True,
        eval_patch_size: int | tuple[int, int] | None = None,
        value_range: float = 255.0,
        split_source: SplitSource = 'auto',
        label_values: Sequence[int] | None = None,
        train_repeats: int = 1,
        folds: int | None = None,
        fold: int = 0,
        fold_seed: int = 0,
    ) -> None:
        """Initialize a new ChangeFolderDataModule instance.

        Args:
            root: Directory that holds the ``A``, ``B`` and ``label`` folders.
            batch_size: Size of each mini-batch.
            patch_size: Side of the random training crop, or ``(height, width)``.
                Should be a multiple of 32 for most segmentation architectures.
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' stored scale.
            std: Per-band standard deviation used for normalisation.
            val_split_pct: Fraction of the training pairs held out for validation
                when the folder has no ``val`` split (0 for no validation).
            seed: Seed of that hold-out.
            augment: Training augmentation: True or 'full' (crop, flips, rotations,
                per-date colour jitter), 'geometric' (crop, flips, rotations),
                False or 'crop' (crop only).
            eval_patch_size: Side of the center crop for validation and test; None
                keeps whole images.
            value_range: The images' white level for the colour jitter (255 for
                8-bit images).
            split_source: 'auto', 'prefix' or 'list' (see
                :class:`~geopeft.datasets.ChangeFolder`).
            label_values: Stored label value of every class, in class order; None
                for binary 0/255 or 0/1 labels.
            train_repeats: Visits of every training pair per epoch, each with its
                own random crop and augmentation (for small datasets cut into
                patches smaller than the images).
            folds: k-fold cross-validation over every pair of the folder (its
                train/val/test prefixes or lists are ignored): the pairs are dealt
                into *folds* folds with *fold_seed*; fold *fold* is the test (and
                prediction) split, the others train, with ``val_split_pct`` of them
                held out for validation. None uses the folder's own splits.
            fold: The test fold, ``0 <= fold < folds``.
            fold_seed: Seed of the deal into folds (keep it fixed across methods
                and training seeds so that they all see the same folds).

        Raises:
            ValueError: If *augment*, *val_split_pct* or *train_repeats* is
                invalid.
        """
        super().__init__(
            ChangeFolder,
            batch_size,
            num_workers,
            root=root,
            split_source=split_source,
            label_values=label_values,
        )
        if not 0 <= val_split_pct < 1:
            msg = f'val_split_pct must be in [0, 1); got {val_split_pct}'
            raise ValueError(msg)
        if train_repeats < 1:
            msg = f'train_repeats must be >= 1; got {train_repeats}'
            raise ValueError(msg)
        if folds is not None:
            check_folds(folds, fold, max(folds, 2))
        self.folds = folds
        self.fold = fold
        self.fold_seed = fold_seed
        self.train_repeats = train_repeats
        self.root = root
        self.patch_size = patch_size
        self.val_split_pct = val_split_pct
        self.seed = seed
        self.augment = augment
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)

        self.train_aug = change_train_augmentation(
            self.mean,
            self.std,
            patch_size,
            value_range=value_range,
            **_train_preset(augment),
        )
        self.val_aug = change_eval_augmentation(self.mean, self.std, eval_patch_size)
        self.test_aug = self.val_aug
        self.aug = change_eval_augmentation(self.mean, self.std)
        self.predict_aug = self.aug

    @property
    def num_classes(self) -> int:
        """Number of classes of the labels (2 for binary change)."""
        label_values = self.kwargs['label_values']
        return 2 if label_values is None else len(label_values)

    def _dataset(self, split: str) -> ChangeFolder:
        """Build the dataset of a split."""
        return ChangeFolder(split=split, **self.kwargs)

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.

        Raises:
            ValueError: If the validation hold-out would leave no training pair, or
                the training pairs fill no batch.
        """
        if self.folds is not None:
            self._setup_fold(stage)
            return
        if stage in ('fit', 'validate'):
            train = self._dataset('train')
            if ChangeFolder.has_split(self.root, 'val', self.kwargs['split_source']):
                self.train_dataset, self.val_dataset = train, self._dataset('val')
            else:
                self.train_dataset, self.val_dataset = self._hold_out(train)
            self._repeat_and_check(stage)
        if stage == 'test':
            self.test_dataset = self._dataset('test')
        if stage == 'predict':
            self.predict_dataset = self._dataset('test')

    def fold_indices(self, count: int) -> tuple[list[int], list[int]]:
        """Return the training and test pair indices of the configured fold.

        Indices are positions in ``ChangeFolder(split='all')`` (pairs sorted by
        file name).

        Args:
            count: Number of pairs in the folder.

        Returns:
            ``(train, test)`` indices.

        Raises:
            ValueError: If the folder has fewer pairs than folds.
        """
        assert self.folds is not None
        check_folds(self.folds, self.fold, count, what='labelled pairs')
        return train_test_indices(count, self.folds, self.fold, seed=self.fold_seed)

    def _setup_fold(self, stage: str) -> None:
        """Set up the datasets of a stage from the cross-validation fold."""
        every = self._dataset('all')
        train_ids, test_ids = self.fold_indices(len(every))
        if stage in ('fit', 'validate'):
            train: Dataset[Sample] = Subset(every, train_ids)
            self.train_dataset, self.val_dataset = self._hold_out(train)
            self._repeat_and_check(stage)
        if stage == 'test':
            self.test_dataset = Subset(every, test_ids)
        if stage == 'predict':
            self.predict_dataset = Subset(every, test_ids)

    def _repeat_and_check(self, stage: str) -> None:
        """Repeat the training pairs ``train_repeats`` times; check one batch fits.

        Raises:
            ValueError: If the training pairs fill no batch.
        """
        if self.train_repeats > 1:
            self.train_dataset = ConcatDataset(
                [self.train_dataset] * self.train_repeats
            )
        if stage == 'fit' and len(self.train_dataset) < self.batch_size:
            msg = (
                f'{self.root} gives {len(self.train_dataset)} training sample(s) '
                f'per epoch, fewer than batch_size={self.batch_size}; training '
                'drops the last incomplete batch, so nothing would train: lower '
                'batch_size, or raise train_repeats'
            )
            raise ValueError(msg)

    def _hold_out(
        self, train: Dataset[Sample]
    ) -> tuple[Dataset[Sample], Subset | None]:
        """Hold a seeded fraction of the training pairs out for validation.

        Args:
            train: The training split.

        Returns:
            The remaining training pairs and the validation pairs (None when
            ``val_split_pct`` is 0).

        Raises:
            ValueError: If no training pair would be left.
        """
        if self.val_split_pct == 0:
            return train, None
        n = len(train)  # type: ignore[arg-type]
        n_val = max(1, round(n * self.val_split_pct))
        if n_val >= n:
            msg = (
                f'{self.root} has no val split and val_split_pct='
                f'{self.val_split_pct} of its {n} training pair(s) leaves none for '
                'training: add val_* pairs (or root/list/val.txt), or lower '
                'val_split_pct'
            )
            raise ValueError(msg)
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=generator).tolist()
        val, rest = sorted(order[:n_val]), sorted(order[n_val:])
        return Subset(train, rest), Subset(train, val)

    def val_dataloader(self) -> DataLoader[Sample] | list[DataLoader[Sample]]:
        """Return the validation data loader, or no loader without validation pairs.

        Returns:
            A data loader over the validation pairs, or an empty list (Lightning
            then skips validation) when ``val_split_pct`` is 0 and the folder has
            no val split.
        """
        if self.val_dataset is None and self.train_dataset is not None:
            return []
        return super().val_dataloader()

    def plot(self, *args: Any, **kwargs: Any) -> Figure | None:
        """Run :meth:`ChangeFolder.plot` of the first dataset set up.

        Args:
            *args: Arguments passed to the dataset's ``plot``.
            **kwargs: Keyword arguments passed to the dataset's ``plot``.

        Returns:
            A matplotlib Figure, or None before :meth:`setup`.
        """
        for dataset in (
            self.val_dataset,
            self.train_dataset,
            self.test_dataset,
            self.predict_dataset,
        ):
            if isinstance(dataset, ConcatDataset):
                dataset = dataset.datasets[0]
            if isinstance(dataset, Subset):
                dataset = dataset.dataset
            if isinstance(dataset, ChangeFolder):
                return dataset.plot(*args, **kwargs)
        return None


def _train_preset(augment: bool | str) -> dict[str, bool]:
    """Resolve the ``augment`` argument to the options of a train preset.

    Args:
        augment: True, False or a key of
            :data:`~geopeft.datamodules.change_augmentation.TRAIN_PRESETS`.

    Returns:
        The ``geometric`` and ``photometric`` options.

    Raises:
        ValueError: If *augment* names no preset.
    """
    if isinstance(augment, bool):
        return TRAIN_PRESETS['full' if augment else 'crop']
    if augment not in TRAIN_PRESETS:
        msg = (
            f'unknown augment preset {augment!r}; choose True, False or one of '
            f'{list(TRAIN_PRESETS)}'
        )
        raise ValueError(msg)
    return TRAIN_PRESETS[augment]
