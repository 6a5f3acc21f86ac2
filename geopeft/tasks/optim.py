"""Optimizer and learning-rate schedule shared by geopeft's tasks."""

import math
from collections.abc import Iterable
from typing import Any, Literal

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

SchedulerName = Literal['plateau', 'cosine']

#: Methods whose trainable backbone parameters are new modules initialised near
#: zero (EQAM's up-projection, CAPM's prompts): by default they train at
#: :data:`PEFT_LR_SCALE` x the base rate.
SCALED_PEFT_LR_METHODS = ('upetu', 'eqam', 'capm')
#: ``peft_lr / lr`` of :data:`SCALED_PEFT_LR_METHODS` when ``peft_lr`` is not set.
#: Measured on the 11 LEVIR-CD sample pairs (4 folds x 3 seeds, 15 epochs, lr
#: 1e-3): UPetu F1 0.704 at 10x vs 0.688 at 1x (+0.016 paired, 9 of 12 higher),
#: and +0.026 over the linear probe (9 of 12) where 1x tied it (docs/accuracy.md).
PEFT_LR_SCALE = 10.0


def default_peft_lr(method: str, lr: float, peft_lr: float | None) -> float:
    """The learning rate of a method's PEFT parameters.

    Args:
        method: The PEFT method.
        lr: The base (head) learning rate.
        peft_lr: The rate set by the user, or None.

    Returns:
        *peft_lr* when set; else ``PEFT_LR_SCALE * lr`` for
        :data:`SCALED_PEFT_LR_METHODS`, and *lr* for the others (full
        fine-tuning, BitFit, LoRA, adapters, prompts: not measured).
    """
    if peft_lr is not None:
        return float(peft_lr)
    if method in SCALED_PEFT_LR_METHODS:
        return PEFT_LR_SCALE * lr
    return float(lr)


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Return the parameters that require gradients.

    Args:
        module: Any module.

    Returns:
        The trainable parameters, in registration order.
    """
    return [p for p in module.parameters() if p.requires_grad]


def _is_undecayed(name: str, param: nn.Parameter) -> bool:
    """Tell whether a PEFT parameter is left out of weight decay.

    Prompts (CAPM and the prompt baselines), gates, scales, biases and norm
    parameters are not decayed: decay would pull them towards zero, i.e. towards
    switching the module off, rather than regularise a weight matrix.
    """
    leaf = name.rsplit('.', 1)[-1]
    return (
        param.ndim <= 1
        or 'prompt' in leaf
        or '.capm.' in f'.{name}'
        or '.prompt.' in f'.{name}'
        or 'gate' in leaf
        or 'scale' in leaf
    )


def peft_parameter_groups(
    module: nn.Module,
    *,
    weight_decay: float,
    peft_lr: float | None = None,
    peft_weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Split the trainable parameters into head and PEFT groups for AdamW.

    The PEFT parameters are the trainable parameters inside the PEFT backbones
    (every submodule :func:`~geopeft.peft.apply_peft` marked with
    ``geopeft_config``): the adapters and prompts, or every backbone weight under
    ``full``. The rest (decoder, fusion, neck, head) is the head group.

    Groups (empty ones left out), each with a ``name``:

    * ``head``: *weight_decay*, the optimizer's base learning rate;
    * ``peft``: *peft_weight_decay* at *peft_lr*;
    * ``peft_no_decay``: prompts, gates, scales, biases and norms of the PEFT
      parameters, no decay, at *peft_lr*.

    Args:
        module: The task or model.
        weight_decay: Decay of the head group.
        peft_lr: Learning rate of the PEFT groups (None: the base rate).
        peft_weight_decay: Decay of the PEFT weights (None: *weight_decay*).

    Returns:
        AdamW parameter groups; every trainable parameter is in exactly one.
    """
    backbone_ids: dict[int, str] = {}
    for prefix, sub in module.named_modules():
        if hasattr(sub, 'geopeft_config'):
            for name, param in sub.named_parameters(prefix=prefix):
                backbone_ids.setdefault(id(param), name)
    seen: set[int] = set()
    head: list[nn.Parameter] = []
    peft: list[nn.Parameter] = []
    peft_no_decay: list[nn.Parameter] = []
    for param in module.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if id(param) not in backbone_ids:
            head.append(param)
        elif _is_undecayed(backbone_ids[id(param)], param):
            peft_no_decay.append(param)
        else:
            peft.append(param)
    extra: dict[str, Any] = {} if peft_lr is None else {'lr': peft_lr}
    decay = weight_decay if peft_weight_decay is None else peft_weight_decay
    groups: list[dict[str, Any]] = []
    if head:
        groups.append({'name': 'head', 'params': head, 'weight_decay': weight_decay})
    if peft:
        groups.append({'name': 'peft', 'params': peft, 'weight_decay': decay, **extra})
    if peft_no_decay:
        groups.append(
            {
                'name': 'peft_no_decay',
                'params': peft_no_decay,
                'weight_decay': 0.0,
                **extra,
            }
        )
    return groups


def build_optimizer(
    params: Iterable[nn.Parameter] | list[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float,
    scheduler: SchedulerName,
    patience: int,
    warmup_epochs: int,
    max_epochs: int | None,
    monitor: str,
) -> OptimizerLRScheduler:
    """Build AdamW over trainable parameters only, with an epoch-wise schedule.

    Args:
        params: Parameters to optimise, or AdamW parameter groups (frozen ones
            must be left out: AdamW would otherwise allocate nothing for them, but
            listing them hides mistakes).
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``'plateau'`` (TorchGeo's default: reduce on a plateau of
            *monitor*) or ``'cosine'`` (linear warm-up then cosine decay to zero
            over the trainer's ``max_epochs``).
        patience: Plateau patience in epochs.
        warmup_epochs: Warm-up length for ``'cosine'``.
        max_epochs: Total epochs for ``'cosine'``.
        monitor: Metric the plateau scheduler watches.

    Returns:
        Lightning's optimizer/scheduler dictionary.

    Raises:
        ValueError: If there is nothing to train.
    """
    params = list(params)
    if not params:
        msg = (
            'The model has no trainable parameters: check the PEFT method '
            '(e.g. peft="linear" still trains the head).'
        )
        raise ValueError(msg)
    optimizer = AdamW(params, lr=lr, weight_decay=weight_decay)
    if scheduler == 'plateau':
        plateau = ReduceLROnPlateau(optimizer, patience=patience)
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': plateau, 'monitor': monitor},
        }
    total = max(1, max_epochs or 1)

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = (epoch - warmup_epochs) / max(1, total - warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return {'optimizer': optimizer, 'lr_scheduler': LambdaLR(optimizer, factor)}


def decay_groups(
    module: nn.Module, weight_decay: float
) -> list[dict[str, list[nn.Parameter] | float]]:
    """Split the trainable parameters into decayed ones and norm parameters.

    Norm layers (batch, group and layer norms) get no weight decay, as in the
    KTDA reference recipe.

    Args:
        module: The model.
        weight_decay: Decay of the other parameters.

    Returns:
        AdamW parameter groups (empty groups left out).
    """
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    seen: set[int] = set()
    plain: list[nn.Parameter] = []
    normed: list[nn.Parameter] = []
    for sub in module.modules():
        for param in sub.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (normed if isinstance(sub, norms) else plain).append(param)
    groups: list[dict[str, list[nn.Parameter] | float]] = []
    if plain:
        groups.append({'params': plain, 'weight_decay': weight_decay})
    if normed:
        groups.append({'params': normed, 'weight_decay': 0.0})
    return groups


def poly_factor(
    step: int,
    *,
    max_iters: int,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-3,
    power: float = 0.9,
) -> float:
    """Learning-rate factor of a linear warm-up followed by poly decay.

    The poly factor ``(1 - step / max_iters) ** power`` falls to 0 at *max_iters*;
    during the first *warmup_iters* steps it is scaled by a ramp from
    *warmup_ratio* to 1 (the mmsegmentation schedule the KTDA recipe uses).

    Args:
        step: Optimiser step (0-based).
        max_iters: Steps until the rate reaches 0.
        warmup_iters: Warm-up steps.
        warmup_ratio: Factor at step 0 of the warm-up.
        power: Poly power.

    Returns:
        The factor of the base learning rate.
    """
    poly = max(0.0, 1.0 - step / max(1, max_iters)) ** power
    if step < warmup_iters:
        ramp = warmup_ratio + (1.0 - warmup_ratio) * step / warmup_iters
        return poly * ramp
    return poly


def build_poly_optimizer(
    module: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    max_iters: int,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-3,
    power: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
) -> OptimizerLRScheduler:
    """AdamW without decay on norms, with warm-up + poly stepped every iteration.

    Args:
        module: The model; its trainable parameters are optimised.
        lr: Peak learning rate.
        weight_decay: Decay of non-norm parameters.
        max_iters: Steps until the rate reaches 0.
        warmup_iters: Linear warm-up steps.
        warmup_ratio: Warm-up start as a fraction of *lr*.
        power: Poly power.
        betas: AdamW betas.

    Returns:
        Lightning's optimizer/scheduler dictionary (``interval='step'``).

    Raises:
        ValueError: If nothing is trainable.
    """
    groups = decay_groups(module, weight_decay)
    if not groups:
        msg = (
            'The model has no trainable parameters: check the PEFT method '
            '(e.g. peft="linear" still trains the head).'
        )
        raise ValueError(msg)
    optimizer = AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)

    def factor(step: int) -> float:
        return poly_factor(
            step,
            max_iters=max_iters,
            warmup_iters=warmup_iters,
            warmup_ratio=warmup_ratio,
            power=power,
        )

    return {
        'optimizer': optimizer,
        'lr_scheduler': {'scheduler': LambdaLR(optimizer, factor), 'interval': 'step'},
    }
