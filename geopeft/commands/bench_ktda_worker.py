"""Subprocess body of ``geopeft bench ktda``: measure one KTDA student (or the teacher).

A student variant is a :class:`~geopeft.distill.KTDAModel` (a PEFT method for the
student, an FMM kind and depth) with the way the distillation loss gets the
student's aligned features (``distill_pass``). The worker builds the student and
the frozen teacher, runs ``warmup`` untimed and ``steps`` timed training steps as
:meth:`~geopeft.tasks.KTDASegmentation.training_step` does (cross-entropy of the
main logits + 0.4 x that of the auxiliary logits + the distillation loss against
the teacher's features, computed under ``torch.no_grad``), with the backward pass
and an AdamW step, and then times the deployable forward ``model(x)`` in
evaluation mode. The ``teacher`` variant only counts and times the teacher.
"""

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import torch
from torch import Tensor, nn

from ..distill import (
    DINOv2Teacher,
    KTDAModel,
    build_ktda_model,
    distillation_loss,
    ktda_parameter_report,
)
from ..tasks.optim import trainable_parameters
from .bench_worker import PRECISIONS

#: Weight of the auxiliary head's cross-entropy, as in the reference.
AUX_WEIGHT = 0.4

#: How the distillation loss gets the student's aligned features.
DISTILL_PASSES = ('reuse', 'second')


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _median_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def build_teacher(options: dict[str, Any], device: torch.device) -> DINOv2Teacher:
    """Build the frozen teacher with random weights on *device*.

    Args:
        options: The benchmark options (``teacher``, ``teacher_taps``,
            ``teacher_kwargs``).
        device: Where it runs.

    Returns:
        The teacher, in evaluation mode.
    """
    teacher = DINOv2Teacher(
        options['teacher'],
        taps=options.get('teacher_taps'),
        model_kwargs=options.get('teacher_kwargs'),
    )
    return teacher.to(device)


def teacher_features(teacher: DINOv2Teacher, x: Tensor) -> list[Tensor]:
    """The teacher's features as the KTDA task computes them.

    Under ``torch.no_grad``, in bf16 autocast on an accelerator and in fp32 on the
    CPU (the task's ``teacher_precision='auto'``), whatever the student's precision.

    Args:
        teacher: The teacher.
        x: Images.

    Returns:
        One fp32 map per tap.
    """
    device = x.device.type
    with (
        torch.no_grad(),
        torch.autocast(device, dtype=torch.bfloat16, enabled=device != 'cpu'),
    ):
        features = teacher(x)
    return [f.float() for f in features]


def time_calls(
    call: Callable[[], Any], device: torch.device, warmup: int, steps: int
) -> list[float]:
    """Time ``warmup`` untimed and ``steps`` timed calls.

    Args:
        call: What to run.
        device: Synchronised after each call.
        warmup: Untimed calls.
        steps: Timed calls.

    Returns:
        The wall times of the timed calls, in seconds.
    """
    times = []
    for index in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _resolve_device(name: str) -> torch.device:
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(name)


def measure(options: dict[str, Any]) -> dict[str, Any]:
    """Build one variant, run training steps and inference, and measure them.

    Args:
        options: The benchmark options (see
            :func:`geopeft.commands.bench_ktda.worker_options`): the variant
            (``variant``; ``peft``, ``fmm``, ``fmm_depth``, ``distill_pass`` for a
            student, ``teacher_only`` for the teacher) and the shared settings.

    Returns:
        Parameter counts (``total``, ``deployable``, ``trainable``,
        ``teacher_params``), the inference time per image (``infer_ms``), the
        training step time (``step_ms``) and peak training memory (``peak_mb``;
        None for the teacher), and the setting.

    Raises:
        ValueError: If the precision or the distillation pass is unknown.
    """
    torch.manual_seed(0)
    if options.get('threads'):
        torch.set_num_threads(options['threads'])
    precision = str(options.get('precision') or '32')
    if precision not in PRECISIONS:
        msg = f'precision must be one of {PRECISIONS}, got {precision!r}'
        raise ValueError(msg)
    distill_pass = options.get('distill_pass') or 'reuse'
    if distill_pass not in DISTILL_PASSES:
        msg = f'distill_pass must be one of {DISTILL_PASSES}, got {distill_pass!r}'
        raise ValueError(msg)
    device = _resolve_device(options['device'])
    batch, size = options['batch_size'], options['image_size']
    warmup, steps = options['warmup'], options['steps']
    row: dict[str, Any] = {
        'variant': options['variant'],
        'precision': precision,
        'device': str(device),
        'torch': torch.__version__,
        'threads': torch.get_num_threads(),
        'batch_size': batch,
        'image_size': size,
    }
    teacher = build_teacher(options, device)
    teacher_params = _count(teacher)
    x = torch.randn(batch, 3, size, size, device=device)

    if options.get('teacher_only'):
        times = time_calls(lambda: teacher_features(teacher, x), device, warmup, steps)
        return row | {
            'peft': None,
            'fmm': None,
            'fmm_depth': None,
            'distill_pass': None,
            'total': teacher_params,
            'deployable': teacher_params,
            'trainable': 0,
            'trainable_percent': 0.0,
            'teacher_params': teacher_params,
            'groups': {'teacher': teacher_params},
            'weights_mb': _bytes(teacher) / 2**20,
            'infer_ms': _median_ms(times) / batch,
            'step_ms': None,
            'peak_mb': None,
            'params_without_grad': 0,
        }

    model = build_ktda_model(
        options['backbone'],
        num_classes=options['num_classes'],
        peft=options['peft'],
        teacher=options['teacher'],
        teacher_taps=options.get('teacher_taps'),
        teacher_kwargs=options.get('teacher_kwargs'),
        model_kwargs=options.get('model_kwargs'),
        fmm=options['fmm'],
        fmm_depth=options['fmm_depth'],
        fmm_heads=options['fmm_heads'],
        head_channels=options['head_channels'],
        aux_channels=options['aux_channels'],
    )
    report = ktda_parameter_report(model)
    groups = {name: group.total for name, group in report.groups.items()}
    model = model.to(device).train()
    parameters = trainable_parameters(model)
    optimizer = torch.optim.AdamW(parameters, lr=6e-4, weight_decay=0.01)
    criterion = nn.CrossEntropyLoss()
    y = torch.randint(0, options['num_classes'], (batch, size, size), device=device)

    def autocast() -> torch.autocast:
        return torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=precision == 'bf16'
        )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = _training_loss(model, teacher, x, y, criterion, distill_pass)
        loss.backward()
        optimizer.step()

    _sync(device)
    rss_before = psutil.Process().memory_info().rss
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        allocated_before = torch.cuda.memory_allocated(device)
    step_times, without_grad = [], 0
    for index in range(warmup + steps):
        start = time.perf_counter()
        step()
        _sync(device)
        if index == 0:
            without_grad = sum(p.grad is None for p in parameters)
        if index >= warmup:
            step_times.append(time.perf_counter() - start)
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device) - allocated_before
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = max(0, peak_rss - rss_before)

    # Inference: the deployable model only, as a user runs it.
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), autocast():
        infer_times = time_calls(lambda: model(x), device, warmup, steps)

    return row | {
        'peft': options['peft'],
        'fmm': model.fmm.kind,
        'fmm_depth': model.fmm.depth,
        'distill_pass': distill_pass,
        'total': report.total,
        'deployable': report.total - groups.get('aux_head', 0),
        'trainable': report.trainable,
        'trainable_percent': report.trainable_percent,
        'teacher_params': teacher_params,
        'groups': groups,
        'weights_mb': (_bytes(model) + _bytes(teacher)) / 2**20,
        'infer_ms': _median_ms(infer_times) / batch,
        'step_ms': _median_ms(step_times),
        'peak_mb': peak / 2**20,
        'params_without_grad': without_grad,
    }


def _training_loss(
    model: KTDAModel,
    teacher: DINOv2Teacher,
    x: Tensor,
    y: Tensor,
    criterion: nn.Module,
    distill_pass: str,
) -> Tensor:
    """The KTDA training loss of one batch, as the task computes it.

    Args:
        model: The student.
        teacher: The frozen teacher.
        x: Images.
        y: Masks.
        criterion: Cross-entropy.
        distill_pass: ``'reuse'`` the FAM outputs of the training pass, or run the
            student's backbone and FAM a ``'second'`` time.

    Returns:
        ``CE(main) + 0.4 CE(aux) + L_distill``.
    """
    out = model.forward_train(x)
    loss = criterion(out.logits, y)
    if out.aux_logits is not None:
        loss = loss + AUX_WEIGHT * criterion(out.aux_logits, y)
    aligned = out.aligned if distill_pass == 'reuse' else model.align(x)
    return loss + distillation_loss(aligned, teacher_features(teacher, x))


if __name__ == '__main__':
    print(json.dumps(measure(json.loads(sys.argv[1]))))
