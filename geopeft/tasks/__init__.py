"""Lightning tasks: TorchGeo tasks whose backbones are PEFT-adapted."""

from .classification import PEFTClassification

__all__ = ('PEFTClassification',)
