"""Tiny backbones of every family and small decoders for the dense-model tests."""

from typing import Any

import torch
from torch import Tensor, nn

# One tiny timm backbone per block family (random weights: no downloads).
FAMILIES: dict[str, dict[str, Any]] = {
    'convnext': {'backbone': 'convnext_atto'},
    'resnet': {'backbone': 'resnet10t'},
    'efficientnet': {'backbone': 'efficientnet_lite0'},
    'vit': {
        'backbone': 'vit_tiny_patch16_224',
        'img_size': 64,
        'model_kwargs': {'depth': 4, 'embed_dim': 32, 'num_heads': 2},
    },
    'swin': {
        'backbone': 'swin_tiny_patch4_window7_224',
        'img_size': 64,
        'model_kwargs': {
            'depths': (1, 1, 1, 1),
            'embed_dim': 16,
            'num_heads': (1, 1, 1, 1),
        },
    },
}

# The architectures every family must serve, with small decoders.
ARCHS: dict[str, dict[str, Any]] = {
    'unet': {'decoder_channels': (32, 16, 16, 8, 8)},
    'fpn': {'decoder_pyramid_channels': 32, 'decoder_segmentation_channels': 32},
    'upernet': {'decoder_channels': 32},
    'deeplabv3+': {'decoder_channels': 32},
    'segformer': {'decoder_segmentation_channels': 32},
}

# Backbones that cannot dilate, so cannot serve DeepLabV3+.
CANNOT_DILATE = {'swin'}


def model_options(family: str, arch: str) -> dict[str, Any]:
    """Keyword arguments of the model builders for one (family, arch) pair."""
    options = dict(FAMILIES[family])
    return {**options, 'decoder_kwargs': ARCHS[arch]}


def peft_names(model: nn.Module) -> set[str]:
    """Names of the parameters UPetu adds (EQAM and CAPM)."""
    return {n for n, _ in model.named_parameters() if '.eqam.' in n or '.capm.' in n}


def train_step(model: nn.Module, x: Tensor, target: Tensor) -> None:
    """One AdamW step on the trainable parameters (logits vs a binary target)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters(recurse=False)
        ):
            module.eval()
    optimizer.zero_grad()
    logits = model(x)
    nn.functional.binary_cross_entropy_with_logits(
        logits[:, :1], target.expand_as(logits[:, :1])
    ).backward()
    optimizer.step()
