"""Shared helpers of the PEFT engine tests."""

import copy

import timm
import torch
from torch import Tensor, nn

# Tiny timm backbones, one per block family (random weights: no downloads). The
# ViT pools patch tokens, so every block's patch tokens (and prompts) reach the head.
FAMILIES: dict[str, dict] = {
    'convnext_atto': {},
    'resnet18': {},
    'efficientnet_lite0': {},
    'vit_tiny_patch16_224': {'img_size': 64, 'global_pool': 'avg'},
    'swin_tiny_patch4_window7_224': {'img_size': 64},
}

_PRISTINE: dict[str, nn.Module] = {}


def make_backbone(family: str) -> nn.Module:
    """Return a fresh copy of the same randomly initialised ('pretrained') backbone."""
    if family not in _PRISTINE:
        torch.manual_seed(1234)
        _PRISTINE[family] = timm.create_model(
            family, pretrained=False, num_classes=0, **FAMILIES[family]
        ).eval()
    return copy.deepcopy(_PRISTINE[family])


class Classifier(nn.Module):
    """A timm backbone (num_classes=0) + linear head on its pooled features."""

    def __init__(self, backbone: nn.Module, num_classes: int = 5) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone.forward_features(x)
        return self.head(self.backbone.forward_head(features, pre_logits=True))


def train_mode(model: nn.Module) -> nn.Module:
    """Training mode, keeping frozen batch norms in eval mode (as the classifier)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters(recurse=False)
        ):
            module.eval()
    return model


def train_steps(model: nn.Module, x: Tensor, steps: int = 2) -> None:
    """Run a few AdamW steps on the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    target = torch.arange(x.shape[0], device=x.device) % 5
    train_mode(model)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()
    model.eval()


def images(batch: int = 2, size: int = 64) -> Tensor:
    """Deterministic random images."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, size, size, generator=generator)
