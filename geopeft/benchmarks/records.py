"""A benchmark's result record and the papermill command that reproduces it.

The record (:class:`geopeft.results.ResultRecord`) is what ``geopeft results``
renders into ``experiments/RESULTS.md``; its ``command`` is the papermill call
that runs the same notebook with the same parameters.
"""

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..results import ResultRecord, git_commit, hardware_summary, today
from .runs import BenchmarkResult


def _parameter_value(value: Any) -> str:
    """A parameter as ``papermill -p`` reads it back (True, None, 3, 0.001, text)."""
    if isinstance(value, list | tuple):
        return ','.join(str(item) for item in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def papermill_command(notebook: str, output: str, parameters: Mapping[str, Any]) -> str:
    """The shell command that runs *notebook* with *parameters* through papermill.

    Scalars and lists (comma-joined) go through ``-p``, mappings through ``-y``
    (as JSON, which is YAML).

    Args:
        notebook: The notebook, e.g.
            ``'experiments/notebooks/change_detection_benchmark.ipynb'``.
        output: The executed notebook to write.
        parameters: Parameter name -> value.

    Returns:
        A quoted command line.
    """
    parts = ['papermill', notebook, output]
    for name, value in parameters.items():
        if isinstance(value, Mapping):
            parts += ['-y', json.dumps({name: dict(value)})]
        else:
            parts += ['-p', name, _parameter_value(value)]
    return shlex.join(parts)


def benchmark_record(
    result: BenchmarkResult,
    *,
    experiment: str,
    title: str,
    command: str,
    notes: str = '',
) -> ResultRecord:
    """The result record of a benchmark: its table and where it came from.

    Args:
        result: The benchmark's runs.
        experiment: Record name, e.g. ``'change_detection_benchmark'``.
        title: Human title of the table.
        command: The command that reproduces it (:func:`papermill_command`).
        notes: Text put before the settings and measurement notes.

    Returns:
        The record: mode ``'smoke'`` on generated data, else ``'full'``; the
        hardware of the device the runs trained on; today's date; the commit of
        the geopeft checkout that ran them.
    """
    settings = result.settings
    seeds = ', '.join(str(seed) for seed in result.seeds)
    spread = 'mean (and std) over seeds' if len(result.seeds) > 1 else 'seed'
    described = (
        f'Every method: backbone {settings.backbone} (weights {settings.weights}), '
        f'{settings.epochs} epochs, batch {settings.batch_size}, AdamW lr '
        f'{settings.lr} wd {settings.weight_decay}, {settings.warmup_epochs} '
        f'warm-up epochs + cosine; the last epoch is scored on the test split; '
        f'{spread} {seeds}.'
    )
    text = ' '.join(part for part in (notes, described) if part)
    return ResultRecord(
        experiment=experiment,
        title=title,
        dataset=result.dataset_name,
        mode=result.mode,  # type: ignore[arg-type]
        command=command,
        hardware=hardware_summary(result.device),
        date=today(),
        columns=result.record_columns,
        rows=result.record_rows(),
        notes=f'{text} {result.measurement_notes()}',
        commit=git_commit(Path(__file__).parent),
    )
