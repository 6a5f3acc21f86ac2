"""AdamW parameter groups: head vs PEFT learning rate and decay; adapted batch norms."""

from pathlib import Path

import pytest
import torch
from torch import nn

from geopeft.peft import (
    adapted_batchnorms,
    adapter_state_dict,
    load_adapter,
    save_adapter,
)
from geopeft.tasks import PEFTChangeDetection, PEFTClassification
from geopeft.tasks.optim import peft_parameter_groups


def _groups(task: nn.Module, **options: float | None) -> dict[str, dict]:
    groups = peft_parameter_groups(task, weight_decay=0.05, **options)
    return {group['name']: group for group in groups}


def _names(task: nn.Module, params: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in task.named_parameters() if id(p) in ids}


@pytest.mark.parametrize('method', ['upetu', 'linear', 'full', 'lora', 'bitfit'])
def test_every_trainable_parameter_is_in_exactly_one_group(method: str) -> None:
    task = PEFTClassification(model='resnet18', num_classes=3, peft=method)
    groups = peft_parameter_groups(task, weight_decay=0.05, peft_lr=1e-2)
    seen = [id(p) for group in groups for p in group['params']]
    trainable = [id(p) for p in task.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable) and len(seen) == len(set(seen))


def test_upetu_groups_have_their_rates_and_decay() -> None:
    task = PEFTClassification(model='resnet18', num_classes=3, peft='upetu')
    groups = _groups(task, peft_lr=3e-3, peft_weight_decay=0.0)
    assert set(groups) == {'head', 'peft', 'peft_no_decay'}
    assert 'lr' not in groups['head'] and groups['head']['weight_decay'] == 0.05
    assert _names(task, groups['head']['params']) == {
        'model.head.weight',
        'model.head.bias',
    }
    assert groups['peft']['lr'] == groups['peft_no_decay']['lr'] == 3e-3
    assert groups['peft']['weight_decay'] == 0.0
    assert groups['peft_no_decay']['weight_decay'] == 0.0
    undecayed = _names(task, groups['peft_no_decay']['params'])
    assert undecayed and all('capm' in name for name in undecayed)  # prompts, gates
    decayed = _names(task, groups['peft']['params'])
    assert decayed and all('eqam' in name for name in decayed)


def test_peft_weight_decay_defaults_to_the_head_decay() -> None:
    task = PEFTClassification(model='resnet18', num_classes=3, peft='full')
    groups = _groups(task)
    assert groups['peft']['weight_decay'] == 0.05 and 'lr' not in groups['peft']
    # Under full, norms and biases of the backbone are not decayed.
    assert all(p.ndim <= 1 for p in groups['peft_no_decay']['params'])


def test_linear_probe_has_only_the_head_group() -> None:
    task = PEFTClassification(model='resnet18', num_classes=3, peft='linear')
    assert list(_groups(task, peft_lr=1.0)) == ['head']


def test_configure_optimizers_uses_peft_lr() -> None:
    task = PEFTChangeDetection(
        model='unet',
        backbone='resnet18',
        peft='upetu',
        lr=1e-3,
        peft_lr=1e-2,
        peft_weight_decay=0.01,
        scheduler='cosine',
    )
    optimizer = task.configure_optimizers()['optimizer']
    rates = {group['name']: group['lr'] for group in optimizer.param_groups}
    assert rates == {'head': 1e-3, 'peft': 1e-2, 'peft_no_decay': 1e-2}
    assert task.hparams['peft_lr'] == 1e-2


@pytest.mark.parametrize(
    ('peft', 'peft_lr', 'expected'),
    [
        ('upetu', None, 2e-3),  # new modules near zero: 10 x lr by default
        ('eqam', None, 2e-3),
        ('capm', None, 2e-3),
        ('upetu', 5e-4, 5e-4),  # an explicit rate wins
        ('full', None, 2e-4),  # pretrained weights: the base rate
        ('lora', None, 2e-4),
        ('bitfit', None, 2e-4),
    ],
)
def test_default_peft_lr_is_10x_for_the_upetu_family_only(
    peft: str, peft_lr: float | None, expected: float
) -> None:
    task = PEFTClassification(
        model='resnet18', num_classes=3, peft=peft, lr=2e-4, peft_lr=peft_lr,
        scheduler='cosine',
    )  # fmt: skip
    optimizer = task.configure_optimizers()['optimizer']
    rates = {group['name']: group['lr'] for group in optimizer.param_groups}
    assert rates.pop('head') == 2e-4
    assert rates and all(rate == pytest.approx(expected) for rate in rates.values())


def _bn_task(adapt: bool) -> PEFTClassification:
    torch.manual_seed(0)
    return PEFTClassification(
        model='resnet18',
        num_classes=2,
        peft={'method': 'linear', 'adapt_batchnorm': adapt},
    )


@pytest.mark.parametrize('adapt', [False, True])
def test_adapt_batchnorm_updates_only_the_statistics(adapt: bool) -> None:
    task = _bn_task(adapt)
    norm = task.model.backbone.model.bn1
    before = norm.running_mean.clone()
    weight = norm.weight.clone()
    task.train()
    task.on_train_batch_start({'image': torch.zeros(1)}, 0)
    assert norm.training is adapt
    task(torch.rand(2, 3, 32, 32) * 5 + 3)
    assert torch.equal(norm.running_mean, before) is not adapt
    assert torch.equal(norm.weight, weight) and not norm.weight.requires_grad
    assert (len(adapted_batchnorms(task)) > 0) is adapt


def test_adapted_statistics_round_trip_through_the_adapter_file(tmp_path: Path) -> None:
    task = _bn_task(True)
    task.train()
    task(torch.rand(2, 3, 32, 32) * 5 + 3)
    state = adapter_state_dict(task.model)
    assert 'backbone.model.bn1.running_mean' in state
    path = tmp_path / 'a.safetensors'
    save_adapter(task.model, path)
    fresh = _bn_task(True)
    load_adapter(fresh.model, path)
    for name in ('running_mean', 'running_var'):
        assert torch.equal(
            getattr(fresh.model.backbone.model.bn1, name),
            getattr(task.model.backbone.model.bn1, name),
        )
