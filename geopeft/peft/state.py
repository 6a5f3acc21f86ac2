"""Adapter-only state: save and load what a PEFT method trains, bit for bit.

An adapter file is a safetensors file holding exactly the trainable parameters of a
model (PEFT modules and head), the buffers of the modules that own them (e.g. the
running statistics of a trained batch norm) and, instead of each quantized Q-Linear
weight, its bit-packed codes plus mean and std. Loaded on top of the same
pretrained backbone built with the same PEFT config it reproduces the saved
model's outputs exactly. Files are read with safetensors only, never pickle.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ..io import atomic_write_bytes
from .apply import adapted_batchnorms
from .qlinear import QLinear, pack_codes, unpack_codes

#: Version of the adapter file layout.
FORMAT_VERSION = 1


def _prefix(name: str) -> str:
    """Return the key prefix of a module name."""
    return f'{name}.' if name else ''


def _sources(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, QLinear]]:
    """Find the live tensors and the Q-Linear layers that make up the adapter.

    Returns:
        ``(tensors, qlinears)``: trainable parameters and the persistent buffers of
        their modules, by key; quantized Q-Linear layers whose weight is trainable
        or already stored as codes, by module name (their bias is in *tensors*).
    """
    tensors: dict[str, Tensor] = {}
    qlinears: dict[str, QLinear] = {}
    adapted = {id(norm) for norm in adapted_batchnorms(model)}
    for name, module in model.named_modules():
        prefix = _prefix(name)
        if id(module) in adapted:  # frozen, but its statistics were adapted
            for key, buffer in module.named_buffers(recurse=False):
                if key not in module._non_persistent_buffers_set:
                    tensors[prefix + key] = buffer
        if isinstance(module, QLinear) and module.quantized:
            if module.stored or module.weight.requires_grad:
                qlinears[name] = module
                if module.bias is not None:
                    tensors[prefix + 'bias'] = module.bias
                continue
        trainable = {
            key: parameter
            for key, parameter in module.named_parameters(recurse=False)
            if parameter.requires_grad
        }
        if not trainable:
            continue
        for key, parameter in trainable.items():
            tensors[prefix + key] = parameter
        for key, buffer in module.named_buffers(recurse=False):
            if key not in module._non_persistent_buffers_set:
                tensors[prefix + key] = buffer
    return tensors, qlinears


def _qlinear_keys(name: str) -> tuple[str, str, str]:
    """Return the codes, mean and std keys of a Q-Linear layer."""
    prefix = _prefix(name)
    return prefix + 'codes', prefix + 'mean', prefix + 'std'


def fingerprint(model: nn.Module) -> str:
    """Hash the structure of a model: every parameter/buffer name and shape.

    Q-Linear layers count as their weight (and bias) whether they hold a weight or
    stored codes, so a model fingerprints the same before and after loading.

    Args:
        model: Any module.

    Returns:
        A SHA-256 hex digest.
    """
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        prefix = _prefix(name)
        if isinstance(module, QLinear):
            entries = [('weight', (module.out_features, module.in_features))]
            if module.bias is not None:
                entries.append(('bias', tuple(module.bias.shape)))
        else:
            entries = [
                (key, tuple(parameter.shape))
                for key, parameter in module.named_parameters(recurse=False)
            ] + [
                (key, tuple(buffer.shape))
                for key, buffer in module.named_buffers(recurse=False)
                if key not in module._non_persistent_buffers_set
            ]
        for key, shape in entries:
            digest.update(f'{prefix}{key}:{list(shape)}\n'.encode())
    return digest.hexdigest()


#: Values of each frozen tensor that enter :func:`weights_fingerprint`.
FINGERPRINT_SAMPLES = 4096


def weights_fingerprint(model: nn.Module) -> str:
    """Hash the frozen weights of a model: what an adapter file does not carry.

    Every parameter and persistent buffer outside the adapter state (the frozen
    pretrained weights, and frozen batch-norm statistics) enters by name, shape
    and up to :data:`FINGERPRINT_SAMPLES` evenly spaced values rounded to
    bfloat16, so the same weights in float32, float16 or bfloat16 hash alike and
    the hash costs milliseconds even for large backbones. An adapter trained on
    one set of pretrained weights and loaded onto another gives other outputs;
    :func:`load_adapter` compares this hash to find that out.

    Args:
        model: The whole model.

    Returns:
        A SHA-256 hex digest (16 characters).
    """
    tensors, qlinears = _sources(model)
    carried = {id(tensor) for tensor in tensors.values()}
    carried |= {id(layer.weight) for layer in qlinears.values()}
    entries: dict[str, Tensor] = {}
    for name, parameter in model.named_parameters():
        if id(parameter) not in carried:
            entries[name] = parameter
    for name, module in model.named_modules():
        for key, buffer in module.named_buffers(recurse=False):
            if key in module._non_persistent_buffers_set or id(buffer) in carried:
                continue
            if buffer.is_floating_point():
                entries[_prefix(name) + key] = buffer
    digest = hashlib.sha256()
    with torch.no_grad():
        for name in sorted(entries):
            tensor = entries[name].detach()
            flat = tensor.reshape(-1)
            step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
            sample = flat[::step][:FINGERPRINT_SAMPLES].to(torch.bfloat16).float()
            digest.update(f'{name}:{list(tensor.shape)}\n'.encode())
            digest.update(sample.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _backbones(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Describe the PEFT backbones inside a model (set by ``apply_peft``)."""
    return {
        name: {'name': module.geopeft_backbone, 'peft': module.geopeft_config}
        for name, module in model.named_modules()
        if hasattr(module, 'geopeft_config')
    }


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Return the adapter state of a model: what its PEFT method trains.

    Args:
        model: The whole model (backbone and head).

    Returns:
        CPU tensors by key: the trainable parameters, the persistent buffers of
        their modules, and for each quantized Q-Linear layer ``<name>.codes``
        (packed ``uint8``), ``<name>.mean`` and ``<name>.std`` instead of its
        weight.
    """
    tensors, qlinears = _sources(model)
    state = {key: tensor.detach().cpu().clone() for key, tensor in tensors.items()}
    for name, layer in qlinears.items():
        codes, mean, std = layer.quantize()
        codes_key, mean_key, std_key = _qlinear_keys(name)
        state[codes_key] = pack_codes(codes, layer.bits).cpu()
        state[mean_key] = mean.detach().cpu().clone()
        state[std_key] = std.detach().cpu().clone()
    return state


def _serialize(model: nn.Module, metadata: Mapping[str, Any] | None) -> bytes:
    """Serialise the adapter state and metadata to safetensors bytes."""
    user = dict(metadata or {})
    if 'geopeft' in user:
        msg = 'metadata key "geopeft" is reserved for the adapter format'
        raise ValueError(msg)
    _, qlinears = _sources(model)
    engine = {
        'format_version': FORMAT_VERSION,
        'fingerprint': fingerprint(model),
        'weights_fingerprint': weights_fingerprint(model),
        'backbones': _backbones(model),
        'qlinear': {
            name: {'bits': layer.bits, 'shape': [layer.out_features, layer.in_features]}
            for name, layer in qlinears.items()
        },
    }
    header = {'geopeft': json.dumps(engine), 'user': json.dumps(user)}
    return safetensors.torch.save(adapter_state_dict(model), metadata=header)


def adapter_nbytes(
    model: nn.Module, *, metadata: Mapping[str, Any] | None = None
) -> int:
    """Return the size the adapter file of this model would have.

    Args:
        model: The whole model.
        metadata: User metadata that would be saved with it.

    Returns:
        Bytes, as :func:`save_adapter` would write (serialised in memory).
    """
    return len(_serialize(model, metadata))


def save_adapter(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Write the adapter state of a model to a safetensors file, atomically.

    The file's metadata records the format version, the bits and shape of every
    Q-Linear layer, the backbone names and PEFT configs (from ``apply_peft``), a
    fingerprint of the whole model structure and *metadata*.

    Args:
        model: The whole model (backbone and head).
        path: Destination file (parent directories are created).
        metadata: JSON-serialisable user metadata (e.g. backbone, classes).

    Returns:
        Bytes written.

    Raises:
        ValueError: If *metadata* uses the reserved key ``geopeft``.
    """
    return atomic_write_bytes(path, _serialize(model, metadata))


def _describe(backbones: Mapping[str, Mapping[str, Any]]) -> str:
    """Describe recorded backbones for error messages."""
    if not backbones:
        return 'an unnamed model (no apply_peft record)'
    return ', '.join(
        f'"{entry["name"]}" (PEFT "{entry["peft"]["method"]}")'
        for entry in backbones.values()
    )


def _shape_errors(
    model: nn.Module,
    file_shapes: Mapping[str, list[int]],
    model_shapes: Mapping[str, list[int]],
) -> list[str]:
    """Describe keys whose shape differs, with a hint for classification heads."""
    errors = []
    modules = dict(model.named_modules())
    for key in sorted(file_shapes.keys() & model_shapes.keys()):
        saved, wanted = file_shapes[key], model_shapes[key]
        if saved == wanted:
            continue
        error = f'{key}: file {saved} vs model {wanted}'
        owner = modules.get(key.rpartition('.')[0])
        if isinstance(owner, nn.Linear) and saved[1:] == wanted[1:]:
            error += (
                f" (the file's head has {saved[0]} outputs: build the model with "
                f'num_classes={saved[0]})'
            )
        errors.append(error)
    return errors


def _expected_shapes(
    tensors: Mapping[str, Tensor], qlinears: Mapping[str, QLinear]
) -> dict[str, list[int]]:
    """Return the key shapes a model expects, Q-Linear layers as weight shapes."""
    shapes = {key: list(tensor.shape) for key, tensor in tensors.items()}
    for name, layer in qlinears.items():
        shapes[_qlinear_keys(name)[0]] = [layer.out_features, layer.in_features]
    return shapes


def load_adapter(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    other_weights: bool = False,
) -> dict[str, Any]:
    """Load an adapter file into a model built like the one that saved it.

    The model must be the same pretrained backbone with the same PEFT config and
    head. Quantized Q-Linear layers switch to stored-codes mode; the outputs are
    then bit-identical to those of the saved model. The frozen weights must be
    those the adapter was trained on (:func:`weights_fingerprint`, recorded in
    files written since it was added).

    Args:
        model: The whole model (modified in place).
        path: A file written by :func:`save_adapter`.
        other_weights: Load it even onto other frozen weights (the outputs then
            differ from the saved model's).

    Returns:
        The user metadata, plus the adapter format's own under ``geopeft``.

    Raises:
        FileNotFoundError: If *path* does not exist.
        ValueError: If the file is not an adapter file, or does not fit the model
            (different backbone or PEFT config, head size, missing keys, other
            frozen weights).
    """
    path = Path(path)
    if not path.is_file():
        msg = f'adapter file not found: {path}'
        raise FileNotFoundError(msg)
    try:
        with safe_open(path, framework='pt', device='cpu') as file:
            header = file.metadata() or {}
            if 'geopeft' not in header:
                msg = f'{path} is not a geopeft adapter file (no "geopeft" metadata)'
                raise ValueError(msg)
            state = {key: file.get_tensor(key) for key in file.keys()}
        engine = json.loads(header['geopeft'])
    except (SafetensorError, OSError, json.JSONDecodeError) as error:
        msg = (
            f'{path} is not a readable adapter file ({error}): it may be truncated '
            'or not a safetensors file; export it again with geopeft export-adapter'
        )
        raise ValueError(msg) from error
    if engine.get('format_version', 0) > FORMAT_VERSION:
        msg = (
            f'{path} has adapter format version {engine["format_version"]}; this '
            f'geopeft reads up to {FORMAT_VERSION}: upgrade geopeft'
        )
        raise ValueError(msg)

    tensors, qlinears = _sources(model)
    model_shapes = _expected_shapes(tensors, qlinears)
    file_shapes = {key: list(tensor.shape) for key, tensor in state.items()}
    for name, entry in engine['qlinear'].items():
        file_shapes[_qlinear_keys(name)[0]] = entry['shape']
        file_shapes.pop(_qlinear_keys(name)[1], None)
        file_shapes.pop(_qlinear_keys(name)[2], None)
    saved_from = _describe(engine['backbones'])
    loading_into = _describe(_backbones(model))
    context = f'Adapter {path} was saved from {saved_from}; the model is {loading_into}'
    same_structure = engine['fingerprint'] == fingerprint(model)
    if not same_structure and saved_from != loading_into:
        msg = (
            f'{context}: their structures differ (fingerprint mismatch). Load it '
            'onto the same pretrained backbone built with the same PEFT config.'
        )
        raise ValueError(msg)
    errors = _shape_errors(model, file_shapes, model_shapes)
    for name, entry in engine['qlinear'].items():
        layer = qlinears.get(name)
        if layer is not None and layer.bits != entry['bits']:
            errors.append(f'{name}: file {entry["bits"]}-bit vs model {layer.bits}-bit')
    missing = sorted(model_shapes.keys() - file_shapes.keys())
    unexpected = sorted(file_shapes.keys() - model_shapes.keys())
    if missing:
        errors.append(f'keys the model trains but the file lacks: {missing[:5]}')
    if unexpected:
        errors.append(f'keys in the file the model does not train: {unexpected[:5]}')
    if not same_structure and not errors:
        errors.append('the model structure differs (fingerprint mismatch)')
    if errors:
        msg = f'{context}; it does not fit: ' + '; '.join(errors)
        raise ValueError(msg)
    recorded = engine.get('weights_fingerprint')
    if recorded is not None and not other_weights:
        current = weights_fingerprint(model)
        if recorded != current:
            msg = (
                f'{path} was trained on other frozen weights (fingerprint '
                f'{recorded}) than this model holds ({current}): the same '
                f'{saved_from} with other pretrained weights gives other outputs. '
                'Build the model with the weights the adapter was trained on, or '
                'call load_adapter(model, path, other_weights=True) to load it anyway.'
            )
            raise ValueError(msg)

    with torch.no_grad():
        for key, target in tensors.items():
            target.copy_(state[key])
        for name, layer in qlinears.items():
            codes_key, mean_key, std_key = _qlinear_keys(name)
            shape = engine['qlinear'][name]['shape']
            codes = unpack_codes(state[codes_key], layer.bits, shape[0] * shape[1])
            layer.load_codes(codes, state[mean_key], state[std_key])
    return {**json.loads(header.get('user', '{}')), 'geopeft': engine}
