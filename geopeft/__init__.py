"""geopeft: parameter-efficient fine-tuning of geospatial foundation models."""

import warnings

# Kornia (imported by TorchGeo) scripts a few kernels at import time, which newer
# PyTorch reports on every run; it is Kornia's to change, not the user's.
warnings.filterwarnings(
    'ignore',
    message='`torch.jit.script` is deprecated',
    category=FutureWarning,
)

__version__ = '0.1.0'
