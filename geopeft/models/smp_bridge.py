"""Build any SMP architecture around a ready-made encoder module.

segmentation-models-pytorch builds its encoder from a name through
``segmentation_models_pytorch.encoders.get_encoder``. geopeft registers the
(already built, weights loaded, PEFT applied) encoder under a one-off name for the
duration of one model construction, so every SMP decoder is used unchanged.
"""

import difflib
import uuid
from collections.abc import Mapping
from typing import Any

import segmentation_models_pytorch as smp
from segmentation_models_pytorch.base import SegmentationModel
from segmentation_models_pytorch.encoders import encoders as smp_encoders
from torch import nn

#: SMP architectures by geopeft name (TorchGeo's names where it has them).
ARCHITECTURES: dict[str, type[SegmentationModel]] = {
    'unet': smp.Unet,
    'unet++': smp.UnetPlusPlus,
    'fpn': smp.FPN,
    'upernet': smp.UPerNet,
    'deeplabv3': smp.DeepLabV3,
    'deeplabv3+': smp.DeepLabV3Plus,
    'segformer': smp.Segformer,
    'pspnet': smp.PSPNet,
    'linknet': smp.Linknet,
    'manet': smp.MAnet,
    'pan': smp.PAN,
}

#: Architectures that need a dilated encoder, and the output stride they get.
DILATED = {'deeplabv3': 16, 'deeplabv3+': 16, 'pan': 16}

#: Architectures that need a skip connection at every stride (no empty level).
NEEDS_STRIDE_2 = ('unet++', 'linknet')

#: Names SMP or TorchGeo know that geopeft's bridge cannot serve, and why.
UNSUPPORTED = {
    'dpt': 'DPT reads the tokens of its own ViT encoder; use upernet or segformer '
    'with a ViT backbone (geopeft adds a feature-pyramid neck)',
    'fcn': "TorchGeo's FCN has no encoder to adapt; use unet or fpn",
    'fcsiamdiff': 'use PEFTChangeDetection with fusion="diff"',
    'fcsiamconc': 'use PEFTChangeDetection with fusion="concat"',
}


def check_architecture(arch: str) -> None:
    """Check that *arch* names an SMP architecture geopeft can build.

    Args:
        arch: Architecture name, e.g. ``'upernet'``.

    Raises:
        ValueError: Naming the known architectures (and a close match).
    """
    if arch in ARCHITECTURES:
        return
    if arch in UNSUPPORTED:
        msg = (
            f'Architecture "{arch}" cannot take a geopeft encoder: {UNSUPPORTED[arch]}.'
        )
        raise ValueError(msg)
    close = difflib.get_close_matches(arch.lower(), ARCHITECTURES, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ''
    msg = (
        f'Unknown architecture "{arch}": segmentation-models-pytorch has no such '
        f'model.{hint} Choose one of {", ".join(ARCHITECTURES)}.'
    )
    raise ValueError(msg)


#: Feature levels (indices into SMP's feature list, negative from the end) that an
#: architecture's decoder reads, where it does not read them all.
LEVELS_READ: dict[str, tuple[int, ...]] = {
    'deeplabv3': (-1,),
    'deeplabv3+': (2, -1),
    'pspnet': (-1,),
    'fpn': (-4, -3, -2, -1),
    'pan': (-4, -3, -2, -1),
}

#: Encoder depths other than 5 that an architecture is built with by default.
DEPTHS = {'pspnet': 3}


def default_depth(arch: str) -> int:
    """Return the encoder depth an architecture is built with by default.

    Args:
        arch: Architecture name.

    Returns:
        3 for PSPNet (its head upsamples by 8), else 5.
    """
    return DEPTHS.get(arch, 5)


def default_output_stride(arch: str) -> int:
    """Return the encoder output stride an architecture is built with.

    Args:
        arch: Architecture name.

    Returns:
        16 for the dilated DeepLab / PAN family, else 32.
    """
    return DILATED.get(arch, 32)


class _SharedModule:
    """Hand a built module to SMP's encoder factory without copying it.

    ``get_encoder`` deep-copies an encoder's registered parameters; this holder
    makes that copy return the same object.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict[int, object]) -> '_SharedModule':
        return self


def _use_built(
    shared: _SharedModule, depth: int, output_stride: int, **_: Any
) -> nn.Module:
    """Encoder 'class' of the one-off registry entry: return the built encoder.

    Args:
        shared: The holder of the built encoder.
        depth: Depth SMP asks for (checked against the encoder's).
        output_stride: Output stride SMP asks for (checked by ``make_dilated``).

    Returns:
        The encoder.

    Raises:
        ValueError: If the encoder was built for another depth.
    """
    encoder = shared.module
    built = len(encoder.out_channels) - 1
    if depth != built:
        msg = (
            f'the decoder asks for an encoder of depth {depth}, the encoder was built '
            f'with depth {built}: pass the same encoder_depth to both'
        )
        raise ValueError(msg)
    return encoder


def build_smp_model(
    arch: str,
    encoder: nn.Module,
    *,
    in_channels: int,
    classes: int,
    decoder_kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> SegmentationModel:
    """Build an SMP architecture whose encoder is *encoder*.

    Args:
        arch: One of :data:`ARCHITECTURES`.
        encoder: An SMP-style encoder: ``forward(x) -> [x, f_2, ...]`` with
            ``out_channels``, ``output_stride``, ``set_in_channels`` and
            ``make_dilated`` (e.g. :class:`~geopeft.models.encoder.PEFTEncoder`).
        in_channels: Channels of the model input (checked by the encoder).
        classes: Output channels of the segmentation head.
        decoder_kwargs: Further arguments of the SMP model (e.g.
            ``decoder_channels``); the encoder arguments are set here.
        name: Model name (``model.name``); defaults to ``'<arch>-geopeft'``.

    Returns:
        The SMP model (``model.encoder is encoder``).

    Raises:
        ValueError: For an unknown architecture, decoder options that set the
            encoder, or an encoder that does not fit the decoder.
    """
    check_architecture(arch)
    options = dict(decoder_kwargs or {})
    reserved = {
        'encoder_name',
        'encoder_weights',
        'encoder_depth',
        'encoder_output_stride',
        'in_channels',
        'classes',
    } & set(options)
    if reserved:
        msg = (
            f'decoder_kwargs may not set {sorted(reserved)}: geopeft sets the encoder '
            '(use backbone, weights, in_channels and num_classes)'
        )
        raise ValueError(msg)
    depth = len(encoder.out_channels) - 1
    if arch in NEEDS_STRIDE_2 and 0 in encoder.out_channels:
        msg = (
            f'Architecture "{arch}" needs a map at every stride, but the encoder has '
            'none at stride 2 (ConvNeXt, Swin and ViT pyramids start at stride 4): '
            'choose unet, fpn, upernet, segformer or deeplabv3+, or a ResNet / '
            'EfficientNet backbone.'
        )
        raise ValueError(msg)
    key = f'geopeft-{uuid.uuid4().hex}'
    smp_encoders[key] = {
        'encoder': _use_built,
        'params': {'shared': _SharedModule(encoder)},
        'pretrained_settings': {},
    }
    if arch in DILATED:
        options['encoder_output_stride'] = encoder.output_stride
    try:
        model = ARCHITECTURES[arch](
            encoder_name=key,
            encoder_depth=depth,
            encoder_weights=None,
            in_channels=in_channels,
            classes=classes,
            **options,
        )
    finally:
        del smp_encoders[key]
    model.name = name or f'{arch}-geopeft'
    return model
