import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# One thread per test process: the tests' models and chips are tiny, so intra-op
# threads only add synchronisation (measured: the dense-model tests ran 11x faster
# with 1 thread than with 2 beside another job on 2 cores). Subprocesses (DDP, the
# benchmark workers) inherit it through OMP_NUM_THREADS.
os.environ.setdefault('OMP_NUM_THREADS', '1')
torch.set_num_threads(1)


@pytest.fixture(scope='session')
def scene_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny folder-per-class dataset: 3 classes x 8 RGB PNGs of 40 px.

    Class 0 is dark, class 1 bright, class 2 striped, so a model can learn it.
    """
    root = tmp_path_factory.mktemp('scenes')
    rng = np.random.default_rng(0)
    for label, name in enumerate(['dark', 'bright', 'striped']):
        folder = root / name
        folder.mkdir()
        for i in range(8):
            if label == 0:
                array = rng.integers(0, 60, (40, 40, 3))
            elif label == 1:
                array = rng.integers(190, 255, (40, 40, 3))
            else:
                array = np.zeros((40, 40, 3), dtype=np.int64)
                array[:, ::4] = 255
            Image.fromarray(array.astype(np.uint8)).save(folder / f'{name}_{i}.png')
    return root
