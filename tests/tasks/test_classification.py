from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from geopeft.datamodules import SceneFolderDataModule
from geopeft.tasks import PEFTClassification


def test_freeze_backbone_is_the_linear_probe() -> None:
    task = PEFTClassification(model='resnet18', num_classes=4, freeze_backbone=True)
    assert task.peft_config.method == 'linear'
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    assert trainable == {'model.head.weight', 'model.head.bias'}


def test_optimizer_holds_only_trainable_parameters() -> None:
    task = PEFTClassification(model='convnext_atto', num_classes=4, peft='upetu')
    optimizer = task.configure_optimizers()['optimizer']
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group['params']}
    trainable = {id(p) for p in task.parameters() if p.requires_grad}
    assert in_optimizer == trainable
    assert 0 < len(trainable) < len(list(task.parameters()))


@pytest.mark.parametrize('method', ['upetu', 'linear', 'lora'])
def test_frozen_batch_norm_statistics_do_not_drift(method: str) -> None:
    task = PEFTClassification(model='resnet18', num_classes=2, peft=method).train()
    before = {k: v.clone() for k, v in task.state_dict().items() if 'running' in k}
    out = task(torch.randn(2, 3, 32, 32) * 5)
    out.sum().backward()
    after = task.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_full_fine_tuning_updates_batch_norm_statistics() -> None:
    task = PEFTClassification(model='resnet18', num_classes=2, peft='full').train()
    bn = next(m for m in task.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    task(torch.randn(2, 3, 32, 32) * 5)
    assert not torch.equal(before, bn.running_mean)


def test_training_step_reduces_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    task = PEFTClassification(
        model='convnext_atto', num_classes=2, peft='upetu', lr=1e-2
    )
    optimizer = task.configure_optimizers()['optimizer']
    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 1, 0, 1])
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(task(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_checkpoint_with_another_head_size_is_a_clear_error() -> None:
    saved = PEFTClassification(model='resnet18', num_classes=10, peft='linear')
    task = PEFTClassification(model='resnet18', num_classes=21, peft='linear')
    checkpoint = {'state_dict': saved.state_dict()}
    with pytest.raises(ValueError, match='num_classes=10'):
        task.on_load_checkpoint(checkpoint)


def test_frozen_batchnorm_statistics_survive_fit_and_validation(
    scene_root: Path, tmp_path: Path
) -> None:
    # Lightning restores each submodule's mode after validation, bypassing train():
    # frozen batch norms must still not update their running statistics.
    task = PEFTClassification(model='resnet10t', num_classes=3, peft='upetu')
    before = {k: v.clone() for k, v in task.state_dict().items() if 'running_mean' in k}
    datamodule = SceneFolderDataModule(
        root=scene_root,
        train_fraction=0.5,
        val_fraction=0.25,
        image_size=32,
        batch_size=4,
    )
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=datamodule)
    after = task.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
