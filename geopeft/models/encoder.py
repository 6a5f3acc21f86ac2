"""A (PEFT) geopeft backbone as a segmentation-models-pytorch encoder."""

from collections.abc import Sequence

from torch import Tensor, nn

from ..backbones import TimmBackbone
from ..backbones.pyramid import PYRAMID_STRIDES, ViTFeaturePyramid


def smp_strides(depth: int, output_stride: int) -> list[int]:
    """Return the strides of SMP's feature list after the input itself.

    Args:
        depth: Encoder depth (number of downsampling levels, 1-5).
        output_stride: Stride of the deepest map (8, 16 or 32).

    Returns:
        ``[2, 4, ..., 2**depth]``, capped at *output_stride* (dilated levels).
    """
    return [min(2**level, output_stride) for level in range(1, depth + 1)]


class PEFTEncoder(nn.Module):
    """Serve a (PEFT-wrapped) backbone to SMP decoders as an encoder.

    SMP decoders take ``[x, f_2, f_4, f_8, f_16, f_32]``: the input, then one map per
    stride. Backbones whose pyramid starts at stride 4 (ConvNeXt, Swin) get an empty
    (0-channel) stride-2 map, as SMP's own timm encoders do, and so do levels the
    decoder does not read (e.g. DeepLabV3+ reads strides 4 and 16 only); plain
    vision transformers get a :class:`~geopeft.backbones.pyramid.ViTFeaturePyramid`
    neck.
    Dilated backbones (``output_stride`` 16 or 8) give their deepest maps at that
    stride, as DeepLabV3+ needs.

    Attributes:
        backbone: The multiscale backbone (its ``model`` carries the PEFT modules).
        neck: The ViT feature pyramid, or None for hierarchical backbones.
        out_channels: Channels of each returned map, the input first.
        output_stride: Stride of the deepest returned map.
    """

    def __init__(
        self,
        backbone: TimmBackbone,
        *,
        depth: int = 5,
        output_stride: int = 32,
        levels_read: Sequence[int] | None = None,
    ) -> None:
        """Initialize a new PEFTEncoder.

        Build it before applying PEFT: levels the decoder never reads are dropped
        from the backbone (layers after the deepest one read) and from the neck,
        so no trainable parameter sits outside the forward pass.

        Args:
            backbone: The backbone (weights loaded, PEFT not yet applied).
            depth: Number of downsampling levels the decoder takes (1-5).
            output_stride: Stride of the deepest map the decoder wants (8, 16, 32).
            levels_read: Indices (1 to *depth*, or negative from the end) into the
                feature list of the levels the decoder reads; None reads all. The
                others are returned as 0-channel maps.

        Raises:
            ValueError: If the backbone's pyramid cannot give the decoder a map at
                every stride it reads.
        """
        super().__init__()
        if not 1 <= depth <= 5:
            msg = f'encoder depth must be 1-5, got {depth}'
            raise ValueError(msg)
        self.backbone = backbone
        self.neck: ViTFeaturePyramid | None = None
        channels, reductions = list(backbone.out_channels), list(backbone.reductions)
        plain = len(set(reductions)) == 1 and len(reductions) > 1
        if plain:
            if len(channels) != len(PYRAMID_STRIDES):
                msg = (
                    f"Backbone '{backbone.name}' is a plain vision transformer with "
                    f'{len(channels)} output maps; the feature-pyramid neck takes '
                    f'{len(PYRAMID_STRIDES)}: leave out_indices at its default.'
                )
                raise ValueError(msg)
            neck_stride = min(max(output_stride, 16), 32)
            reductions = [min(s, neck_stride) for s in PYRAMID_STRIDES]
        wanted = smp_strides(depth, output_stride)
        slots = _match_levels(
            reductions, wanted, name=backbone.name, output_stride=output_stride
        )
        read = {i % (depth + 1) for i in (levels_read or range(1, depth + 1))}
        used = sorted({slots[i - 1] for i in read if slots[i - 1] is not None})
        backbone.select_levels(used)
        if plain:
            self.neck = ViTFeaturePyramid(
                backbone.out_channels, output_stride=neck_stride, levels=used
            )
        position = {level: k for k, level in enumerate(used)}
        self._slots: list[int | None] = [
            position.get(slot) if i + 1 in read and slot is not None else None
            for i, slot in enumerate(slots)
        ]
        self._depth = depth
        self._output_stride = output_stride
        self._in_channels = backbone.in_channels
        self.out_channels: list[int] = [backbone.in_channels] + [
            0 if slot is None else backbone.out_channels[slot] for slot in self._slots
        ]

    @property
    def output_stride(self) -> int:
        """Stride of the deepest returned map."""
        return min(self._output_stride, 2**self._depth)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Compute the features SMP decoders take.

        Args:
            x: Images ``[B, C, H, W]``.

        Returns:
            ``[x, f_2, f_4, ...]``, one map per stride (a 0-channel map where the
            backbone has none).
        """
        maps = self.backbone(x)
        if self.neck is not None:
            maps = self.neck(maps, (x.shape[-2], x.shape[-1]))
        features = [x]
        for slot, stride in zip(self._slots, smp_strides(self._depth, 32), strict=True):
            if slot is None:
                batch, _, height, width = x.shape
                shape = (batch, 0, height // stride, width // stride)
                features.append(x.new_empty(shape))
            else:
                features.append(maps[slot])
        return features

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Check the band count SMP asks for (the backbone already has it).

        Args:
            in_channels: Bands SMP was asked to build the model for.
            pretrained: Unused (the backbone's weights are already loaded).

        Raises:
            ValueError: If *in_channels* differs from the backbone's.
        """
        if in_channels != self._in_channels:
            msg = (
                f'the encoder was built for {self._in_channels} input bands, the '
                f'decoder for {in_channels}: build both with the same in_channels'
            )
            raise ValueError(msg)

    def make_dilated(self, output_stride: int) -> None:
        """Check the dilation SMP asks for (the backbone was built with it).

        Args:
            output_stride: Stride SMP wants for the deepest map.

        Raises:
            ValueError: If the encoder was built for another output stride.
        """
        if output_stride != self._output_stride:
            msg = (
                f'the encoder was built with output_stride={self._output_stride}, '
                f'the decoder wants {output_stride}: build the backbone with '
                f'output_stride={output_stride}'
            )
            raise ValueError(msg)


def _match_levels(
    reductions: Sequence[int], wanted: Sequence[int], *, name: str, output_stride: int
) -> list[int | None]:
    """Pick the backbone level for each stride a decoder wants.

    Args:
        reductions: Stride of each backbone level, shallow to deep.
        wanted: Strides the decoder takes (after the input).
        name: Backbone name, for messages.
        output_stride: Requested stride of the deepest map.

    Returns:
        For each wanted stride, the index of the backbone level, or None for the
        stride-2 level of a backbone whose pyramid starts at stride 4.

    Raises:
        ValueError: If a wanted stride has no backbone level.
    """
    available = list(reductions)
    slots: list[int | None] = []
    start = 0
    for stride in wanted:
        found = next(
            (i for i in range(start, len(available)) if available[i] == stride), None
        )
        if found is None and stride == 2:
            slots.append(None)
            continue
        if found is None:
            dilated = output_stride != 32 and max(available) > output_stride
            hint = (
                f'build the backbone with output_stride={output_stride}'
                if dilated
                else 'choose a backbone with a stride-4 to stride-32 pyramid, or a '
                'decoder of smaller depth'
            )
            msg = (
                f"Backbone '{name}' gives maps at strides {available}, but the "
                f'decoder needs maps at strides {list(wanted)} (no map at stride '
                f'{stride}): {hint}.'
            )
            raise ValueError(msg)
        slots.append(found)
        start = found + 1
    return slots
