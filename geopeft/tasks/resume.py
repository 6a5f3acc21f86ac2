"""Random-number states kept in checkpoints, so that a resumed fit repeats itself.

Lightning restores the weights, the optimizer, the schedule and the loop
counters from a checkpoint, but not the random-number generators. Without them
a run resumed after a crash draws other augmentations (Kornia and TorchGeo draw
from torch's global generator), other DataLoader worker seeds and other dropout
masks than the uninterrupted run would have: it trains a different model. geopeft's
tasks write the generators' states into every checkpoint they save and put them
back when fitting resumes from one, so that a run killed at any point and resumed
from its last checkpoint ends with the same weights, bit for bit, as a run that
was never interrupted (on one process; under DDP each rank resumes from rank 0's
states, which is valid but not identical).
"""

import random
from typing import Any

import numpy as np
import torch

#: Checkpoint key of the random-number states.
RNG_KEY = 'geopeft_rng_states'


def rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators.

    Returns:
        A dict that :func:`restore_rng_states` takes back; CUDA states are
        included when CUDA is initialised.
    """
    states: dict[str, Any] = {
        'python': random.getstate(),
        'numpy': _numpy_state(),
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def _numpy_state() -> dict[str, Any]:
    """NumPy's legacy global state as tensors and numbers (no pickled arrays)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        'keys': torch.from_numpy(keys.astype(np.int64)),
        'pos': int(pos),
        'has_gauss': int(has_gauss),
        'gauss': float(gauss),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put the global generators back into saved states.

    Args:
        states: What :func:`rng_states` returned (possibly after a round trip
            through ``torch.save`` / ``torch.load(weights_only=True)``).
    """
    if 'python' in states:
        version, internal, gauss = states['python']
        random.setstate((version, tuple(internal), gauss))
    if 'numpy' in states:
        numpy = states['numpy']
        keys = np.asarray(numpy['keys'], dtype=np.int64).astype(np.uint32)
        np.random.set_state(
            ('MT19937', keys, numpy['pos'], numpy['has_gauss'], numpy['gauss'])
        )
    if 'torch' in states:
        torch.set_rng_state(torch.as_tensor(states['torch'], dtype=torch.uint8))
    cuda = states.get('cuda')
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
