"""Reading state dicts from local checkpoint files."""

import os
import re
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor

#: File suffixes read as checkpoints; ``.safetensors`` through safetensors, the
#: others through ``torch.load(..., weights_only=True)``.
CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin', '.safetensors')

#: Keys under which training frameworks nest the state dict (Lightning uses
#: ``state_dict``; many research repositories use ``model``).
_WRAPPER_KEYS = ('state_dict', 'model')

#: Terminal colour codes, which torch puts in some error messages.
_ANSI = re.compile(r'\x1b\[[0-9;]*m')


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read the tensors of a checkpoint file.

    Accepts a raw state dict, a ``{'state_dict': ...}`` (Lightning) or
    ``{'model': ...}`` wrapper (nested wrappers too). Non-tensor entries
    (optimizer state, hyper-parameters, counters stored as numbers) are dropped.
    Key prefixes are left as they are.

    Args:
        path: A ``.pth``, ``.pt``, ``.ckpt``, ``.bin`` or ``.safetensors`` file.

    Returns:
        The state dict, on the CPU.

    Raises:
        FileNotFoundError: If *path* does not exist.
        ValueError: If the file cannot be read as a checkpoint or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        msg = (
            f"Weights file '{path}' does not exist. Check the path, or pass "
            "weights=None (random init), 'imagenet', or a TorchGeo weights name."
        )
        raise FileNotFoundError(msg)
    try:
        if path.suffix == '.safetensors':
            content: object = safetensors.torch.load_file(path, device='cpu')
        else:
            content = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # any parse failure means the same thing to a user
        msg = (
            f"'{path}' is not a readable checkpoint ({_summary(err)}). "
            'Re-download or re-export it; a pickled nn.Module or a checkpoint '
            'holding custom objects is not accepted, save model.state_dict() '
            'with torch.save or safetensors instead.'
        )
        raise ValueError(msg) from err
    state = _unwrap(content)
    if not state:
        msg = (
            f"'{path}' holds no tensors. Expected a state dict, or one nested under "
            f'{" or ".join(repr(k) for k in _WRAPPER_KEYS)}.'
        )
        raise ValueError(msg)
    return state


def _summary(err: Exception) -> str:
    """One line saying why a file could not be read.

    torch's ``weights_only`` refusals span many lines of advice; the part starting
    ``Unsupported`` names the object or opcode that failed, which is what a user
    needs.

    Args:
        err: What reading raised.

    Returns:
        The exception type and the first sentence of its most telling line.
    """
    lines = [_ANSI.sub('', line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    telling = [
        line[line.find('Unsupported') :] for line in lines if 'Unsupported' in line
    ]
    detail = (telling or lines or [''])[0].split('. ')[0]
    return f'{type(err).__name__}: {detail}'


def _unwrap(content: object) -> dict[str, Tensor]:
    """Descend through wrapper keys and keep the tensor entries.

    Args:
        content: What the file held.

    Returns:
        The tensors by key (empty if there are none).
    """
    while isinstance(content, Mapping):
        nested = [
            content[k] for k in _WRAPPER_KEYS if isinstance(content.get(k), Mapping)
        ]
        if not nested:
            break
        content = nested[0]
    if not isinstance(content, Mapping):
        return {}
    return {str(k): v for k, v in content.items() if isinstance(v, Tensor)}
