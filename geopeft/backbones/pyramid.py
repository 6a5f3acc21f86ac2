"""A feature pyramid from a plain vision transformer's same-stride maps."""

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

#: Strides of the pyramid levels the neck produces (ConvNeXt/Swin-like).
PYRAMID_STRIDES = (4, 8, 16, 32)


class ViTFeaturePyramid(nn.Module):
    """Resample four same-stride ViT maps into a four-level pyramid (the neck).

    A plain ViT gives maps at one stride (its patch size) from evenly spaced blocks.
    The neck turns the shallowest to deepest of four such maps into maps at strides
    4, 8, 16 and 32 (the "simple feature pyramid" of ViTDet / BEiT segmenters):

    * level 0, x4: ``ConvTranspose(2, 2) -> BatchNorm -> GELU -> ConvTranspose(2, 2)``;
    * level 1, x2: ``ConvTranspose(2, 2)``;
    * level 2: identity;
    * level 3, x1/2: ``MaxPool(2)`` (identity when *output_stride* is 16, for
      DeepLabV3+).

    Channels are kept (every level has the ViT's width). A patch size other than
    16 (e.g. 14 for DINOv2) gives maps of slightly other sizes; each level is then
    resized bilinearly to exactly ``ceil(input / stride)``, so every SMP decoder
    sees the strides it expects. The neck is new and always trainable (the
    parameter report counts it as ``neck``); levels a decoder never reads are not
    built.

    Attributes:
        levels: The built levels (0-3).
        out_channels: Channels of each built level.
        reductions: Stride of each built level.
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        output_stride: int = 32,
        levels: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        """Initialize a new ViTFeaturePyramid.

        Args:
            channels: Channels of the input map of each built level.
            output_stride: Stride of the deepest level: 32, or 16 (no pooling).
            levels: The levels to build (0-3, shallow to deep), one per input map;
                a decoder that reads only some levels gets only those, so the neck
                holds no parameter outside the forward pass.

        Raises:
            ValueError: For levels outside 0-3, a channel count per level missing,
                or an *output_stride* other than 16 or 32.
        """
        super().__init__()
        levels = list(levels)
        if (
            not levels
            or levels != sorted(set(levels))
            or not set(levels) <= set(range(len(PYRAMID_STRIDES)))
        ):
            msg = f'the ViT neck builds increasing levels out of 0-3, got {levels}'
            raise ValueError(msg)
        if len(channels) != len(levels):
            msg = (
                f'the ViT neck takes one map per level ({len(levels)}), got '
                f'{len(channels)}'
            )
            raise ValueError(msg)
        if output_stride not in (16, 32):
            msg = f'the ViT neck supports output_stride 16 or 32, got {output_stride}'
            raise ValueError(msg)
        self.levels = levels
        self.resample = nn.ModuleList(
            [
                _resampler(level, c, output_stride)
                for level, c in zip(levels, channels, strict=True)
            ]
        )
        self.out_channels = list(channels)
        self.reductions = [min(PYRAMID_STRIDES[i], output_stride) for i in levels]

    def forward(self, maps: Sequence[Tensor], size: tuple[int, int]) -> list[Tensor]:
        """Build the pyramid.

        Args:
            maps: One ``[B, C_i, h, w]`` map at the patch stride per built level.
            size: ``(H, W)`` of the input image.

        Returns:
            One map per built level, ``[B, C_i, ceil(H / r_i), ceil(W / r_i)]``.
        """
        height, width = size
        levels = []
        for resample, stride, x in zip(
            self.resample, self.reductions, maps, strict=True
        ):
            y = resample(x)
            target = (-(-height // stride), -(-width // stride))
            if tuple(y.shape[-2:]) != target:
                y = F.interpolate(y, size=target, mode='bilinear', align_corners=False)
            levels.append(y)
        return levels


def _resampler(level: int, channels: int, output_stride: int) -> nn.Module:
    """Build the resampling of one pyramid level.

    Args:
        level: 0 (x4), 1 (x2), 2 (x1) or 3 (x1/2, or x1 at output stride 16).
        channels: Channels of the map.
        output_stride: Stride of the deepest level.

    Returns:
        The module.
    """
    if level == 0:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
            nn.BatchNorm2d(channels),
            nn.GELU(),
            nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
        )
    if level == 1:
        return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
    if level == 3 and output_stride == 32:
        return nn.MaxPool2d(2)
    return nn.Identity()
