"""The KTDA student: backbone, FAM, neck, FMM and UPerNet head."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn

from ..backbones import BackboneWeights, TimmBackbone
from ..peft import ParameterReport, PEFTConfig, adapter_nbytes, apply_peft
from ..peft import parameter_report as _parameter_report
from .alignment import NECK_SCALES, FeatureAlignment, PyramidNeck
from .heads import FCNHead, UPerHead
from .modulation import FeatureModulation, FMMKind
from .teacher import PATCH_SIZE, teacher_grid, teacher_spec


@dataclass
class KTDAOutput:
    """What a training forward pass gives.

    Attributes:
        logits: Main logits ``[B, K, H, W]`` at the input size.
        aux_logits: Auxiliary logits at the input size, or None without the
            auxiliary head.
        aligned: The FAM outputs, one ``[B, D, S_h, S_w]`` map per teacher tap
            (what the distillation loss compares with the teacher).
    """

    logits: Tensor
    aux_logits: Tensor | None
    aligned: list[Tensor]


class KTDAModel(nn.Module):
    """The deployable KTDA segmenter (everything but the teacher).

    ``student`` backbone stages -> LayerNorm per stage (optional) -> FAM (to the
    teacher's width and token grid) -> neck (a 4-level pyramid) -> FMM -> UPerNet
    head; an auxiliary FCN head reads one pyramid level during training. The
    teacher's width, patch size and number of taps fix the shapes, but the teacher
    itself is not part of the model: it is only needed to train.

    Attributes:
        backbone: The student (a :class:`~geopeft.backbones.TimmBackbone`, PEFT
            applied to its ``model``).
        stage_norms: LayerNorm per student stage, or identities.
        fam: :class:`~geopeft.distill.FeatureAlignment`.
        neck: :class:`~geopeft.distill.PyramidNeck`.
        fmm: :class:`~geopeft.distill.FeatureModulation`.
        decode_head: :class:`~geopeft.distill.UPerHead`.
        aux_head: :class:`~geopeft.distill.FCNHead`, or None.
        aux_level: Pyramid level the auxiliary head reads.
        patch_size: The teacher's patch size (it sets the token grid).
        pad: Whether the grid is that of the zero-padded input.
    """

    def __init__(
        self,
        backbone: TimmBackbone,
        num_classes: int,
        *,
        dim: int,
        patch_size: int = PATCH_SIZE,
        pad: bool = True,
        stage_norm: bool = True,
        neck_scales: Sequence[float] = NECK_SCALES,
        fmm: FMMKind = 'vit',
        fmm_depth: int = 4,
        fmm_heads: int = 8,
        head_channels: int = 512,
        aux_channels: int = 256,
        aux_level: int | None = 2,
        dropout: float = 0.1,
    ) -> None:
        """Initialize a new KTDAModel.

        Args:
            backbone: The student backbone, returning one map per teacher tap.
            num_classes: Output classes.
            dim: The teacher's width (768 for DINOv2 ViT-B/14).
            patch_size: The teacher's patch size.
            pad: Whether the teacher pads its input to a multiple of *patch_size*.
            stage_norm: A LayerNorm on each student stage output (as the
                reference's ConvNeXt has).
            neck_scales: The neck's rescale factor per level.
            fmm: FMM variant: ``'vit'``, ``'mlp'`` or ``'none'`` (FAM only).
            fmm_depth: ViT blocks per level.
            fmm_heads: Attention heads of the FMM blocks.
            head_channels: Width of the UPerNet head.
            aux_channels: Width of the auxiliary FCN head.
            aux_level: Pyramid level of the auxiliary head (0-based); None for no
                auxiliary head.
            dropout: Dropout before both classifiers.

        Raises:
            ValueError: If the student's stage count does not match the neck's
                levels, or *aux_level* is out of range.
        """
        super().__init__()
        levels = len(backbone.out_channels)
        if levels != len(neck_scales):
            msg = (
                f'The student gives {levels} maps (channels {backbone.out_channels}) '
                f'but the neck has {len(neck_scales)} levels (scales '
                f'{list(neck_scales)}): the student needs one stage per teacher '
                'tap; set out_indices or the teacher taps to match.'
            )
            raise ValueError(msg)
        if aux_level is not None and not 0 <= aux_level < levels:
            msg = f'aux_level must be 0..{levels - 1} or None, got {aux_level}'
            raise ValueError(msg)
        self.backbone = backbone
        self.stage_norms = nn.ModuleList(
            LayerNorm2d(c) if stage_norm else nn.Identity()
            for c in backbone.out_channels
        )
        self.fam = FeatureAlignment(backbone.out_channels, dim)
        self.neck = PyramidNeck(dim, neck_scales)
        self.fmm = FeatureModulation(
            dim, levels=levels, kind=fmm, depth=fmm_depth, heads=fmm_heads
        )
        self.decode_head = UPerHead(
            [dim] * levels, num_classes, channels=head_channels, dropout=dropout
        )
        self.aux_level = aux_level
        self.aux_head = (
            None
            if aux_level is None
            else FCNHead(dim, num_classes, channels=aux_channels, dropout=dropout)
        )
        self.patch_size = patch_size
        self.pad = pad

    def align(self, x: Tensor) -> list[Tensor]:
        """The student's FAM outputs, compared with the teacher's features.

        Args:
            x: Normalised images ``[B, C, H, W]``.

        Returns:
            One ``[B, D, S_h, S_w]`` map per teacher tap.
        """
        maps = self.backbone(x)
        maps = [norm(m) for norm, m in zip(self.stage_norms, maps, strict=True)]
        grid = teacher_grid(x.shape[-2], x.shape[-1], self.patch_size, self.pad)
        return self.fam(maps, grid)

    def _pyramid(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The aligned maps and the modulated pyramid of images *x*."""
        aligned = self.align(x)
        return aligned, self.fmm(self.neck(aligned))

    def forward_train(self, x: Tensor) -> KTDAOutput:
        """Compute everything training needs.

        Args:
            x: Normalised images ``[B, C, H, W]``.

        Returns:
            Main and auxiliary logits at the input size and the aligned maps.
        """
        aligned, pyramid = self._pyramid(x)
        size = x.shape[-2:]
        logits = _upsample(self.decode_head(pyramid), size)
        aux = None
        if self.aux_head is not None and self.aux_level is not None:
            aux = _upsample(self.aux_head(pyramid[self.aux_level]), size)
        return KTDAOutput(logits, aux, aligned)

    def forward(self, x: Tensor) -> Tensor:
        """Segment images: the student path only.

        Args:
            x: Normalised images ``[B, C, H, W]``.

        Returns:
            Logits ``[B, num_classes, H, W]``.
        """
        _, pyramid = self._pyramid(x)
        return _upsample(self.decode_head(pyramid), x.shape[-2:])


def _upsample(logits: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear upsampling of logits to the label size."""
    return F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=False)


def build_ktda_model(
    backbone: str = 'convnext_base',
    *,
    num_classes: int,
    weights: BackboneWeights = None,
    in_channels: int = 3,
    peft: PEFTConfig | str | Mapping[str, Any] | None = 'full',
    teacher: str = 'dinov2_vitb14',
    teacher_taps: Sequence[int] | None = None,
    teacher_kwargs: Mapping[str, Any] | None = None,
    pad: bool = True,
    out_indices: Sequence[int] | None = None,
    img_size: int | None = None,
    bands: Sequence[str] | None = None,
    grad_checkpointing: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    stage_norm: bool = True,
    fmm: FMMKind = 'vit',
    fmm_depth: int = 4,
    fmm_heads: int = 8,
    head_channels: int = 512,
    aux_channels: int = 256,
    aux_level: int | None = 2,
) -> KTDAModel:
    """Build a KTDA student for a teacher, with any geopeft backbone.

    The backbone's pretrained weights load before PEFT is applied (``'full'``, the
    reference, trains the whole student; ``'upetu'`` and the other methods give a
    PEFT student). Its last ``len(taps)`` feature levels feed FAM unless
    *out_indices* picks others.

    Args:
        backbone: timm model name of the student (reference: ConvNeXt-B with
            ``model_kwargs={'drop_path_rate': 0.4}``).
        num_classes: Output classes.
        weights: Student weights (see :class:`~geopeft.backbones.TimmBackbone`).
        in_channels: Input bands.
        peft: PEFT method or config for the student.
        teacher: The teacher the student is built for (its width, patch size and
            taps), see :data:`~geopeft.distill.TEACHERS`.
        teacher_taps: Teacher blocks tapped (1-based); default the teacher's.
        teacher_kwargs: The teacher's ``timm.create_model`` arguments (a smaller
            ``embed_dim`` changes the width here too).
        pad: Whether the teacher pads its input to a multiple of 14.
        out_indices: Student feature levels (one per tap); default the last ones.
        img_size: Input size for students that need one (ViT, Swin).
        bands: Input band names (band-aware first layer).
        grad_checkpointing: Activation checkpointing of the student's blocks.
        model_kwargs: Further ``timm.create_model`` arguments of the student.
        stage_norm: LayerNorm per student stage.
        fmm: FMM variant (``'vit'``, ``'mlp'``, ``'none'``).
        fmm_depth: ViT blocks per level.
        fmm_heads: FMM attention heads.
        head_channels: UPerNet width.
        aux_channels: Auxiliary FCN width.
        aux_level: Pyramid level of the auxiliary head; None for none.

    Returns:
        The model.

    Raises:
        ValueError: For an unknown teacher, backbone or PEFT method, or a student
            with fewer levels than the teacher has taps.
    """
    spec = teacher_spec(teacher)
    taps = tuple(teacher_taps or spec.taps)
    dim = int((teacher_kwargs or {}).get('embed_dim', spec.embed_dim))
    net = TimmBackbone(
        backbone,
        weights=weights,
        in_channels=in_channels,
        out_indices=out_indices,
        img_size=img_size,
        grad_checkpointing=grad_checkpointing,
        model_kwargs=model_kwargs,
        bands=bands,
    )
    count = len(net.out_indices)
    if count < len(taps):
        msg = (
            f"The student '{backbone}' gives {count} feature levels "
            f'{net.out_indices}, fewer than the teacher taps {list(taps)}: tap fewer '
            'teacher blocks (teacher_taps) or choose a deeper student.'
        )
        raise ValueError(msg)
    if out_indices is not None and count != len(taps):
        msg = (
            f'out_indices {list(out_indices)} pick {count} student levels but the '
            f'teacher has {len(taps)} taps {list(taps)}: give one level per tap.'
        )
        raise ValueError(msg)
    # The last len(taps) levels; layers after the deepest are dropped.
    net.select_levels(list(range(count - len(taps), count)))
    apply_peft(net.model, peft, name=backbone)
    return KTDAModel(
        net,
        num_classes,
        dim=dim,
        pad=pad,
        stage_norm=stage_norm,
        neck_scales=NECK_SCALES if len(taps) == len(NECK_SCALES) else _scales(taps),
        fmm=fmm,
        fmm_depth=fmm_depth,
        fmm_heads=fmm_heads,
        head_channels=head_channels,
        aux_channels=aux_channels,
        aux_level=aux_level if aux_level is None or aux_level < len(taps) else None,
    )


def _scales(taps: Sequence[int]) -> tuple[float, ...]:
    """Neck scales for another number of taps: halving from 4, one per tap."""
    return tuple(4.0 / 2**i for i in range(len(taps)))


def ktda_parameter_report(model: KTDAModel) -> ParameterReport:
    """Count a KTDA model's parameters per part.

    Args:
        model: A model from :func:`build_ktda_model`.

    Returns:
        Groups ``student`` (backbone with its PEFT modules and stage norms),
        ``fam``, ``neck``, ``fmm``, ``decode_head`` and ``aux_head`` (training
        only); the adapter size counts the trainable tensors.
    """
    groups: dict[str, nn.Module] = {
        'student': nn.ModuleList([model.backbone, model.stage_norms]),
        'fam': model.fam,
        'neck': model.neck,
        'fmm': model.fmm,
        'decode_head': model.decode_head,
    }
    if model.aux_head is not None:
        groups['aux_head'] = model.aux_head
    return _parameter_report(groups, adapter_bytes=adapter_nbytes(model))
