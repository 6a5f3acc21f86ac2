"""Scene classification with a PEFT backbone, as a TorchGeo task."""

from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor
from torchgeo.tasks import Classification
from torchvision.models._api import WeightsEnum

from ..models import PEFTClassifier
from .optim import SchedulerName
from .peft_task import PEFTTaskMixin


class PEFTClassification(PEFTTaskMixin, Classification):
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
        peft_lr: float | None = None,
        peft_weight_decay: float | None = None,
        bands: list[str] | None = None,
        grad_checkpointing: bool = False,
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
            peft_lr: Learning rate of the trainable backbone parameters (the PEFT
                modules, or every backbone weight under ``full``); None: 10 x
                ``lr`` for ``upetu``, ``eqam`` and ``capm`` (measured, see
                ``docs/accuracy.md``), ``lr`` for the other methods.
            peft_weight_decay: Weight decay of those parameters (prompts, gates,
                scales, biases and norms get none); None: ``weight_decay``.
            bands: Names of the *in_channels* input bands in channel order, e.g.
                ``['R', 'G', 'B', 'N']`` (NAIP) or OSCD's ``['B01', ..., 'B12']``:
                weights pretrained on other bands keep the filters of the bands
                that match by name, the others get the mean filter (see
                ``docs/bands.md``). None matches bands by position.
            grad_checkpointing: Activation checkpointing of the backbone's blocks
                (less training memory, one more forward pass).
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
            bands=hparams['bands'],
            grad_checkpointing=hparams['grad_checkpointing'],
        )
        self.load_adapter_file()
