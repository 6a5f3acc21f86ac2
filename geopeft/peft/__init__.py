"""The PEFT engine: adapt a timm backbone by config, backbone-agnostically.

UPetu (EQAM quantization adapters + CAPM context-aware prompts) and the usual
baselines (full fine-tuning, linear probe, BitFit, fp32 adapter, LoRA through HF
``peft``, VPT-like prompts), a parameter report, and adapter-only state with
bit-packed Q-Linear codes.
"""

from .apply import adapted_batchnorms, apply_peft, keep_frozen_batchnorm_eval
from .capm import CAPM
from .config import METHODS, PEFTConfig
from .eqam import EQAM
from .qlinear import QLinear, lloyd_max_levels, pack_codes, unpack_codes
from .report import ParameterReport, parameter_report
from .state import (
    adapter_nbytes,
    adapter_state_dict,
    load_adapter,
    save_adapter,
    weights_fingerprint,
)

__all__ = (
    'CAPM',
    'EQAM',
    'METHODS',
    'PEFTConfig',
    'ParameterReport',
    'QLinear',
    'adapter_nbytes',
    'adapted_batchnorms',
    'adapter_state_dict',
    'apply_peft',
    'keep_frozen_batchnorm_eval',
    'lloyd_max_levels',
    'load_adapter',
    'weights_fingerprint',
    'pack_codes',
    'parameter_report',
    'save_adapter',
    'unpack_codes',
)
