"""One writer per output: an OS-level lock beside the file being written.

A prediction writing ``<output>`` holds an exclusive ``flock`` on
``<output>.lock`` from the moment it opens its partial file until it commits,
discards or gives up. A second writer of the same output is refused at once,
with the process that holds the lock named; it never touches the partial file.
The kernel drops a lock when its process exits, however it exits (``kill -9``
included), so a lock file left by a dead process is stale by construction: the
next writer takes it over. On systems without ``fcntl`` (Windows) no lock is
taken. Locks on network file systems are as reliable as their ``flock``.
"""

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputBusyError(RuntimeError):
    """Another process is writing the same output."""


def lock_path(output: Path) -> Path:
    """The lock file of an output.

    Args:
        output: The final output path.

    Returns:
        ``<output>.lock`` beside it.
    """
    return output.with_name(output.name + '.lock')


def _holder(path: Path) -> str:
    """Who holds the lock, in words, from the lock file's record."""
    try:
        record = json.loads(path.read_text())
        return (
            f'pid {record["pid"]} on {record["host"]}, since {record["started"]}: '
            f'{record["command"]}'
        )
    except (OSError, ValueError, KeyError, TypeError):
        return 'another process'


class OutputLock:
    """An exclusive, non-blocking lock on ``<output>.lock``.

    Use :meth:`acquire` and :meth:`release` (or ``with``). Acquiring twice from
    one object is a no-op; a second object (another writer, even in this
    process) is refused.

    Attributes:
        output: The output the lock guards.
        path: The lock file.
    """

    def __init__(self, output: str | os.PathLike[str]) -> None:
        """Initialize a new OutputLock instance.

        Args:
            output: The final output path.
        """
        self.output = Path(output)
        self.path = lock_path(self.output)
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock, or fail at once if another writer has it.

        Raises:
            OutputBusyError: Naming the process that writes the output.
        """
        if self._file is not None or fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            file = open(self.path, 'a+')  # noqa: SIM115 - held until release
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()
                msg = (
                    f'{self.output} is being written by {_holder(self.path)}. Wait '
                    'for it to finish, or write to another output; if no such '
                    f'process runs, delete {self.path}'
                )
                raise OutputBusyError(msg) from None
            # The holder before us may have removed the file after we opened it:
            # then our lock is on a deleted file and a third writer could lock a
            # new one. Lock the file that is at the path, or try again.
            try:
                same = os.path.samestat(os.fstat(file.fileno()), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            file.close()
        record: dict[str, Any] = {
            'pid': os.getpid(),
            'host': socket.gethostname(),
            'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'command': ' '.join(sys.argv) or 'python',
        }
        file.seek(0)
        file.truncate()
        file.write(json.dumps(record) + '\n')
        file.flush()
        self._file = file

    def release(self) -> None:
        """Drop the lock and remove the lock file (no-op when not held)."""
        if self._file is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self._file.close()  # closing the file drops the flock
            self._file = None

    def __enter__(self) -> 'OutputLock':
        """Acquire the lock."""
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the lock."""
        self.release()
