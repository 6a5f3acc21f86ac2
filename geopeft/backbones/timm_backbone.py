"""A timm model as a multiscale feature extractor."""

from collections.abc import Sequence
from typing import Any

import timm
from torch import Tensor, nn

from .weights import BackboneWeights, check_backbone_name, load_backbone_weights

#: Feature maps a plain (single-scale) vision transformer gives by default.
_PLAIN_VIT_MAPS = 4


class TimmBackbone(nn.Module):
    """A timm model that returns one feature map per stage.

    The model is created without a classifier (``num_classes=0``) and its weights
    are loaded right away, before any PEFT method wraps its layers, so pretrained
    key names never change.

    Attributes:
        name: timm model name.
        model: The timm model; PEFT methods adapt it in place.
        in_channels: Number of input bands.
        out_indices: Feature levels returned by :meth:`forward` (indices into the
            model's ``feature_info``).
        out_channels: Channels of each returned map.
        reductions: Stride of each returned map relative to the input.
        num_features: Size of the pooled vector of :meth:`forward_pooled`.
    """

    def __init__(
        self,
        name: str,
        weights: BackboneWeights = None,
        in_channels: int = 3,
        out_indices: Sequence[int] | None = None,
        img_size: int | None = None,
    ) -> None:
        """Initialize a new TimmBackbone.

        Args:
            name: timm model name, e.g. ``'convnext_tiny'`` (a pretrained tag such
                as ``'.fb_in1k'`` is allowed); see
                :func:`~geopeft.backbones.list_backbones`.
            weights: None/False (random init), True or ``'imagenet'`` (offline from
                an installed package when one exists, else timm's hub), a TorchGeo
                weights enum or its name, or a checkpoint file path.
            in_channels: Number of input bands; must match the weights' first layer.
            out_indices: Feature levels to return (negative counts from the end).
                Default: every stage of hierarchical models; four evenly spaced
                blocks (ending at the last) of plain vision transformers.
            img_size: Input size, only for models that take one (ViT, Swin).

        Raises:
            ValueError: If the name, weights, *in_channels*, *out_indices* or
                *img_size* do not fit; see :func:`load_backbone_weights`.
            FileNotFoundError: If a weights file does not exist.
        """
        super().__init__()
        check_backbone_name(name)
        if in_channels < 1:
            msg = f'in_channels must be >= 1, got {in_channels}'
            raise ValueError(msg)
        self.name = name
        self.in_channels = in_channels
        self.model = _create_model(name, in_channels=in_channels, img_size=img_size)
        load_backbone_weights(self.model, weights, name=name, in_channels=in_channels)
        levels = self.model.feature_info
        self.out_indices = _resolve_out_indices(out_indices, levels, name=name)
        self.out_channels: list[int] = [levels[i]['num_chs'] for i in self.out_indices]
        self.reductions: list[int] = [levels[i]['reduction'] for i in self.out_indices]
        self.num_features: int = getattr(
            self.model, 'head_hidden_size', self.model.num_features
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Compute the multiscale feature maps.

        Args:
            x: Images ``[B, C, H, W]``.

        Returns:
            One ``[B, out_channels[i], H / reductions[i], W / reductions[i]]`` map
            per entry of :attr:`out_indices`.
        """
        return self.model.forward_intermediates(
            x, indices=self.out_indices, intermediates_only=True
        )

    def forward_pooled(self, x: Tensor) -> Tensor:
        """Compute the pooled image embedding the model's classifier would take.

        Args:
            x: Images ``[B, C, H, W]``.

        Returns:
            ``[B, num_features]``.
        """
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def build_backbone(
    name: str, weights: BackboneWeights = None, in_channels: int = 3, **kwargs: Any
) -> TimmBackbone:
    """Build a backbone by name.

    Args:
        name: timm model name.
        weights: Pretrained weights; see :class:`TimmBackbone`.
        in_channels: Number of input bands.
        **kwargs: Further :class:`TimmBackbone` arguments (``out_indices``,
            ``img_size``).

    Returns:
        The backbone, with its weights loaded.
    """
    return TimmBackbone(name, weights=weights, in_channels=in_channels, **kwargs)


def _create_model(name: str, *, in_channels: int, img_size: int | None) -> nn.Module:
    """Create the headless timm model (random init).

    Args:
        name: timm model name.
        in_channels: Number of input bands.
        img_size: Input size for models that take one, or None.

    Returns:
        The model.

    Raises:
        ValueError: If the model takes no *img_size* or cannot return intermediate
            feature maps.
    """
    size = {} if img_size is None else {'img_size': img_size}
    try:
        model = timm.create_model(name, num_classes=0, in_chans=in_channels, **size)
    except TypeError as err:
        if img_size is None or 'img_size' not in str(err):
            raise
        msg = (
            f"Backbone '{name}' takes no img_size (only models such as ViT and Swin "
            'do); leave img_size=None.'
        )
        raise ValueError(msg) from err
    if not hasattr(model, 'forward_intermediates'):
        msg = (
            f"Backbone '{name}' cannot return per-stage feature maps (its timm "
            'model has no forward_intermediates); choose another architecture.'
        )
        raise ValueError(msg)
    return model


def _resolve_out_indices(
    out_indices: Sequence[int] | None, levels: Sequence[dict[str, Any]], *, name: str
) -> list[int]:
    """Turn requested feature levels into increasing, non-negative indices.

    Args:
        out_indices: Requested levels (negative counts from the end), or None.
        levels: The model's ``feature_info``, one entry per level.
        name: timm model name, for messages.

    Returns:
        The indices.

    Raises:
        ValueError: If an index is out of range or the indices do not increase.
    """
    count = len(levels)
    if out_indices is None:
        if len({level['reduction'] for level in levels}) > 1:
            return list(range(count))
        step = max(count // _PLAIN_VIT_MAPS, 1)
        return list(range(count - 1, -1, -step))[:_PLAIN_VIT_MAPS][::-1]
    resolved = []
    for index in out_indices:
        if not -count <= index < count:
            msg = (
                f'out_indices {list(out_indices)}: {index} is out of range for '
                f"'{name}', which has {count} feature levels (0 to {count - 1}, or "
                'negative from the end).'
            )
            raise ValueError(msg)
        resolved.append(index % count)
    if any(b <= a for a, b in zip(resolved, resolved[1:], strict=False)):
        msg = (
            f'out_indices {list(out_indices)} must name increasing, distinct levels '
            '(maps come out shallow to deep).'
        )
        raise ValueError(msg)
    return resolved
