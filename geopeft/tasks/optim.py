"""Optimizer and learning-rate schedule shared by geopeft's tasks."""

import math
from collections.abc import Iterable
from typing import Literal

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

SchedulerName = Literal['plateau', 'cosine']


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Return the parameters that require gradients.

    Args:
        module: Any module.

    Returns:
        The trainable parameters, in registration order.
    """
    return [p for p in module.parameters() if p.requires_grad]


def build_optimizer(
    params: Iterable[nn.Parameter],
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
        params: Parameters to optimise (frozen ones must be left out: AdamW would
            otherwise allocate nothing for them, but listing them hides mistakes).
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
