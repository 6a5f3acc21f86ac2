"""KTDA's decode heads: UPerNet over the pyramid and an auxiliary FCN head."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Pooling grid sizes of UPerNet's pyramid pooling module.
POOL_SCALES = (1, 2, 3, 6)


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int
) -> nn.Sequential:
    """A convolution (no bias) followed by batch norm and ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: 1 or 3 (padded to keep the size).

    Returns:
        The block.
    """
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize to *size* (a no-op when it already fits)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class UPerHead(nn.Module):
    """UPerNet decode head: pyramid pooling on the deepest map, FPN fusion.

    The deepest map goes through pyramid pooling (grids 1, 2, 3, 6); the other
    maps get 1x1 laterals; a top-down pathway adds each coarser map into the next
    finer one; 3x3 convolutions smooth each level; all levels are resized to the
    finest, concatenated and fused by a 3x3 convolution, then dropout and a 1x1
    classifier. Every convolution but the classifier has batch norm and ReLU.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = POOL_SCALES,
        dropout: float = 0.1,
    ) -> None:
        """Initialize a new UPerHead.

        Args:
            in_channels: Channels of each input level, finest first.
            num_classes: Output classes.
            channels: Width of the head.
            pool_scales: Grid sizes of the pyramid pooling.
            dropout: Dropout before the classifier.
        """
        super().__init__()
        self.in_channels = list(in_channels)
        deepest = self.in_channels[-1]
        self.pools = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(deepest, channels, 1))
            for s in pool_scales
        )
        self.bottleneck = conv_bn_relu(
            deepest + len(pool_scales) * channels, channels, 3
        )
        self.laterals = nn.ModuleList(
            conv_bn_relu(c, channels, 1) for c in self.in_channels[:-1]
        )
        self.smooth = nn.ModuleList(
            conv_bn_relu(channels, channels, 3) for _ in self.in_channels[:-1]
        )
        self.fuse = conv_bn_relu(len(self.in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Compute logits at the finest level's size.

        Args:
            features: One map per level, finest first.

        Returns:
            ``[B, num_classes, H_0, W_0]``.
        """
        deepest = features[-1]
        pooled = [_resize(pool(deepest), deepest.shape[-2:]) for pool in self.pools]
        levels = [
            lateral(f) for lateral, f in zip(self.laterals, features, strict=False)
        ]
        levels.append(self.bottleneck(torch.cat([deepest, *pooled], dim=1)))
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + _resize(levels[i], levels[i - 1].shape[-2:])
        outputs = [smooth(x) for smooth, x in zip(self.smooth, levels, strict=False)]
        outputs.append(levels[-1])
        size = outputs[0].shape[-2:]
        fused = self.fuse(torch.cat([_resize(x, size) for x in outputs], dim=1))
        return self.classifier(self.dropout(fused))


class FCNHead(nn.Module):
    """Auxiliary FCN head: one 3x3 conv-BN-ReLU, dropout and a 1x1 classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        dropout: float = 0.1,
    ) -> None:
        """Initialize a new FCNHead.

        Args:
            in_channels: Channels of the input map.
            num_classes: Output classes.
            channels: Width of the hidden convolution.
            dropout: Dropout before the classifier.
        """
        super().__init__()
        self.conv = conv_bn_relu(in_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits ``[B, num_classes, H, W]`` at the input map's size."""
        return self.classifier(self.dropout(self.conv(x)))
