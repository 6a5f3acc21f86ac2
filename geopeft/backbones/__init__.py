"""Multiscale backbones and their pretrained weights.

A backbone returns one feature map per stage (``forward``) and a pooled embedding
(``forward_pooled``); weights come from ImageNet (offline pip packages or timm's
hub), TorchGeo weights enums, or local checkpoint files.
"""

from .timm_backbone import TimmBackbone, build_backbone
from .weights import (
    BackboneWeights,
    list_backbones,
    load_backbone_weights,
    resolve_state_dict,
)

__all__ = (
    'BackboneWeights',
    'TimmBackbone',
    'build_backbone',
    'list_backbones',
    'load_backbone_weights',
    'resolve_state_dict',
)
