from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import matplotlib.pyplot as plt
import pytest
import torch
from change_data import OSCD_CITIES, make_change_folder, make_levircd, make_oscd
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger
from matplotlib.figure import Figure
from torch.utils.data import Subset
from torchgeo.datamodules import LEVIRCDDataModule, OSCDDataModule
from torchgeo.datasets import LEVIRCD, OSCD
from torchgeo.tasks import ChangeDetection

from geopeft.datamodules import (
    IMAGENET_MEAN,
    ChangeFolderDataModule,
    change_eval_augmentation,
    change_train_augmentation,
)
from geopeft.datasets import ChangeFolder


def _trainer(stage: str) -> MagicMock:
    trainer = MagicMock()
    trainer.training = stage == 'train'
    trainer.validating = stage == 'val'
    trainer.sanity_checking = False
    trainer.testing = stage == 'test'
    trainer.predicting = stage == 'predict'
    return trainer


def _transfer(dm: Any, batch: dict, stage: str) -> dict:
    dm.trainer = _trainer(stage)
    return dm.on_after_batch_transfer({k: v.clone() for k, v in batch.items()}, 0)


@pytest.fixture(scope='module')
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_change_folder(tmp_path_factory.mktemp('change'), size=32)


@pytest.fixture
def no_val_root(tmp_path: Path) -> Path:
    root = make_change_folder(tmp_path, size=16, pairs_per_split=10)
    for folder in ('A', 'B', 'label'):
        for file in (root / folder).glob('val_*'):
            file.unlink()
    return root


class TestChangeFolderDataModule:
    def test_fit_validate_test_predict(self, folder_root: Path) -> None:
        dm = ChangeFolderDataModule(root=folder_root, batch_size=2, patch_size=16)
        dm.setup('fit')
        assert isinstance(dm.train_dataset, ChangeFolder)
        assert isinstance(dm.val_dataset, ChangeFolder)
        assert (len(dm.train_dataset), len(dm.val_dataset)) == (4, 4)
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 2, 3, 32, 32)
        assert batch['image'].dtype == torch.float32
        assert batch['mask'].shape == (2, 1, 32, 32)
        assert batch['mask'].dtype == torch.int64

        train = _transfer(dm, batch, 'train')
        assert train['image'].shape == (2, 2, 3, 16, 16)
        assert train['mask'].shape == (2, 1, 16, 16)
        assert abs(train['image'].mean().item()) < 2
        for stage in ('val', 'test', 'predict'):
            out = _transfer(dm, batch, stage)
            assert out['image'].shape == (2, 2, 3, 32, 32)
            assert torch.equal(out['mask'], batch['mask'])
        val = _transfer(dm, batch, 'val')
        mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
        restored = val['image'] * dm.std.view(1, 1, 3, 1, 1) + mean
        assert torch.allclose(restored, batch['image'], atol=1e-3)

        dm.setup('validate')
        assert len(next(iter(dm.val_dataloader()))['image']) == 2
        dm.setup('test')
        assert len(dm.test_dataset) == 4
        assert next(iter(dm.test_dataloader()))['image'].shape == (2, 2, 3, 32, 32)
        dm.setup('predict')
        assert len(dm.predict_dataset) == 4
        assert len(next(iter(dm.predict_dataloader()))['mask']) == 2

    def test_eval_patch_size(self, folder_root: Path) -> None:
        dm = ChangeFolderDataModule(root=folder_root, eval_patch_size=16)
        batch = {
            'image': torch.rand(2, 2, 3, 32, 32),
            'mask': torch.zeros(2, 1, 32, 32),
        }
        assert _transfer(dm, batch, 'val')['image'].shape[-2:] == (16, 16)
        assert _transfer(dm, batch, 'predict')['image'].shape[-2:] == (32, 32)

    def test_validation_held_out_of_train(self, no_val_root: Path) -> None:
        dm = ChangeFolderDataModule(root=no_val_root, val_split_pct=0.2, seed=1)
        dm.setup('fit')
        assert isinstance(dm.train_dataset, Subset)
        assert isinstance(dm.val_dataset, Subset)
        train, val = set(dm.train_dataset.indices), set(dm.val_dataset.indices)
        assert (len(train), len(val)) == (8, 2)
        assert train | val == set(range(10))
        again = ChangeFolderDataModule(root=no_val_root, val_split_pct=0.2, seed=1)
        again.setup('validate')
        assert again.val_dataset.indices == dm.val_dataset.indices
        other = ChangeFolderDataModule(root=no_val_root, val_split_pct=0.2, seed=3)
        other.setup('fit')
        assert other.val_dataset.indices != dm.val_dataset.indices

    def test_no_validation(self, no_val_root: Path) -> None:
        dm = ChangeFolderDataModule(root=no_val_root, val_split_pct=0)
        dm.setup('fit')
        assert dm.val_dataset is None
        assert dm.val_dataloader() == []
        assert len(dm.train_dataset) == 10

    def test_hold_out_leaves_no_training_pair(self, tmp_path: Path) -> None:
        root = make_change_folder(tmp_path, size=16, pairs_per_split=1, layout='list')
        (root / 'list' / 'val.txt').unlink()
        dm = ChangeFolderDataModule(root=root, val_split_pct=0.5)
        with pytest.raises(ValueError, match='has no val split.*lower val_split_pct'):
            dm.setup('fit')

    @pytest.mark.parametrize(
        ('augment', 'geometric', 'photometric'),
        [
            (True, True, True),
            ('full', True, True),
            ('geometric', True, False),
            ('crop', False, False),
            (False, False, False),
        ],
    )
    def test_augment_presets(
        self, folder_root: Path, augment: Any, geometric: bool, photometric: bool
    ) -> None:
        dm = ChangeFolderDataModule(root=folder_root, patch_size=16, augment=augment)
        transforms = [type(t).__name__ for t in dm.train_aug.geometric.children()]
        assert ('RandomHorizontalFlip' in transforms) == geometric
        assert (dm.train_aug.photometric is not None) == photometric

    def test_bad_arguments(self, folder_root: Path) -> None:
        with pytest.raises(ValueError, match="unknown augment preset 'heavy'"):
            ChangeFolderDataModule(root=folder_root, augment='heavy')  # type: ignore[arg-type]
        with pytest.raises(ValueError, match='val_split_pct'):
            ChangeFolderDataModule(root=folder_root, val_split_pct=1.0)

    def test_multiband_and_num_classes(self, tmp_path: Path) -> None:
        root = make_change_folder(tmp_path, size=16, pairs_per_split=2, bands=4)
        dm = ChangeFolderDataModule(
            root=root, batch_size=2, patch_size=8, mean=[0] * 4, std=[255] * 4
        )
        assert dm.num_classes == 2
        dm.setup('fit')
        out = _transfer(dm, next(iter(dm.train_dataloader())), 'train')
        assert out['image'].shape == (2, 2, 4, 8, 8)
        multiclass = ChangeFolderDataModule(root=root, label_values=[0, 1, 255])
        assert multiclass.num_classes == 3

    def test_plot(self, folder_root: Path, no_val_root: Path) -> None:
        dm = ChangeFolderDataModule(root=folder_root)
        assert dm.plot() is None
        dm.setup('test')
        sample = dm.test_dataset[0]
        fig = dm.plot({**sample, 'prediction': sample['mask']})
        assert isinstance(fig, Figure)
        plt.close(fig)
        held_out = ChangeFolderDataModule(root=no_val_root)
        held_out.setup('fit')
        fig = held_out.plot(held_out.val_dataset[0])
        assert isinstance(fig, Figure)
        plt.close(fig)


class _FigureLogger(Logger):
    """A logger whose experiment records the figures TorchGeo's tasks add."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str] = []

    @property
    def name(self) -> str:
        return 'figures'

    @property
    def version(self) -> int:
        return 0

    @property
    def experiment(self) -> '_FigureLogger':
        return self

    def add_figure(self, tag: str, figure: Figure, global_step: int) -> None:
        self.figures.append(tag)

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_torchgeo_change_detection_task_trains_and_plots(
    folder_root: Path, tmp_path: Path
) -> None:
    dm = ChangeFolderDataModule(root=folder_root, batch_size=2, patch_size=16)
    task = ChangeDetection(model='fcn', in_channels=3, num_filters=4)
    logger = _FigureLogger()
    trainer = Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        limit_test_batches=1,
        num_sanity_val_steps=0,
        accelerator='cpu',
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=dm)
    trainer.test(task, datamodule=dm)
    assert logger.figures == ['image/0']


class TestTorchGeoLayouts:
    def test_levircd(self, tmp_path: Path) -> None:
        root = make_levircd(tmp_path)
        assert [len(LEVIRCD(root, s)) for s in ('train', 'val', 'test')] == [4, 2, 2]
        dm = LEVIRCDDataModule(root=root, batch_size=2, patch_size=16)
        dm.setup('fit')
        dm.setup('test')
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 2, 3, 32, 32)
        # TorchGeo's own augmentation works on this data (Kornia < 0.9).
        assert _transfer(dm, batch, 'train')['image'].shape == (2, 2, 3, 16, 16)
        dm.train_aug = change_train_augmentation(dm.mean, dm.std, dm.patch_size)
        dm.val_aug = dm.test_aug = change_eval_augmentation(dm.mean, dm.std)
        out = _transfer(dm, batch, 'train')
        assert out['image'].shape == (2, 2, 3, 16, 16)
        assert out['mask'].shape == (2, 1, 16, 16)
        test = _transfer(dm, next(iter(dm.test_dataloader())), 'test')
        assert test['image'].shape == (2, 2, 3, 32, 32)
        assert 0 <= test['image'].min() and test['image'].max() <= 1

    def test_oscd(self, tmp_path: Path) -> None:
        root = make_oscd(tmp_path)
        train, test = OSCD(root, 'train'), OSCD(root, 'test')
        assert (len(train), len(test)) == tuple(len(c) for c in OSCD_CITIES.values())
        sizes = {tuple(sample['image'].shape) for sample in train}
        assert sizes == {(2, 13, 32 + 2 * i, 32 + 2 * i) for i in range(5)}
        rgb = OSCD(root, 'test', bands=('B04', 'B03', 'B02'))
        assert rgb[0]['image'].shape[:2] == (2, 3)
        assert rgb[0]['mask'].shape[0] == 1
        dm = OSCDDataModule(root=root, batch_size=2, patch_size=16)
        dm.setup('fit')
        assert (len(dm.train_dataset), len(dm.val_dataset)) == (4, 1)
        dm.setup('test')
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 2, 13, 16, 16)
        dm.train_aug = change_train_augmentation(
            dm.mean, dm.std, 8, value_range=10000, noise_std=0.01
        )
        out = _transfer(dm, batch, 'train')
        assert out['image'].shape == (2, 2, 13, 8, 8)
        assert out['mask'].shape == (2, 1, 8, 8)
        test = _transfer(dm, next(iter(dm.test_dataloader())), 'test')
        assert test['image'].shape == (2, 2, 13, 16, 16)


def test_train_repeats_draws_several_crops_per_pair(folder_root: Path) -> None:
    dm = ChangeFolderDataModule(
        root=folder_root, batch_size=2, patch_size=16, train_repeats=3
    )
    dm.setup('fit')
    single = ChangeFolderDataModule(root=folder_root, batch_size=2, patch_size=16)
    single.setup('fit')
    assert len(dm.train_dataset) == 3 * len(single.train_dataset)
    assert isinstance(dm.plot(dm.train_dataset[0]), Figure)
    plt.close('all')
    with pytest.raises(ValueError, match='train_repeats must be >= 1'):
        ChangeFolderDataModule(root=folder_root, train_repeats=0)


def test_fewer_training_pairs_than_a_batch_is_a_clear_error(
    folder_root: Path,
) -> None:
    dm = ChangeFolderDataModule(root=folder_root, batch_size=64, patch_size=16)
    with pytest.raises(ValueError, match='fewer than batch_size=64'):
        dm.setup('fit')
