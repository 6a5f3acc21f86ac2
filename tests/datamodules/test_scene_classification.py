from pathlib import Path
from unittest.mock import MagicMock

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torchgeo.datasets.ucmerced
from lightning.pytorch import LightningModule, Trainer
from PIL import Image
from torch.utils.data import Subset

from geopeft.datamodules import (
    AIDDataModule,
    ResizeImage,
    SceneFolderDataModule,
    UCMercedProtocolDataModule,
)
from geopeft.datasets import AID


def _write_images(folder: Path, names: list[str], size: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / name)


@pytest.fixture(scope='module')
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 10 images of mixed sizes (so resizing is needed to batch)."""
    root = tmp_path_factory.mktemp('scenes')
    for c, name in enumerate(['a', 'b', 'c']):
        names = [f'{name}{i}.png' for i in range(10)]
        _write_images(root / name, names[:5], 20 + 4 * c, c)
        _write_images(root / name, names[5:], 40, 10 + c)
    return root


def _trainer(stage: str) -> MagicMock:
    trainer = MagicMock()
    trainer.training = stage == 'train'
    trainer.validating = stage == 'val'
    trainer.sanity_checking = False
    trainer.testing = stage == 'test'
    trainer.predicting = stage == 'predict'
    return trainer


class TestSceneFolderDataModule:
    def test_splits_and_batches(self, folder_root: Path) -> None:
        dm = SceneFolderDataModule(
            root=folder_root,
            train_fraction=0.5,
            val_fraction=0.2,
            image_size=16,
            batch_size=4,
        )
        dm.setup('fit')
        assert dm.classes == ['a', 'b', 'c']
        assert dm.num_classes == 3
        for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
            assert isinstance(dataset, Subset)
        assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (
            12,
            3,
            15,
        )
        ids = [
            set(d.indices) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)
        ]
        assert set.union(*ids) == set(range(30))
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (4, 3, 16, 16)
        assert batch['image'].dtype == torch.float32
        assert batch['label'].shape == (4,)
        assert batch['label'].dtype == torch.int64
        assert next(iter(dm.test_dataloader()))['image'].shape[1:] == (3, 16, 16)

    def test_dataset_is_built_once_and_split_is_seeded(self, folder_root: Path) -> None:
        dm = SceneFolderDataModule(root=folder_root, seed=1, image_size=8)
        dm.setup('fit')
        full, train = dm.full_dataset, dm.train_dataset.indices
        dm.setup('test')
        assert dm.full_dataset is full
        assert dm.train_dataset.indices == train
        other = SceneFolderDataModule(root=folder_root, seed=2, image_size=8)
        other.setup('fit')
        assert other.train_dataset.indices != train

    def test_on_after_batch_transfer_normalises(self, folder_root: Path) -> None:
        dm = SceneFolderDataModule(root=folder_root, image_size=16, batch_size=8)
        dm.setup('fit')
        batch = next(iter(dm.train_dataloader()))
        image = batch['image'].clone()
        assert image.mean() > 50  # 0-255 scale on the CPU side
        for stage in ('train', 'val', 'test', 'predict'):
            dm.trainer = _trainer(stage)
            out = dm.on_after_batch_transfer(
                {k: v.clone() for k, v in batch.items()}, 0
            )
            assert out['image'].shape == image.shape
            assert torch.equal(out['label'], batch['label'])
            assert abs(out['image'].mean().item()) < 1
            assert 0.1 < out['image'].std().item() < 2 < image.std().item()
        dm.trainer = _trainer('val')
        normalised = dm.on_after_batch_transfer(
            {k: v.clone() for k, v in batch.items()}, 0
        )
        expected = (image - dm.mean.view(1, 3, 1, 1)) / dm.std.view(1, 3, 1, 1)
        assert torch.allclose(normalised['image'], expected, atol=1e-4)

    def test_train_aug_flips_and_rotates(self, folder_root: Path) -> None:
        dm = SceneFolderDataModule(root=folder_root, image_size=16)
        torch.manual_seed(0)
        image = torch.rand(16, 3, 16, 16) * 255
        out = dm.train_aug({'image': image.clone(), 'label': torch.zeros(16)})['image']
        expected = (image - dm.mean.view(1, 3, 1, 1)) / dm.std.view(1, 3, 1, 1)
        # Every output is one of the 8 dihedral transforms of its input.
        changed = 0
        for x, y in zip(expected, out, strict=True):
            variants = [
                torch.rot90(v, k, (1, 2)) for v in (x, x.flip(-1)) for k in range(4)
            ]
            match = [torch.allclose(y, v, atol=1e-4) for v in variants]
            assert any(match)
            changed += not match[0]
        assert changed > 0

    def test_plot(self, folder_root: Path) -> None:
        dm = SceneFolderDataModule(root=folder_root, image_size=16)
        assert dm.plot() is None
        dm.setup('fit')
        sample = dm.val_dataset[0]
        sample['prediction'] = torch.tensor(1)
        fig = dm.plot(sample)
        assert fig is not None
        plt.close(fig)

    def test_custom_statistics(self, folder_root: Path) -> None:
        dm = SceneFolderDataModule(
            root=folder_root, mean=[0, 0, 0], std=[255, 255, 255]
        )
        assert dm.mean.tolist() == [0, 0, 0]
        assert dm.std.tolist() == [255, 255, 255]

    def test_fit_without_validation_split(
        self, folder_root: Path, tmp_path: Path
    ) -> None:
        class Tiny(LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(3, 3)
                self.validated = False

            def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
                logits = self.layer(batch['image'].mean((2, 3)))
                return torch.nn.functional.cross_entropy(logits, batch['label'])

            def validation_step(self, batch: dict, batch_idx: int) -> None:
                self.validated = True

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return torch.optim.SGD(self.parameters(), lr=0.1)

        dm = SceneFolderDataModule(
            root=folder_root, val_fraction=0.0, image_size=8, batch_size=5
        )
        model = Tiny()
        trainer = Trainer(
            max_epochs=1,
            accelerator='cpu',
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        )
        trainer.fit(model, datamodule=dm)
        assert len(dm.val_dataset) == 0
        assert not model.validated
        assert len(dm.train_dataset) == 15


def test_resize_image() -> None:
    sample = {'image': torch.rand(3, 30, 20) * 255, 'label': torch.tensor(2)}
    out = ResizeImage(12)(sample)
    assert out['image'].shape == (3, 12, 12)
    assert out['label'] is sample['label']
    same = {'image': torch.rand(3, 12, 12), 'label': torch.tensor(0)}
    assert ResizeImage(12)(same)['image'] is same['image']


class TestAIDDataModule:
    @pytest.fixture(scope='class')
    def aid_root(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        root = tmp_path_factory.mktemp('aid')
        for i, name in enumerate(AID.expected_classes):
            _write_images(
                root / 'AID' / name, [f'{i}_{j}.jpg' for j in range(10)], 12, i
            )
        return root

    @pytest.mark.parametrize(
        ('protocol', 'train', 'test'), [('aid28', 2, 8), ('aid55', 5, 5)]
    )
    def test_protocols(
        self, aid_root: Path, protocol: str, train: int, test: int
    ) -> None:
        dm = AIDDataModule(
            root=aid_root, protocol=protocol, val_fraction=0.0, image_size=8
        )
        dm.setup('fit')
        assert dm.num_classes == 30
        assert len(dm.train_dataset) == 30 * train
        assert len(dm.test_dataset) == 30 * test
        assert len(dm.val_dataset) == 0

    def test_unknown_protocol(self, aid_root: Path) -> None:
        with pytest.raises(ValueError, match="'ucm55'.*aid28"):
            AIDDataModule(root=aid_root, protocol='ucm55')  # type: ignore[arg-type]


UCM_CLASSES = ['agricultural', 'beach', 'forest', 'river']


@pytest.fixture
def ucmerced_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny UC Merced tree as TorchGeo expects it: 4 classes x 10 TIFs."""

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError('tests must not download')

    monkeypatch.setattr(torchgeo.datasets.ucmerced, 'download_url', no_download)
    images = tmp_path / 'UCMerced_LandUse' / 'Images'
    splits: dict[str, list[str]] = {'train': [], 'val': [], 'test': []}
    for c, name in enumerate(UCM_CLASSES):
        names = [f'{name}{i:02d}.tif' for i in range(10)]
        _write_images(images / name, names, 20 if c else 18, c)
        splits['train'] += names[:6]
        splits['val'] += names[6:8]
        splits['test'] += names[8:]
    for split, names in splits.items():
        (tmp_path / f'uc_merced-{split}.txt').write_text('\n'.join(names) + '\n')
    return tmp_path


class TestUCMercedProtocolDataModule:
    def test_ucm55_over_all_torchgeo_splits(self, ucmerced_root: Path) -> None:
        dm = UCMercedProtocolDataModule(
            root=ucmerced_root, val_fraction=0.0, image_size=16, batch_size=4
        )
        dm.prepare_data()
        dm.setup('fit')
        assert dm.classes == UCM_CLASSES
        assert len(dm.full_dataset) == 40
        targets = dm.targets
        for dataset in (dm.train_dataset, dm.test_dataset):
            counts = np.bincount([targets[i] for i in dataset.indices], minlength=4)
            assert counts.tolist() == [5, 5, 5, 5]
        # Targets line up with the labels the dataset returns.
        for index in (0, 17, 39):
            assert dm.full_dataset[index]['label'].item() == targets[index]
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (4, 3, 16, 16)
        fig = dm.plot(dm.test_dataset[0])
        assert fig is not None
        plt.close(fig)

    def test_validation_carved_from_train(self, ucmerced_root: Path) -> None:
        dm = UCMercedProtocolDataModule(root=ucmerced_root, val_fraction=0.2, seed=3)
        dm.setup('fit')
        sizes = len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
        assert sizes == (16, 4, 20)

    def test_missing_data(self, tmp_path: Path) -> None:
        dm = UCMercedProtocolDataModule(root=tmp_path / 'nowhere')
        with pytest.raises(FileNotFoundError, match='download=True'):
            dm.setup('fit')
