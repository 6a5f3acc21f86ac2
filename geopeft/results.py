"""Result records: every number the project reports, with where it came from.

A :class:`ResultRecord` is one table of results (a benchmark notebook's run, a
``geopeft bench`` table, the demo's scores) together with its provenance: the
command that printed it, the hardware, the date, the commit and whether it was a
``full`` run or a ``smoke`` run (tiny data, a check that the pipeline works, not a
result). Records are JSON files in ``experiments/results/``;
``experiments/RESULTS.md`` is rendered from them by ``geopeft results``, never
edited by hand.
"""

import dataclasses
import datetime
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Literal

from .io import atomic_write_text
from .system import available_cpus

#: Where records are kept, relative to the repository root.
RESULTS_DIR = Path('experiments/results')

#: Record modes: a full run (a result) or a smoke run (a pipeline check).
MODES = ('full', 'smoke')

Mode = Literal['full', 'smoke']

#: What a record says where its source did not state a date, a commit, a command
#: or the hardware (transcribed figures): never a guess.
NOT_RECORDED = 'not recorded'

#: A date (``YYYY-MM-DD``) or a range of dates (``YYYY-MM-DD/YYYY-MM-DD``).
_DATE = re.compile(r'\d{4}-\d{2}-\d{2}(/\d{4}-\d{2}-\d{2})?')


@dataclasses.dataclass
class ResultRecord:
    """One table of results and its provenance.

    Attributes:
        experiment: Short machine name of what was run, e.g.
            ``'change_detection_benchmark'`` or ``'bench_predict'``.
        title: Human title of the table.
        dataset: Data the numbers were measured on (``'levircd_samples'``,
            ``'generated rasters'``, ...).
        mode: ``'full'`` for a result, ``'smoke'`` for a pipeline check on tiny
            data whose numbers mean nothing.
        command: The command that prints (and records) these numbers.
        hardware: Where it ran (see :func:`hardware_summary`).
        date: ISO date of the run (``YYYY-MM-DD``); for figures transcribed
            from the docs also a range (``YYYY-MM-DD/YYYY-MM-DD``) or
            :data:`NOT_RECORDED`.
        columns: Column names in display order; every row holds these keys.
        rows: The table, one mapping per row.
        notes: Anything a reader needs to read the numbers right.
        commit: Git commit of the code that produced them (``''`` if unknown).
    """

    experiment: str
    title: str
    dataset: str
    mode: Mode
    command: str
    hardware: str
    date: str
    columns: list[str]
    rows: list[dict[str, Any]]
    notes: str = ''
    commit: str = ''

    def __post_init__(self) -> None:
        """Check the fields a reader relies on."""
        if self.mode not in MODES:
            msg = f'mode must be one of {MODES}, got {self.mode!r}'
            raise ValueError(msg)
        if not isinstance(self.date, str) or not (
            _DATE.fullmatch(self.date) or self.date == NOT_RECORDED
        ):
            msg = (
                'date must be an ISO date (YYYY-MM-DD), a range '
                f'(YYYY-MM-DD/YYYY-MM-DD) or {NOT_RECORDED!r}, got {self.date!r}'
            )
            raise ValueError(msg)
        if not re.fullmatch(r'[A-Za-z0-9_.-]+', self.experiment):
            msg = (
                'experiment must be letters, digits, ".", "_" or "-" (it names '
                f'the record file), got {self.experiment!r}'
            )
            raise ValueError(msg)
        for index, row in enumerate(self.rows):
            missing = [column for column in self.columns if column not in row]
            if missing:
                msg = f'row {index} of {self.experiment!r} lacks columns {missing}'
                raise ValueError(msg)

    @property
    def name(self) -> str:
        """File stem of the record: experiment, dataset and mode."""
        dataset = re.sub(r'[^A-Za-z0-9_.-]+', '_', self.dataset).strip('_')
        return f'{self.experiment}-{dataset}-{self.mode}'

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'ResultRecord':
        """Build a record from :meth:`to_dict` output (unknown keys rejected)."""
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            msg = f'unknown result-record keys {unknown}; known: {sorted(fields)}'
            raise ValueError(msg)
        return cls(**data)

    def save(self, directory: str | os.PathLike[str] = RESULTS_DIR) -> Path:
        """Write the record atomically to ``<directory>/<name>.json``.

        A record of the same experiment, dataset and mode is replaced: the
        latest run is the one reported.

        Args:
            directory: Records folder (created when missing).

        Returns:
            The record's path.
        """
        path = Path(directory) / f'{self.name}.json'
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=_plain))
        return path


def _plain(value: Any) -> Any:
    """JSON fallback for numpy / torch scalars and paths."""
    if hasattr(value, 'item'):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    msg = f'cannot store {type(value).__name__} in a result record'
    raise TypeError(msg)


def load_records(directory: str | os.PathLike[str] = RESULTS_DIR) -> list[ResultRecord]:
    """Read every ``*.json`` record of *directory*, sorted by file name.

    Args:
        directory: Records folder.

    Returns:
        The records (empty when the folder does not exist).

    Raises:
        ValueError: A file is not a valid record (the message names it).
    """
    return [load_record(path) for path in sorted(Path(directory).glob('*.json'))]


#: Type of each field in a record file (``rows`` and ``columns`` checked apart).
_FIELD_TYPES = {
    'experiment': str,
    'title': str,
    'dataset': str,
    'mode': str,
    'command': str,
    'hardware': str,
    'date': str,
    'notes': str,
    'commit': str,
}


def load_record(path: str | os.PathLike[str]) -> ResultRecord:
    """Read one record file, checking the type of every field.

    Args:
        path: A ``*.json`` record.

    Returns:
        The record.

    Raises:
        ValueError: The file is not JSON, or not a valid record; the message
            names the file and what is wrong.
    """
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            msg = f'a record is a JSON object, not {type(data).__name__}'
            raise ValueError(msg)
        _check_types(data)
        return ResultRecord.from_dict(data)
    except (ValueError, TypeError) as error:
        msg = f'{path} is not a valid result record: {error}'
        raise ValueError(msg) from error


def _check_types(data: dict[str, Any]) -> None:
    """Reject fields of the wrong JSON type (before the record is built)."""
    for key, kind in _FIELD_TYPES.items():
        if key in data and not isinstance(data[key], kind):
            msg = f'{key!r} must be a {kind.__name__}, got {data[key]!r}'
            raise ValueError(msg)
    columns = data.get('columns', [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        msg = f"'columns' must be a list of strings, got {columns!r}"
        raise ValueError(msg)
    rows = data.get('rows', [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        msg = "'rows' must be a list of objects (one per table row)"
        raise ValueError(msg)


def today() -> str:
    """Today's date in ISO form (local time)."""
    return datetime.date.today().isoformat()


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """Short commit of the checkout at *cwd*, with ``+dirty`` for local edits.

    Returns ``''`` outside a git checkout or without git.
    """
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--untracked-files=no'],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ''
    return f'{commit}+dirty' if dirty else commit


def _cpu_name() -> str:
    """The processor's model name where the OS tells it, else the architecture."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_summary(device: str | None = None) -> str:
    """Describe the hardware a result was measured on.

    Args:
        device: ``'cuda'`` (or ``'cuda:N'``) to name the GPU; anything else
            describes the CPU only. ``None`` picks CUDA when it is available.

    Returns:
        E.g. ``'NVIDIA H200 (CUDA 13.0, torch 2.11.0) + 16 CPU cores'`` or
        ``'CPU: 2 cores, Intel(R) Xeon(R) ... (x86_64), torch 2.14.1'``.
    """
    import torch

    cores = available_cpus()
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if str(device).startswith('cuda') and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
        return (
            f'{name} (CUDA {torch.version.cuda}, torch {torch.__version__}) '
            f'+ {cores} CPU cores'
        )
    return (
        f'CPU: {cores} cores, {_cpu_name()} ({platform.machine()}), '
        f'torch {torch.__version__}'
    )
