"""Atomic file output: a file appears at its final path complete, or not at all."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside *path*; rename it onto *path* on success.

    Parent directories are created. If the block raises, the temporary file is
    removed and *path* is left as it was.

    Args:
        path: Final destination.

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> int:
    """Write *data* to *path* atomically, flushed to disk before the rename.

    Args:
        path: Final destination.
        data: File contents.

    Returns:
        Bytes written.
    """
    with atomic_output(path) as temporary, open(temporary, 'wb') as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    return len(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> int:
    """Write UTF-8 *text* to *path* atomically.

    Args:
        path: Final destination.
        text: File contents.

    Returns:
        Bytes written.
    """
    return atomic_write_bytes(path, text.encode())


def save_figure(figure: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write a Matplotlib figure as PNG, atomically (folders are created).

    Args:
        figure: A ``matplotlib.figure.Figure``.
        path: Output file.
        dpi: Resolution.

    Returns:
        *path*.
    """
    path = Path(path)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format='png', dpi=dpi, bbox_inches='tight')
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Read a checkpoint safely (``weights_only``, memory-mapped) for inspection.

    Args:
        path: The ``.ckpt`` file.

    Returns:
        What ``torch.load`` returns.

    Raises:
        FileNotFoundError: If *path* does not exist.
        ValueError: If it cannot be read (:func:`unreadable_checkpoint`).
    """
    import torch

    if not Path(path).is_file():
        msg = f'checkpoint not found: {path}'
        raise FileNotFoundError(msg)
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as err:  # any parse failure means the same thing to a user
        raise unreadable_checkpoint(path, err) from err


def unreadable_checkpoint(path: str | os.PathLike[str], error: Exception) -> ValueError:
    """The error for a checkpoint ``torch.load`` could not read, with its cause.

    Args:
        path: The checkpoint.
        error: What ``torch.load`` raised.

    Returns:
        A ``ValueError`` naming the file, what is wrong with it and the fix.
    """
    import zipfile

    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size == 0:
        cause = 'the file is empty'
    elif not zipfile.is_zipfile(path):
        cause = (
            f'{size:,} bytes that are not a complete torch.save archive: truncated '
            '(a copy or a save that was interrupted) or another kind of file'
        )
    else:
        detail = str(error).splitlines()[0] if str(error) else 'no detail'
        cause = f'{type(error).__name__}: {detail}'
    return ValueError(
        f'{path} is not a readable checkpoint ({cause}); use another checkpoint of '
        'the run (e.g. last.ckpt) or save it again'
    )
