"""Multiscale backbones and their pretrained weights.

A backbone returns one feature map per stage (``forward``) and a pooled embedding
(``forward_pooled``); weights come from ImageNet (offline pip packages or timm's
hub), TorchGeo weights enums, or local checkpoint files. Weights pretrained on
other bands than the input adapt their first layer band by band (:mod:`.bands`).
"""

from .bands import (
    CANONICAL_BANDS,
    IMAGENET_BANDS,
    SENSORS,
    adapt_first_layer_weight,
    canonical_band,
    canonical_bands,
    pretrained_bands,
)
from .timm_backbone import TimmBackbone, build_backbone
from .weights import (
    BackboneWeights,
    list_backbones,
    load_backbone_weights,
    resolve_state_dict,
)

__all__ = (
    'CANONICAL_BANDS',
    'IMAGENET_BANDS',
    'SENSORS',
    'BackboneWeights',
    'TimmBackbone',
    'adapt_first_layer_weight',
    'build_backbone',
    'canonical_band',
    'canonical_bands',
    'list_backbones',
    'load_backbone_weights',
    'pretrained_bands',
    'resolve_state_dict',
)
