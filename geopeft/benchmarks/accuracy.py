"""Accuracy side by side with the anchor: geopeft's methods vs plain TorchGeo.

:func:`run_accuracy` trains every row of a table on the same folds, backbone,
pretrained weights, data pipeline, schedule and seeds, and scores each run on its
held-out fold:

* geopeft rows: a PEFT method (``upetu``, ``linear``, ``full``, any name of the
  PEFT table, optionally with options: ``upetu:peft_lr=3e-3,hidden=32``) in
  geopeft's task (:class:`~geopeft.tasks.PEFTChangeDetection`,
  :class:`~geopeft.tasks.PEFTSemanticSegmentation`,
  :class:`~geopeft.tasks.PEFTClassification`);
* anchor rows, ``torchgeo-full`` and ``torchgeo-frozen``: TorchGeo's own task
  (:class:`torchgeo.tasks.ChangeDetection` with ``model='fcsiamdiff'``,
  :class:`torchgeo.tasks.SemanticSegmentation` with ``model='unet'``,
  :class:`torchgeo.tasks.Classification`) with ``freeze_backbone`` false / true,
  its encoder ``tu-<backbone>`` (SMP's timm encoder) given the same pretrained
  weights that TorchGeo's ``weights=True`` would load (ImageNet), here from the
  same source as the geopeft rows, so that no hub is needed.

Every row gets the same schedule (:class:`SharedSchedule`: linear warm-up then
cosine to zero, per step, replacing whatever the task configured) and is scored
on the last epoch by the same :class:`FoldScorer` (pixels or images of the test
fold pooled), so the task's own metrics play no part. Runs go fold by fold, seed
by seed, all rows of a fold and seed before the next; each finished run is
appended to ``<out_dir>/runs.jsonl`` and a rerun with the same settings skips the
runs already there.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import (
    Callback,
    LightningDataModule,
    LightningModule,
    Trainer,
    seed_everything,
)
from lightning.pytorch.core.optimizer import LRSchedulerConfig
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from ..peft import METHODS as PEFT_METHODS
from ..peft import PEFTConfig
from ..suggest import did_you_mean
from .methods import ALIASES
from .methods import METHODS as BENCHMARK_METHODS
from .runs import quiet_lightning, release_memory, torch_threads

TaskName = Literal['change', 'segmentation', 'classification']

#: The anchor rows: plain TorchGeo with ``freeze_backbone`` false / true.
ANCHORS = {'torchgeo-full': False, 'torchgeo-frozen': True}
#: The row every difference is taken to.
REFERENCE = 'torchgeo-full'
#: Loss options every row may set after ``:``, anchors included (TorchGeo's own
#: ``loss`` and ``class_weights`` arguments; class weights join with ``+``).
LOSS_OPTIONS = ('loss', 'class_weights')
#: Losses a row may name (TorchGeo's; ``bce`` for one-output binary tasks).
LOSSES = ('ce', 'bce', 'jaccard', 'focal', 'dice')
#: Task options a geopeft row may set after ``:`` (besides PEFT config fields).
TASK_OPTIONS = ('lr', 'peft_lr', 'peft_weight_decay', 'weight_decay', *LOSS_OPTIONS)
#: Options of a ``ktda`` row (arguments of :class:`~geopeft.tasks.KTDASegmentation`).
KTDA_OPTIONS = (
    'distill_weight',
    'alpha',
    'temperature',
    'aux_weight',
    'fmm',
    'fmm_depth',
    'fmm_heads',
    'head_channels',
    'aux_channels',
    'teacher_taps',
)
#: Task options of a ``ktda`` row (it has no PEFT modules, so no ``peft_*``).
KTDA_TASK_OPTIONS = ('lr', 'weight_decay', *LOSS_OPTIONS)
#: A run that predicts positives on less than this fraction of the labelled
#: positive share is flagged as severely under-predicting (near a collapse).
UNDER_PREDICTED = 0.2
#: Default rows.
DEFAULT_METHODS = ('torchgeo-full', 'torchgeo-frozen', 'full', 'linear', 'upetu')

Progress = Callable[[str], None]


#: Settings added later, with the default that leaves them out of the run key.
_LATER_SETTINGS: dict[str, Any] = {
    'label_column': 'class',
    'teacher': 'dinov2_vits14',
    'teacher_weights': None,
}


@dataclass(frozen=True)
class AccuracyRow:
    """One row of the table: a geopeft method (with options) or an anchor.

    Attributes:
        name: The spec as given, e.g. ``'upetu'``, ``'upetu:peft_lr=0.003'``,
            ``'torchgeo-full'``.
        peft: The PEFT config of a geopeft row (None for an anchor).
        task_options: Task arguments set by the spec (``peft_lr``, ``loss`` ...).
        freeze_backbone: For an anchor: TorchGeo's ``freeze_backbone``.
        ktda: Whether the row is a KTDA student (segmentation only).
        ktda_options: Its :data:`KTDA_OPTIONS` (``distill_weight`` ...).
    """

    name: str
    peft: PEFTConfig | None = None
    task_options: tuple[tuple[str, Any], ...] = ()
    freeze_backbone: bool = False
    ktda: bool = False
    ktda_options: tuple[tuple[str, Any], ...] = ()

    @property
    def is_anchor(self) -> bool:
        """Whether the row is plain TorchGeo."""
        return self.peft is None


def _parse_value(text: str) -> Any:
    """Read an option value: bool, int, float, a list of names, or a string."""
    lowered = text.lower()
    if lowered in ('true', 'false'):
        return lowered == 'true'
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.split('+') if '+' in text else text


def parse_row(spec: str) -> AccuracyRow:
    """Parse a row spec: an anchor name, or ``method[:key=value,...]``.

    The method is a name of the PEFT table (:data:`geopeft.peft.METHODS`) or of the
    benchmark table (``upetu-4bit``...), or ``ktda`` (a fully trained KTDA student
    distilled from the ``--teacher``; segmentation only). Keys are fields of
    :class:`~geopeft.peft.PEFTConfig` (``hidden``, ``bits``, ``adapt_batchnorm``
    ...), task options (:data:`TASK_OPTIONS`), or for ``ktda`` its options
    (:data:`KTDA_OPTIONS`, e.g. ``ktda:distill_weight=0`` for the student without
    its teacher; lists join with ``+``: ``teacher_taps=3+6+9+12``). Every row,
    the anchors included, takes :data:`LOSS_OPTIONS`
    (``torchgeo-full:loss=dice``, ``upetu:class_weights=1+4``).

    Args:
        spec: The row spec.

    Returns:
        The row.

    Raises:
        ValueError: For an unknown method or option, naming the valid ones.
    """
    spec = spec.strip()
    base, _, options_text = spec.partition(':')
    if base in ANCHORS:
        anchor_options = _parse_options(spec, options_text, LOSS_OPTIONS)
        return AccuracyRow(
            spec,
            task_options=tuple(sorted(anchor_options.items())),
            freeze_backbone=ANCHORS[base],
        )
    known = [*ANCHORS, *PEFT_METHODS, *BENCHMARK_METHODS, 'ktda']
    key = ALIASES.get(base, base)
    if base == 'ktda':
        peft = {'method': 'full'}
    elif key in BENCHMARK_METHODS:
        peft = BENCHMARK_METHODS[key].peft.to_dict()
    elif base in PEFT_METHODS:
        peft = {'method': base}
    else:
        msg = (
            f'Unknown method "{base}".{did_you_mean(base, known)} Choose from: '
            f'{", ".join(dict.fromkeys(known))} (methods take options as '
            '"upetu:peft_lr=0.003,hidden=32").'
        )
        raise ValueError(msg)
    # A ktda row's student is fully trained: it takes KTDA's options, no PEFT ones.
    ktda = base == 'ktda'
    fields = (
        ()
        if ktda
        else tuple(f.name for f in dataclasses.fields(PEFTConfig) if f.name != 'method')
    )
    task_names = KTDA_TASK_OPTIONS if ktda else TASK_OPTIONS
    extra = KTDA_OPTIONS if ktda else ()
    options = _parse_options(spec, options_text, (*task_names, *extra, *fields))
    task_options = {k: v for k, v in options.items() if k in task_names}
    ktda_options = {k: v for k, v in options.items() if k in extra}
    peft.update({k: v for k, v in options.items() if k in fields})
    return AccuracyRow(
        spec,
        peft=PEFTConfig.from_any(peft),
        task_options=tuple(sorted(task_options.items())),
        ktda=ktda,
        ktda_options=tuple(sorted(ktda_options.items())),
    )


def _parse_options(spec: str, text: str, valid: Sequence[str]) -> dict[str, Any]:
    """Read the ``key=value,...`` options of a row spec.

    Args:
        spec: The whole spec, for messages.
        text: Its part after ``:``.
        valid: The option names the row takes.

    Returns:
        Option name -> value: floats for rates and decays, a loss name, a tuple
        of floats for ``class_weights``, a list of integers for ``teacher_taps``,
        else bools, numbers or strings.

    Raises:
        ValueError: For an option that is not ``key=value``, not valid for the
            row (naming the valid ones), or an unknown loss.
    """
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(','))):
        name, sep, value = item.partition('=')
        if not sep:
            msg = f'option "{item}" of row "{spec}" must be key=value'
            raise ValueError(msg)
        if name not in valid:
            names = sorted(valid)
            msg = (
                f'Unknown option "{name}" in row "{spec}".'
                f'{did_you_mean(name, names)} Valid options: {", ".join(names)}.'
            )
            raise ValueError(msg)
        parsed = _parse_value(value)
        if name == 'loss':
            if value not in LOSSES:
                msg = (
                    f'Unknown loss "{value}" in row "{spec}".'
                    f'{did_you_mean(value, LOSSES)} Choose from: {", ".join(LOSSES)}.'
                )
                raise ValueError(msg)
            parsed = value
        elif name == 'class_weights':
            items = parsed if isinstance(parsed, list) else [parsed]
            parsed = tuple(float(v) for v in items)
        elif name == 'teacher_taps':
            parsed = [
                int(v) for v in (parsed if isinstance(parsed, list) else [parsed])
            ]
        elif name in TASK_OPTIONS:
            parsed = float(value)
        options[name] = parsed
    return options


def parse_rows(specs: str | Sequence[str]) -> list[AccuracyRow]:
    """Parse row specs (a list, or one comma-free string per row).

    Args:
        specs: Row specs.

    Returns:
        The rows, each once, in the order given.

    Raises:
        ValueError: For an unknown row, or none.
    """
    if isinstance(specs, str):
        specs = specs.split()
    rows = list({row.name: row for row in map(parse_row, specs)}.values())
    if not rows:
        msg = 'give at least one method'
        raise ValueError(msg)
    return rows


@dataclass
class AccuracySettings:
    """What every row of one accuracy benchmark shares.

    Attributes:
        task: ``'change'``, ``'segmentation'`` or ``'classification'``.
        root: Change: the ``A``/``B``/``label`` folder. Classification: the
            folder with one folder per class. Segmentation: unused.
        image: Segmentation: the image raster.
        labels: Segmentation: the label raster or vector file.
        backbone: timm backbone name.
        weights: ``'imagenet'`` or None (random).
        arch: geopeft's SMP architecture for dense tasks (the anchor uses TorchGeo's
            ``fcsiamdiff`` / ``unet``, both U-Nets).
        folds: Folds of the cross-validation.
        fold_seed: Seed of the deal into folds (the same for every row and seed).
        seeds: Training seeds.
        epochs: Training epochs.
        batch_size: Mini-batch size.
        patch_size: Training crop (dense tasks) or image size (classification).
        train_repeats: Visits of each training item per epoch (dense tasks).
        lr: Base learning rate of every row.
        weight_decay: AdamW weight decay of every row (TorchGeo's own AdamW uses
            torch's default 0.01; geopeft rows get this value).
        warmup: Fraction of the steps spent in the linear warm-up.
        augment: Change augmentation preset (``None``: the data module's
            default; the same for every row).
        block_size: Segmentation: side of the spatial blocks dealt into folds,
            in pixels (``None``: twice the patch size).
        num_classes: Segmentation classes (2: binary, scored on class 1).
        ignore_index: Segmentation label value left out of loss and scores.
        label_column: Segmentation with vector labels: the class column, or
            None when every polygon is class 1.
        teacher: ``ktda`` rows: the DINOv2 teacher's size.
        teacher_weights: ``ktda`` rows: the teacher's weights (a local file,
            ``'imagenet'`` for timm's hub, or a TorchGeo DINOv2 weights name).
        accelerator: Lightning accelerator.
        precision: Lightning precision.
        threads: torch CPU threads (None: torch's default).
        limit_train_batches: Training batches per epoch (None: all).
        out_dir: Where runs are kept.
    """

    task: TaskName = 'change'
    root: str | None = None
    image: str | None = None
    labels: str | None = None
    backbone: str = 'efficientnet_lite0'
    weights: str | None = 'imagenet'
    arch: str = 'unet'
    folds: int = 4
    fold_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 30
    batch_size: int = 4
    patch_size: int = 128
    train_repeats: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    augment: str | None = None
    block_size: int | None = None
    num_classes: int = 2
    ignore_index: int | None = None
    label_column: str | None = 'class'
    teacher: str = 'dinov2_vits14'
    teacher_weights: str | None = None
    accelerator: str = 'auto'
    precision: str = '32-true'
    threads: int | None = None
    limit_train_batches: int | None = None
    out_dir: str = 'outputs/bench_accuracy'

    def key(self) -> str:
        """A hash of the settings that change results (not where they go)."""
        values = dataclasses.asdict(self)
        for name in ('seeds', 'out_dir', 'threads', 'accelerator'):
            values.pop(name)
        # Settings added after runs were recorded join the key only when set,
        # so that the runs kept by earlier versions still resume.
        for name, default in _LATER_SETTINGS.items():
            if values[name] == default:
                values.pop(name)
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def score_name(self) -> str:
        """The main score: ``f1`` (dense tasks) or ``accuracy``."""
        return 'accuracy' if self.task == 'classification' else 'f1'


class SharedSchedule(Callback):
    """Give every row the same learning-rate schedule, whatever its task set.

    At the start of training the optimizer's schedulers are replaced by one
    :class:`~torch.optim.lr_scheduler.LambdaLR` stepped every optimizer step: a
    linear warm-up over *warmup* of the steps, then a cosine decay to zero. Each
    parameter group keeps its own base rate (e.g. geopeft's ``peft_lr``).
    """

    def __init__(self, warmup: float) -> None:
        """Initialize a new SharedSchedule instance.

        Args:
            warmup: Fraction of the steps spent warming up, in ``[0, 1)``.
        """
        self.warmup = warmup

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Replace the schedulers of the trainer's optimizers."""
        total = max(1, int(trainer.estimated_stepping_batches))
        warm = int(self.warmup * total)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        trainer.strategy.lr_scheduler_configs = [
            LRSchedulerConfig(LambdaLR(optimizer, factor), interval='step')
            for optimizer in trainer.optimizers
        ]


def _as_labels(mask: Tensor) -> Tensor:
    """Drop the channel axis of a ``[B, 1, H, W]`` mask."""
    return mask[:, 0] if mask.ndim == 4 else mask


def _predict(logits: Tensor) -> Tensor:
    """Class per pixel or image: sigmoid > 0.5 for one output, else arg-max."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


class FoldScorer(Callback):
    """Score a model on the test fold the same way for every row.

    Counts, over every test pixel (dense tasks) or image (classification), the
    true positives, false positives and false negatives of each class, from the
    model's own forward pass on the test batch as the data module prepared it.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        """Initialize a new FoldScorer instance.

        Args:
            num_classes: Number of classes (2 for binary tasks).
            ignore_index: Label value not scored.
        """
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add the batch to the confusion matrix."""
        with torch.no_grad():
            logits = pl_module(batch['image']).float()
        prediction = _predict(logits).cpu().reshape(-1)
        target = batch['label'] if 'label' in batch else _as_labels(batch['mask'])
        target = target.long().cpu().reshape(-1)
        keep = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        keep &= (target >= 0) & (target < self.num_classes)
        index = target[keep] * self.num_classes + prediction[keep]
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def scores(self) -> dict[str, float]:
        """Scores of the test fold.

        Binary tasks: F1, IoU, precision and recall of class 1 (changed, or the
        foreground). More classes: their macro means (``f1`` is the macro F1,
        ``iou`` the mean IoU). Always ``accuracy`` (overall) and ``predicted``,
        the share of items predicted as class 1 or more (0 for a collapsed
        model that predicts only the background), and ``actual``, the share
        labelled so.

        Returns:
            Score name -> value.
        """
        confusion = self.confusion.double()
        true_positive = confusion.diag()
        predicted = confusion.sum(0)
        actual = confusion.sum(1)
        precision = true_positive / predicted.clamp(min=1)
        recall = true_positive / actual.clamp(min=1)
        f1 = 2 * true_positive / (predicted + actual).clamp(min=1)
        iou = true_positive / (predicted + actual - true_positive).clamp(min=1)
        classes = [1] if self.num_classes == 2 else list(range(self.num_classes))
        total = confusion.sum().clamp(min=1)
        return {
            'f1': float(f1[classes].mean()),
            'iou': float(iou[classes].mean()),
            'precision': float(precision[classes].mean()),
            'recall': float(recall[classes].mean()),
            'accuracy': float(true_positive.sum() / total),
            'predicted': float(predicted[1:].sum() / total),
            'actual': float(actual[1:].sum() / total),
        }


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """Trainable and total parameters of a task's model.

    Args:
        module: The task.

    Returns:
        ``(trainable, total)``.
    """
    parameters = list(module.parameters())
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    return trainable, sum(p.numel() for p in parameters)


@dataclass
class AccuracyRun:
    """One row trained on one fold with one seed, and its scores.

    Attributes:
        row: The row name.
        fold: The test fold.
        seed: The training seed.
        scores: :meth:`FoldScorer.scores`.
        trainable: Trainable parameters.
        total: All parameters.
        fit_seconds: Wall time of the fit.
        peft_lr: The rate the row's PEFT parameters trained at (geopeft rows;
            None for anchors, KTDA rows and runs recorded before it was kept).
        loss: The segmentation loss the run trained with (None for the other
            tasks and for runs recorded before it was kept, which used 'ce').
    """

    row: str
    fold: int
    seed: int
    scores: dict[str, float]
    trainable: int
    total: int
    fit_seconds: float
    peft_lr: float | None = None
    loss: str | None = None

    @property
    def collapsed(self) -> bool:
        """Whether the model predicted no positive item at all on its fold."""
        return self.scores['predicted'] == 0.0

    @property
    def actual(self) -> float | None:
        """The share of positive items in the test fold's labels.

        Runs recorded before ``actual`` was scored derive it from the predicted
        share, the precision and the recall (None when the recall is 0).
        """
        if 'actual' in self.scores:
            return self.scores['actual']
        recall = self.scores['recall']
        if recall == 0:
            return None
        return self.scores['predicted'] * self.scores['precision'] / recall

    @property
    def under_predicted(self) -> bool:
        """Whether the model severely under-predicts (but predicted some positives).

        It predicted positives on less than :data:`UNDER_PREDICTED` of the share
        of items that is labelled positive.
        """
        actual = self.actual
        return (
            not self.collapsed
            and actual is not None
            and self.scores['predicted'] < UNDER_PREDICTED * actual
        )


class Problem:
    """How one task builds its data and its two kinds of task."""

    task_name: TaskName

    def __init__(self, settings: AccuracySettings) -> None:
        """Initialize a new Problem instance.

        Args:
            settings: The benchmark settings.
        """
        self.settings = settings

    def check(self) -> None:
        """Check the data and the fold request before any training."""
        raise NotImplementedError

    def datamodule(self, fold: int, seed: int) -> LightningDataModule:
        """The data module of one fold."""
        raise NotImplementedError

    def geopeft_task(self, row: AccuracyRow) -> LightningModule:
        """Geopeft's task for a geopeft row."""
        raise NotImplementedError

    def torchgeo_task(self, row: AccuracyRow) -> LightningModule:
        """TorchGeo's own task for an anchor row."""
        raise NotImplementedError

    def num_classes(self) -> int:
        """Number of scored classes."""
        return 2

    def ignore_index(self) -> int | None:
        """Label value left out of the scores."""
        return None

    def describe(self) -> str:
        """The data, in words, for the table's heading."""
        raise NotImplementedError

    def task(self, row: AccuracyRow) -> LightningModule:
        """Build the task of a row.

        Args:
            row: The row.

        Returns:
            TorchGeo's task for an anchor, geopeft's otherwise.

        Raises:
            ValueError: If TorchGeo's task cannot take the backbone.
        """
        if not row.is_anchor:
            return self.geopeft_task(row)
        try:
            return self.torchgeo_task(row)
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            msg = (
                f'the anchor "{row.name}" (plain TorchGeo) cannot take backbone '
                f'"{self.settings.backbone}" through SMP\'s timm encoder '
                f'(tu-{self.settings.backbone}): {error}. Choose a convolutional '
                'backbone, or leave the torchgeo-* rows out of --methods.'
            )
            raise ValueError(msg) from error

    def dense_anchor(
        self,
        task_class: type[LightningModule],
        row: AccuracyRow,
        model: str,
        **options: Any,
    ) -> LightningModule:
        """Build a TorchGeo dense task on SMP's timm encoder with the weights.

        Args:
            task_class: TorchGeo's ``ChangeDetection`` or ``SemanticSegmentation``.
            row: The anchor row (``freeze_backbone``, loss options).
            model: TorchGeo's model name.
            **options: Further task arguments.

        Returns:
            The task, its encoder holding the pretrained weights.
        """
        task = task_class(
            model=model,
            backbone=f'tu-{self.settings.backbone}',
            weights=None,
            lr=self.settings.lr,
            freeze_backbone=row.freeze_backbone,
            **{**options, **dict(row.task_options)},
        )
        load_timm_weights(
            task.model.encoder.model, self.settings.backbone, self.settings.weights
        )
        return task

    def geopeft_options(self, row: AccuracyRow) -> dict[str, Any]:
        """Arguments every geopeft task of a row takes."""
        assert row.peft is not None
        options: dict[str, Any] = {
            'weights': self.settings.weights,
            'peft': row.peft.to_dict(),
            'lr': self.settings.lr,
            'weight_decay': self.settings.weight_decay,
            'scheduler': 'cosine',  # replaced by SharedSchedule
        }
        options.update(dict(row.task_options))
        return options


def _check_ktda_row(row: AccuracyRow, settings: AccuracySettings) -> None:
    """Check that a ``ktda`` row can run: segmentation, and a teacher to learn from.

    Raises:
        ValueError: For another task, or distillation without teacher weights.
    """
    if settings.task != 'segmentation':
        msg = (
            f'the row "{row.name}" is a KTDA segmentation student; it runs with '
            f'--task segmentation, not --task {settings.task}'
        )
        raise ValueError(msg)
    weight = dict(row.ktda_options).get('distill_weight', 1.0)
    if float(weight) > 0 and settings.teacher_weights is None:
        msg = (
            f'the row "{row.name}" distils from a teacher: pass --teacher-weights '
            '(a local safetensors file, e.g. from `python -m '
            "geopeft.distill.onnx_teacher`, or 'imagenet' for timm's hub), or add "
            'distill_weight=0 to train the student alone'
        )
        raise ValueError(msg)


def load_timm_weights(model: nn.Module, backbone: str, weights: str | None) -> None:
    """Load pretrained weights into a timm model inside a TorchGeo/SMP model.

    The weights are those geopeft's backbones get for the same name (ImageNet
    from a pip package where one exists, else timm's hub), i.e. the weights
    TorchGeo's ``weights=True`` asks SMP/timm for.

    Args:
        model: The timm model (SMP's ``encoder.model``, or TorchGeo's classifier).
        backbone: timm name.
        weights: ``'imagenet'`` or None (nothing loaded).

    Raises:
        ValueError: If some of the model's backbone tensors get no weight.
    """
    from timm.models import adapt_input_conv

    from ..backbones.weights import resolve_state_dict

    if weights is None:
        return
    state = resolve_state_dict(weights, name=backbone)
    assert state is not None
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own}
    for key, value in list(matched.items()):
        wanted = own[key].shape
        if value.shape != wanted and value.ndim == 4 and value.shape[2:] == wanted[2:]:
            # Another band count: what timm (and so TorchGeo) does for in_chans.
            matched[key] = adapt_input_conv(wanted[1], value)
    missing = [k for k in own if k not in matched and 'num_batches_tracked' not in k]
    classifier = getattr(model, 'default_cfg', {}).get('classifier', '')
    missing = [k for k in missing if not (classifier and k.startswith(classifier))]
    if missing:
        msg = (
            f'pretrained weights of {backbone} leave {len(missing)} tensors of the '
            f'anchor model unset (e.g. {missing[:3]})'
        )
        raise ValueError(msg)
    model.load_state_dict(matched, strict=False)


class ChangeProblem(Problem):
    """Change detection on an ``A``/``B``/``label`` folder (binary change)."""

    task_name: TaskName = 'change'

    def check(self) -> None:
        """Check the folder and that it has at least as many pairs as folds."""
        from ..datamodules.folds import check_folds
        from ..datasets import ChangeFolder

        root = self.settings.root
        if root is None or not all(
            (Path(root) / name).is_dir() for name in ('A', 'B', 'label')
        ):
            msg = (
                f'--root {root} is not an A/B/label change folder (root/A/x.png, '
                'root/B/x.png, root/label/x.png)'
            )
            raise ValueError(msg)
        count = len(ChangeFolder(root, split='all'))
        check_folds(self.settings.folds, 0, count, what='labelled pairs')

    def datamodule(self, fold: int, seed: int) -> LightningDataModule:
        """Fold *fold* of the folder, no validation, the last epoch scored."""
        from ..datamodules import ChangeFolderDataModule

        options: dict[str, Any] = {}
        if self.settings.augment is not None:
            options['augment'] = self.settings.augment
        return ChangeFolderDataModule(
            root=str(self.settings.root),
            batch_size=self.settings.batch_size,
            patch_size=self.settings.patch_size,
            val_split_pct=0.0,
            seed=seed,
            train_repeats=self.settings.train_repeats,
            folds=self.settings.folds,
            fold=fold,
            fold_seed=self.settings.fold_seed,
            **options,
        )

    def geopeft_task(self, row: AccuracyRow) -> LightningModule:
        """:class:`~geopeft.tasks.PEFTChangeDetection` (Siamese, diff fusion)."""
        from ..tasks import PEFTChangeDetection

        return PEFTChangeDetection(
            model=self.settings.arch,
            backbone=self.settings.backbone,
            fusion='diff',
            **self.geopeft_options(row),
        )

    def torchgeo_task(self, row: AccuracyRow) -> LightningModule:
        """TorchGeo's ``ChangeDetection(model='fcsiamdiff')``."""
        from torchgeo.tasks import ChangeDetection

        return self.dense_anchor(
            ChangeDetection, row, 'fcsiamdiff', task='binary', loss='bce'
        )

    def describe(self) -> str:
        """The folder, its pair count and the crop."""
        s = self.settings
        augment = 'default' if s.augment is None else s.augment
        return (
            f'change pairs of {Path(str(s.root)).name}, {s.patch_size} px crops x '
            f'{s.train_repeats} per pair and epoch, augment {augment}'
        )


class ClassificationProblem(Problem):
    """Scene classification on a folder with one folder per class."""

    task_name: TaskName = 'classification'
    _num_classes: int | None = None

    def _datamodule(self, fold: int, seed: int) -> Any:
        from ..datamodules import SceneFolderDataModule

        return SceneFolderDataModule(
            root=str(self.settings.root),
            val_fraction=0.0,
            seed=seed,
            image_size=self.settings.patch_size,
            batch_size=self.settings.batch_size,
            folds=self.settings.folds,
            fold=fold,
            fold_seed=self.settings.fold_seed,
        )

    def check(self) -> None:
        """Check the folder and the folds (stratified over its images)."""
        root = self.settings.root
        if root is None or not Path(root).is_dir():
            msg = f'--root {root} is not a folder with one folder per class'
            raise ValueError(msg)
        datamodule = self._datamodule(0, 0)
        datamodule.setup('fit')
        self._num_classes = datamodule.num_classes

    def num_classes(self) -> int:
        """Number of class folders (the folder is scanned once)."""
        if self._num_classes is None:
            self._num_classes = self._datamodule(0, 0).num_classes
        return self._num_classes

    def datamodule(self, fold: int, seed: int) -> LightningDataModule:
        """Stratified fold *fold* of the folder."""
        return self._datamodule(fold, seed)

    def geopeft_task(self, row: AccuracyRow) -> LightningModule:
        """:class:`~geopeft.tasks.PEFTClassification`."""
        from ..tasks import PEFTClassification

        return PEFTClassification(
            model=self.settings.backbone,
            num_classes=self.num_classes(),
            **self.geopeft_options(row),
        )

    def torchgeo_task(self, row: AccuracyRow) -> LightningModule:
        """TorchGeo's ``Classification`` on the timm model."""
        from torchgeo.tasks import Classification

        task = Classification(
            model=self.settings.backbone,
            weights=None,
            num_classes=self.num_classes(),
            lr=self.settings.lr,
            freeze_backbone=row.freeze_backbone,
            **dict(row.task_options),
        )
        load_timm_weights(task.model, self.settings.backbone, self.settings.weights)
        return task

    def describe(self) -> str:
        """The folder and the image size."""
        root = Path(str(self.settings.root)).name
        return f'scenes of {root}, {self.settings.patch_size} px'


PROBLEMS: dict[str, type[Problem]] = {
    'change': ChangeProblem,
    'classification': ClassificationProblem,
}


def problem_for(settings: AccuracySettings) -> Problem:
    """The problem of the settings' task.

    Args:
        settings: The settings.

    Returns:
        Its problem.

    Raises:
        ValueError: For an unknown task.
    """
    from .accuracy_segmentation import SegmentationProblem

    problems: dict[str, type[Problem]] = {
        **PROBLEMS,
        'segmentation': SegmentationProblem,
    }
    if settings.task not in problems:
        msg = (
            f'Unknown task "{settings.task}".{did_you_mean(settings.task, problems)} '
            f'Choose one of: {", ".join(problems)}.'
        )
        raise ValueError(msg)
    return problems[settings.task](settings)


def fit_and_score(
    problem: Problem, row: AccuracyRow, fold: int, seed: int, run_dir: Path
) -> AccuracyRun:
    """Train one row on one fold with one seed and score its last epoch.

    The seed is set before the task is built and again before training, so every
    row sees the same crops, flips and batch order.

    Args:
        problem: The task's problem.
        row: The row.
        fold: The test fold.
        seed: The seed.
        run_dir: The run's folder (Lightning's root dir).

    Returns:
        The run.
    """
    settings = problem.settings
    seed_everything(seed, workers=True, verbose=False)
    datamodule = problem.datamodule(fold, seed)
    task = problem.task(row)
    scorer = FoldScorer(problem.num_classes(), problem.ignore_index())
    trainer = Trainer(
        max_epochs=settings.epochs,
        accelerator=settings.accelerator,
        devices=1,
        precision=settings.precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=settings.limit_train_batches,
        default_root_dir=str(run_dir),
        callbacks=[SharedSchedule(settings.warmup), scorer],
    )
    seed_everything(seed, workers=True, verbose=False)
    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    trainer.test(task, datamodule=datamodule, verbose=False)
    trainable, total = count_parameters(task)
    return AccuracyRun(
        row=row.name,
        fold=fold,
        seed=seed,
        scores=scorer.scores(),
        trainable=trainable,
        total=total,
        fit_seconds=fit_seconds,
    )


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float('nan')


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class AccuracyResult:
    """Every run of a benchmark and its table.

    Attributes:
        settings: The settings.
        rows: The rows, in table order.
        runs: The runs done (or read back from ``runs.jsonl``).
        data: The data, in words.
    """

    settings: AccuracySettings
    rows: list[AccuracyRow]
    runs: list[AccuracyRun] = field(default_factory=list)
    data: str = ''

    def runs_of(self, name: str) -> list[AccuracyRun]:
        """The runs of one row."""
        return [run for run in self.runs if run.row == name]

    def table(self) -> list[dict[str, Any]]:
        """One dict per row: mean and std of the scores over folds and seeds.

        ``<score>_mean`` and ``std`` (of the main score: F1 for dense tasks,
        accuracy for classification) over every run (fold x seed); ``diff_mean``
        / ``diff_std``: the paired difference to ``torchgeo-full`` on the same
        fold and seed (when that row ran); ``collapsed``: runs that predicted no
        positive at all; ``under_predicted``: runs that predicted positives on
        less than a fifth of the labelled share (severely under-predicting).

        Returns:
            The rows.
        """
        score = self.settings.score_name
        reference = {
            (run.fold, run.seed): run.scores[score] for run in self.runs_of(REFERENCE)
        }
        table = []
        for row in self.rows:
            runs = self.runs_of(row.name)
            if not runs:
                continue
            values = [run.scores[score] for run in runs]
            entry: dict[str, Any] = {
                'method': row.name,
                'kind': 'torchgeo' if row.is_anchor else 'geopeft',
                f'{score}_mean': _mean(values),
                'std': _std(values),
            }
            for name in ('f1', 'iou', 'precision', 'recall', 'accuracy'):
                if name != score:
                    entry[f'{name}_mean'] = _mean([r.scores[name] for r in runs])
            diffs = [
                run.scores[score] - reference[(run.fold, run.seed)]
                for run in runs
                if (run.fold, run.seed) in reference
            ]
            entry['diff_mean'] = _mean(diffs) if diffs else None
            entry['diff_std'] = _std(diffs) if diffs else None
            entry['seeds'] = sorted({run.seed for run in runs})
            entry['folds'] = sorted({run.fold for run in runs})
            entry['runs'] = len(runs)
            entry['collapsed'] = sum(run.collapsed for run in runs)
            entry['under_predicted'] = sum(run.under_predicted for run in runs)
            entry['trainable'] = runs[0].trainable
            entry['total'] = runs[0].total
            entry['trainable_percent'] = 100.0 * runs[0].trainable / runs[0].total
            entry['fit_seconds'] = _mean([run.fit_seconds for run in runs])
            table.append(entry)
        return table

    def format_table(self) -> str:
        """The table as text, with the setting above it and notes below."""
        score = self.settings.score_name
        s = self.settings
        lines = [
            f'{s.task} accuracy on {self.data}: {s.backbone} (weights {s.weights}), '
            f'{s.epochs} epochs, batch {s.batch_size}, lr {s.lr:g}, '
            f'{s.folds}-fold cross-validation (fold seed {s.fold_seed}) x seeds '
            f'{list(s.seeds)}; mean +- std over folds x seeds',
        ]
        table = self.table()
        width = max([34, *(len(entry['method']) + 2 for entry in table)])
        header = (
            f'{"method":<{width}}{score + " mean":>12}{"std":>8}{"vs TG full":>16}'
            f'{"IoU" if score == "f1" else "F1":>8}{"trainable":>12}{"%":>8}'
            f'{"runs":>6}{"fit s":>7}'
        )
        lines += [header, '-' * len(header)]
        notes = []
        for entry in table:
            diff = (
                f'{entry["diff_mean"]:+.3f}+-{entry["diff_std"]:.3f}'
                if entry['diff_mean'] is not None and entry['method'] != REFERENCE
                else '-'
            )
            other = entry['iou_mean'] if score == 'f1' else entry['f1_mean']
            lines.append(
                f'{entry["method"]:<{width}}{entry[f"{score}_mean"]:>12.3f}'
                f'{entry["std"]:>8.3f}{diff:>16}{other:>8.3f}'
                f'{entry["trainable"]:>12,}{entry["trainable_percent"]:>8.2f}'
                f'{entry["runs"]:>6}{entry["fit_seconds"]:>7.0f}'
            )
            if entry['collapsed']:
                notes.append(
                    f'{entry["method"]}: {entry["collapsed"]} of {entry["runs"]} '
                    'runs COLLAPSED (predicted no positive at all on their test '
                    'fold; included in the mean)'
                )
            if entry['under_predicted']:
                notes.append(
                    f'{entry["method"]}: {entry["under_predicted"]} of '
                    f'{entry["runs"]} runs UNDER-PREDICTED (positives predicted on '
                    f'less than {UNDER_PREDICTED:.0%} of the labelled share; included '
                    'in the mean)'
                )
        lines.append(
            '"vs TG full": paired difference to TorchGeo full fine-tuning on the '
            'same fold and seed (mean +- std).'
        )
        return '\n'.join(lines + notes)

    def to_json(self) -> dict[str, Any]:
        """The result as one JSON-able object: settings, rows and runs."""
        return {
            'task': self.settings.task,
            'data': self.data,
            'settings': dataclasses.asdict(self.settings),
            'rows': self.table(),
            'runs': [dataclasses.asdict(run) for run in self.runs],
        }


def row_peft_lr(row: AccuracyRow, settings: AccuracySettings) -> float | None:
    """The rate a geopeft row's PEFT parameters train at (None for other rows)."""
    from ..tasks.optim import default_peft_lr

    if row.is_anchor or row.ktda or row.peft is None:
        return None
    options = dict(row.task_options)
    lr = float(options.get('lr', settings.lr))
    return default_peft_lr(row.peft.method, lr, options.get('peft_lr'))


def row_loss(row: AccuracyRow, settings: AccuracySettings) -> str | None:
    """The loss a segmentation row trains with (None for the other tasks).

    The row's ``loss=`` option; else TorchGeo's 'ce' for the anchors and KTDA
    rows, and geopeft's :func:`~geopeft.tasks.segmentation.default_segmentation_loss`
    for geopeft's rows.
    """
    from ..tasks.segmentation import default_segmentation_loss

    if settings.task != 'segmentation':
        return None
    options = dict(row.task_options)
    if 'loss' in options:
        return str(options['loss'])
    if row.is_anchor or row.ktda:
        return 'ce'
    weights = options.get('class_weights')
    return default_segmentation_loss('multiclass', settings.num_classes, weights)


def _still_valid(
    run: AccuracyRun, row: AccuracyRow, settings: AccuracySettings
) -> bool:
    """Whether a recorded run trained the row as the current defaults would.

    Runs recorded before ``peft_lr`` was kept trained their PEFT parameters at
    ``peft_lr`` if set, else at ``lr`` (the default then); runs recorded before
    ``loss`` was kept trained segmentation rows with 'ce'.
    """
    loss = row_loss(row, settings)
    if loss is not None and (run.loss or 'ce') != loss:
        return False
    expected = row_peft_lr(row, settings)
    if expected is None:
        return True
    if run.peft_lr is not None:
        return math.isclose(run.peft_lr, expected)
    options = dict(row.task_options)
    legacy = float(options.get('peft_lr', options.get('lr', settings.lr)))
    return math.isclose(legacy, expected)


def _read_done(path: Path, key: str) -> list[AccuracyRun]:
    """Read the runs of earlier invocations with the same settings."""
    if not path.is_file():
        return []
    done = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if entry.pop('key', None) == key:
            done.append(AccuracyRun(**entry))
    return done


@contextlib.contextmanager
def _no_grad_mode_leak() -> Iterator[None]:
    """Restore torch's grad mode after a run (a failing fit may leave it off)."""
    enabled = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.set_grad_enabled(enabled)


def run_accuracy(
    settings: AccuracySettings,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    progress: Progress = print,
    *,
    resume: bool = True,
) -> AccuracyResult:
    """Train and score every row on every fold with every seed.

    Args:
        settings: The settings.
        methods: Row specs (see :func:`parse_row`).
        progress: Called with one line per run.
        resume: Skip runs already in ``<out_dir>/runs.jsonl`` with the same
            settings.

    Returns:
        The runs and their table.

    Raises:
        ValueError: For bad rows, data or folds, before any training; for an
            anchor that cannot take the backbone.
    """
    rows = parse_rows(methods)
    problem = problem_for(settings)
    problem.check()
    for row in rows:  # fail on an impossible row before hours of training
        if row.is_anchor:
            problem.task(row)
        if row.ktda:
            _check_ktda_row(row, settings)
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / 'runs.jsonl'
    key = settings.key()
    result = AccuracyResult(settings, rows, data=problem.describe())
    by_name = {row.name: row for row in rows}
    done = {
        (r.row, r.fold, r.seed): r
        for r in (_read_done(log, key) if resume else [])
        if r.row not in by_name or _still_valid(r, by_name[r.row], settings)
    }
    plan = [
        (fold, seed, row)
        for fold in range(settings.folds)
        for seed in settings.seeds
        for row in rows
    ]
    progress(
        f'{settings.task} accuracy: {len(rows)} rows x {settings.folds} folds x '
        f'{len(settings.seeds)} seeds = {len(plan)} runs ({len(done)} already done '
        f'in {log})'
    )
    with torch_threads(settings.threads):
        for index, (fold, seed, row) in enumerate(plan, start=1):
            if (row.name, fold, seed) in done:
                result.runs.append(done[(row.name, fold, seed)])
                continue
            label = f'[{index}/{len(plan)}] {row.name}, fold {fold}, seed {seed}'
            run_dir = out / 'runs' / f'{row.name.replace(":", "_")}-f{fold}-s{seed}'
            with quiet_lightning(), _no_grad_mode_leak():
                run = fit_and_score(problem, row, fold, seed, run_dir)
            run.peft_lr = row_peft_lr(row, settings)
            run.loss = row_loss(row, settings)
            result.runs.append(run)
            with log.open('a') as handle:
                handle.write(json.dumps({'key': key, **dataclasses.asdict(run)}) + '\n')
            score = run.scores[settings.score_name]
            flag = ' COLLAPSED (no positive predicted)' if run.collapsed else ''
            if run.under_predicted:
                flag = (
                    f' UNDER-PREDICTED ({run.scores["predicted"]:.1%} predicted '
                    f'positive where {run.actual:.1%} are)'
                )
            progress(
                f'{label}: {settings.score_name} {score:.3f}, '
                f'{run.fit_seconds:.0f} s{flag}'
            )
            release_memory()
    return result
