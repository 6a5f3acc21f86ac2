"""Dense models: a PEFT backbone as the encoder of any SMP architecture."""

from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from segmentation_models_pytorch.base import SegmentationModel
from torch import nn

from ..backbones import BackboneWeights, TimmBackbone
from ..backbones.weights import check_backbone_name
from ..peft import ParameterReport, PEFTConfig, adapter_nbytes, apply_peft
from ..peft import parameter_report as _parameter_report
from .encoder import PEFTEncoder
from .smp_bridge import (
    LEVELS_READ,
    build_smp_model,
    check_architecture,
    default_depth,
    default_output_stride,
)


def is_plain_vit(name: str) -> bool:
    """Tell whether a timm model gives all its feature maps at one stride.

    Args:
        name: timm model name.

    Returns:
        True for plain vision transformers (ViT, DeiT, DINOv2), which need the
        feature-pyramid neck and cannot dilate.

    Raises:
        ValueError: If timm does not know *name*.
    """
    check_backbone_name(name)
    with torch.device('meta'):
        model = timm.create_model(name, num_classes=0)
    return len({level['reduction'] for level in model.feature_info}) == 1


def build_peft_encoder(
    arch: str,
    backbone: str,
    *,
    weights: BackboneWeights = None,
    in_channels: int = 3,
    peft: PEFTConfig | str | Mapping[str, Any] | None = 'upetu',
    output_stride: int | None = None,
    encoder_depth: int | None = None,
    img_size: int | None = None,
    bands: Sequence[str] | None = None,
    grad_checkpointing: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> PEFTEncoder:
    """Build a backbone, load its weights, fit it to an SMP decoder, apply PEFT.

    Args:
        arch: The SMP architecture the encoder is for (its output stride, depth
            and the levels its decoder reads).
        backbone: timm model name.
        weights: Pretrained weights (see :class:`~geopeft.backbones.TimmBackbone`).
        in_channels: Input bands.
        peft: PEFT method name, mapping of :class:`~geopeft.peft.PEFTConfig`
            fields, or a config.
        output_stride: Stride of the deepest map; None: the architecture's (16
            dilates the last stage; a plain ViT gets it from its neck instead).
        encoder_depth: Levels the decoder takes; None: the architecture's.
        img_size: Input size for backbones that need it (ViT, Swin).
        bands: Names of the input bands, for band-aware first-layer weights.
        grad_checkpointing: Activation checkpointing of the backbone's blocks.
        model_kwargs: Further ``timm.create_model`` arguments.

    Returns:
        The SMP encoder.
    """
    check_architecture(arch)
    output_stride = output_stride or default_output_stride(arch)
    net = TimmBackbone(
        backbone,
        weights=weights,
        in_channels=in_channels,
        img_size=img_size,
        output_stride=32 if is_plain_vit(backbone) else output_stride,
        grad_checkpointing=grad_checkpointing,
        model_kwargs=model_kwargs,
        bands=bands,
    )
    encoder = PEFTEncoder(
        net,
        depth=encoder_depth or default_depth(arch),
        output_stride=output_stride,
        levels_read=LEVELS_READ.get(arch),
    )
    apply_peft(net.model, peft, name=backbone)
    return encoder


def build_segmentation_model(
    arch: str,
    backbone: str,
    *,
    num_classes: int,
    weights: BackboneWeights = None,
    in_channels: int = 3,
    peft: PEFTConfig | str | Mapping[str, Any] | None = 'upetu',
    output_stride: int | None = None,
    encoder_depth: int | None = None,
    img_size: int | None = None,
    bands: Sequence[str] | None = None,
    grad_checkpointing: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    decoder_kwargs: Mapping[str, Any] | None = None,
) -> SegmentationModel:
    """Build an SMP segmentation model whose encoder is a PEFT backbone.

    Weights load before PEFT is applied, so pretrained key names never change. The
    model is SMP's own (``model.encoder``, ``model.decoder``,
    ``model.segmentation_head``); ``model.encoder.backbone.model`` is the timm
    model carrying the PEFT modules.

    Args:
        arch: SMP architecture, one of
            :data:`~geopeft.models.smp_bridge.ARCHITECTURES` (``'upernet'``,
            ``'unet'``, ``'fpn'``, ``'deeplabv3+'``, ``'segformer'``, ...).
        backbone: timm model name.
        num_classes: Output channels (classes, or 1 for binary).
        weights: Pretrained backbone weights.
        in_channels: Input bands.
        peft: The PEFT method or config.
        output_stride: Encoder output stride; None picks the architecture's (16 for
            DeepLabV3/V3+ and PAN, else 32).
        encoder_depth: Levels the decoder takes; None picks the architecture's
            (3 for PSPNet, else 5).
        img_size: Input size for backbones that need it.
        bands: Input band names (band-aware first layer).
        grad_checkpointing: Activation checkpointing of the backbone's blocks.
        model_kwargs: Further ``timm.create_model`` arguments.
        decoder_kwargs: Further arguments of the SMP model (e.g.
            ``{'decoder_channels': 256}``).

    Returns:
        The SMP model.

    Raises:
        ValueError: For an unknown architecture or PEFT method, or a backbone whose
            pyramid the decoder cannot take.
    """
    encoder = build_peft_encoder(
        arch,
        backbone,
        weights=weights,
        in_channels=in_channels,
        peft=PEFTConfig.from_any(peft),
        output_stride=output_stride,
        encoder_depth=encoder_depth,
        img_size=img_size,
        bands=bands,
        grad_checkpointing=grad_checkpointing,
        model_kwargs=model_kwargs,
    )
    return build_smp_model(
        arch,
        encoder,
        in_channels=in_channels,
        classes=num_classes,
        decoder_kwargs=decoder_kwargs,
        name=f'{arch}-{backbone}',
    )


def dense_parameter_report(model: SegmentationModel) -> ParameterReport:
    """Count parameters of a dense model per part, and its adapter file size.

    Args:
        model: A model from :func:`build_segmentation_model` or
            :func:`~geopeft.models.build_change_model`.

    Returns:
        The report with groups ``backbone`` (the timm model(s) with their PEFT
        modules), ``neck`` (the ViT pyramid, when there is one), ``fusion`` (when
        it has parameters), ``decoder`` and ``head``.
    """
    backbones: list[nn.Module] = []
    necks: list[nn.Module] = []
    for module in model.encoder.modules():
        if isinstance(module, PEFTEncoder):
            backbones.append(module.backbone)
            if module.neck is not None:
                necks.append(module.neck)
    groups: dict[str, nn.Module] = {'backbone': nn.ModuleList(backbones)}
    if necks:
        groups['neck'] = nn.ModuleList(necks)
    fusion = getattr(model.encoder, 'fusion', None)
    if fusion is not None and any(True for _ in fusion.parameters()):
        groups['fusion'] = fusion
    groups['decoder'] = model.decoder
    groups['head'] = model.segmentation_head
    return _parameter_report(groups, adapter_bytes=adapter_nbytes(model))
