"""One fit + test per method and seed, and the table of a whole benchmark.

:func:`fit_and_test` trains a task with the settings every row shares, measures
it with :class:`~geopeft.benchmarks.measure.TrainingMeter` and scores the last
epoch on the test split. :class:`BenchmarkResult` gathers the runs and turns them
into a table: one row per method, test metrics as mean (and standard deviation
over seeds when there are several), parameters, adapter size, step time and peak
memory.
"""

import contextlib
import gc
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import (
    Callback,
    LightningDataModule,
    LightningModule,
    Trainer,
    seed_everything,
)
from lightning.pytorch.loggers import CSVLogger

from .measure import Measurement, TrainingMeter
from .methods import BenchmarkMethod
from .settings import BenchmarkSettings

#: ``papermill`` and progress messages go through this (``print`` by default).
Progress = Callable[[str], None]

#: Bytes per MB in every table (MiB).
MB = 2**20


@dataclass(frozen=True)
class Metric:
    """A test metric shown as a table column.

    Attributes:
        column: Column name, e.g. ``'F1'``.
        key: Logged test metric, e.g. ``'test_ChangedF1'``.
        scale: Factor applied to the logged value (100 for a percentage).
        digits: Decimals kept in the record.
    """

    column: str
    key: str
    scale: float = 1.0
    digits: int = 3


@dataclass
class RunResult:
    """One method fitted and tested with one seed.

    Attributes:
        method: The benchmark row.
        seed: Seed of the run (and of the split, where the dataset draws one).
        scores: Every logged test metric.
        trainable: Trainable parameters.
        total: All parameters.
        trainable_percent: Trainable share, in percent.
        adapter_bytes: Size of the adapter file (trainable state), in bytes.
        measurement: Step time and peak memory of the fit.
        fit_seconds: Wall time of the fit (training and validation).
        samples: Test samples with predictions (change detection only).
    """

    method: BenchmarkMethod
    seed: int
    scores: dict[str, float]
    trainable: int
    total: int
    trainable_percent: float
    adapter_bytes: int
    measurement: Measurement
    fit_seconds: float
    samples: list[dict[str, torch.Tensor]] = field(default_factory=list)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit banners and data-loader hints for a while."""
    names = ('lightning', 'lightning.pytorch', 'lightning.fabric')
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*does not have many workers.*')
            warnings.filterwarnings('ignore', message='.*number of training batches.*')
            warnings.filterwarnings('ignore', message='.*LeafSpec.*')
            warnings.filterwarnings('ignore', message='.*exists and is not empty.*')
            warnings.filterwarnings('ignore', message='.*across ranks is zero.*')
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def fit_and_test(
    task: LightningModule,
    datamodule: LightningDataModule,
    settings: BenchmarkSettings,
    run_dir: Path,
    callbacks: Sequence[Callback] = (),
) -> tuple[dict[str, float], Measurement, float]:
    """Fit a task with the shared settings, then test its last epoch.

    Args:
        task: The task to train.
        datamodule: Its data.
        settings: Resolved settings (epochs, accelerator, ...).
        run_dir: Folder of the run's CSV log.
        callbacks: More callbacks (e.g. one that keeps test predictions).

    Returns:
        The test metrics, the measurement and the fit's wall time in seconds.
    """
    meter = TrainingMeter(warmup_steps=settings.warmup_steps)
    limits: dict[str, Any] = {}
    if settings.limit_train_batches is not None:
        limits['limit_train_batches'] = settings.limit_train_batches
    if settings.limit_eval_batches is not None:
        limits['limit_val_batches'] = settings.limit_eval_batches
        limits['limit_test_batches'] = settings.limit_eval_batches
    val_every = getattr(settings, 'val_every', None)
    if val_every:
        limits['check_val_every_n_epoch'] = val_every
    trainer = Trainer(
        max_epochs=settings.epochs,
        accelerator=settings.accelerator,
        devices=1,
        precision=settings.precision,  # type: ignore[arg-type]
        logger=CSVLogger(run_dir, name='', version=''),
        callbacks=[meter, *callbacks],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=run_dir,
        **limits,
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    (scores,) = trainer.test(task, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in scores.items()}, meter.measurement, fit_seconds


@contextlib.contextmanager
def frozen_startup_objects() -> Iterator[None]:
    """Keep the garbage collector off the objects that exist now, for a while.

    Everything imported so far (torch, Lightning, timm...) is millions of objects
    that a full collection walks in about half a second, and full collections run
    between runs (:func:`release_memory`) and whenever the allocation count says
    so, in whichever thread allocates (the memory sampler's too). Freezing them
    (:func:`gc.freeze`) leaves only what the runs create to be walked.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch's CPU operators on *count* threads for a while (None: as is)."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def release_memory() -> None:
    """Free what a finished run left behind (Python garbage, cached CUDA blocks)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class BenchmarkResult:
    """Every run of a benchmark, and the table made of them.

    Attributes:
        settings: The resolved settings shared by every run.
        methods: The rows, in table order.
        seeds: The seeds.
        metrics: Test metrics shown as columns.
        dataset_name: Name of the data (the record's ``dataset``).
        runs: The runs, method by method, seed by seed.
        threads: CPU threads torch ran on (0 before the runs).
    """

    settings: BenchmarkSettings
    methods: list[BenchmarkMethod]
    seeds: list[int]
    metrics: list[Metric]
    dataset_name: str
    runs: list[RunResult] = field(default_factory=list)
    threads: int = 0

    @property
    def mode(self) -> str:
        """``'smoke'`` on generated data, else ``'full'``."""
        return 'smoke' if self.settings.is_smoke else 'full'

    @property
    def device(self) -> str:
        """Device type the runs trained on (``'cpu'``, ``'cuda'``...)."""
        return self.runs[0].measurement.device if self.runs else 'cpu'

    def runs_of(self, method: BenchmarkMethod) -> list[RunResult]:
        """The runs of one method (one per seed)."""
        return [run for run in self.runs if run.method == method]

    def table(self) -> list[dict[str, Any]]:
        """One row per method, with full-precision numbers (for plots, frames).

        Returns:
            Rows with ``method``, ``label``, every metric column (mean over seeds)
            and, with several seeds, ``<column> std``; then ``trainable``,
            ``total``, ``trainable %``, ``adapter MB``, ``step ms``, ``peak MB``
            and ``fit s`` (means over seeds).
        """
        rows = []
        for method in self.methods:
            runs = self.runs_of(method)
            if not runs:
                continue
            row: dict[str, Any] = {'method': method.name, 'label': method.label}
            for metric in self.metrics:
                values = [metric.scale * run.scores[metric.key] for run in runs]
                row[metric.column] = _mean(values)
                if len(self.seeds) > 1:
                    row[f'{metric.column} std'] = _std(values)
            first = runs[0]
            row.update(
                {
                    'trainable': first.trainable,
                    'total': first.total,
                    'trainable %': first.trainable_percent,
                    'adapter MB': first.adapter_bytes / MB,
                    'step ms': _mean([run.measurement.step_ms for run in runs]),
                    'peak MB': _mean([run.measurement.peak_mb for run in runs]),
                    'fit s': _mean([run.fit_seconds for run in runs]),
                }
            )
            rows.append(row)
        return rows

    @property
    def record_columns(self) -> list[str]:
        """Columns of the result record, in display order."""
        columns = ['method']
        for metric in self.metrics:
            columns.append(metric.column)
            if len(self.seeds) > 1:
                columns.append(f'{metric.column} std')
        return [
            *columns,
            'trainable',
            'trainable %',
            'adapter MB',
            'step ms',
            'peak MB',
            'fit s',
        ]

    def record_rows(self) -> list[dict[str, Any]]:
        """The table rounded for the result record (numbers, not strings).

        Returns:
            One row per method with exactly :attr:`record_columns`.
        """
        digits = {metric.column: metric.digits for metric in self.metrics}
        digits |= {f'{column} std': value for column, value in digits.items()}
        digits |= {'trainable %': 3, 'adapter MB': 3, 'step ms': 1, 'peak MB': 1}
        digits |= {'fit s': 1}
        rows = []
        for row in self.table():
            out: dict[str, Any] = {}
            for column in self.record_columns:
                value = row[column]
                if column in digits:
                    value = round(float(value), digits[column])
                out[column] = value
            rows.append(out)
        return rows

    def format_table(self) -> str:
        """The table as aligned text (``mean +- std`` with several seeds)."""
        metric_columns = [metric.column for metric in self.metrics]
        header = ['method', *metric_columns, 'trainable', '%', 'adapter MB']
        header += ['step ms', 'peak MB', 'fit s']
        lines = []
        for row in self.table():
            cells = [row['method']]
            for metric in self.metrics:
                cell = f'{row[metric.column]:.{metric.digits}f}'
                if len(self.seeds) > 1:
                    cell += f'+-{row[f"{metric.column} std"]:.{metric.digits}f}'
                cells.append(cell)
            cells += [
                f'{row["trainable"]:,}',
                f'{row["trainable %"]:.2f}',
                f'{row["adapter MB"]:.2f}',
                f'{row["step ms"]:.1f}',
                f'{row["peak MB"]:.1f}',
                f'{row["fit s"]:.0f}',
            ]
            lines.append(cells)
        widths = [
            max(len(str(cells[i])) for cells in [header, *lines])
            for i in range(len(header))
        ]
        text = [
            '  '.join(
                str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
            for cells in [header, *lines]
        ]
        text.insert(1, '-' * len(text[0]))
        return '\n'.join(text)

    def notebook_parameters(self) -> dict[str, Any]:
        """The notebook parameters that reproduce this benchmark.

        Returns:
            Every settings field, plus ``methods``, ``seeds`` and ``smoke``.
        """
        return {
            **self.settings.parameters(),
            'methods': ','.join(method.name for method in self.methods),
            'seeds': ','.join(str(seed) for seed in self.seeds),
            'smoke': self.settings.is_smoke,
        }

    def measurement_notes(self) -> str:
        """How step time and memory were measured, for a record's notes."""
        source = self.runs[0].measurement.memory_source if self.runs else ''
        memory = {
            'cuda allocated': 'peak of torch.cuda.max_memory_allocated',
            'cpu heap': 'peak of live heap bytes (glibc mallinfo2, sampled every 2 ms)',
            'cpu resident set': 'peak of the resident set (sampled every 2 ms)',
        }.get(source, source)
        timed = self.runs[0].measurement.timed_steps if self.runs else 0
        return (
            f'step ms: mean training step (forward, loss, backward, optimizer; data '
            f'loading excluded) after {self.settings.warmup_steps} warm-up steps '
            f'({timed} steps timed); peak MB: {memory} above the start of training '
            '(gradients, optimizer state, activations; the weights excluded); MB = '
            '2^20 bytes; adapter MB: size of the trainable state as an adapter file; '
            'fit s: wall time of training and validation; torch CPU threads: '
            f'{self.threads}.'
        )

    def describe(self, run: RunResult) -> str:
        """One line of a run's scores and costs, for progress output."""
        scores = ', '.join(
            f'{metric.column} {metric.scale * run.scores[metric.key]:.{metric.digits}f}'
            for metric in self.metrics
        )
        return (
            f'{scores}; trainable {run.trainable_percent:.2f} %, step '
            f'{run.measurement.step_ms:.1f} ms, peak {run.measurement.peak_mb:.1f} '
            f'MB, fit {run.fit_seconds:.0f} s'
        )


def fit_row(
    task: LightningModule,
    datamodule: LightningDataModule,
    settings: BenchmarkSettings,
    row: BenchmarkMethod,
    seed: int,
    report: Callable[[LightningModule], Any],
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Fit and test one row with one seed (:func:`fit_and_test`) into its result.

    Args:
        task: The row's task.
        datamodule: Its data.
        settings: Resolved settings.
        row: The benchmark row.
        seed: The run's seed.
        report: Gives the task's parameter report (``trainable``, ``total``,
            ``trainable_percent``, ``adapter_bytes``).
        callbacks: More callbacks for the fit and the test.

    Returns:
        The run (without samples).
    """
    scores, measurement, fit_seconds = fit_and_test(
        task,
        datamodule,
        settings,
        Path(settings.out_dir) / 'runs' / f'{row.name}-seed{seed}',
        callbacks=callbacks,
    )
    parameters = report(task)
    return RunResult(
        method=row,
        seed=seed,
        scores=scores,
        trainable=parameters.trainable,
        total=parameters.total,
        trainable_percent=parameters.trainable_percent,
        adapter_bytes=parameters.adapter_bytes or 0,
        measurement=measurement,
        fit_seconds=fit_seconds,
    )


def run_methods(
    result: BenchmarkResult,
    fit: Callable[[BenchmarkMethod, int], RunResult],
    progress: Progress = print,
) -> BenchmarkResult:
    """Run every method with every seed, in table order, reporting progress.

    Each run is seeded (:func:`lightning.pytorch.seed_everything`) before its data
    module and model are built, runs with Lightning's banners silenced, and is
    followed by a garbage collection, so that runs do not see each other's memory.

    Args:
        result: The benchmark to fill (its methods and seeds say what to run).
        fit: Builds, fits and tests one method with one seed.
        progress: Called with a line when each run starts and ends.

    Returns:
        *result*, with its runs.
    """
    plan = [(method, seed) for method in result.methods for seed in result.seeds]
    with frozen_startup_objects(), torch_threads(result.settings.threads):
        result.threads = torch.get_num_threads()
        for index, (method, seed) in enumerate(plan, start=1):
            label = f'[{index}/{len(plan)}] {method.name} ({method.label}), seed {seed}'
            progress(f'{label}: fitting...')
            with quiet_lightning():
                seed_everything(seed, workers=True, verbose=False)
                run = fit(method, seed)
            result.runs.append(run)
            progress(f'{label}: {result.describe(run)}')
            release_memory()
    return result
