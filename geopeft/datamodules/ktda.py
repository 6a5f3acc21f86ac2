"""Data modules of KTDA's two segmentation sets: grass and L8 Biome cloud patches."""

from collections.abc import Sequence

import torch
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets.utils import Path

from ..datasets import GrassSegmentation, L8BiomePatches
from ..datasets.grass import ImageMaskDataset
from .ktda_augmentation import ktda_eval_augmentation, ktda_train_augmentation
from .scene_classification import IMAGENET_MEAN, IMAGENET_STD


class _KTDASegmentationDataModule(NonGeoDataModule):
    """Shared setup of the KTDA data modules.

    Samples stay in their stored scale on the CPU (``image [3, H, W]`` 0-255,
    ``mask [H, W]``); on the device, ``on_after_batch_transfer`` applies
    :func:`~geopeft.datamodules.ktda_train_augmentation` to training batches
    (random crop of ``patch_size``, horizontal flip, photometric distortion,
    normalisation) and :func:`~geopeft.datamodules.ktda_eval_augmentation`
    (normalisation of whole images) to the others. Masks are ``[B, H, W]`` int64
    with ``ignore_index`` (255) for pixels without a class.
    """

    dataset_class: type[ImageMaskDataset]
    test_split: str = 'test'

    def __init__(
        self,
        root: Path,
        batch_size: int,
        patch_size: int | tuple[int, int],
        num_workers: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        """Initialize the data module.

        Args:
            root: Root directory of the dataset.
            batch_size: Size of each mini-batch.
            patch_size: Side of the random training crop, or ``(height, width)``.
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' 0-255 scale.
            std: Per-band standard deviation used for normalisation.
        """
        super().__init__(self.dataset_class, batch_size, num_workers, root=root)
        self.root = root
        self.patch_size = patch_size
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.train_aug = ktda_train_augmentation(
            patch_size, self.mean, self.std, self.ignore_index
        )
        self.aug = ktda_eval_augmentation(self.mean, self.std)
        self.val_aug = self.test_aug = self.predict_aug = self.aug

    @property
    def num_classes(self) -> int:
        """Number of classes of the masks."""
        return len(self.dataset_class.classes)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, by class index."""
        return self.dataset_class.classes

    @property
    def ignore_index(self) -> int:
        """Mask value of pixels without a class."""
        return self.dataset_class.ignore_index

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.

        Raises:
            ValueError: If the training split fills no batch.
        """
        if stage == 'fit':
            self.train_dataset = self.dataset_class(split='train', **self.kwargs)
            if len(self.train_dataset) < self.batch_size:
                msg = (
                    f'{self.root} has {len(self.train_dataset)} training sample(s), '
                    f'fewer than batch_size={self.batch_size}; training drops the '
                    'last incomplete batch, so nothing would train: lower batch_size'
                )
                raise ValueError(msg)
        if stage in ('fit', 'validate'):
            self.val_dataset = self.dataset_class(split='val', **self.kwargs)
        if stage == 'test':
            self.test_dataset = self.dataset_class(split=self.test_split, **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = self.dataset_class(
                split=self.test_split, **self.kwargs
            )


class GrassDataModule(_KTDASegmentationDataModule):
    """KTDA's grass-coverage set (:class:`~geopeft.datasets.GrassSegmentation`).

    Defaults follow KTDA's recipe: batches of 4 random 256 x 256 crops with
    horizontal flips and photometric distortion, ImageNet normalisation;
    validation on whole images. The grass set has no test split: the paper
    reports ``val``, so ``test`` and ``predict`` also run over ``val`` (do not
    select a model on the numbers you report).
    """

    dataset_class = GrassSegmentation
    test_split = 'val'

    def __init__(
        self,
        root: Path = 'data',
        batch_size: int = 4,
        patch_size: int | tuple[int, int] = 256,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Initialize a new GrassDataModule instance.

        Args:
            root: Directory that holds ``img_dir`` and ``ann_dir``.
            batch_size: Size of each mini-batch.
            patch_size: Side of the random training crop, or ``(height, width)``;
                smaller images are padded (image 0, mask 255).
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' 0-255 scale.
            std: Per-band standard deviation used for normalisation.
        """
        super().__init__(root, batch_size, patch_size, num_workers, mean, std)


class L8BiomePatchesDataModule(_KTDASegmentationDataModule):
    """KTDA's cloud set: L8 Biome patches (:class:`~geopeft.datasets.L8BiomePatches`).

    Run :func:`~geopeft.datasets.prepare_l8biome_patches` once first. Defaults
    follow KTDA's recipe: batches of 2 random 512 x 512 crops (the whole patch)
    with horizontal flips and photometric distortion, ImageNet normalisation;
    validation and test on whole patches. Select models on ``val``; report
    ``test`` (``predict`` also runs over ``test``).
    """

    dataset_class = L8BiomePatches

    def __init__(
        self,
        root: Path = 'data',
        batch_size: int = 2,
        patch_size: int | tuple[int, int] = 512,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Initialize a new L8BiomePatchesDataModule instance.

        Args:
            root: The ``output_root`` of
                :func:`~geopeft.datasets.prepare_l8biome_patches`.
            batch_size: Size of each mini-batch.
            patch_size: Side of the random training crop, or ``(height, width)``.
            num_workers: Number of workers for parallel data loading.
            mean: Per-band mean used for normalisation, in the images' 0-255 scale.
            std: Per-band standard deviation used for normalisation.
        """
        super().__init__(root, batch_size, patch_size, num_workers, mean, std)
