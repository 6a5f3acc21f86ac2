"""KTDA's distillation loss: KL over the width axis plus a plain MSE, per level."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def width_kl(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """KL divergence of softmaxes over the last (width) axis, as KTDA computes it.

    ``p_s = softmax(s / T)`` and ``p_t = softmax(t / T)`` over the last axis; the
    loss is ``sum(p_t * (log p_t - log p_s)) / B * T^2``: summed over every element
    and divided by the batch size only.

    Args:
        student: Student features ``[B, ...]``.
        teacher: Teacher features, same shape.
        temperature: Softmax temperature ``T``.

    Returns:
        The scalar loss.
    """
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    total = (log_teacher.exp() * (log_teacher - log_student)).sum()
    return total / student.shape[0] * temperature**2


def distillation_loss(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    *,
    temperature: float = 1.0,
    alpha: float = 0.5,
) -> Tensor:
    """KTDA's distillation loss over the aligned levels.

    For each level: ``alpha * KL + (1 - alpha) * MSE`` (:func:`width_kl` and a
    plain mean squared error, on unnormalised features); the mean over levels.

    Args:
        student: The FAM outputs, one ``[B, D, S, S]`` map per level.
        teacher: The teacher's maps, same shapes.
        temperature: Softmax temperature of the KL term.
        alpha: Weight of the KL term (1: KL only, 0: MSE only).

    Returns:
        The scalar loss.

    Raises:
        ValueError: If the level counts or shapes differ.
    """
    if len(student) != len(teacher) or not student:
        msg = (
            f'{len(student)} student levels vs {len(teacher)} teacher taps: the '
            "student needs one stage per teacher tap (set the teacher's taps or the "
            "student's levels)."
        )
        raise ValueError(msg)
    losses = []
    for level, (s, t) in enumerate(zip(student, teacher, strict=True)):
        if s.shape != t.shape:
            msg = (
                f'Level {level}: student features {list(s.shape)} vs teacher '
                f'{list(t.shape)}: the feature alignment must project to the '
                "teacher's width and grid."
            )
            raise ValueError(msg)
        s, t = s.float(), t.float()
        term = s.new_zeros(())
        if alpha:
            term = term + alpha * width_kl(s, t, temperature)
        if alpha != 1:
            term = term + (1 - alpha) * F.mse_loss(s, t)
        losses.append(term)
    return torch.stack(losses).mean()
