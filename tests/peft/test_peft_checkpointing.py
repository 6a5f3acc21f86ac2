"""EQAM and CAPM under timm activation checkpointing.

Both are attached with forward hooks; checkpointing recomputes each block in the
backward pass, which runs the hooks again. The loss and every gradient must be the
same with and without checkpointing, on the classification path
(``forward_features``) and on the dense path (``forward_intermediates``).
"""

import copy
from collections.abc import Callable

import pytest
import timm
import timm.layers
import torch
from peft_helpers import Classifier, train_mode
from torch import Tensor, nn

from geopeft.peft import apply_peft

FAMILIES = {
    'convnext_atto': {},
    'resnet18': {},
    'efficientnet_lite0': {},
    'vit_tiny_patch16_224': {'img_size': 32, 'global_pool': 'avg'},
}


def _paths() -> dict[str, Callable[[nn.Module, Tensor], Tensor]]:
    def classification(model: nn.Module, x: Tensor) -> Tensor:
        target = torch.arange(x.shape[0]) % 5
        return nn.functional.cross_entropy(model(x), target)

    def dense(model: nn.Module, x: Tensor) -> Tensor:
        maps = model.backbone.forward_intermediates(x, intermediates_only=True)
        return sum(m.square().mean() for m in maps)

    return {'classification': classification, 'dense': dense}


def _gradients(
    model: nn.Module, x: Tensor, loss_of: Callable, checkpointing: bool
) -> tuple[Tensor, dict[str, Tensor | None], nn.Module]:
    model = copy.deepcopy(model)
    train_mode(model)
    model.backbone.set_grad_checkpointing(checkpointing)
    torch.manual_seed(0)
    loss = loss_of(model, x)
    loss.backward()
    # The dense path does not use the classification head.
    module = model if loss_of.__name__ == 'classification' else model.backbone
    grads = {n: p.grad for n, p in module.named_parameters() if p.requires_grad}
    return loss.detach(), grads, model


def _cases() -> list:
    cases = []
    for family in FAMILIES:
        for method in ('eqam', 'upetu'):
            for path in _paths():
                cases.append(pytest.param(family, method, path))
    return cases


@pytest.mark.parametrize(('family', 'method', 'path'), _cases())
def test_gradients_same_with_checkpointing(family: str, method: str, path: str) -> None:
    assert not timm.layers.use_reentrant_ckpt()
    torch.manual_seed(1234)
    backbone = timm.create_model(family, num_classes=0, **FAMILIES[family])
    apply_peft(backbone, method, name=family)
    model = Classifier(backbone)
    # A non-negligible up-projection, so that every adapter weight gets a gradient
    # well above rounding noise.
    for name, parameter in model.named_parameters():
        if name.endswith('up.weight'):
            nn.init.normal_(parameter, std=0.1)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loss_of = _paths()[path]

    loss, grads, _ = _gradients(model, x, loss_of, checkpointing=False)
    ckpt_loss, ckpt_grads, ckpt_model = _gradients(
        model, x, loss_of, checkpointing=True
    )

    torch.testing.assert_close(ckpt_loss, loss, rtol=1e-6, atol=0)
    assert grads.keys() == ckpt_grads.keys()
    missing = [n for n, g in ckpt_grads.items() if g is None]
    assert not missing, f'no gradient under checkpointing: {missing}'
    assert all(g is not None for g in grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-5, atol=1e-7)
    # The read hook's stash is consumed by the write hook, also after recomputation.
    assert all(getattr(m, '_input', None) is None for m in ckpt_model.modules())
