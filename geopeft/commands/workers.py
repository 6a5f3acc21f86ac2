"""Benchmark workers: one measurement in its own Python process.

Each benchmark measures in a fresh process (``python -m <worker> <options JSON>``)
so that no measurement sees another's memory, threads or caches; the worker
prints its row as JSON on its last line of output.
"""

import json
import subprocess
import sys
from typing import Any


def run_worker(module: str, options: dict[str, Any], what: str) -> dict[str, Any]:
    """Run a worker module with JSON options and return the row it prints.

    Args:
        module: The worker, e.g. ``'geopeft.commands.bench_worker'``.
        options: Its options (JSON-serialisable).
        what: What it measures, for the error message.

    Returns:
        The JSON object on the worker's last line of output.

    Raises:
        RuntimeError: If the worker fails (with the end of its error output).
    """
    proc = subprocess.run(
        [sys.executable, '-m', module, json.dumps(options)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        msg = f'benchmark of {what} failed:\n{proc.stderr[-3000:]}'
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])
