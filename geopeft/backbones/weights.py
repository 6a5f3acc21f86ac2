"""Pretrained weights for timm backbones: ImageNet, TorchGeo enums, local files.

Every source is turned into a state dict keyed like
``timm.create_model(name, num_classes=0)`` and checked against the backbone before
it is loaded, so that a wrong file or architecture fails with a message that says
what to change. Weights pretrained on other bands than the input are adapted
band-aware (:mod:`geopeft.backbones.bands`).
"""

import difflib
import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn
from torchgeo.models import get_model_weights, get_weight
from torchgeo.models import list_models as list_torchgeo_models
from torchvision.models._api import WeightsEnum

from .bands import (
    IMAGENET_BANDS,
    adapt_first_layer_weight,
    canonical_bands,
    pretrained_bands,
)
from .checkpoints import CHECKPOINT_SUFFIXES, read_checkpoint
from .imagenet import imagenet_state_dict

_logger = logging.getLogger(__name__)

#: What a backbone's ``weights`` argument accepts: None/False (random init),
#: True/``'imagenet'``, a TorchGeo weights enum or its name, or a checkpoint path.
#: (A plain union, not a ``type`` statement, so that jsonargparse and LightningCLI
#: read it in signatures.)
BackboneWeights = WeightsEnum | str | os.PathLike[str] | bool | None

#: How many keys an error message lists.
_SHOWN_KEYS = 5


def list_backbones(pattern: str = '') -> list[str]:
    """List the backbone names :class:`~geopeft.backbones.TimmBackbone` accepts.

    These are timm's architectures (ImageNet weights for ``efficientnet_lite0``
    to ``efficientnet_lite2`` can come from pip packages, the others from timm's
    hub; TorchGeo weights exist for ``resnet18``, ``resnet50``, ``resnet152`` and
    several ViTs).

    Args:
        pattern: Optional shell-style filter, e.g. ``'convnext*'``.

    Returns:
        Sorted model names.
    """
    return timm.list_models(pattern) if pattern else timm.list_models()


def check_backbone_name(name: str) -> None:
    """Check that *name* is a timm architecture (a pretrained tag is allowed).

    Args:
        name: Backbone name, e.g. ``'convnext_tiny'`` or ``'convnext_tiny.fb_in1k'``.

    Raises:
        ValueError: If timm does not know *name*; the message lists close names.
    """
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f' Did you mean {_quoted(close)}?' if close else ''
    msg = (
        f"Unknown backbone '{name}': it is not a timm model.{hint} "
        'geopeft.backbones.list_backbones() lists all names.'
    )
    raise ValueError(msg)


def resolve_state_dict(
    weights: BackboneWeights,
    *,
    name: str,
    model: nn.Module | None = None,
) -> dict[str, Tensor] | None:
    """Fetch the state dict that *weights* names, keyed for backbone *name*.

    Wrapper prefixes of checkpoints (``'model.'``, ``'backbone.'``,
    ``'model.backbone.model.'``, ``'encoder.'``, ...) are stripped, whichever makes
    the keys match the model; when a prefix is stripped, keys outside it (a
    decoder, a task head) are dropped. Classifier keys are dropped.

    Args:
        weights: None/False (random init), True/``'imagenet'``, a TorchGeo weights
            enum or its name (``'ResNet18_Weights.SENTINEL2_RGB_MOCO'``), or the
            path of a ``.pth``/``.pt``/``.ckpt``/``.bin``/``.safetensors`` file.
        name: timm model name of the backbone.
        model: The timm model the keys are for. Defaults to a parameter-free
            (meta-device) ``timm.create_model(name, num_classes=0)``.

    Returns:
        The state dict on the CPU, or None for random initialisation.

    Raises:
        ValueError: If *name* is unknown, or *weights* is an unknown string, an
            unreadable file, or a TorchGeo enum for another architecture (checked
            before downloading).
        FileNotFoundError: If a weights file does not exist.
        TypeError: If *weights* has an unsupported type.
    """
    check_backbone_name(name)
    if weights is None or weights is False:
        return None
    if model is None:
        with torch.device('meta'):
            model = timm.create_model(name, num_classes=0)
    classifiers = _classifier_prefixes(model)
    reference = {
        k: v for k, v in model.state_dict().items() if not k.startswith(classifiers)
    }
    if weights is True or (isinstance(weights, str) and weights.lower() == 'imagenet'):
        state = imagenet_state_dict(name)
    else:
        state = _read_weights(weights, name=name)
    state = _strip_prefix(state, reference.keys())
    return {
        k: v
        for k, v in state.items()
        if k in reference or not k.startswith(classifiers)
    }


def load_backbone_weights(
    model: nn.Module,
    weights: BackboneWeights,
    *,
    name: str,
    in_channels: int,
    bands: Sequence[str] | None = None,
) -> None:
    """Load *weights* into a timm *model*, in place, after checking they fit.

    When the weights were pretrained on other bands than the input (another
    number, or other names in *bands*), the first layer (every layer of the
    model's ``pretrained_cfg['first_conv']``) is adapted with
    :func:`~geopeft.backbones.bands.adapt_first_layer_weight`: matched bands keep
    their pretrained filters, the others share the mean filter, scaled so the
    layer keeps its pretrained response. The mapping is logged (logger
    ``geopeft.backbones.weights``, level INFO); a mapping by position where the
    weights know their bands also warns, since *bands* would match them by name.

    Position embeddings and relative-position tables are resampled (with the
    architecture's own timm checkpoint filter) when the model was built for
    another input size, e.g. a ViT with ``img_size=64``.

    Args:
        model: ``timm.create_model(name, num_classes=0, in_chans=in_channels)``
            (a model with a classifier works too; the classifier stays random).
        weights: See :func:`resolve_state_dict`; None/False leaves *model* as is.
        name: timm model name of *model*.
        in_channels: Input bands *model* was built for.
        bands: Names of the input bands, one per channel (see
            :func:`~geopeft.backbones.bands.canonical_bands`), to match them by
            name with the bands the weights were pretrained on; None matches by
            position.

    Raises:
        ValueError: If *bands* does not give one known name per input band, or
            the weights cannot be found or read, are for another architecture,
            have a first layer that cannot adapt to other bands, or their keys or
            shapes do not match *model*.
        TypeError: If *bands* is a string rather than a list.
        FileNotFoundError: If a weights file does not exist.
    """
    if bands is not None:
        _check_bands(bands, in_channels)
    state = resolve_state_dict(weights, name=name, model=model)
    if state is None:
        return
    source = _describe(weights)
    target = model.state_dict()
    _adapt_first_layer(
        state,
        target,
        model,
        weights,
        source=source,
        in_channels=in_channels,
        bands=bands,
    )
    if any(k in target and v.shape != target[k].shape for k, v in state.items()):
        state = _fit_input_size(state, model)
    _check_keys(state, target, _classifier_prefixes(model), source=source, name=name)
    model.load_state_dict(state, strict=False)


def _read_weights(
    weights: WeightsEnum | str | os.PathLike[str] | Mapping[str, Tensor],
    *,
    name: str,
) -> dict[str, Tensor]:
    """Read a TorchGeo enum, its name, or a checkpoint file.

    Args:
        weights: The enum, its name, a file path, or a state dict already read
            (used as it is).
        name: timm model name of the backbone.

    Returns:
        The state dict as stored (prefixes not yet stripped).

    Raises:
        ValueError: For an unknown string or an incompatible enum.
        FileNotFoundError: If a path-like string names no file.
        TypeError: For any other type.
    """
    if isinstance(weights, WeightsEnum):
        _check_enum(weights, name=name)
        return weights.get_state_dict(progress=True, weights_only=True)
    if isinstance(weights, Mapping):
        return dict(weights)
    if isinstance(weights, os.PathLike):
        return read_checkpoint(weights)
    if not isinstance(weights, str):
        msg = (
            f'weights must be None, a bool, a TorchGeo weights enum, its name, '
            f"'imagenet' or a file path, not {type(weights).__name__}"
        )
        raise TypeError(msg)
    path = Path(weights)
    if path.exists() or path.suffix in CHECKPOINT_SUFFIXES or os.sep in weights:
        return read_checkpoint(path)
    try:
        enum = get_weight(weights)
    except ValueError:
        close = difflib.get_close_matches(weights, _torchgeo_weight_names(), n=3)
        hint = f' Did you mean {_quoted(close)}?' if close else ''
        msg = (
            f"weights='{weights}' is neither 'imagenet', an existing checkpoint "
            f'file, nor a TorchGeo weights name.{hint} Pass a file path, True for '
            "ImageNet weights, or a name such as 'ResNet18_Weights.SENTINEL2_RGB_MOCO'."
        )
        raise ValueError(msg) from None
    return _read_weights(enum, name=name)


def _check_enum(weights: WeightsEnum, *, name: str) -> None:
    """Check a TorchGeo weights enum is for the backbone, before downloading it.

    Other bands than the backbone's are no obstacle: the first layer adapts (see
    :func:`load_backbone_weights`).

    Args:
        weights: The TorchGeo weights.
        name: timm model name of the backbone.

    Raises:
        ValueError: If the weights are for another architecture.
    """
    architecture = weights.meta.get('model')
    base = name.partition('.')[0]
    if architecture != base:
        if isinstance(architecture, str) and timm.is_model(architecture):
            fix = f"build the backbone with name='{architecture}'"
        else:
            fix = 'it is not a timm architecture, use torchgeo.models directly'
        others = _torchgeo_weight_names(base)
        suggestion = (
            f' (TorchGeo weights for {base}: {_quoted(others)})' if others else ''
        )
        msg = (
            f"{weights} are weights for '{architecture}', not for backbone "
            f"'{name}': {fix}, or choose weights made for '{base}'{suggestion}."
        )
        raise ValueError(msg)


def _torchgeo_weight_names(model: str | None = None) -> list[str]:
    """Names of TorchGeo's weights, for one model or all.

    Args:
        model: TorchGeo model name (e.g. ``'resnet18'``), or None for all.

    Returns:
        Names such as ``'ResNet18_Weights.SENTINEL2_RGB_MOCO'`` (empty if TorchGeo
        does not know *model*).
    """
    models = list_torchgeo_models() if model is None else [model]
    names = []
    for candidate in models:
        try:
            names.extend(str(w) for w in get_model_weights(candidate))
        except (KeyError, ValueError):  # a model registered without weights
            continue
    return names


def _strip_prefix(
    state: Mapping[str, Tensor], reference: Iterable[str]
) -> dict[str, Tensor]:
    """Remove the key prefix under which *state* holds the model's keys.

    The prefix is the one (possibly empty) that maps most keys of *state* onto
    *reference*; keys without it are dropped.

    Args:
        state: A state dict, possibly from a wrapping model.
        reference: Key names of the model.

    Returns:
        The state dict with the prefix removed.
    """
    known = set(reference)
    hits: Counter[str] = Counter()
    for key in state:
        for at in [0, *(i + 1 for i, c in enumerate(key) if c == '.')]:
            if key[at:] in known:
                hits[key[:at]] += 1
    if not hits:
        return dict(state)
    prefix = min(hits, key=lambda p: (-hits[p], len(p), p))
    if not prefix:
        return dict(state)
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _check_bands(bands: Sequence[str], in_channels: int) -> None:
    """Check *bands* names each input band with a known name.

    Args:
        bands: Input band names.
        in_channels: Input bands the backbone is built for.

    Raises:
        TypeError: If *bands* is a string.
        ValueError: If a name is unknown or ambiguous, or the count is not
            *in_channels*.
    """
    canonical_bands(bands)
    if len(bands) != in_channels:
        msg = (
            f'bands has {len(bands)} names ({list(bands)}) but in_channels='
            f'{in_channels}: give one name per input band, in channel order, or '
            f'set in_channels={len(bands)}.'
        )
        raise ValueError(msg)


def _adapt_first_layer(
    state: dict[str, Tensor],
    target: Mapping[str, Tensor],
    model: nn.Module,
    weights: BackboneWeights,
    *,
    source: str,
    in_channels: int,
    bands: Sequence[str] | None,
) -> None:
    """Adapt the weights' first layer to the input bands, in place.

    Args:
        state: The weights; first-layer tensors are replaced.
        target: State dict of the model.
        model: The timm model (its pretrained config names the first layer).
        weights: The weights argument (it tells the pretrained bands).
        source: The weights, in words.
        in_channels: Input bands the model was built for.
        bands: Input band names, or None.

    Raises:
        ValueError: If a first layer needs adapting but does not read one channel
            per input band.
    """
    pretrained = pretrained_bands(weights)
    adapted_layers, mapping = [], []
    for layer in _cfg_names(model, 'first_conv'):
        key = f'{layer}.weight'
        if key not in state or key not in target:
            continue
        weight, expected = state[key], target[key]
        if weight.ndim < 2 or expected.shape[1] != in_channels:
            if weight.shape == expected.shape:
                continue
            msg = (
                f"{source} have a first layer '{key}' of shape "
                f'{tuple(weight.shape)}, and the backbone built with in_channels='
                f'{in_channels} has {tuple(expected.shape)}: it does not read one '
                'channel per band (a convolution [O, C, kh, kw] or linear layer '
                '[O, C]), so geopeft cannot adapt it to other bands. Build the '
                'backbone for the bands the weights were pretrained on, or choose '
                'another architecture.'
            )
            raise ValueError(msg)
        known = pretrained
        if known is None and bands is not None and weight.shape[1] == 3:
            # A 3-band checkpoint of unknown bands is read as RGB, what nearly
            # every 3-band pretrained backbone was trained on.
            known = IMAGENET_BANDS
        state[key], mapping = adapt_first_layer_weight(
            weight, known, bands, in_channels
        )
        if mapping:
            adapted_layers.append(key)
    if adapted_layers:
        _report_mapping(
            mapping,
            layers=adapted_layers,
            source=source,
            guessed=bands is None and pretrained is not None,
        )


def _report_mapping(
    mapping: list[str], *, layers: list[str], source: str, guessed: bool
) -> None:
    """Log a first-layer band mapping; warn when it was matched by position.

    Args:
        mapping: One line per input band, from ``adapt_first_layer_weight``.
        layers: Keys of the adapted weights.
        source: The weights, in words.
        guessed: Whether the weights know their bands but the input bands were
            matched by position because no names were given.
    """
    _logger.info(
        '%s: first layer %s adapted to the input bands:\n  %s',
        source,
        _quoted(layers),
        '\n  '.join(mapping),
    )
    if guessed:
        warnings.warn(
            f'{source} were pretrained on named bands, but the {len(mapping)} input '
            'bands have no names, so they were matched by position '
            f'({"; ".join(mapping)}). Pass bands=[...] (one name per input band) '
            'to match them by name.',
            UserWarning,
            stacklevel=4,
        )


def _fit_input_size(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Resample input-size dependent tensors with the architecture's timm filter.

    timm's model modules define ``checkpoint_filter_fn(state_dict, model)``, which
    resamples position embeddings (ViT) and relative-position tables (Swin) to
    the model's input size and window.

    Args:
        state: Weights whose shapes differ from the model's.
        model: The timm model.

    Returns:
        The filtered weights (unchanged if the architecture has no filter).
    """
    module = sys.modules.get(type(model).__module__)
    checkpoint_filter = getattr(module, 'checkpoint_filter_fn', None)
    return dict(checkpoint_filter(state, model)) if checkpoint_filter else state


def _check_keys(
    state: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    classifiers: tuple[str, ...],
    *,
    source: str,
    name: str,
) -> None:
    """Check *state* covers every weight of the model, with the right shapes.

    Batch-norm counters and the model's classifier (if it has one) may be missing.

    Args:
        state: The weights.
        target: State dict of the model.
        classifiers: Key prefixes of the model's classifier.
        source: The weights, in words.
        name: timm model name.

    Raises:
        ValueError: If keys are missing or unexpected, or shapes differ.
    """
    missing = [
        k
        for k in target
        if k not in state
        and not k.endswith('num_batches_tracked')
        and not k.startswith(classifiers)
    ]
    unexpected = [k for k in state if k not in target]
    reshaped = [
        f"'{k}' {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing keys ({_first(missing)})')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys ({_first(unexpected)})')
    if reshaped:
        shapes = ', '.join(reshaped[:_SHOWN_KEYS])
        problems.append(
            f'{len(reshaped)} tensors with another shape (weights vs model: {shapes})'
        )
    if problems:
        msg = (
            f"{source} do not match backbone '{name}': {'; '.join(problems)}. "
            f"Use weights trained for '{name}', or build the backbone with the "
            'architecture the weights were trained for.'
        )
        raise ValueError(msg)


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of a timm model's classification head."""
    return tuple(f'{layer}.' for layer in _cfg_names(model, 'classifier'))


def _cfg_names(model: nn.Module, field: str) -> tuple[str, ...]:
    """Layer names stored in a timm model's pretrained config (str or tuple)."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    value = cfg.get(field)
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _describe(weights: BackboneWeights) -> str:
    """The weights, in words, to start an error message."""
    if weights is True or (isinstance(weights, str) and weights.lower() == 'imagenet'):
        return 'The ImageNet weights'
    if isinstance(weights, WeightsEnum):
        return f'TorchGeo weights {weights}'
    if isinstance(weights, Mapping):
        return 'The given state dict'
    return f"Weights '{weights}'"


def _first(keys: list[str]) -> str:
    """The first few *keys*, quoted, for a message."""
    shown = _quoted(keys[:_SHOWN_KEYS])
    return f'first: {shown}' + (', ...' if len(keys) > _SHOWN_KEYS else '')


def _quoted(names: Iterable[str]) -> str:
    """Names in quotes, comma separated."""
    return ', '.join(f"'{n}'" for n in names)
