"""Training step time and peak training memory, measured inside a Lightning fit.

:class:`TrainingMeter` is a callback, so every method of a benchmark is measured
in the same fit that trains it, on any accelerator:

* **step time**: from ``on_train_batch_start`` to ``on_train_batch_end``, i.e.
  forward, loss, backward and optimizer step (data loading and the on-device
  augmentation run before it and are not counted), with the device synchronised
  at both ends; the mean over the steps after ``warmup_steps``.
* **peak memory**: the peak above what was allocated when training started
  (the model's weights are already there): gradients, optimizer state and saved
  activations. On CUDA it is ``torch.cuda.max_memory_allocated``; on the CPU the
  bytes malloc has handed out and not freed (glibc ``mallinfo2``, the same count
  as ``geopeft bench peft``'s live heap), sampled by a thread every
  ``sample_interval`` seconds. Not the resident set: in one process running
  method after method, the resident-set peak of an earlier method would hide the
  later ones. Where ``mallinfo2`` is missing the resident set is sampled instead.
"""

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ..commands.bench_worker import heap_in_use


@dataclass(frozen=True)
class Measurement:
    """What :class:`TrainingMeter` measured in one fit.

    Attributes:
        step_seconds: Mean training step time after warm-up, in seconds.
        timed_steps: Number of steps averaged.
        peak_bytes: Peak training memory above the start of training, in bytes.
        memory_source: How memory was read: ``'cuda allocated'``, ``'cpu heap'``
            or ``'cpu resident set'``.
        device: Device type of the fit (``'cpu'``, ``'cuda'``, ...).
    """

    step_seconds: float
    timed_steps: int
    peak_bytes: int
    memory_source: str
    device: str

    @property
    def step_ms(self) -> float:
        """Mean step time in milliseconds."""
        return 1000 * self.step_seconds

    @property
    def peak_mb(self) -> float:
        """Peak training memory in MiB."""
        return self.peak_bytes / 2**20


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA, MPS); nothing on the CPU.

    Args:
        device: The device.
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elif device.type == 'mps':
        torch.mps.synchronize()


class _PeakSampler:
    """A thread that keeps the peak of a memory reading until stopped."""

    def __init__(self, read: Callable[[], int], interval: float) -> None:
        self.read = read
        self.interval = interval
        self.peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.read())

    def stop(self) -> int:
        """Stop sampling and return the peak seen (a last reading included)."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())
        return self.peak


def _resident_set() -> int:
    """Resident set size of this process, in bytes."""
    return psutil.Process().memory_info().rss


class TrainingMeter(Callback):
    """Measure mean training step time after warm-up and peak training memory.

    Attach it to the Trainer of a fit; after the fit :attr:`measurement` holds the
    result (see the module docstring for what is measured and how).
    """

    def __init__(self, warmup_steps: int = 5, sample_interval: float = 0.002) -> None:
        """Initialize a new TrainingMeter instance.

        Args:
            warmup_steps: First training steps left out of the mean (allocator and
                kernel warm-up). When a fit has no more steps than this, all but
                the first step are averaged (the only step, when there is one).
            sample_interval: Seconds between two memory readings on the CPU.

        Raises:
            ValueError: If *warmup_steps* is negative or *sample_interval* is not
                positive.
        """
        if warmup_steps < 0 or sample_interval <= 0:
            msg = (
                'warmup_steps must be >= 0 and sample_interval > 0, got '
                f'{warmup_steps} and {sample_interval}'
            )
            raise ValueError(msg)
        self.warmup_steps = warmup_steps
        self.sample_interval = sample_interval
        self.step_times: list[float] = []
        self._device = torch.device('cpu')
        self._started = 0.0
        self._baseline = 0
        self._peak = 0
        self._source = ''
        self._sampler: _PeakSampler | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Take the memory baseline and start watching the peak."""
        self.step_times = []
        self._device = pl_module.device
        synchronize(self._device)
        if self._device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self._device)
            self._baseline = torch.cuda.memory_allocated(self._device)
            self._source = 'cuda allocated'
            return
        read = heap_in_use()
        self._source = 'cpu heap'
        if read is None:
            read, self._source = _resident_set, 'cpu resident set'
        self._baseline = read()
        self._sampler = _PeakSampler(read, self.sample_interval)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Start the step's clock."""
        synchronize(self._device)
        self._started = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Stop the step's clock."""
        synchronize(self._device)
        self.step_times.append(time.perf_counter() - self._started)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Read the peak memory."""
        if self._device.type == 'cuda':
            self._peak = torch.cuda.max_memory_allocated(self._device)
        elif self._sampler is not None:
            self._peak = self._sampler.stop()
            self._sampler = None

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Stop the sampling thread when the fit fails."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    @property
    def timed_steps(self) -> list[float]:
        """The step times that count: after warm-up (see ``warmup_steps``)."""
        times = self.step_times
        if len(times) > self.warmup_steps:
            return times[self.warmup_steps :]
        return times[1:] if len(times) > 1 else times

    @property
    def measurement(self) -> Measurement:
        """The measurement of the last fit.

        Raises:
            RuntimeError: If no training step ran.
        """
        timed = self.timed_steps
        if not timed:
            msg = 'TrainingMeter saw no training step: did the fit run?'
            raise RuntimeError(msg)
        return Measurement(
            step_seconds=statistics.fmean(timed),
            timed_steps=len(timed),
            peak_bytes=max(0, self._peak - self._baseline),
            memory_source=self._source,
            device=self._device.type,
        )
