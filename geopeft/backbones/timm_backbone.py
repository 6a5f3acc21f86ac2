"""A timm model as a multiscale feature extractor."""

from collections.abc import Mapping, Sequence
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
        bands: Names of the input bands (as given), or None if unnamed.
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
        output_stride: int = 32,
        grad_checkpointing: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        bands: Sequence[str] | None = None,
    ) -> None:
        """Initialize a new TimmBackbone.

        Args:
            name: timm model name, e.g. ``'convnext_tiny'`` (a pretrained tag such
                as ``'.fb_in1k'`` is allowed); see
                :func:`~geopeft.backbones.list_backbones`.
            weights: None/False (random init), True or ``'imagenet'`` (offline from
                an installed package when one exists, else timm's hub), a TorchGeo
                weights enum or its name, or a checkpoint file path.
            in_channels: Number of input bands. Weights pretrained on other bands
                are adapted: see *bands*.
            out_indices: Feature levels to return (negative counts from the end).
                Default: every stage of hierarchical models; four evenly spaced
                blocks (ending at the last) of plain vision transformers.
            img_size: Input size, only for models that take one (ViT, Swin).
            output_stride: Stride of the deepest map: 32, or 16 / 8 for dilated
                last stages (ResNet, ConvNeXt, EfficientNet; DeepLabV3+ uses 16).
                Dilation changes no weight shape, so pretrained weights still load.
            grad_checkpointing: Recompute the blocks' activations in the backward
                pass instead of keeping them (timm's activation checkpointing):
                less training memory for more compute.
            model_kwargs: Further keyword arguments of ``timm.create_model``, e.g.
                ``{'drop_path_rate': 0.1}`` or a smaller ``depths`` for tests.
            bands: Names of the *in_channels* input bands in channel order, e.g.
                ``['R', 'G', 'B', 'N']`` or Sentinel-2's ``['B01', ..., 'B12']``
                (see :mod:`geopeft.backbones.bands`). The first layer of weights
                pretrained on other bands keeps the filters of the bands that
                match by name and gives the others the mean filter, rescaled
                (``docs/bands.md``). None matches bands by position.

        Raises:
            ValueError: If the name, weights, *in_channels*, *out_indices*,
                *img_size*, *output_stride*, *model_kwargs* or *bands* do not fit;
                see :func:`load_backbone_weights`.
            TypeError: If *bands* is a string rather than a list of names.
            FileNotFoundError: If a weights file does not exist.
        """
        super().__init__()
        check_backbone_name(name)
        if in_channels < 1:
            msg = f'in_channels must be >= 1, got {in_channels}'
            raise ValueError(msg)
        self.name = name
        self.in_channels = in_channels
        self.model = _create_model(
            name,
            in_channels=in_channels,
            img_size=img_size,
            output_stride=output_stride,
            model_kwargs=model_kwargs or {},
        )
        if grad_checkpointing:
            _check_non_reentrant()
            self.model.set_grad_checkpointing(True)
        load_backbone_weights(
            self.model, weights, name=name, in_channels=in_channels, bands=bands
        )
        self.bands: list[str] | None = None if bands is None else list(bands)
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

    def select_levels(self, positions: Sequence[int]) -> None:
        """Return only some of the maps and drop the layers no map needs.

        Layers after the deepest kept level, and the final norm and classifier
        head (which feature maps never pass through), are removed with timm's own
        ``prune_intermediate_layers``, so no parameter is left outside
        :meth:`forward` (unused trainable parameters would stall DDP and waste
        memory). :meth:`forward_pooled` is no longer available afterwards: this is
        for dense models. Call it before PEFT is applied.

        Args:
            positions: Positions in :attr:`out_indices` to keep, increasing.

        Raises:
            ValueError: If PEFT was already applied or a position is out of range.
        """
        if hasattr(self.model, 'geopeft_config'):
            msg = 'select_levels must be called before PEFT is applied'
            raise ValueError(msg)
        if not positions or not all(0 <= p < len(self.out_indices) for p in positions):
            msg = (
                f'positions {list(positions)} must pick out of the '
                f'{len(self.out_indices)} returned maps'
            )
            raise ValueError(msg)
        indices = [self.out_indices[p] for p in positions]
        deepest = max(indices)
        prune = getattr(self.model, 'prune_intermediate_layers', None)
        if prune is not None:
            prune(indices=[deepest], prune_norm=True, prune_head=True)
            self.model.feature_info = self.model.feature_info[: deepest + 1]
        self.out_indices = indices
        self.out_channels = [self.out_channels[p] for p in positions]
        self.reductions = [self.reductions[p] for p in positions]

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


#: What each optional ``timm.create_model`` argument is for, in error messages.
_OPTIONAL_ARGUMENTS = {
    'img_size': 'only models such as ViT and Swin take one; leave img_size=None',
    'output_stride': 'it cannot dilate its last stages (ResNet, ConvNeXt and '
    'EfficientNet can); use output_stride=32, or a decoder that needs no dilation '
    '(unet, fpn, upernet, segformer)',
}


def _create_model(
    name: str,
    *,
    in_channels: int,
    img_size: int | None,
    output_stride: int,
    model_kwargs: Mapping[str, Any],
) -> nn.Module:
    """Create the headless timm model (random init).

    Args:
        name: timm model name.
        in_channels: Number of input bands.
        img_size: Input size for models that take one, or None.
        output_stride: Stride of the deepest map (32: no dilation).
        model_kwargs: Further ``timm.create_model`` arguments.

    Returns:
        The model.

    Raises:
        ValueError: If the model takes no *img_size*, cannot dilate to
            *output_stride*, rejects *model_kwargs*, or cannot return intermediate
            feature maps.
    """
    if output_stride not in (8, 16, 32):
        msg = f'output_stride must be 8, 16 or 32, got {output_stride}'
        raise ValueError(msg)
    reserved = {'num_classes', 'in_chans', 'pretrained'} & set(model_kwargs)
    if reserved:
        msg = (
            f'model_kwargs may not set {sorted(reserved)}: geopeft sets them (use '
            'in_channels and weights instead)'
        )
        raise ValueError(msg)
    options = dict(model_kwargs)
    if img_size is not None:
        options['img_size'] = img_size
    if output_stride != 32:
        options['output_stride'] = output_stride
    try:
        model = timm.create_model(name, num_classes=0, in_chans=in_channels, **options)
    except TypeError as err:
        for argument, why in _OPTIONAL_ARGUMENTS.items():
            if argument in options and argument in str(err):
                msg = f"Backbone '{name}' takes no {argument}: {why}."
                raise ValueError(msg) from err
        if model_kwargs and 'unexpected keyword' in str(err):
            msg = f"Backbone '{name}' rejects model_kwargs {dict(model_kwargs)}: {err}"
            raise ValueError(msg) from err
        raise
    if not hasattr(model, 'forward_intermediates'):
        msg = (
            f"Backbone '{name}' cannot return per-stage feature maps (its timm "
            'model has no forward_intermediates); choose another architecture.'
        )
        raise ValueError(msg)
    return model


def _check_non_reentrant() -> None:
    """Refuse timm's reentrant activation checkpointing.

    Reentrant checkpointing drops the gradients of PEFT modules inside a
    checkpointed region whose input does not require grad (everything after a
    frozen stem), so adapters would silently stop training.

    Raises:
        ValueError: If timm is set to reentrant checkpointing.
    """
    if getattr(timm.layers, 'use_reentrant_ckpt', lambda: False)():
        msg = (
            'timm is set to reentrant activation checkpointing (TIMM_REENTRANT_CKPT),'
            ' which drops the gradients of PEFT modules behind frozen layers: unset '
            'TIMM_REENTRANT_CKPT (or call timm.layers.set_reentrant_ckpt(False))'
        )
        raise ValueError(msg)


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
