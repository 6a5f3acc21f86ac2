"""KTDA's feature modulation module (FMM): per-level token mixing after the neck."""

from collections.abc import Sequence
from typing import Literal

from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import Tensor, nn

#: FMM variants: standard ViT blocks (the reference), a bottleneck MLP (its
#: ablation), or none (FAM only).
FMMKind = Literal['vit', 'mlp', 'none']


class TokenBlocks(nn.Module):
    """Standard ViT blocks over all tokens of one map, with no position embedding.

    Each block: pre-norm multi-head self-attention (qkv bias) and a GELU MLP of
    ratio 4, both residual, no layer-scale and no drop path.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float) -> None:
        """Initialize new TokenBlocks.

        Args:
            dim: Token width.
            depth: Number of blocks.
            heads: Attention heads.
            mlp_ratio: Hidden width of the MLP over *dim*.
        """
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                Block(dim, num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=True)
                for _ in range(depth)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        """Mix the tokens of ``[B, dim, H, W]``; same shape out."""
        batch, dim, height, width = x.shape
        tokens = self.blocks(x.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(batch, dim, height, width)


class BottleneckMLP(nn.Module):
    """The MLP variant of FMM: ``dim -> hidden -> dim`` per token, GELU, no residual.

    With ``depth > 1`` that many bottlenecks run one after the other.
    """

    def __init__(self, dim: int, hidden: int, depth: int = 1) -> None:
        """Initialize a new BottleneckMLP.

        Args:
            dim: Token width.
            hidden: Bottleneck width (192 for a 768-d teacher).
            depth: Bottlenecks in sequence.
        """
        super().__init__()
        self.mlps = nn.Sequential(
            *(Mlp(dim, hidden_features=hidden, out_features=dim) for _ in range(depth))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, dim, H, W]`` per pixel; same shape out."""
        return self.mlps(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FeatureModulation(nn.Module):
    """FMM: separate token mixing for each pyramid level.

    The reference uses 4 ViT blocks (768-d, 8 heads) per level: 16 blocks, about
    113 M parameters for a ViT-B teacher. ``depth`` and ``kind`` make it lighter:
    fewer blocks, the bottleneck MLP (``dim -> dim / 4 -> dim``; ``depth`` of them
    in sequence, as the reference's MLP-FMM ablations of depth 2-4), or nothing.

    Attributes:
        kind: ``'vit'``, ``'mlp'`` or ``'none'``.
        depth: Blocks (or bottleneck MLPs) per level.
    """

    def __init__(
        self,
        dim: int,
        levels: int = 4,
        kind: FMMKind = 'vit',
        depth: int = 4,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        hidden: int | None = None,
    ) -> None:
        """Initialize a new FeatureModulation.

        Args:
            dim: Width of the pyramid.
            levels: Pyramid levels.
            kind: ``'vit'`` (ViT blocks), ``'mlp'`` (bottleneck MLP) or ``'none'``
                (identity: FAM only).
            depth: ViT blocks (or bottleneck MLPs) per level; 0 is ``'none'``.
            heads: Attention heads; must divide *dim*.
            mlp_ratio: MLP ratio of the ViT blocks.
            hidden: Width of the MLP bottleneck; default ``dim // 4`` (192 for 768).

        Raises:
            ValueError: For an unknown kind, a negative depth or heads that do not
                divide *dim*.
        """
        super().__init__()
        if kind not in ('vit', 'mlp', 'none'):
            msg = f"fmm must be 'vit', 'mlp' or 'none', not {kind!r}"
            raise ValueError(msg)
        if depth < 0:
            msg = f'fmm_depth must be >= 0, got {depth}'
            raise ValueError(msg)
        if kind == 'vit' and depth and dim % heads:
            msg = (
                f'fmm_heads={heads} does not divide the {dim}-d teacher width: '
                f'choose a divisor of {dim}.'
            )
            raise ValueError(msg)
        self.kind: FMMKind = 'none' if depth == 0 else kind
        self.depth = 0 if self.kind == 'none' else depth
        modules: list[nn.Module]
        if self.kind == 'vit':
            modules = [TokenBlocks(dim, depth, heads, mlp_ratio) for _ in range(levels)]
        elif self.kind == 'mlp':
            modules = [
                BottleneckMLP(dim, hidden or dim // 4, depth) for _ in range(levels)
            ]
        else:
            modules = [nn.Identity() for _ in range(levels)]
        self.levels = nn.ModuleList(modules)

    def forward(self, pyramid: Sequence[Tensor]) -> list[Tensor]:
        """Modulate each level with its own weights.

        Args:
            pyramid: One ``[B, dim, H_l, W_l]`` map per level.

        Returns:
            The modulated maps, same shapes.
        """
        return [module(x) for module, x in zip(self.levels, pyramid, strict=True)]
