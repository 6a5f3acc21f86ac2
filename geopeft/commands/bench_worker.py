"""Subprocess body of ``geopeft bench peft``: time and measure one variant.

A variant is a PEFT method with a training setting: activation checkpointing of the
backbone's blocks on or off, and 32-bit or bfloat16-autocast precision. The worker
builds the model, runs ``warmup`` untimed and ``steps`` timed training steps (each
split into forward + loss, backward and optimizer step), then one more untimed step
in which it counts the bytes autograd saves for the backward pass and, on CPU, the
peak of live heap memory.
"""

import contextlib
import ctypes
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..models import PEFTClassifier
from ..tasks.optim import trainable_parameters

#: Precisions the benchmark runs at: float32, or bfloat16 autocast.
PRECISIONS = ('32', 'bf16')


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            'arena',
            'ordblks',
            'smblks',
            'hblks',
            'hblkhd',
            'usmblks',
            'fsmblks',
            'uordblks',
            'fordblks',
            'keepcost',
        )
    ]


def heap_in_use() -> Callable[[], int] | None:
    """Return a function that reads the bytes malloc has handed out and not freed.

    The count (``uordblks + hblkhd`` of glibc's ``mallinfo2``) is the memory the
    program really holds: unlike the resident set size it does not include freed
    memory that the allocator keeps for reuse.

    Returns:
        The reader, or ``None`` where glibc's ``mallinfo2`` is not available.
    """
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def read() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return read


class _HeapPeak(TorchDispatchMode):
    """Record the peak of live heap bytes after every tensor operation."""

    def __init__(self, read: Callable[[], int]) -> None:
        super().__init__()
        self.read = read
        self.peak = read()

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.read())
        return out


@contextlib.contextmanager
def count_saved_bytes(
    exclude: set[int], counts: dict[int, int]
) -> Iterator[dict[int, int]]:
    """Count the storage bytes of the tensors autograd saves for backward.

    Each storage is counted once (views share it); storages in *exclude* (the
    parameters', which exist anyway) are skipped. Inside checkpointed regions the
    checkpoint's own hooks take precedence, so only what is saved outside them is
    counted (the checkpoint keeps each region's inputs instead).

    Args:
        exclude: Data pointers of storages not to count.
        counts: Filled with ``{data pointer: bytes}``.

    Yields:
        *counts*.
    """

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in exclude:
            counts[pointer] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield counts


def measure(options: dict[str, Any]) -> dict[str, Any]:
    """Build the model, run training steps and measure them.

    Args:
        options: The benchmark options (see :func:`geopeft.commands.bench.run_variant`);
            ``grad_checkpointing``, ``precision`` and ``threads`` are optional.

    Returns:
        Measurements: trainable %, median step time and its split into forward,
        backward and optimizer, CPU time, peak training memory (resident set growth
        and live heap), saved-activation bytes, adapter bytes.

    Raises:
        ValueError: If the precision is unknown.
    """
    torch.manual_seed(0)
    if options.get('threads'):
        torch.set_num_threads(options['threads'])
    precision = str(options.get('precision') or '32')
    if precision not in PRECISIONS:
        msg = f'precision must be one of {PRECISIONS}, got {precision!r}'
        raise ValueError(msg)
    checkpointing = bool(options.get('grad_checkpointing'))
    name = options['device']
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(name)
    peft: dict[str, Any] = {'method': options['method']}
    for key in ('bits', 'hidden'):
        if options[key] is not None:
            peft[key] = options[key]
    model = PEFTClassifier(
        options['backbone'],
        num_classes=options['num_classes'],
        in_channels=options['in_channels'],
        peft=peft,
        img_size=options['img_size'],
        grad_checkpointing=checkpointing,
    )
    report = model.parameter_report()
    memory_format = (
        torch.channels_last if options['channels_last'] else torch.contiguous_format
    )
    model = model.to(device, memory_format=memory_format).train()
    parameters = trainable_parameters(model)
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    size = options['image_size']
    x = torch.randn(options['batch_size'], options['in_channels'], size, size)
    x = x.to(device, memory_format=memory_format)
    y = torch.randint(
        0, options['num_classes'], (options['batch_size'],), device=device
    )

    def step() -> tuple[float, float, float, float]:
        """One training step; returns forward, backward, optimizer and CPU time."""
        start, cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=precision == 'bf16'
        ):
            loss = criterion(model(x), y)
        _sync(device)
        forward = time.perf_counter()
        loss.backward()
        _sync(device)
        backward = time.perf_counter()
        optimizer.step()
        _sync(device)
        end = time.perf_counter()
        return (
            forward - start,
            backward - forward,
            end - backward,
            time.process_time() - cpu,
        )

    _sync(device)
    read_heap = heap_in_use() if device.type == 'cpu' else None
    heap_before = read_heap() if read_heap is not None else 0
    rss_before = psutil.Process().memory_info().rss
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        allocated_before = torch.cuda.memory_allocated(device)
    phases: list[tuple[float, float, float, float]] = []
    without_grad = 0
    for index in range(options['warmup'] + options['steps']):
        times = step()
        if index == 0:
            without_grad = sum(p.grad is None for p in parameters)
        if index >= options['warmup']:
            phases.append(times)
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device) - allocated_before
        live: float | None = peak
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = max(0, peak_rss - rss_before)
        live = None

    # One more, untimed step: saved-activation bytes and the live heap peak.
    saved: dict[int, int] = {}
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
    heap = _HeapPeak(read_heap) if read_heap is not None else contextlib.nullcontext()
    with heap, count_saved_bytes(exclude, saved):
        step()
    if isinstance(heap, _HeapPeak):
        live = max(0, heap.peak - heap_before)

    def median(values: list[float]) -> float:
        return 1000 * statistics.median(values)

    forward, backward, optim, cpu = map(list, zip(*phases, strict=True))
    step_times = [sum(times[:3]) for times in phases]
    return {
        'method': options['method'],
        'grad_checkpointing': checkpointing,
        'precision': precision,
        'device': str(device),
        'torch': torch.__version__,
        'threads': torch.get_num_threads(),
        'trainable': report.trainable,
        'total': report.total,
        'trainable_percent': report.trainable_percent,
        'adapter_bytes': report.adapter_bytes,
        'step_ms': median(step_times),
        'forward_ms': median(forward),
        'backward_ms': median(backward),
        'optimizer_ms': median(optim),
        'cpu_ms': median(cpu),
        'peak_mb': peak / 2**20,
        'live_mb': None if live is None else live / 2**20,
        'saved_mb': sum(saved.values()) / 2**20,
        'params_without_grad': without_grad,
    }


if __name__ == '__main__':
    print(json.dumps(measure(json.loads(sys.argv[1]))))
