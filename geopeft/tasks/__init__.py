"""Lightning tasks: TorchGeo tasks whose backbones are PEFT-adapted."""

from .change import PEFTChangeDetection
from .classification import PEFTClassification
from .ktda import KTDASegmentation
from .metrics import ChangedClassScore
from .peft_task import PEFTTaskMixin
from .segmentation import PEFTSemanticSegmentation

__all__ = (
    'ChangedClassScore',
    'KTDASegmentation',
    'PEFTChangeDetection',
    'PEFTClassification',
    'PEFTSemanticSegmentation',
    'PEFTTaskMixin',
)
