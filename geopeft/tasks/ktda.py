"""KTDA: semantic segmentation distilled from a frozen DINOv2 teacher."""

import inspect
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import Any, Literal, cast

import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torchgeo.tasks import SemanticSegmentation
from torchvision.models._api import WeightsEnum

from ..distill import DINOv2Teacher, build_ktda_model, distillation_loss
from ..distill.modulation import FMMKind
from .optim import SchedulerName, build_poly_optimizer
from .peft_task import PEFTTaskMixin

#: SemanticSegmentation arguments that KTDA fixes.
_FIXED: dict[str, Any] = {
    'model': 'upernet',
    'task': 'multiclass',
    'num_labels': None,
    'num_filters': 3,
    'pos_weight': None,
    'freeze_decoder': False,
}

#: How the distillation loss gets the student's aligned features.
DistillPass = Literal['reuse', 'second']


class KTDASegmentation(PEFTTaskMixin, SemanticSegmentation):
    """Semantic segmentation whose student is pulled towards a frozen DINOv2 teacher.

    The model is :class:`~geopeft.distill.KTDAModel`: any geopeft backbone as the
    student (fully trained by default, as in the reference; any PEFT method via
    ``peft``), feature alignment (FAM), pyramid neck, feature modulation (FMM),
    UPerNet head and an auxiliary FCN head. Training minimises::

        CE(main) + aux_weight * CE(aux) + distill_weight * L_distill

    where ``L_distill`` is :func:`~geopeft.distill.distillation_loss` between the
    FAM outputs and the teacher's tapped features (``alpha`` KL over the width
    axis + ``1 - alpha`` MSE, mean over levels).

    The teacher is built when fitting starts, runs under ``torch.no_grad`` (in
    bf16 on an accelerator, see ``teacher_precision``), and is not a sub-module:
    it is in neither the hyper-parameters nor the checkpoints, and validation,
    test and prediction never build it. ``distill_weight=0`` trains without it.

    ``distill_pass='reuse'`` (the default) computes ``L_distill`` from the FAM
    outputs of the pass that gives the logits; ``'second'`` runs the student
    backbone and FAM again as the reference does. The two differ only by fresh
    drop-path draws, while the second pass keeps another student backbone's
    activations for backward and runs it forward and backward again: 1.17x the
    peak training memory of the reference (ConvNeXt-B, 256 px, batch 2, CPU; its
    step time is dominated by the FMM there, ``geopeft bench ktda``), so reuse is
    the default.

    Model selection: ``monitor='val_AverageJaccardIndex'`` (mIoU), maximised.
    """

    monitor = 'val_AverageJaccardIndex'
    mode = 'max'
    ignore = ('weights', 'adapter', 'teacher_weights')

    def __init__(
        self,
        backbone: str = 'convnext_base',
        weights: WeightsEnum | str | bool | None = None,
        in_channels: int = 3,
        num_classes: int = 2,
        labels: list[str] | None = None,
        loss: Literal['ce', 'jaccard', 'focal', 'dice'] = 'ce',
        class_weights: Tensor | Sequence[float] | None = None,
        ignore_index: int | None = 255,
        teacher: str = 'dinov2_vitb14',
        teacher_weights: WeightsEnum | str | bool | None = None,
        teacher_taps: list[int] | None = None,
        teacher_kwargs: dict[str, Any] | None = None,
        teacher_precision: Literal['auto', 'bf16', '32'] = 'auto',
        pad: bool = True,
        distill_weight: float = 1.0,
        alpha: float = 0.5,
        temperature: float = 1.0,
        distill_pass: DistillPass = 'reuse',
        aux_weight: float = 0.4,
        fmm: FMMKind = 'vit',
        fmm_depth: int = 4,
        fmm_heads: int = 8,
        head_channels: int = 512,
        aux_channels: int = 256,
        stage_norm: bool = True,
        out_indices: list[int] | None = None,
        peft: str | dict[str, Any] | None = 'full',
        freeze_backbone: bool = False,
        adapter: str | None = None,
        img_size: int | None = None,
        bands: list[str] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        grad_checkpointing: bool = False,
        lr: float = 6e-4,
        weight_decay: float = 0.01,
        scheduler: SchedulerName | Literal['poly'] = 'poly',
        warmup_iters: int = 1500,
        warmup_ratio: float = 1e-3,
        max_iters: int | None = None,
        power: float = 0.9,
        patience: int = 10,
        warmup_epochs: int = 0,
    ) -> None:
        """Initialize a new KTDASegmentation instance.

        Args:
            backbone: timm model name of the student (reference:
                ``'convnext_base'`` with ``model_kwargs={'drop_path_rate': 0.4}``).
            weights: Student weights: None (random), True/``'imagenet'``, a
                TorchGeo weights enum or its name, or a local file.
            in_channels: Input bands.
            num_classes: Number of classes.
            labels: Class names (for per-class metrics).
            loss: Segmentation loss, one of 'ce', 'jaccard', 'focal' or 'dice'.
            class_weights: Per-class weights of the 'ce' loss.
            ignore_index: Mask value ignored by losses and metrics (255: e.g.
                L8-Biome fill pixels).
            teacher: DINOv2 size, see :data:`~geopeft.distill.TEACHERS`.
            teacher_weights: The teacher's weights: True/``'imagenet'`` (timm's
                DINOv2 from its hub), a TorchGeo DINOv2 enum or its name, or a local
                file. None gives a random teacher (for tests only; a warning says
                so). Not saved in the hyper-parameters.
            teacher_taps: Teacher blocks tapped (1-based); default the size's.
            teacher_kwargs: The teacher's ``timm.create_model`` arguments (tests).
            teacher_precision: ``'auto'`` (bf16 on an accelerator, fp32 on the
                CPU), ``'bf16'`` or ``'32'`` (fp32 even inside a bf16-mixed
                trainer).
            pad: Zero-pad inputs to a multiple of the teacher's patch size.
            distill_weight: Weight of the distillation loss; 0 trains without a
                teacher (the 'no distillation' ablation).
            alpha: Weight of the KL term in the distillation loss (1 KL only, 0
                MSE only).
            temperature: Softmax temperature of the KL term.
            distill_pass: ``'reuse'`` the training pass's FAM outputs, or run the
                student a ``'second'`` time as the reference does.
            aux_weight: Weight of the auxiliary head's loss; 0 builds no
                auxiliary head.
            fmm: FMM variant: ``'vit'``, ``'mlp'`` or ``'none'`` (FAM only).
            fmm_depth: ViT blocks per pyramid level (reference 4).
            fmm_heads: FMM attention heads.
            head_channels: UPerNet width (reference 512).
            aux_channels: Auxiliary FCN width (reference 256).
            stage_norm: LayerNorm on each student stage output.
            out_indices: Student feature levels, one per teacher tap; default the
                last ones.
            peft: PEFT method or config of the student (``'full'``: all of it
                trains, the reference; ``'upetu'`` etc.: a PEFT student).
            freeze_backbone: Freeze the student backbone (``peft='linear'``).
            adapter: Optional adapter file loaded into the student.
            img_size: Input size for students that need one (ViT, Swin).
            bands: Input band names (band-aware first layers).
            model_kwargs: Further ``timm.create_model`` arguments of the student.
            grad_checkpointing: Activation checkpointing of the student's blocks.
            lr: Peak learning rate (reference 6e-4).
            weight_decay: AdamW weight decay of non-norm parameters (reference
                0.01; norms get none).
            scheduler: ``'poly'`` (reference: linear warm-up, then poly decay,
                stepped every iteration), or ``'plateau'``/``'cosine'`` per epoch.
            warmup_iters: Warm-up iterations of the poly schedule.
            warmup_ratio: Warm-up start as a fraction of *lr*.
            max_iters: Iterations until the poly rate reaches 0; None: the
                trainer's total steps.
            power: Poly power.
            patience: Patience of the plateau scheduler.
            warmup_epochs: Warm-up epochs of the cosine scheduler.

        Raises:
            ValueError: For an unknown teacher, backbone or PEFT method, mismatched
                student levels and teacher taps, or an invalid option.
        """
        if not 0 <= alpha <= 1:
            msg = f'alpha must be in [0, 1] (1: KL only, 0: MSE only), got {alpha}'
            raise ValueError(msg)
        if temperature <= 0:
            msg = f'temperature must be > 0, got {temperature}'
            raise ValueError(msg)
        if distill_pass not in ('reuse', 'second'):
            msg = f"distill_pass must be 'reuse' or 'second', not {distill_pass!r}"
            raise ValueError(msg)
        if teacher_precision not in ('auto', 'bf16', '32'):
            msg = (
                "teacher_precision must be 'auto', 'bf16' or '32', not "
                f'{teacher_precision!r}'
            )
            raise ValueError(msg)
        self.adapter = adapter
        self.teacher_weights = teacher_weights
        # Not a sub-module: never in state_dict, hparams, DDP or device moves.
        self.__dict__['_teacher'] = None
        super().__init__(
            model=_FIXED['model'],
            backbone=backbone,
            weights=weights,
            in_channels=in_channels,
            task=_FIXED['task'],
            num_classes=num_classes,
            labels=labels,
            loss=loss,
            class_weights=class_weights,
            ignore_index=ignore_index,
            lr=lr,
            patience=patience,
            freeze_backbone=freeze_backbone,
        )

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Sequence[str] | str | None = None,
        frame: FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Save the hyper-parameters, plus the parent's fixed ones.

        LightningCLI gives a task the arguments of its own signature only, so the
        :class:`~torchgeo.tasks.SemanticSegmentation` arguments that KTDA fixes
        (``task``, ``model``, ...) are added here for the parent's methods.
        """
        frame = frame or cast(FrameType, inspect.currentframe()).f_back
        super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)
        for key, value in _FIXED.items():
            self.hparams.setdefault(key, value)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class; leave out the fixed parent arguments.

        LightningCLI passes a checkpoint's hyper-parameters back as arguments,
        which ``__init__`` does not take for the fixed ones.

        Args:
            checkpoint: The checkpoint being written.
        """
        super().on_save_checkpoint(checkpoint)
        saved = checkpoint.get('hyper_parameters')
        if saved is not None:
            checkpoint['hyper_parameters'] = {
                key: value for key, value in saved.items() if key not in _FIXED
            }

    def configure_models(self) -> None:
        """Build the student model (the teacher is built when fitting starts)."""
        hparams = self.hparams
        self.model = build_ktda_model(
            hparams['backbone'],
            num_classes=hparams['num_classes'],
            weights=self.weights,
            in_channels=hparams['in_channels'],
            peft=self.peft_config,
            teacher=hparams['teacher'],
            teacher_taps=hparams['teacher_taps'],
            teacher_kwargs=hparams['teacher_kwargs'],
            pad=hparams['pad'],
            out_indices=hparams['out_indices'],
            img_size=hparams['img_size'],
            bands=hparams['bands'],
            grad_checkpointing=hparams['grad_checkpointing'],
            model_kwargs=hparams['model_kwargs'],
            stage_norm=hparams['stage_norm'],
            fmm=hparams['fmm'],
            fmm_depth=hparams['fmm_depth'],
            fmm_heads=hparams['fmm_heads'],
            head_channels=hparams['head_channels'],
            aux_channels=hparams['aux_channels'],
            aux_level=2 if hparams['aux_weight'] > 0 else None,
        )
        self.load_adapter_file()

    @property
    def teacher(self) -> DINOv2Teacher | None:
        """The teacher, once fitting has built it (None before, or without one)."""
        return self.__dict__['_teacher']

    def build_teacher(self) -> DINOv2Teacher:
        """Build the frozen teacher on the task's device (once).

        Returns:
            The teacher.
        """
        teacher = self.__dict__['_teacher']
        if teacher is None:
            hparams = self.hparams
            if self.teacher_weights is None or self.teacher_weights is False:
                warnings.warn(
                    'KTDASegmentation has no teacher_weights: distilling from a '
                    'randomly initialised teacher, which only makes sense in tests. '
                    "Pass teacher_weights=True (timm's DINOv2), a TorchGeo DINOv2 "
                    'weights name, or a local file.',
                    UserWarning,
                    stacklevel=2,
                )
            teacher = DINOv2Teacher(
                hparams['teacher'],
                weights=self.teacher_weights,
                in_channels=hparams['in_channels'],
                taps=hparams['teacher_taps'],
                pad=hparams['pad'],
                bands=hparams['bands'],
                model_kwargs=hparams['teacher_kwargs'],
            )
            self.__dict__['_teacher'] = teacher
        return teacher.to(self.device)

    def on_fit_start(self) -> None:
        """Build the teacher (unless distillation is off)."""
        if self.hparams['distill_weight'] > 0:
            self.build_teacher()

    def teacher_features(self, x: Tensor) -> list[Tensor]:
        """The teacher's tapped features of a batch, in fp32, without gradients.

        Args:
            x: Normalised images ``[B, C, H, W]``.

        Returns:
            One ``[B, D, S_h, S_w]`` map per tap.
        """
        teacher = self.build_teacher()
        precision = self.hparams['teacher_precision']
        bf16 = precision == 'bf16' or (precision == 'auto' and x.device.type != 'cpu')
        # fp32 disables any autocast around the step (e.g. bf16-mixed training).
        context = torch.autocast(
            device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16
        )
        with torch.no_grad(), context:
            features = teacher(x)
        return [f.float() for f in features]

    def training_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the segmentation, auxiliary and distillation losses.

        Args:
            batch: The output of the DataLoader (``image``, ``mask``).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The total loss.
        """
        x = batch['image']
        y = batch['mask']
        if y.ndim == 4:
            y = y.squeeze(1)
        batch_size = x.shape[0]
        out = self.model.forward_train(x)
        loss = self.criterion(out.logits, y)
        self.log('train_loss_seg', loss, batch_size=batch_size)
        if out.aux_logits is not None:
            aux = self.criterion(out.aux_logits, y)
            self.log('train_loss_aux', aux, batch_size=batch_size)
            loss = loss + self.hparams['aux_weight'] * aux
        if self.hparams['distill_weight'] > 0:
            aligned = (
                out.aligned
                if self.hparams['distill_pass'] == 'reuse'
                else self.model.align(x)
            )
            distill = distillation_loss(
                aligned,
                self.teacher_features(x),
                temperature=self.hparams['temperature'],
                alpha=self.hparams['alpha'],
            )
            self.log('train_loss_distill', distill, batch_size=batch_size)
            loss = loss + self.hparams['distill_weight'] * distill
        self.train_metrics(out.logits, y)
        self.log('train_loss', loss, batch_size=batch_size)
        return loss

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW (no decay on norms) with warm-up + poly per iteration by default.

        Returns:
            Optimizer and learning-rate scheduler.
        """
        hparams = self.hparams
        if hparams['scheduler'] != 'poly':
            return super().configure_optimizers()
        max_iters = hparams['max_iters']
        if max_iters is None:
            max_iters = int(self.trainer.estimated_stepping_batches)
        return build_poly_optimizer(
            self,
            lr=hparams['lr'],
            weight_decay=hparams['weight_decay'],
            max_iters=max_iters,
            warmup_iters=min(hparams['warmup_iters'], max_iters),
            warmup_ratio=hparams['warmup_ratio'],
            power=hparams['power'],
        )

    def _is_head_key(self, key: str) -> bool:
        """Tell whether a state-dict key belongs to a classifier."""
        return key.startswith(
            ('model.decode_head.classifier.', 'model.aux_head.classifier.')
        )
