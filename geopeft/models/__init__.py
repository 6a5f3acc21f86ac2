"""Models: PEFT backbones assembled with task heads, SMP decoders and fusion."""

from .change import FUSIONS, FeatureFusion, SiameseEncoder, build_change_model
from .classifier import PEFTClassifier
from .encoder import PEFTEncoder
from .segmentation import (
    build_peft_encoder,
    build_segmentation_model,
    dense_parameter_report,
)
from .smp_bridge import ARCHITECTURES, build_smp_model

__all__ = (
    'ARCHITECTURES',
    'FUSIONS',
    'FeatureFusion',
    'PEFTClassifier',
    'PEFTEncoder',
    'SiameseEncoder',
    'build_change_model',
    'build_peft_encoder',
    'build_segmentation_model',
    'build_smp_model',
    'dense_parameter_report',
)
