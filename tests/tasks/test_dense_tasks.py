"""PEFTSemanticSegmentation and PEFTChangeDetection as Lightning tasks."""

from pathlib import Path

import pytest
import torch
from change_data import make_change_folder
from lightning.pytorch import Trainer

from geopeft.commands.export import export_adapter
from geopeft.datamodules import ChangeFolderDataModule
from geopeft.peft import save_adapter
from geopeft.tasks import PEFTChangeDetection, PEFTSemanticSegmentation

SEG = {
    'model': 'upernet',
    'backbone': 'convnext_atto',
    'num_classes': 4,
    'decoder_kwargs': {'decoder_channels': 32},
}
CHANGE = {
    'model': 'unet',
    'backbone': 'resnet10t',
    'decoder_kwargs': {'decoder_channels': [32, 16, 16, 8, 8]},
}


def trainable(task: torch.nn.Module) -> set[str]:
    return {n for n, p in task.named_parameters() if p.requires_grad}


def parts(names: set[str]) -> set[str]:
    """Which parts of the model the names fall in."""
    found = set()
    for name in names:
        if '.backbone.model.' in name:
            found.add('peft' if ('.eqam.' in name or '.capm.' in name) else 'frozen')
        else:
            found.add(name.split('.')[1])
    return found


def test_segmentation_trains_peft_decoder_and_head() -> None:
    task = PEFTSemanticSegmentation(**SEG)
    assert parts(trainable(task)) == {'peft', 'decoder', 'segmentation_head'}
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 4, (2, 64, 64))
    loss = task.training_step({'image': x, 'mask': y}, 0)
    loss.backward()
    assert all(p.grad is not None for p in task.parameters() if p.requires_grad)


def test_freeze_backbone_and_decoder() -> None:
    task = PEFTSemanticSegmentation(**SEG, freeze_backbone=True)
    assert task.peft_config.method == 'linear'
    assert parts(trainable(task)) == {'decoder', 'segmentation_head'}
    task = PEFTSemanticSegmentation(**SEG, freeze_decoder=True)
    assert parts(trainable(task)) == {'peft', 'segmentation_head'}


def test_frozen_batchnorm_stays_in_eval() -> None:
    task = PEFTSemanticSegmentation(**{**SEG, 'backbone': 'resnet10t'}).train()
    backbone = task.model.encoder.backbone
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert task.model.decoder.training


@pytest.mark.parametrize(
    ('task_kind', 'mask', 'match'),
    [
        ('seg', torch.full((1, 8, 8), 4), r'values \[4\] are outside the classes 0..3'),
        ('change', torch.full((1, 1, 8, 8), 255), 'map 255 -> 1'),
    ],
)
def test_mask_values_outside_the_classes(
    task_kind: str, mask: torch.Tensor, match: str
) -> None:
    task = (
        PEFTSemanticSegmentation(**SEG)
        if task_kind == 'seg'
        else PEFTChangeDetection(**CHANGE)
    )
    with pytest.raises(ValueError, match=match):
        task.on_train_batch_start({'image': None, 'mask': mask}, 0)


def test_ignore_index_is_a_valid_mask_value() -> None:
    task = PEFTSemanticSegmentation(**SEG, ignore_index=255)
    task.check_mask({'mask': torch.tensor([[[0, 3, 255]]])})


def test_checkpoint_with_another_head_is_a_clear_error() -> None:
    saved = PEFTSemanticSegmentation(**{**SEG, 'num_classes': 6})
    task = PEFTSemanticSegmentation(**SEG)
    with pytest.raises(ValueError, match='num_classes=6'):
        task.on_load_checkpoint({'state_dict': saved.state_dict()})
    other = PEFTSemanticSegmentation(**{**SEG, 'decoder_kwargs': None})
    with pytest.raises(ValueError, match='other shapes'):
        task.on_load_checkpoint({'state_dict': other.state_dict()})


def test_change_task_logs_changed_class_scores() -> None:
    task = PEFTChangeDetection(**CHANGE)
    assert task.monitor == 'val_ChangedF1' and task.mode == 'max'
    batch = {
        'image': torch.randn(2, 2, 3, 64, 64),
        'mask': torch.randint(0, 2, (2, 1, 64, 64)),
    }
    task.training_step(batch, 0)
    names = set(task.train_metrics.compute())
    assert {
        'train_ChangedF1',
        'train_ChangedIoU',
        'train_ChangedPrecision',
        'train_ChangedRecall',
        'train_OverallF1Score',
    } <= names


def test_dense_adapter_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrained = PEFTChangeDetection(**CHANGE, peft='full')
    weights = tmp_path / 'backbone.pth'
    torch.save(pretrained.model.encoder.encoder.backbone.model.state_dict(), weights)

    trained = PEFTChangeDetection(**CHANGE, weights=str(weights))
    with torch.no_grad():
        for parameter in trained.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01 * torch.randn_like(parameter))
    adapter = tmp_path / 'adapter.safetensors'
    save_adapter(trained.model, adapter)

    rebuilt = PEFTChangeDetection(**CHANGE, weights=str(weights), adapter=str(adapter))
    x = torch.randn(2, 2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(trained.eval()(x), rebuilt.eval()(x))


def test_fit_then_export_adapter(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrained = PEFTChangeDetection(**CHANGE, peft='full')
    weights = tmp_path / 'backbone.pth'
    torch.save(pretrained.model.encoder.encoder.backbone.model.state_dict(), weights)
    root = make_change_folder(tmp_path / 'data', size=64, pairs_per_split=2)
    datamodule = ChangeFolderDataModule(root=root, batch_size=2, patch_size=64)
    task = PEFTChangeDetection(**CHANGE, weights=str(weights))
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=datamodule)
    checkpoint = tmp_path / 'task.ckpt'
    trainer.save_checkpoint(checkpoint)

    adapter = tmp_path / 'adapter.safetensors'
    nbytes = export_adapter(checkpoint, adapter)
    assert adapter.stat().st_size == nbytes
    assert nbytes < sum(p.numel() * 4 for p in task.parameters()) / 2
    restored = PEFTChangeDetection.load_from_checkpoint(checkpoint, weights_only=True)
    rebuilt = PEFTChangeDetection(**CHANGE, weights=str(weights), adapter=str(adapter))
    x = torch.randn(1, 2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(restored.eval()(x), rebuilt.eval()(x))


@pytest.mark.parametrize(
    ('options', 'loss', 'criterion'),
    [
        ({'num_classes': 2}, 'dice', 'DiceLoss'),
        ({'task': 'binary'}, 'dice', 'DiceLoss'),
        ({'num_classes': 3}, 'ce', 'CrossEntropyLoss'),
        ({'num_classes': 2, 'class_weights': [1.0, 4.0]}, 'ce', 'CrossEntropyLoss'),
        ({'num_classes': 2, 'loss': 'ce'}, 'ce', 'CrossEntropyLoss'),
        ({'num_classes': 3, 'loss': 'focal'}, 'focal', 'FocalLoss'),
    ],
)
def test_segmentation_loss_default_is_dice_for_two_classes(
    options: dict[str, object], loss: str, criterion: str, tmp_path: Path
) -> None:
    task = PEFTSemanticSegmentation(
        model='unet', backbone='resnet18', weights=None, peft='linear', in_channels=1,
        **options,
    )  # fmt: skip
    assert task.hparams['loss'] == loss
    assert type(task.criterion).__name__ == criterion
    # The checkpoint holds the loss used, so a reload trains the same loss.
    trainer = Trainer(accelerator='cpu', logger=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / 'task.ckpt')
    reloaded = PEFTSemanticSegmentation.load_from_checkpoint(
        tmp_path / 'task.ckpt', weights_only=True
    )
    assert reloaded.hparams['loss'] == loss
