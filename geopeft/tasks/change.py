"""Siamese PEFT change detection, as a TorchGeo task."""

from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor
from torchgeo.tasks import ChangeDetection
from torchvision.models._api import WeightsEnum

from ..models import build_change_model
from .metrics import CHANGE_SCORE_NAMES, ChangedClassScore
from .optim import SchedulerName
from .peft_task import PEFTTaskMixin


class PEFTChangeDetection(PEFTTaskMixin, ChangeDetection):
    """Bi-temporal change detection with a Siamese PEFT encoder.

    One pretrained backbone, frozen by the PEFT method, encodes both dates (one
    batch of ``2B``); its PEFT modules are shared by the dates unless
    ``per_date_adapters``. The two dates' features are fused per scale
    (``fusion``) and any SMP decoder (``model``) turns them into a change map.
    Accepts everything :class:`torchgeo.tasks.ChangeDetection` accepts and works
    with its datamodules (``LEVIRCDDataModule``, ``OSCDDataModule``) and with
    :class:`~geopeft.datamodules.ChangeFolderDataModule`.

    Besides TorchGeo's metrics it logs precision, recall, F1 and IoU of the
    changed class (``<stage>_ChangedF1`` etc., see
    :class:`~geopeft.tasks.metrics.ChangedClassScore`); model selection monitors
    ``val_ChangedF1`` by default (``monitor``).
    """

    ignore = ('weights', 'adapter')
    monitor = 'val_ChangedF1'
    mode = 'max'

    def __init__(
        self,
        model: str = 'upernet',
        backbone: str = 'convnext_base',
        weights: WeightsEnum | str | bool | None = None,
        in_channels: int = 3,
        task: Literal['binary', 'multiclass', 'multilabel'] = 'binary',
        num_classes: int | None = None,
        num_labels: int | None = None,
        labels: list[str] | None = None,
        num_filters: int = 3,
        pos_weight: Tensor | None = None,
        loss: Literal['ce', 'bce', 'jaccard', 'focal', 'dice'] = 'bce',
        class_weights: Tensor | Sequence[float] | None = None,
        ignore_index: int | None = None,
        lr: float = 1e-3,
        patience: int = 10,
        freeze_backbone: bool = False,
        freeze_decoder: bool = False,
        peft: str | dict[str, Any] | None = 'upetu',
        fusion: Literal['diff', 'absdiff', 'concat', 'concat+diff'] = 'diff',
        per_date_adapters: bool = False,
        adapter: str | None = None,
        img_size: int | None = None,
        bands: list[str] | None = None,
        output_stride: int | None = None,
        encoder_depth: int | None = None,
        decoder_kwargs: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        grad_checkpointing: bool = False,
        weight_decay: float = 0.05,
        scheduler: SchedulerName = 'plateau',
        warmup_epochs: int = 0,
        peft_lr: float | None = None,
        peft_weight_decay: float | None = None,
    ) -> None:
        """Initialize a new PEFTChangeDetection instance.

        Args:
            model: SMP architecture, one of
                :data:`~geopeft.models.smp_bridge.ARCHITECTURES`.
            backbone: timm backbone name.
            weights: Initial backbone weights: ``None``/``False`` (random),
                ``True``/``'imagenet'``, a TorchGeo weights enum or its name, or a
                local file.
            in_channels: Number of bands of each date.
            task: One of 'binary', 'multiclass', or 'multilabel'.
            num_classes: Number of classes (``task='multiclass'``; class 0 is no
                change).
            num_labels: Number of labels (``task='multilabel'``).
            labels: Class names.
            num_filters: Accepted for TorchGeo compatibility (only its ``fcn``).
            pos_weight: Weight of positive (changed) pixels for the 'bce' loss.
            loss: One of 'ce', 'bce', 'jaccard', 'focal', or 'dice'.
            class_weights: Per-class weights for the 'ce' loss.
            ignore_index: Class index ignored by loss and metrics.
            lr: Learning rate.
            patience: Patience of the plateau scheduler.
            freeze_backbone: Train decoder and head only (``peft='linear'``).
            freeze_decoder: Also freeze the decoder (head only).
            peft: PEFT method name or a mapping of
                :class:`~geopeft.peft.PEFTConfig` fields.
            fusion: Per-scale fusion of the dates' features: ``'diff'``
                (``f_B - f_A``), ``'absdiff'``, ``'concat'`` or ``'concat+diff'``.
            per_date_adapters: Separate PEFT modules for each date (the frozen
                weights stay shared).
            adapter: Optional adapter file loaded on top of the pretrained
                backbone.
            img_size: Input size for backbones that need it (ViT, Swin).
            bands: Names of each date's bands (band-aware first-layer weights).
            output_stride: Encoder output stride (None: the architecture's).
            encoder_depth: Levels the decoder takes (None: the architecture's).
            decoder_kwargs: Further SMP model arguments.
            model_kwargs: Further ``timm.create_model`` arguments.
            grad_checkpointing: Activation checkpointing of the backbone's blocks.
            weight_decay: AdamW weight decay.
            scheduler: ``'plateau'`` or ``'cosine'`` (with *warmup_epochs*).
            warmup_epochs: Linear warm-up epochs for the cosine schedule.
            peft_lr: Learning rate of the trainable backbone parameters (the PEFT
                modules, or every backbone weight under ``full``); None: 10 x
                ``lr`` for ``upetu``, ``eqam`` and ``capm`` (measured, see
                ``docs/accuracy.md``), ``lr`` for the other methods.
            peft_weight_decay: Weight decay of those parameters (prompts, gates,
                scales, biases and norms get none); None: ``weight_decay``.
        """
        self.adapter = adapter
        super().__init__(
            model=model,  # type: ignore[arg-type]
            backbone=backbone,
            weights=weights,
            in_channels=in_channels,
            task=task,
            num_classes=num_classes,
            num_labels=num_labels,
            labels=labels,
            num_filters=num_filters,
            pos_weight=pos_weight,
            loss=loss,
            class_weights=class_weights,
            ignore_index=ignore_index,
            lr=lr,
            patience=patience,
            freeze_backbone=freeze_backbone,
            freeze_decoder=freeze_decoder,
        )

    def configure_models(self) -> None:
        """Build the Siamese encoder, the fusion, the decoder and the head."""
        self.configure_dense_model(
            build_change_model,
            fusion=self.hparams['fusion'],
            per_date_adapters=self.hparams['per_date_adapters'],
        )

    def configure_metrics(self) -> None:
        """TorchGeo's metrics plus precision, recall, F1 and IoU of change."""
        super().configure_metrics()
        for collection in (self.train_metrics, self.val_metrics, self.test_metrics):
            collection.add_metrics(
                {
                    name: ChangedClassScore(
                        score,
                        task=self.hparams['task'],
                        ignore_index=self.hparams['ignore_index'],
                    )
                    for score, name in CHANGE_SCORE_NAMES.items()
                }
            )
