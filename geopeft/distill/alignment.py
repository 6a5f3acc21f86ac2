"""KTDA's feature alignment module (FAM) and the pyramid neck after it."""

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

#: The neck's rescale factor per level (a 19 x 19 grid gives 76, 38, 19, 9).
NECK_SCALES = (4.0, 2.0, 1.0, 0.5)


class FeatureAlignment(nn.Module):
    """Project each student stage to the teacher's width and grid.

    Per stage: a 1x1 convolution ``C_i -> dim`` (with bias), then a bilinear
    resize to the teacher's token grid. No norm and no activation, so the output
    is compared with the teacher's features directly by the distillation loss.

    Attributes:
        in_channels: Channels of each student stage.
        dim: The teacher's width.
    """

    def __init__(self, in_channels: Sequence[int], dim: int) -> None:
        """Initialize a new FeatureAlignment.

        Args:
            in_channels: Channels of each student stage, shallow to deep.
            dim: The teacher's width (768 for ViT-B).
        """
        super().__init__()
        self.in_channels = list(in_channels)
        self.dim = dim
        self.projections = nn.ModuleList(
            nn.Conv2d(channels, dim, kernel_size=1) for channels in self.in_channels
        )

    def forward(
        self, features: Sequence[Tensor], grid: tuple[int, int]
    ) -> list[Tensor]:
        """Align the student's maps.

        Args:
            features: One map per stage, ``[B, in_channels[i], h_i, w_i]``.
            grid: The teacher's grid (rows, columns).

        Returns:
            One ``[B, dim, rows, columns]`` map per stage.

        Raises:
            ValueError: If the maps do not match :attr:`in_channels`.
        """
        widths = [int(f.shape[1]) for f in features]
        if widths != self.in_channels:
            msg = (
                f'The student gives maps of {widths} channels, but the feature '
                f'alignment was built for {self.in_channels}: build it from the '
                "student's out_channels."
            )
            raise ValueError(msg)
        return [
            F.interpolate(project(f), size=grid, mode='bilinear', align_corners=False)
            for project, f in zip(self.projections, features, strict=True)
        ]


class PyramidNeck(nn.Module):
    """Turn the aligned single-grid maps into a multiscale pyramid.

    Per level: a 1x1 convolution, a bilinear rescale by the level's factor
    (:data:`NECK_SCALES`), and a 3x3 convolution, all ``dim`` channels wide with no
    norm or activation.
    """

    def __init__(self, dim: int, scales: Sequence[float] = NECK_SCALES) -> None:
        """Initialize a new PyramidNeck.

        Args:
            dim: Channels in and out of every level.
            scales: Rescale factor of each level.
        """
        super().__init__()
        self.dim = dim
        self.scales = tuple(float(s) for s in scales)
        self.lateral = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in self.scales)
        self.output = nn.ModuleList(
            nn.Conv2d(dim, dim, 3, padding=1) for _ in self.scales
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Build the pyramid.

        Args:
            features: One ``[B, dim, S_h, S_w]`` map per level.

        Returns:
            One ``[B, dim, floor(S_h * scale), floor(S_w * scale)]`` map per level.

        Raises:
            ValueError: If the number of maps or their width does not fit.
        """
        if len(features) != len(self.scales):
            msg = (
                f'The neck has {len(self.scales)} levels (scales {self.scales}) but '
                f'got {len(features)} maps: give one scale per student stage.'
            )
            raise ValueError(msg)
        pyramid = []
        for lateral, output, scale, feature in zip(
            self.lateral, self.output, self.scales, features, strict=True
        ):
            if feature.shape[1] != self.dim:
                msg = (
                    f'The neck is {self.dim} channels wide but got a '
                    f'{feature.shape[1]}-channel map: its width must be the '
                    "teacher's."
                )
                raise ValueError(msg)
            x = lateral(feature)
            if scale != 1:
                x = F.interpolate(
                    x, scale_factor=scale, mode='bilinear', align_corners=False
                )
            pyramid.append(output(x))
        return pyramid
