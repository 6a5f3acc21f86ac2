"""Scene classification with a PEFT backbone, as a TorchGeo task."""

from collections.abc import Sequence
from typing import Any, Literal

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torchgeo.tasks import Classification
from torchvision.models._api import WeightsEnum

from ..models import PEFTClassifier
from ..peft import PEFTConfig, load_adapter
from .optim import SchedulerName, build_optimizer, trainable_parameters


class PEFTClassification(Classification):
    """Image classification whose backbone is adapted with a PEFT method.

    Accepts everything :class:`torchgeo.tasks.Classification` accepts, plus the PEFT
    configuration. ``freeze_backbone=True`` is TorchGeo's linear probe and is the same
    as ``peft='linear'``. Only trainable parameters reach the optimizer; frozen
    normalisation layers keep their pretrained statistics during training.
    """

    ignore = ('weights', 'adapter')

    def __init__(
        self,
        model: str = 'convnext_base',
        weights: WeightsEnum | str | bool | None = None,
        in_channels: int = 3,
        task: Literal['binary', 'multiclass', 'multilabel'] = 'multiclass',
        num_classes: int | None = None,
        num_labels: int | None = None,
        labels: list[str] | None = None,
        pos_weight: Tensor | None = None,
        loss: Literal['ce', 'bce', 'jaccard', 'focal', 'dice'] = 'ce',
        class_weights: Tensor | Sequence[float] | None = None,
        ignore_index: int | None = None,
        lr: float = 1e-3,
        patience: int = 10,
        freeze_backbone: bool = False,
        peft: str | dict[str, Any] | None = 'upetu',
        adapter: str | None = None,
        img_size: int | None = None,
        weight_decay: float = 0.05,
        scheduler: SchedulerName = 'plateau',
        warmup_epochs: int = 0,
    ) -> None:
        """Initialize a new PEFTClassification instance.

        Args:
            model: Name of the timm backbone, e.g. ``'convnext_base'``.
            weights: Initial backbone weights: ``None``/``False`` (random),
                ``True``/``'imagenet'`` (offline package when installed, else the
                timm hub), a TorchGeo weights enum or its name, or a local file.
            in_channels: Number of input bands.
            task: One of 'binary', 'multiclass', or 'multilabel'.
            num_classes: Number of classes (``task='multiclass'``).
            num_labels: Number of labels (``task='multilabel'``).
            labels: Class names.
            pos_weight: Weight of positive examples for the 'bce' loss.
            loss: One of 'ce', 'bce', 'jaccard', 'focal', or 'dice'.
            class_weights: Per-class weights for the 'ce' loss.
            ignore_index: Class index ignored by loss and metrics.
            lr: Learning rate.
            patience: Patience of the plateau scheduler.
            freeze_backbone: Linear probe; the same as ``peft='linear'``.
            peft: PEFT method name (``'upetu'``, ``'eqam'``, ``'capm'``, ``'lora'``,
                ``'adapter'``, ``'bitfit'``, ``'prompt'``, ``'linear'``, ``'full'``) or
                a mapping of :class:`~geopeft.peft.PEFTConfig` fields.
            adapter: Optional adapter file (from ``geopeft export-adapter``) loaded
                on top of the pretrained backbone.
            img_size: Input size for backbones that need it (ViT, Swin).
            weight_decay: AdamW weight decay.
            scheduler: ``'plateau'`` or ``'cosine'`` (with *warmup_epochs*).
            warmup_epochs: Linear warm-up epochs for the cosine schedule.
        """
        self.adapter = adapter
        super().__init__(
            model=model,
            weights=weights,
            in_channels=in_channels,
            task=task,
            num_classes=num_classes,
            num_labels=num_labels,
            labels=labels,
            pos_weight=pos_weight,
            loss=loss,
            class_weights=class_weights,
            ignore_index=ignore_index,
            lr=lr,
            patience=patience,
            freeze_backbone=freeze_backbone,
        )

    @property
    def peft_config(self) -> PEFTConfig:
        """The resolved PEFT configuration (``linear`` when freezing the backbone)."""
        if self.hparams['freeze_backbone']:
            return PEFTConfig.from_any('linear')
        return PEFTConfig.from_any(self.hparams['peft'])

    def configure_models(self) -> None:
        """Build the backbone, load its weights, apply PEFT and add the head."""
        hparams = self.hparams
        num_outputs = hparams['num_classes'] or hparams['num_labels'] or 1
        self.model = PEFTClassifier(
            hparams['model'],
            num_classes=num_outputs,
            weights=self.weights,
            in_channels=hparams['in_channels'],
            peft=self.peft_config,
            img_size=hparams['img_size'],
        )
        if self.adapter is not None:
            load_adapter(self.model, self.adapter)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check that the checkpoint's head fits this task before loading it.

        Args:
            checkpoint: The Lightning checkpoint being restored.

        Raises:
            ValueError: If the checkpoint's head has another number of outputs.
        """
        weight = checkpoint.get('state_dict', {}).get('model.head.weight')
        head = self.model.head
        if weight is not None and tuple(weight.shape) != tuple(head.weight.shape):
            msg = (
                f'The checkpoint has a {weight.shape[0]}-output head on '
                f'{weight.shape[1]} features, but this task was built with '
                f'{head.out_features} outputs on {head.in_features}: set '
                f'num_classes={weight.shape[0]} (and the same backbone) to resume '
                'it, or pass the checkpoint as weights=<path> to reuse only its '
                'backbone with a new head.'
            )
            raise ValueError(msg)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Build AdamW over the trainable parameters and the chosen schedule.

        Returns:
            Optimizer and learning-rate scheduler.
        """
        return build_optimizer(
            trainable_parameters(self),
            lr=self.hparams['lr'],
            weight_decay=self.hparams['weight_decay'],
            scheduler=self.hparams['scheduler'],
            patience=self.hparams['patience'],
            warmup_epochs=self.hparams['warmup_epochs'],
            max_epochs=self.trainer.max_epochs if self._trainer else None,
            monitor=self.monitor,
        )
