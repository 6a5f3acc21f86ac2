"""Models: PEFT backbones assembled with task heads."""

from .classifier import PEFTClassifier

__all__ = ('PEFTClassifier',)
