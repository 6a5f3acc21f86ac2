"""Siamese change detection: one PEFT encoder on both dates, fused per scale."""

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from segmentation_models_pytorch.base import SegmentationModel
from torch import Tensor, nn

from ..backbones import BackboneWeights
from ..peft import PEFTConfig
from .encoder import PEFTEncoder
from .segmentation import build_peft_encoder
from .smp_bridge import (
    build_smp_model,
)

#: Per-scale fusions of the two dates' features and the channels they give.
FUSIONS = {'diff': 1, 'absdiff': 1, 'concat': 2, 'concat+diff': 3}


class FeatureFusion(nn.Module):
    """Fuse the features of date A and date B at one scale.

    * ``diff``: ``f_B - f_A`` (signed: appearing and disappearing differ);
    * ``absdiff``: ``|f_B - f_A|`` (symmetric in the dates);
    * ``concat``: ``[f_A, f_B]`` along channels;
    * ``concat+diff``: ``[f_A, f_B, f_B - f_A]``.

    Attributes:
        mode: The fusion.
    """

    def __init__(self, mode: str = 'diff') -> None:
        """Initialize a new FeatureFusion.

        Args:
            mode: One of :data:`FUSIONS`.

        Raises:
            ValueError: For an unknown fusion.
        """
        super().__init__()
        if mode not in FUSIONS:
            msg = f'Unknown fusion "{mode}": choose one of {", ".join(FUSIONS)}.'
            raise ValueError(msg)
        self.mode = mode

    def channels(self, channels: int) -> int:
        """Return the channels of the fused map of two *channels*-channel maps.

        Args:
            channels: Channels of each date's map.

        Returns:
            Fused channels.
        """
        return FUSIONS[self.mode] * channels

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Fuse two maps.

        Args:
            a: Date A features ``[B, C, H, W]``.
            b: Date B features ``[B, C, H, W]``.

        Returns:
            The fused map ``[B, channels(C), H, W]``.
        """
        match self.mode:
            case 'diff':
                return b - a
            case 'absdiff':
                return (b - a).abs()
            case 'concat':
                return torch.cat([a, b], dim=1)
            case _:
                return torch.cat([a, b, b - a], dim=1)

    def extra_repr(self) -> str:
        """Show the fusion mode in the module's repr."""
        return f'mode={self.mode!r}'


def tied_copy(module: nn.Module) -> nn.Module:
    """Copy a module, sharing its frozen parameters and their modules' buffers.

    The copy gets its own trainable parameters (e.g. a second set of adapters)
    while the frozen pretrained weights (and the running statistics of frozen
    norms) stay one tensor in memory.

    Args:
        module: The module to copy.

    Returns:
        The copy.
    """
    twin = copy.deepcopy(module)
    for (_, original), (_, copied) in zip(
        module.named_modules(remove_duplicate=False),
        twin.named_modules(remove_duplicate=False),
        strict=True,
    ):
        frozen = True
        for key, parameter in original.named_parameters(recurse=False):
            if parameter.requires_grad:
                frozen = False
            else:
                copied._parameters[key] = parameter
        if frozen:
            for key, buffer in original.named_buffers(recurse=False):
                copied._buffers[key] = buffer
    return twin


class SiameseEncoder(nn.Module):
    """Apply one PEFT encoder to both dates and fuse their features per scale.

    Takes ``[B, 2, C, H, W]`` or TorchGeo's flattened ``[B, 2C, H, W]`` (dates
    first). With shared adapters (the default) both dates run through the encoder
    as one batch of ``2B``; with per-date adapters date B runs through a twin whose
    frozen weights are the same tensors and whose PEFT modules are its own.
    Returned features are ``[x, fuse(f_A, f_B) per stride]``, so any SMP decoder
    takes them.

    Attributes:
        encoder: The encoder of date A (and of date B when adapters are shared).
        encoder_b: The twin of date B, or None.
        fusion: The per-scale fusion.
        out_channels: Channels of each returned map (``2C`` for the input).
    """

    def __init__(
        self,
        encoder: PEFTEncoder,
        *,
        fusion: str = 'diff',
        per_date_adapters: bool = False,
    ) -> None:
        """Initialize a new SiameseEncoder.

        Args:
            encoder: The PEFT encoder.
            fusion: One of :data:`FUSIONS`.
            per_date_adapters: Give date B its own PEFT modules (same frozen
                weights).
        """
        super().__init__()
        self.encoder = encoder
        self.encoder_b = tied_copy(encoder) if per_date_adapters else None
        self.fusion = FeatureFusion(fusion)
        self.bands = encoder.out_channels[0]
        self.out_channels = [2 * self.bands] + [
            self.fusion.channels(c) for c in encoder.out_channels[1:]
        ]

    @property
    def output_stride(self) -> int:
        """Stride of the deepest returned map."""
        return self.encoder.output_stride

    def dates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Split a bi-temporal input into its two dates.

        Args:
            x: ``[B, 2, C, H, W]`` or ``[B, 2C, H, W]``.

        Returns:
            Date A and date B, each ``[B, C, H, W]``.

        Raises:
            ValueError: If *x* is not two dates of the encoder's band count.
        """
        expected = f'[B, 2, {self.bands}, H, W] or [B, {2 * self.bands}, H, W]'
        if x.ndim == 5 and x.shape[1:3] == (2, self.bands):
            return x[:, 0], x[:, 1]
        if x.ndim == 4 and x.shape[1] == 2 * self.bands:
            return x[:, : self.bands], x[:, self.bands :]
        msg = (
            f'change detection takes two dates of {self.bands} bands, {expected}, '
            f'got {list(x.shape)}: check in_channels and that both dates have the '
            'same bands'
        )
        raise ValueError(msg)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Encode both dates and fuse them per scale.

        Args:
            x: ``[B, 2, C, H, W]`` or ``[B, 2C, H, W]``.

        Returns:
            ``[x as [B, 2C, H, W], fused stride-2 map, ...]``.
        """
        a, b = self.dates(x)
        if self.encoder_b is None:
            both = self.encoder(torch.cat([a, b]))
            features_a = [f[: a.shape[0]] for f in both]
            features_b = [f[a.shape[0] :] for f in both]
        else:
            features_a, features_b = self.encoder(a), self.encoder_b(b)
        fused = [
            self.fusion(fa, fb)
            for fa, fb in zip(features_a[1:], features_b[1:], strict=True)
        ]
        return [torch.cat([a, b], dim=1), *fused]

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Check the channels SMP asks for: both dates' bands.

        Args:
            in_channels: Channels of the model input.
            pretrained: Unused.

        Raises:
            ValueError: Unless *in_channels* is twice the encoder's bands.
        """
        if in_channels != 2 * self.bands:
            msg = (
                f'a Siamese model of {self.bands}-band dates takes {2 * self.bands} '
                f'channels, not {in_channels}'
            )
            raise ValueError(msg)

    def make_dilated(self, output_stride: int) -> None:
        """Check the dilation SMP asks for (see :class:`PEFTEncoder`).

        Args:
            output_stride: Stride SMP wants for the deepest map.
        """
        self.encoder.make_dilated(output_stride)


def build_change_model(
    arch: str,
    backbone: str,
    *,
    num_classes: int = 1,
    weights: BackboneWeights = None,
    in_channels: int = 3,
    peft: PEFTConfig | str | Mapping[str, Any] | None = 'upetu',
    fusion: str = 'diff',
    per_date_adapters: bool = False,
    output_stride: int | None = None,
    encoder_depth: int | None = None,
    img_size: int | None = None,
    bands: Sequence[str] | None = None,
    grad_checkpointing: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    decoder_kwargs: Mapping[str, Any] | None = None,
) -> SegmentationModel:
    """Build a Siamese PEFT change-detection model on any SMP architecture.

    The model is SMP's own, with a :class:`SiameseEncoder` as ``model.encoder``;
    it takes ``[B, 2, C, H, W]`` or ``[B, 2C, H, W]`` and returns change logits
    ``[B, num_classes, H, W]``.

    Args:
        arch: SMP architecture (see
            :data:`~geopeft.models.smp_bridge.ARCHITECTURES`).
        backbone: timm model name.
        num_classes: 1 for binary change, else the number of change classes.
        weights: Pretrained backbone weights.
        in_channels: Bands of each date.
        peft: The PEFT method or config.
        fusion: Per-scale fusion, one of :data:`FUSIONS`.
        per_date_adapters: Separate PEFT modules per date (shared by default).
        output_stride: Encoder output stride (None: the architecture's).
        encoder_depth: Levels the decoder takes (None: the architecture's).
        img_size: Input size for backbones that need it.
        bands: Input band names (band-aware first layer).
        grad_checkpointing: Activation checkpointing of the backbone's blocks.
        model_kwargs: Further ``timm.create_model`` arguments.
        decoder_kwargs: Further arguments of the SMP model.

    Returns:
        The SMP model.

    Raises:
        ValueError: For an unknown architecture, fusion or PEFT method, or a
            backbone whose pyramid the decoder cannot take.
    """
    FeatureFusion(fusion)
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
    siamese = SiameseEncoder(
        encoder, fusion=fusion, per_date_adapters=per_date_adapters
    )
    return build_smp_model(
        arch,
        siamese,
        in_channels=2 * in_channels,
        classes=num_classes,
        decoder_kwargs=decoder_kwargs,
        name=f'{arch}-{backbone}-siamese-{fusion}',
    )
