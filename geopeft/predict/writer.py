"""The output GeoTIFF: written strip by strip, resumable, renamed when complete.

Rows arrive top to bottom. They are written one block-row (``blocksize`` rows) at a
time into ``<output>.partial``, a tiled, compressed GeoTIFF on the input's grid, so
that each compressed tile is written exactly once. After every block-row the file
is closed (GDAL flushes it), synced to disk, and the progress file
``<output>.progress.json`` is rewritten atomically::

    {"format": "geopeft predict progress", "version": 1,
     "rows_done": 1024, "height": 8192, "settings": {...}}

``settings`` are everything that changes the output's pixels (inputs' paths,
sizes and modification times, model, chip size, overlap, output mode, ...). A
later run with the same output path and the same settings reopens the partial file
in update mode and continues at ``rows_done``; a run with other settings discards
both files and starts over. When the last row is written the partial file is
renamed onto the output (an atomic replace on one file system) and the progress
file is removed: the output path only ever holds a complete GeoTIFF.

One process writes an output at a time: the writer holds an OS-level lock on
``<output>.lock`` (:class:`~geopeft.predict.lock.OutputLock`) from :meth:`open` to
:meth:`commit`, :meth:`discard` or :meth:`close`, and a second writer is refused
before it touches the partial file. An output that is one of the inputs is
refused too.
"""

import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ..io import atomic_write_text
from .encoding import OutputEncoding
from .lock import OutputLock
from .windows import RasterGrid

#: ``format`` of a progress file.
PROGRESS_FORMAT = 'geopeft predict progress'
#: ``version`` of a progress file.
PROGRESS_VERSION = 1
#: Compressions of the output (``none``: uncompressed).
COMPRESSIONS = ('deflate', 'zstd', 'lzw', 'none')


def partial_path(output: Path) -> Path:
    """The file a prediction writes into before it is complete.

    Args:
        output: The final output path.

    Returns:
        ``<output>.partial`` beside it.
    """
    return output.with_name(output.name + '.partial')


def progress_path(output: Path) -> Path:
    """The progress file of an unfinished prediction.

    Args:
        output: The final output path.

    Returns:
        ``<output>.progress.json`` beside it.
    """
    return output.with_name(output.name + '.progress.json')


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (links followed; either may not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output(
    output: Path,
    overwrite: bool,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> None:
    """Fail early if the output path is taken.

    Args:
        output: The final output path.
        overwrite: Whether an existing file may be replaced (when the new one is
            complete).
        inputs: Files the prediction reads; the output may be none of them.

    Raises:
        FileExistsError: If *output* exists and *overwrite* is False, is a
            directory, or is one of the *inputs* (symbolic links followed), even
            with *overwrite*.
    """
    for source in inputs:
        if _same_file(output, Path(source)):
            msg = (
                f'the output {output} is the input {source}: writing the map there '
                'would replace the scene; choose another output path'
            )
            raise FileExistsError(msg)
    if output.is_dir():
        msg = f'the output {output} is a directory: give a file name, e.g. pred.tif'
        raise FileExistsError(msg)
    if output.exists() and not overwrite:
        msg = (
            f'the output {output} exists: pass --overwrite (overwrite=True) to '
            'replace it once the new prediction is complete, or choose another path'
        )
        raise FileExistsError(msg)


def _jsonable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """*settings* as they read back from JSON (tuples become lists, ...)."""
    return json.loads(json.dumps(dict(settings), default=str))


class GeoTIFFStripWriter:
    """Writes a scene's rows, top to bottom, into a resumable GeoTIFF.

    Use :meth:`open` (returns the first row still to write), :meth:`write` rows in
    order, then :meth:`commit`; on failure :meth:`close` keeps the partial and
    progress files for a later run, :meth:`discard` deletes them.

    Attributes:
        output: Final output path.
        partial: The file being written.
        progress: The progress file.
        rows_done: Rows written and recorded so far.
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        grid: RasterGrid,
        encoding: OutputEncoding,
        *,
        blocksize: int = 512,
        compress: str = 'deflate',
        settings: Mapping[str, Any] | None = None,
        resume: bool = True,
        overwrite: bool = False,
        threads: int = 1,
        inputs: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        """Initialize a new GeoTIFFStripWriter instance.

        Args:
            output: Final output path.
            grid: Grid of the output (the input's).
            encoding: Bands, pixel type and nodata of the output.
            blocksize: Side of the output's tiles, a multiple of 16.
            compress: One of :data:`COMPRESSIONS`.
            settings: What determines the output's pixels; a partial file is
                only resumed when they are equal.
            resume: Continue a partial file with equal settings if there is one.
            overwrite: Replace an existing output when complete.
            threads: Threads GDAL compresses the tiles with.
            inputs: Files the prediction reads (the output may be none of them).

        Raises:
            ValueError: If *blocksize* or *compress* is invalid.
        """
        if blocksize < 16 or blocksize % 16:
            msg = f'blocksize must be a multiple of 16, got {blocksize}'
            raise ValueError(msg)
        if compress not in COMPRESSIONS:
            msg = f'compress must be one of {", ".join(COMPRESSIONS)}, got {compress!r}'
            raise ValueError(msg)
        self.output = Path(output)
        self.partial = partial_path(self.output)
        self.progress = progress_path(self.output)
        self.lock = OutputLock(self.output)
        self.inputs = list(inputs)
        self.grid = grid
        self.encoding = encoding
        self.blocksize = blocksize
        self.compress = compress
        self.resume = resume
        self.overwrite = overwrite
        self.threads = threads
        self.settings = _jsonable(
            {
                **(settings or {}),
                'output': {
                    'mode': encoding.mode,
                    'channels': encoding.channels,
                    'dtype': encoding.dtype,
                    'threshold': encoding.threshold,
                    'blocksize': blocksize,
                    'compress': compress,
                },
                'grid': {
                    'crs': grid.crs.to_wkt() if grid.crs else None,
                    'transform': list(grid.transform)[:6],
                    'width': grid.width,
                    'height': grid.height,
                },
            }
        )
        self.rows_done = 0
        self._buffer = np.empty((0,), dtype=encoding.dtype)
        self._filled = 0

    @property
    def profile(self) -> dict[str, Any]:
        """Creation options of the output GeoTIFF."""
        profile: dict[str, Any] = {
            'driver': 'GTiff',
            'width': self.grid.width,
            'height': self.grid.height,
            'count': self.encoding.count,
            'dtype': self.encoding.dtype,
            'crs': self.grid.crs,
            'transform': self.grid.transform,
            'nodata': self.encoding.nodata,
            'tiled': True,
            'blockxsize': self.blocksize,
            'blockysize': self.blocksize,
            'sparse_ok': True,
            'bigtiff': 'if_safer',
        }
        if self.compress != 'none':
            profile['compress'] = self.compress
            profile['predictor'] = 3 if self.encoding.dtype == 'float32' else 2
            if self.threads > 1:
                profile['num_threads'] = self.threads
        return profile

    def open(self) -> int:
        """Create the partial file, or find where an unfinished one stopped.

        Returns:
            The first row to write: 0, or the rows a previous run with the same
            settings already wrote.

        Raises:
            FileExistsError: If the output exists and overwriting is off, or the
                output is an input.
            OutputBusyError: If another process is writing the same output.
        """
        check_output(self.output, self.overwrite, self.inputs)
        self.lock.acquire()
        try:
            self.rows_done = self._resumable_rows() if self.resume else 0
            if self.rows_done == 0:
                self.partial.parent.mkdir(parents=True, exist_ok=True)
                self.progress.unlink(missing_ok=True)
                self.partial.unlink(missing_ok=True)
                with rasterio.open(self.partial, 'w', **self.profile):
                    pass
                self._record()
        except BaseException:
            self.lock.release()
            raise
        self._buffer = np.empty(
            (self.encoding.count, self.blocksize, self.grid.width),
            dtype=self.encoding.dtype,
        )
        self._filled = 0
        return self.rows_done

    def _resumable_rows(self) -> int:
        """Rows of an unfinished run with equal settings (0 when there is none)."""
        if not self.progress.exists():
            return 0
        try:
            record = json.loads(self.progress.read_text())
            rows = int(record['rows_done'])
            same = (
                record.get('format') == PROGRESS_FORMAT
                and record.get('version') == PROGRESS_VERSION
                and record.get('settings') == self.settings
            )
        except (OSError, ValueError, KeyError, TypeError):
            rows, same = 0, False
        if not same:
            warnings.warn(
                f'{self.progress} belongs to a prediction with other settings (or is '
                'unreadable): starting over',
                UserWarning,
                stacklevel=3,
            )
            return 0
        try:
            with rasterio.open(self.partial) as dataset:
                fits = (
                    dataset.count == self.encoding.count
                    and dataset.dtypes[0] == self.encoding.dtype
                    and (dataset.width, dataset.height)
                    == (self.grid.width, self.grid.height)
                )
        except RasterioError:
            fits = False
        if not fits:
            warnings.warn(
                f'{self.partial} is missing or damaged: starting over',
                UserWarning,
                stacklevel=3,
            )
            return 0
        return rows

    def _record(self) -> None:
        """Write the progress file (atomically)."""
        record = {
            'format': PROGRESS_FORMAT,
            'version': PROGRESS_VERSION,
            'output': str(self.output),
            'partial': str(self.partial),
            'rows_done': self.rows_done,
            'height': self.grid.height,
            'blocks_done': math.ceil(self.rows_done / self.blocksize),
            'updated': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'settings': self.settings,
        }
        atomic_write_text(self.progress, json.dumps(record, indent=1) + '\n')

    @property
    def next_row(self) -> int:
        """The next row :meth:`write` expects."""
        return self.rows_done + self._filled

    def write(self, start: int, data: np.ndarray) -> None:
        """Write rows ``[start, start + len)``; rows already written are skipped.

        Args:
            start: Scene row of ``data[:, 0]``.
            data: ``[count, rows, width]`` output pixels.

        Raises:
            ValueError: If rows would be left out (a gap after the last row).
        """
        skip = self.next_row - start
        if skip < 0:
            msg = f'rows {self.next_row}..{start} were never written'
            raise ValueError(msg)
        data = data[:, skip:]
        while data.shape[1]:
            room = min(self.blocksize, self.grid.height - self.rows_done)
            take = min(room - self._filled, data.shape[1])
            self._buffer[:, self._filled : self._filled + take] = data[:, :take]
            self._filled += take
            data = data[:, take:]
            if self._filled == room:
                self._flush()

    def _flush(self) -> None:
        """Write the buffered block-row, sync it, record the progress."""
        window = Window(0, self.rows_done, self.grid.width, self._filled)
        with rasterio.open(self.partial, 'r+', sparse_ok=True) as dataset:
            dataset.write(self._buffer[:, : self._filled], window=window)
        with open(self.partial, 'rb+') as file:
            os.fsync(file.fileno())
        self.rows_done += self._filled
        self._filled = 0
        self._record()

    def commit(self) -> Path:
        """Rename the complete file onto the output and remove the progress file.

        Returns:
            The output path.

        Raises:
            RuntimeError: If rows are missing.
        """
        if self.rows_done < self.grid.height:
            msg = (
                f'{self.partial} is incomplete: {self.rows_done} of '
                f'{self.grid.height} rows written'
            )
            raise RuntimeError(msg)
        os.replace(self.partial, self.output)
        self.progress.unlink(missing_ok=True)
        self.lock.release()
        return self.output

    def discard(self) -> None:
        """Delete the partial and progress files (and drop the lock)."""
        self.partial.unlink(missing_ok=True)
        self.progress.unlink(missing_ok=True)
        self.lock.release()

    def close(self) -> None:
        """Drop the lock, keeping the partial and progress files to resume."""
        self.lock.release()
