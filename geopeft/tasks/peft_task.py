"""What every geopeft task adds to its TorchGeo parent."""

import warnings
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from segmentation_models_pytorch.base import SegmentationModel
from torch import Tensor

from ..peft import PEFTConfig, keep_frozen_batchnorm_eval, load_adapter
from .optim import build_optimizer, default_peft_lr, peft_parameter_groups
from .resume import RNG_KEY, restore_rng_states, rng_states

#: Checkpoint key that names the task class (read by ``geopeft export-adapter``).
TASK_KEY = 'geopeft_task'


class PEFTTaskMixin(LightningModule):
    """PEFT behaviour shared by geopeft's Lightning tasks.

    * the PEFT config from the ``peft`` hyper-parameter (``freeze_backbone=True`` is
      the linear probe, ``peft='linear'``);
    * AdamW over the trainable parameters only, with a plateau or warm-up + cosine
      schedule;
    * frozen batch-norm layers keep their pretrained statistics in training;
    * an optional adapter file loaded on top of the pretrained backbone;
    * checkpoints name their task class, and a checkpoint whose tensors have other
      shapes (e.g. another number of classes) fails with the fix;
    * masks with values outside the classes fail with a clear message, not a
      device-side assert;
    * a non-finite training loss stops training with the step and the likely
      cause, before the weights become NaN;
    * labels whose only foreground equals ``ignore_index`` (0/255 masks with
      ``ignore_index: 255``) raise a loud warning early in training;
    * checkpoints hold the random-number states, and a fit resumed from one
      (``--ckpt_path``) continues as the uninterrupted run would have
      (:mod:`geopeft.tasks.resume`).

    Subclasses set ``self.adapter`` before TorchGeo's ``__init__`` and call
    :meth:`load_adapter_file` at the end of ``configure_models``.
    """

    adapter: str | None = None
    #: Training batches after which the tally is looked at (or the first epoch).
    IGNORE_CHECK_BATCHES = 50

    def warn_if_foreground_is_ignored(self) -> None:
        """Warn loudly when the labels' foreground looks like ``ignore_index``.

        A 0/255 label raster with ``ignore_index: 255`` trains on background only:
        every training pixel is class 0 or ignored. Looked at once, after
        :attr:`IGNORE_CHECK_BATCHES` training batches or the first epoch.
        """
        tally = getattr(self, '_ignore_tally', None)
        if tally is None or tally[2] == 0:
            return
        self._ignore_tally = None
        positives, ignored, batches = tally
        if positives == 0 and ignored > 0:
            ignore = self.hparams['ignore_index']
            warnings.warn(
                f'no pixel of the first {batches} training batches is of a class '
                f'other than 0, but {ignored} pixels equal ignore_index={ignore}: the '
                f'labels look like 0/{ignore} masks whose foreground is ignored, so '
                f'the model learns background only. Map {ignore} to 1 (binary '
                'masks are 0/1), or set ignore_index to a value the labels do not '
                'use.',
                UserWarning,
                stacklevel=2,
            )

    def configure_metrics(self) -> None:
        """Check the class counts the task's metrics need, then build them.

        Raises:
            ValueError: If ``task`` is ``multiclass`` without ``num_classes`` or
                ``multilabel`` without ``num_labels`` (instead of torchmetrics'
                error from deep inside the metric classes).
        """
        task = self.hparams.get('task', 'multiclass')
        needs = {'multiclass': 'num_classes', 'multilabel': 'num_labels'}.get(task)
        value = self.hparams.get(needs) if needs else None
        if needs is not None and not isinstance(value, int):
            what, hint = 'labels', ''
            if needs == 'num_classes':
                what = 'classes in the labels, background included'
                hint = ', or task: binary for 0/1 masks'
            msg = (
                f'task={task!r} needs {needs} (the number of {what}), got '
                f'{value!r}: set {needs} (in YAML, model.init_args.{needs}: N){hint}.'
            )
            raise ValueError(msg)
        super().configure_metrics()

    @property
    def peft_config(self) -> PEFTConfig:
        """The resolved PEFT configuration (``linear`` when freezing the backbone)."""
        if self.hparams.get('freeze_backbone'):
            return PEFTConfig.from_any('linear')
        return PEFTConfig.from_any(self.hparams['peft'])

    def load_adapter_file(self) -> None:
        """Load the adapter file given as ``adapter``, if any, into ``self.model``."""
        if self.adapter is not None:
            load_adapter(self.model, self.adapter)

    def configure_dense_model(
        self, builder: Callable[..., SegmentationModel], **options: Any
    ) -> None:
        """Build a dense model from the hyper-parameters the dense tasks share.

        Sets ``self.model`` to ``builder(model, backbone, ...)``, freezes the decoder
        when ``freeze_decoder`` is set and loads the adapter file, if any.

        Args:
            builder: :func:`~geopeft.models.build_segmentation_model` or
                :func:`~geopeft.models.build_change_model`.
            **options: The builder's task-specific arguments (e.g. ``fusion``).
        """
        hparams = self.hparams
        self.model = builder(
            hparams['model'],
            hparams['backbone'],
            num_classes=hparams['num_classes'] or hparams['num_labels'] or 1,
            weights=self.weights,
            in_channels=hparams['in_channels'],
            peft=self.peft_config,
            output_stride=hparams['output_stride'],
            encoder_depth=hparams['encoder_depth'],
            img_size=hparams['img_size'],
            bands=hparams['bands'],
            grad_checkpointing=hparams['grad_checkpointing'],
            model_kwargs=hparams['model_kwargs'],
            decoder_kwargs=hparams['decoder_kwargs'],
            **options,
        )
        if hparams['freeze_decoder']:
            self.model.decoder.requires_grad_(False)
        self.load_adapter_file()

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Build AdamW over the trainable parameters and the chosen schedule.

        The head (decoder, head) trains at ``lr`` with ``weight_decay``; the PEFT
        parameters at ``peft_lr`` with ``peft_weight_decay``, prompts, gates,
        scales, biases and norms without decay (see
        :func:`~geopeft.tasks.optim.peft_parameter_groups`). Unset, ``peft_lr`` is
        10 x ``lr`` for UPetu, EQAM and CAPM (new modules initialised near zero,
        :func:`~geopeft.tasks.optim.default_peft_lr`) and ``lr`` otherwise;
        ``peft_weight_decay`` is ``weight_decay``.

        Returns:
            Optimizer and learning-rate scheduler.
        """
        groups = peft_parameter_groups(
            self,
            weight_decay=self.hparams['weight_decay'],
            peft_lr=default_peft_lr(
                self.peft_config.method,
                self.hparams['lr'],
                self.hparams.get('peft_lr'),
            ),
            peft_weight_decay=self.hparams.get('peft_weight_decay'),
        )
        return build_optimizer(
            groups,
            lr=self.hparams['lr'],
            weight_decay=self.hparams['weight_decay'],
            scheduler=self.hparams['scheduler'],
            patience=self.hparams['patience'],
            warmup_epochs=self.hparams['warmup_epochs'],
            max_epochs=self.trainer.max_epochs if self._trainer else None,
            monitor=self.monitor,
        )

    def train(self, mode: bool = True) -> 'PEFTTaskMixin':
        """Set training mode, keeping frozen batch-norm layers in eval mode.

        Args:
            mode: Training (True) or evaluation (False) mode.

        Returns:
            This task.
        """
        super().train(mode)
        if mode:
            keep_frozen_batchnorm_eval(self)
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class and the random-number states in the checkpoint.

        Args:
            checkpoint: The checkpoint being written.
        """
        checkpoint[TASK_KEY] = f'{type(self).__module__}.{type(self).__qualname__}'
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check that the checkpoint's tensors fit this task before loading them.

        Args:
            checkpoint: The Lightning checkpoint being restored.

        Raises:
            ValueError: If tensors have other shapes, e.g. a head for another
                number of classes.
        """
        self.resume_rng_states(checkpoint)
        saved = checkpoint.get('state_dict', {})
        own = self.state_dict()
        differ = [
            (key, tuple(tensor.shape), tuple(own[key].shape))
            for key, tensor in saved.items()
            if key in own and tuple(tensor.shape) != tuple(own[key].shape)
        ]
        if not differ:
            return
        only_outputs = all(
            self._is_head_key(key) and saved_shape[1:] == own_shape[1:]
            for key, saved_shape, own_shape in differ
        )
        key, saved_shape, own_shape = differ[0]
        if only_outputs:
            msg = (
                f'The checkpoint has a {saved_shape[0]}-output head ({key} '
                f'{list(saved_shape)}), but this task was built with {own_shape[0]} '
                f'outputs ({list(own_shape)}): set num_classes={saved_shape[0]} (and '
                'the same backbone) to resume it, or pass the checkpoint as '
                'weights=<path> to reuse only its backbone with a new head.'
            )
        else:
            shown = ', '.join(f'{k} {list(s)} vs {list(o)}' for k, s, o in differ[:3])
            msg = (
                f'The checkpoint does not fit this task: {len(differ)} tensors have '
                f'other shapes (checkpoint vs task: {shown}). Build the task with the '
                'backbone, architecture, PEFT config and in_channels it was trained '
                'with.'
            )
        raise ValueError(msg)

    def resume_rng_states(self, checkpoint: dict[str, Any]) -> None:
        """Put back the checkpoint's random-number states when fit resumes from it.

        Lightning restores a checkpoint before its sanity check (which isolates
        its own draws) and before it creates the training DataLoader iterator, so
        everything drawn from here on is drawn as in the uninterrupted run. Only
        when fitting: loading a checkpoint to test or predict, or with
        ``load_from_checkpoint``, leaves the generators alone.

        Args:
            checkpoint: The Lightning checkpoint being restored.
        """
        states = checkpoint.get(RNG_KEY)
        trainer = self._trainer
        if states is not None and trainer is not None:
            if trainer.state.fn == TrainerFn.FITTING:
                restore_rng_states(states)

    def _is_head_key(self, key: str) -> bool:
        """Tell whether a state-dict key belongs to the task's output head."""
        return key.startswith(('model.head.', 'model.segmentation_head.'))

    def check_mask(self, batch: dict[str, Any]) -> None:
        """Check that a batch's mask holds only valid class values.

        Args:
            batch: A batch with a ``'mask'``.

        Raises:
            ValueError: Naming the values found, the classes and the fix.
        """
        mask = batch.get('mask')
        if not isinstance(mask, Tensor) or self.hparams['task'] == 'multilabel':
            return
        ignore = self.hparams['ignore_index']
        count = (
            2 if self.hparams['task'] == 'binary' else int(self.hparams['num_classes'])
        )
        valid = (mask >= 0) & (mask < count)
        if ignore is not None:
            tally = getattr(self, '_ignore_tally', None) if self.training else None
            if tally is not None:
                tally[0] += int(((mask > 0) & (mask < count) & (mask != ignore)).sum())
                tally[1] += int((mask == ignore).sum())
                tally[2] += 1
            valid |= mask == ignore
        if bool(valid.all()):
            return
        found = torch.unique(mask[~valid]).tolist()[:10]
        hint = (
            'binary masks must be 0/1: map 255 -> 1 (0/255 label images)'
            if self.hparams['task'] == 'binary'
            else f'set num_classes (now {count}) to cover them'
        )
        msg = (
            f'mask values {found} are outside the classes 0..{count - 1} '
            f'(ignore_index={ignore}): {hint}; or map them to valid classes, or set '
            'ignore_index to skip them.'
        )
        raise ValueError(msg)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Keep frozen batch norms in eval mode; check the mask.

        Lightning restores each submodule's own mode after validation (the modes
        it saw before), which bypasses :meth:`train`; so frozen batch norms are put
        back into eval mode before every training step.
        """
        keep_frozen_batchnorm_eval(self)
        if not hasattr(self, '_ignore_tally'):
            # Training pixels of a class other than 0, pixels at ignore_index and
            # batches, until warn_if_foreground_is_ignored has looked (then None).
            self._ignore_tally: list[int] | None = [0, 0, 0]
        self.check_mask(batch)
        self._batch = (batch, batch_idx)
        tally = self._ignore_tally
        if tally is not None and tally[2] >= self.IGNORE_CHECK_BATCHES:
            self.warn_if_foreground_is_ignored()

    def on_train_epoch_end(self) -> None:
        """Look at the ignore-index tally of the first epoch."""
        self.warn_if_foreground_is_ignored()
        super().on_train_epoch_end()

    def on_before_backward(self, loss: Tensor) -> None:
        """Stop at the first non-finite training loss, naming the likely cause.

        Raises:
            FloatingPointError: With the step, the loss and what to change, before
                NaN gradients reach the weights (so no checkpoint holds them).
        """
        if bool(torch.isfinite(loss.detach()).all()):
            return
        batch, batch_idx = getattr(self, '_batch', (None, -1))
        image = batch.get('image') if isinstance(batch, dict) else None
        if isinstance(image, Tensor) and not bool(torch.isfinite(image).all()):
            cause = (
                'the input images of this batch hold NaN or infinite values '
                '(unmasked nodata, or a std of 0 in the normalisation): set the '
                "rasters' nodata, or fill those pixels"
            )
        else:
            rates = f'lr={self.hparams.get("lr")}'
            if self.hparams.get('peft_lr') is not None:
                rates += f', peft_lr={self.hparams["peft_lr"]}'
            cause = (
                f'the inputs are finite, so the optimisation diverged: lower the '
                f'learning rate ({rates}), train in 32-bit precision, or clip '
                'gradients (trainer.gradient_clip_val: 1.0)'
            )
        msg = (
            f'the training loss is {float(loss.detach().float().mean())} at step '
            f'{self.global_step} (epoch {self.current_epoch}, batch {batch_idx}): '
            f'{cause}. Training stopped before the weights became NaN.'
        )
        raise FloatingPointError(msg)

    def on_validation_batch_start(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Check the validation mask (see :meth:`check_mask`)."""
        self.check_mask(batch)

    def on_test_batch_start(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Check the test mask (see :meth:`check_mask`)."""
        self.check_mask(batch)
