"""Scene classifier: a PEFT backbone followed by a linear head."""

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.models._api import WeightsEnum

from ..backbones import TimmBackbone
from ..peft import (
    ParameterReport,
    PEFTConfig,
    adapter_nbytes,
    apply_peft,
    keep_frozen_batchnorm_eval,
)
from ..peft import parameter_report as _parameter_report


class PEFTClassifier(nn.Module):
    """A pretrained backbone adapted with a PEFT method, plus a linear head.

    The backbone's own pooling (and, for ConvNeXt, its pretrained pre-logits norm) is
    kept; only the final linear layer is new. Weights are loaded before the PEFT
    method is applied, so pretrained key names never change.

    Attributes:
        backbone: The (PEFT-wrapped) multiscale backbone.
        head: The linear classification head (always trainable).
        peft_config: The resolved PEFT configuration.
    """

    def __init__(
        self,
        backbone: str,
        *,
        num_classes: int,
        weights: WeightsEnum | str | bool | None = None,
        in_channels: int = 3,
        peft: PEFTConfig | str | Mapping[str, Any] | None = 'upetu',
        img_size: int | None = None,
        bands: Sequence[str] | None = None,
        grad_checkpointing: bool = False,
    ) -> None:
        """Initialize a new PEFTClassifier.

        Args:
            backbone: Name of a timm model, e.g. ``'convnext_base'``.
            num_classes: Number of output classes.
            weights: Pretrained weights: ``None`` (random), ``True``/``'imagenet'``,
                a TorchGeo weights enum (or its name) or a local file.
            in_channels: Number of input bands.
            peft: PEFT method name, a mapping of :class:`PEFTConfig` fields, or a
                config instance.
            img_size: Input size for backbones that need it (ViT, Swin).
            bands: Names of the input bands, e.g. ``['R', 'G', 'B', 'N']``, to
                adapt weights pretrained on other bands by name (see
                :class:`~geopeft.backbones.TimmBackbone`); None matches by position.
            grad_checkpointing: Activation checkpointing of the backbone's blocks
                (less training memory, one more forward pass; docs/benchmarks.md).

        Raises:
            ValueError: If *num_classes* is not positive.
        """
        super().__init__()
        if num_classes < 1:
            msg = f'num_classes must be >= 1, got {num_classes}'
            raise ValueError(msg)
        self.peft_config = PEFTConfig.from_any(peft)
        self.backbone = TimmBackbone(
            backbone,
            weights=weights,
            in_channels=in_channels,
            img_size=img_size,
            bands=bands,
            grad_checkpointing=grad_checkpointing,
        )
        apply_peft(self.backbone.model, self.peft_config, name=backbone)
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Compute class logits.

        Args:
            x: Images ``[B, C, H, W]``.

        Returns:
            Logits ``[B, num_classes]``.
        """
        return self.head(self.backbone.forward_pooled(x))

    def train(self, mode: bool = True) -> 'PEFTClassifier':
        """Set training mode, keeping frozen batch-norm layers in eval mode.

        A frozen backbone must not drift: batch-norm running statistics of layers
        whose affine parameters are frozen stay at their pretrained values.

        Args:
            mode: Training (True) or evaluation (False) mode.

        Returns:
            This module.
        """
        super().train(mode)
        if mode:
            keep_frozen_batchnorm_eval(self.backbone)
        return self

    def parameter_report(self) -> ParameterReport:
        """Count total and trainable parameters per part, and the adapter size.

        Returns:
            The report, with groups ``backbone`` and ``head``.
        """
        return _parameter_report(
            {'backbone': self.backbone, 'head': self.head},
            adapter_bytes=adapter_nbytes(self),
        )
