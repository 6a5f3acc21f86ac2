"""The frozen DINOv2 teacher of KTDA: intermediate ViT features on a patch grid."""

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import Tensor, nn

from ..backbones import BackboneWeights
from ..backbones.weights import load_backbone_weights, resolve_state_dict


@dataclass(frozen=True)
class TeacherSpec:
    """One DINOv2 size.

    Attributes:
        model: timm architecture name.
        embed_dim: Token width.
        depth: Number of transformer blocks.
        taps: Blocks (1-based) whose outputs are distilled, shallow to deep.
    """

    model: str
    embed_dim: int
    depth: int
    taps: tuple[int, ...]


#: The DINOv2 teachers by short name. ViT-B taps blocks 3, 6, 9, 12 as the KTDA
#: reference does; ViT-L taps 8, 12, 16, 24 (the reference's ablation, 0-based
#: 7, 11, 15, 23); ViT-S, which has ViT-B's depth, taps like ViT-B.
TEACHERS: dict[str, TeacherSpec] = {
    'dinov2_vits14': TeacherSpec('vit_small_patch14_dinov2', 384, 12, (3, 6, 9, 12)),
    'dinov2_vitb14': TeacherSpec('vit_base_patch14_dinov2', 768, 12, (3, 6, 9, 12)),
    'dinov2_vitl14': TeacherSpec('vit_large_patch14_dinov2', 1024, 24, (8, 12, 16, 24)),
}

#: Patch size of every DINOv2 teacher.
PATCH_SIZE = 14


def teacher_spec(name: str) -> TeacherSpec:
    """Look up a teacher by short name (``'dinov2_vitb14'``) or timm name.

    Args:
        name: ``'dinov2_vits14'``, ``'dinov2_vitb14'``, ``'dinov2_vitl14'``, or the
            timm name of one of them (``'vit_base_patch14_dinov2'``).

    Returns:
        Its size and default taps.

    Raises:
        ValueError: For any other name, with the close matches.
    """
    if name in TEACHERS:
        return TEACHERS[name]
    for spec in TEACHERS.values():
        if name.partition('.')[0] == spec.model:
            return spec
    known = [*TEACHERS, *(spec.model for spec in TEACHERS.values())]
    close = difflib.get_close_matches(name, known, n=3)
    hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
    msg = (
        f"Unknown teacher '{name}'.{hint} KTDA teachers are DINOv2 ViTs: "
        f'{", ".join(repr(n) for n in TEACHERS)}.'
    )
    raise ValueError(msg)


def teacher_grid(
    height: int, width: int, patch_size: int = PATCH_SIZE, pad: bool = True
) -> tuple[int, int]:
    """Size of the teacher's token grid for an input of ``height x width``.

    Args:
        height: Input height in pixels.
        width: Input width in pixels.
        patch_size: The teacher's patch size.
        pad: Whether the input is zero-padded bottom/right to a multiple of the
            patch size (KTDA does: 256 -> 266 px, a 19 x 19 grid; 512 -> 518, 37 x
            37).

    Returns:
        Rows and columns of the grid.

    Raises:
        ValueError: If *pad* is False and the patch size does not divide the input.
    """
    if not pad and (height % patch_size or width % patch_size):
        msg = (
            f'The teacher patch size {patch_size} does not divide the {height} x '
            f'{width} input: crop the input to a multiple of {patch_size} (e.g. '
            f'{height // patch_size * patch_size} x {width // patch_size * patch_size})'
            ', or set pad=True to zero-pad it bottom/right as KTDA does.'
        )
        raise ValueError(msg)
    return math.ceil(height / patch_size), math.ceil(width / patch_size)


class DINOv2Teacher(nn.Module):
    """A frozen DINOv2 ViT that returns KTDA's teacher features.

    The input is zero-padded bottom/right to a multiple of 14 (the padding is 0 in
    the normalised scale, i.e. the mean colour), the position embeddings are
    resampled to the token grid at every call (bicubic, as DINOv2 does), and the
    outputs of the tapped blocks are returned as ``[B, D, S_h, S_w]`` maps with the
    class token dropped. Only the last tap passes through the final LayerNorm.

    The teacher is always frozen: its parameters never require gradients and
    :meth:`train` keeps it in evaluation mode.

    Attributes:
        name: Short name (``'dinov2_vitb14'``).
        embed_dim: Width of the returned maps.
        patch_size: Patch size in pixels.
        taps: Tapped blocks, 1-based.
        pad: Whether inputs are padded to a multiple of the patch size.
        model: The timm ViT.
    """

    def __init__(
        self,
        name: str = 'dinov2_vitb14',
        weights: BackboneWeights = None,
        in_channels: int = 3,
        taps: Sequence[int] | None = None,
        pad: bool = True,
        bands: Sequence[str] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Initialize a new DINOv2Teacher.

        Args:
            name: Teacher size, see :data:`TEACHERS`.
            weights: None (random, for tests), True/``'imagenet'`` (timm's DINOv2
                LVD-142M weights from its hub), a TorchGeo DINOv2 weights enum or
                its name (``'ViTBase14_DINOv2_Weights.SENTINEL2_ALL_SOFTCON'``), or a
                local file (timm's or the original DINOv2 key names).
            in_channels: Input bands (the student's). Weights pretrained on other
                bands get a band-aware patch embedding (``docs/bands.md``).
            taps: Blocks to tap, 1-based; default the size's (3, 6, 9, 12 for
                ViT-B).
            pad: Zero-pad inputs to a multiple of the patch size; False requires
                inputs that are multiples already.
            bands: Input band names, for band-aware weights.
            model_kwargs: Further ``timm.create_model`` arguments, e.g. a smaller
                ``depth`` and ``embed_dim`` for tests (weights must then match).

        Raises:
            ValueError: For an unknown name, taps out of range, or weights of
                another teacher size.
        """
        super().__init__()
        spec = teacher_spec(name)
        self.name = next(k for k, v in TEACHERS.items() if v == spec)
        self.model_kwargs = dict(model_kwargs or {})
        self.model = timm.create_model(
            spec.model,
            num_classes=0,
            in_chans=in_channels,
            dynamic_img_size=True,
            **self.model_kwargs,
        )
        spec = TeacherSpec(
            spec.model, self.model.embed_dim, len(self.model.blocks), spec.taps
        )
        self.embed_dim = spec.embed_dim
        self.patch_size = PATCH_SIZE
        self.pad = pad
        self.taps = tuple(taps or spec.taps)
        if not self.taps or any(not 1 <= t <= spec.depth for t in self.taps):
            msg = (
                f'taps {list(self.taps)} must be blocks 1..{spec.depth} of '
                f"'{self.name}' (1-based; the reference taps {list(spec.taps)})"
            )
            raise ValueError(msg)
        if list(self.taps) != sorted(set(self.taps)):
            msg = f'taps {list(self.taps)} must increase (shallow to deep)'
            raise ValueError(msg)
        # Blocks after the last tap never run: drop them.
        self.model.prune_intermediate_layers(
            indices=[self.taps[-1] - 1], prune_norm=False, prune_head=True
        )
        if weights is not None and weights is not False:
            self._load(weights, spec, in_channels=in_channels, bands=bands)
        self.requires_grad_(False)
        self.eval()

    def _load(
        self,
        weights: BackboneWeights,
        spec: TeacherSpec,
        *,
        in_channels: int,
        bands: Sequence[str] | None,
    ) -> None:
        """Load *weights* after checking they are for this teacher size."""
        with torch.device('meta'):
            full = timm.create_model(
                spec.model,
                num_classes=0,
                in_chans=in_channels,
                **self.model_kwargs,
            )
        state = resolve_state_dict(weights, name=spec.model, model=full)
        assert state is not None
        _check_size(state, spec, name=self.name)
        state = dict(checkpoint_filter_fn(state, full))
        depth = len(self.model.blocks)
        state = {
            k: v
            for k, v in state.items()
            if not k.startswith('blocks.') or int(k.split('.')[1]) < depth
        }
        load_backbone_weights(
            self.model, state, name=spec.model, in_channels=in_channels, bands=bands
        )

    def train(self, mode: bool = True) -> 'DINOv2Teacher':
        """Keep the teacher in evaluation mode whatever *mode* asks.

        Args:
            mode: Ignored.

        Returns:
            This teacher.
        """
        return super().train(False)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid for an input size (see :func:`teacher_grid`)."""
        return teacher_grid(height, width, self.patch_size, self.pad)

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        """Compute the tapped features.

        Args:
            x: Normalised images ``[B, C, H, W]``.

        Returns:
            One ``[B, embed_dim, S_h, S_w]`` map per tap.
        """
        rows, cols = self.grid(x.shape[-2], x.shape[-1])
        pad_h = rows * self.patch_size - x.shape[-2]
        pad_w = cols * self.patch_size - x.shape[-1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        maps = self.model.forward_intermediates(
            x,
            indices=[t - 1 for t in self.taps],
            norm=False,
            output_fmt='NCHW',
            intermediates_only=True,
        )
        last = self.model.norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return [*maps[:-1], last.contiguous()]


def _check_size(state: dict[str, Tensor], spec: TeacherSpec, *, name: str) -> None:
    """Check a checkpoint is for the teacher's width and depth.

    Args:
        state: The checkpoint's state dict (timm or DINOv2 key names).
        spec: The teacher size built.
        name: Its short name.

    Raises:
        ValueError: Naming the checkpoint's size and the teacher that fits it.
    """
    embed = state.get('patch_embed.proj.weight')
    if embed is None:
        return
    width = int(embed.shape[0])
    blocks = {int(k.split('.')[1]) for k in state if k.startswith('blocks.')}
    depth = max(blocks) + 1 if blocks else 0
    if width == spec.embed_dim and depth in (0, spec.depth):
        return
    fits = [k for k, v in TEACHERS.items() if (v.embed_dim, v.depth) == (width, depth)]
    fix = f"teacher='{fits[0]}' fits them" if fits else 'no KTDA teacher fits them'
    msg = (
        f'The teacher weights are for a {width}-d, {depth}-block ViT, but the '
        f"teacher '{name}' is {spec.embed_dim}-d with {spec.depth} blocks: {fix}, "
        f"or give weights for '{name}'."
    )
    raise ValueError(msg)
