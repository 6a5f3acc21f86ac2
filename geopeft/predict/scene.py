"""Prediction over a whole scene: rasters in, one GeoTIFF out, in bounded memory.

:func:`predict_raster` runs any model ``[B, C, h, w] -> [B, K, h, w]`` over a scene
chip by chip (see :mod:`geopeft.predict.windows` for the chip grid, its halo and the
blending weights) in three overlapping stages:

* a **reader thread** reads the chips row by row (one windowed read each, padded
  at the scene's edges), drops chips that are entirely nodata and puts batches
  into a bounded queue (``prefetch`` batches);
* the **main thread** runs the model on each batch (inference mode; on CUDA in
  bfloat16 autocast and channels-last by default) and applies the activation;
* a **blender thread** adds the chips to a
  :class:`~geopeft.predict.blending.StripAccumulator` (float64 sums for
  probabilities, exact; float32 for a class map); when a chip-row is done, the
  rows no later chip touches are blended, encoded
  (:class:`~geopeft.predict.encoding.OutputEncoding`) and handed on, so that the
  model never waits for the blending (on a GPU the blending costs as much as the
  model);
* a **writer thread** writes them block-row by block-row into the resumable,
  atomically renamed GeoTIFF (:class:`~geopeft.predict.writer.GeoTIFFStripWriter`).

GDAL decodes the input's tiles and compresses the output's with ``gdal_threads``
threads.

Memory is therefore ``O(width x chip_size x classes)``: the accumulator's band of
rows, a few batches of chips and predictions and a few encoded strips, whatever
the scene's height; GDAL's block cache is capped (``gdal_cache_mb``).
"""

import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..system import available_cpus
from .blending import StripAccumulator
from .encoding import OutputEncoding, OutputMode, ProbabilityDtype
from .sources import SceneInputs
from .windows import ChipGrid
from .writer import GeoTIFFStripWriter, check_output

#: What turns the model's output into what is blended.
Activation = Literal['softmax', 'sigmoid', 'none']
#: ``'auto'``: bfloat16 autocast on CUDA, float32 elsewhere.
Precision = Literal['auto', '32', 'bf16']
#: Rows blended at a time (bounds the temporaries of wide scenes).
_ROWS_PER_PASS = 64


@dataclass
class ChipBatch:
    """Chips of one chip-row, ready for the model.

    Attributes:
        chip_row: Index of the chip-row.
        cols: Scene column where each chip starts.
        images: ``float32 [B, C, chip_size, chip_size]``.
    """

    chip_row: int
    cols: list[int]
    images: np.ndarray


@dataclass
class RowEnd:
    """The end of a chip-row: its finished rows can be written.

    Attributes:
        chip_row: Index of the chip-row.
        skipped: Chips of the row skipped as entirely nodata.
        valid: ``bool [rows, width]``: validity of the rows the chip-row finishes.
    """

    chip_row: int
    skipped: int
    valid: np.ndarray


@dataclass
class PredictionReport:
    """What a :func:`predict_raster` run did.

    Attributes:
        output: The GeoTIFF written.
        chips: Chips the model computed in this run.
        skipped: Chips skipped because they were entirely nodata.
        total_chips: Chips in the scene's grid.
        resumed_rows: Rows an interrupted earlier run had written (0: fresh).
        batches: Model calls.
        seconds: Wall time of the run.
        model_seconds: Wall time inside model calls (synchronised).
        device: Device the model ran on.
        precision: ``'32'`` or ``'bf16'``.
    """

    output: Path
    chips: int
    skipped: int
    total_chips: int
    resumed_rows: int
    batches: int
    seconds: float
    model_seconds: float
    device: str
    precision: str


def iter_chips(
    inputs: SceneInputs, grid: ChipGrid, *, batch_size: int, first_row: int = 0
) -> Iterator[ChipBatch | RowEnd]:
    """Read a scene's chips in batches, chip-row by chip-row.

    Each chip is one windowed read (GDAL's block cache serves the tiles that
    neighbouring chips share), so reading holds a chip at a time, plus the
    validity of one band of rows.

    Args:
        inputs: The opened rasters.
        grid: The chip grid over them.
        batch_size: Chips per batch (the last batch of a chip-row may be smaller).
        first_row: Chip-row to start at (resuming).

    Yields:
        For each chip-row, its batches of chips that have data, then a
        :class:`RowEnd`.
    """
    size = grid.chip_size
    for index in range(first_row, len(grid.row_offsets)):
        top = grid.row_offsets[index]
        band_valid = np.zeros((size, grid.width), dtype=bool)
        cols: list[int] = []
        images = np.empty((batch_size, inputs.count, size, size), np.float32)
        skipped = 0
        for col in grid.col_offsets:
            data, valid = inputs.read((top, top + size), (col, col + size))
            lo, hi = max(0, -col), min(size, grid.width - col)
            band_valid[:, col + lo : col + hi] = valid[:, lo:hi]
            if not valid.any():
                skipped += 1
                continue
            images[len(cols)] = data
            cols.append(col)
            if len(cols) == batch_size:
                yield ChipBatch(index, cols, images)
                cols = []
                images = np.empty_like(images)
        if cols:
            yield ChipBatch(index, cols, images[: len(cols)])
        start, stop = grid.finished_rows(index)
        yield RowEnd(index, skipped, band_valid[start - top : stop - top])


def resolve_device(
    device: str | torch.device | None, precision: Precision, channels_last: bool | None
) -> tuple[torch.device, bool, bool]:
    """Pick the device, bfloat16 autocast and channels-last.

    Args:
        device: A device, or None for CUDA when available, else CPU.
        precision: ``'auto'`` (bf16 on CUDA), ``'32'`` or ``'bf16'``.
        channels_last: None: on CUDA only.

    Returns:
        The device, whether to autocast to bfloat16, whether to use channels-last.

    Raises:
        ValueError: If *precision* is unknown.
    """
    if precision not in ('auto', '32', 'bf16'):
        msg = f"precision must be 'auto', '32' or 'bf16', got {precision!r}"
        raise ValueError(msg)
    if device is None or device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(device)
    cuda = device.type == 'cuda'
    bf16 = precision == 'bf16' or (precision == 'auto' and cuda)
    return device, bf16, cuda if channels_last is None else channels_last


class _ModelRunner:
    """Runs the model on batches of chips and returns activated numpy outputs."""

    def __init__(
        self,
        model_fn: Callable[[Tensor], Tensor],
        device: torch.device,
        bf16: bool,
        channels_last: bool,
        activation: Activation,
    ) -> None:
        if activation not in ('softmax', 'sigmoid', 'none'):
            msg = (
                f"activation must be 'softmax', 'sigmoid' or 'none', got {activation!r}"
            )
            raise ValueError(msg)
        self.model_fn = model_fn
        self.device = device
        self.bf16 = bf16
        self.channels_last = channels_last
        self.activation = activation
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        x = torch.from_numpy(images).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16),
        ):
            y = self.model_fn(x)
        if not isinstance(y, Tensor) or y.ndim != 4 or y.shape[0] != x.shape[0]:
            shape = list(y.shape) if isinstance(y, Tensor) else type(y).__name__
            msg = f'the model must return [B, K, h, w] for [B, C, h, w]; got {shape}'
            raise ValueError(msg)
        if tuple(y.shape[-2:]) != tuple(x.shape[-2:]):
            msg = (
                f'the model returned {list(y.shape)} for chips {list(x.shape)}: '
                "predictions must have the chips' height and width"
            )
            raise ValueError(msg)
        y = y.float()
        if self.activation == 'softmax':
            y = y.softmax(dim=1)
        elif self.activation == 'sigmoid':
            y = y.sigmoid()
        out = y.cpu().numpy()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def default_gdal_threads() -> int:
    """GDAL threads for decoding and compressing: up to 4, as the CPU allows."""
    return min(4, available_cpus())


def encode_rows(
    accumulator: StripAccumulator,
    encoding: OutputEncoding,
    start: int,
    valid: np.ndarray,
) -> np.ndarray:
    """Blend and encode finished rows, a few at a time.

    Args:
        accumulator: The sums.
        encoding: The output's encoding.
        start: First scene row.
        valid: ``[rows, width]`` validity of the rows.

    Returns:
        ``[count, rows, width]`` output pixels.
    """
    rows, width = valid.shape
    out = np.empty((encoding.count, rows, width), dtype=encoding.dtype)
    for lo in range(0, rows, _ROWS_PER_PASS):
        hi = min(rows, lo + _ROWS_PER_PASS)
        sums, weight = accumulator.view(start + lo, start + hi)
        out[:, lo:hi] = encoding.encode(sums, weight, valid[lo:hi])
    return out


_DONE = object()


def _put(target: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put *item* unless *stop* is set first; return whether it was put."""
    while not stop.is_set():
        try:
            target.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def predict_raster(
    model_fn: Callable[[Tensor], Tensor],
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    chip_size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    output_mode: OutputMode = 'classes',
    activation: Activation = 'softmax',
    probability_dtype: ProbabilityDtype = 'float32',
    threshold: float = 0.5,
    num_outputs: int | None = None,
    bands: Sequence[int] | None = None,
    in_channels: int | None = None,
    nodata: float | None = None,
    resampling: str = 'bilinear',
    device: str | torch.device | None = None,
    precision: Precision = 'auto',
    channels_last: bool | None = None,
    blocksize: int = 512,
    compress: str = 'deflate',
    overwrite: bool = False,
    resume: bool = True,
    prefetch: int = 4,
    progress: bool = True,
    settings: Mapping[str, Any] | None = None,
    gdal_cache_mb: int | None = None,
    gdal_threads: int | None = None,
) -> PredictionReport:
    """Predict over a whole scene into a tiled, compressed GeoTIFF on its grid.

    Args:
        model_fn: Any callable ``float32 [B, C, h, w] -> [B, K, h, w]`` on
            *device*, taking the chips as read (normalise inside it); with two
            inputs ``C`` is both images' bands, the first date's first. An
            ``nn.Module`` is moved to *device* and put in eval mode.
        inputs: One raster, or two (change detection; the second is resampled
            onto the first one's grid if needed).
        output: The GeoTIFF to write (on the first input's grid).
        chip_size: Side of the chips the model sees.
        overlap: Pixels shared by neighbouring chips, blended with smooth weights;
            ``overlap // 2`` is also the padding at the scene's edges.
        batch_size: Chips per model call.
        output_mode: ``'classes'`` or ``'probabilities'``
            (see :mod:`geopeft.predict.encoding`).
        activation: ``'softmax'`` (multi-class), ``'sigmoid'`` (binary,
            multi-label) or ``'none'`` (the model returns probabilities); applied
            before blending.
        probability_dtype: ``'float32'`` or ``'uint8'`` (``round(254 p)``).
        threshold: Class-1 threshold of a one-channel model's probability.
        num_outputs: Channels the model returns (None: found by one call on a
            blank chip).
        bands: 1-based bands to read from each input (None: all).
        in_channels: Bands the model takes per input; checked when given.
        nodata: Nodata value of the inputs (None: the files' own).
        resampling: Resampling of a second input onto the first one's grid.
        device: Where the model runs (None: CUDA when available, else CPU).
        precision: ``'auto'`` (bfloat16 autocast on CUDA, float32 elsewhere),
            ``'32'`` or ``'bf16'``.
        channels_last: Channels-last chips (None: on CUDA).
        blocksize: Side of the output's tiles (a multiple of 16).
        compress: ``'deflate'``, ``'zstd'``, ``'lzw'`` or ``'none'``.
        overwrite: Replace an existing output (once the new one is complete).
        resume: Continue an interrupted run with the same settings.
        prefetch: Batches the reader may read ahead.
        progress: Show a progress bar.
        settings: What else determines the output (e.g. the model's checkpoint);
            an interrupted run is only resumed when they are equal.
        gdal_cache_mb: Cap of GDAL's block cache during the run (None: what
            the input tiles of one chip-row take, at least 16 MB).
        gdal_threads: Threads GDAL uses to decode the inputs' tiles and to
            compress the output's (None: up to 4, as the CPU allows).

    Returns:
        What the run did.

    Raises:
        FileExistsError: If *output* exists and *overwrite* is False.
        FileNotFoundError: If an input does not exist.
        ValueError: If an input is unreadable, has the wrong bands, the inputs do
            not overlap, or an option is invalid.
        OSError: If reading fails midway (a damaged file).

    Any error midway leaves ``<output>.partial`` and ``<output>.progress.json``
    (never a file at *output*); running again with the same settings resumes
    from the last block-row written.
    """
    started = time.perf_counter()
    output = Path(output)
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    check_output(output, overwrite, paths)
    chips_done = skipped = 0
    threads = default_gdal_threads() if gdal_threads is None else gdal_threads
    if threads < 1:
        msg = f'gdal_threads must be >= 1, got {threads}'
        raise ValueError(msg)
    with ExitStack() as stack:
        scene = stack.enter_context(
            SceneInputs(
                paths,
                bands=bands,
                nodata=nodata,
                resampling=resampling,
                in_channels=in_channels,
            )
        )
        if scene.grid.crs is None:
            warnings.warn(
                f'{paths[0]} has no CRS (a plain image, not a GeoTIFF?): the output '
                f'{output} will have no georeference either, only pixel coordinates',
                UserWarning,
                stacklevel=2,
            )
        if gdal_cache_mb is None:
            gdal_cache_mb = max(16, scene.cache_mb(chip_size))
        stack.enter_context(
            rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb * 2**20, GDAL_NUM_THREADS=threads)
        )
        grid = ChipGrid(scene.grid.height, scene.grid.width, chip_size, overlap)
        if batch_size < 1 or prefetch < 1:
            msg = f'batch_size and prefetch must be >= 1, got {batch_size}, {prefetch}'
            raise ValueError(msg)
        device, bf16, channels_last = resolve_device(device, precision, channels_last)
        if isinstance(model_fn, nn.Module):
            model_fn.eval().to(device)
            if channels_last:
                model_fn.to(memory_format=torch.channels_last)
        run = _ModelRunner(model_fn, device, bf16, channels_last, activation)
        if num_outputs is None:
            blank = np.zeros((1, scene.count, chip_size, chip_size), np.float32)
            num_outputs = run(blank).shape[1]
            run.seconds, run.calls = 0.0, 0
        if activation == 'softmax' and num_outputs == 1:
            msg = (
                'softmax over one channel is always 1: use sigmoid for a '
                'one-channel (binary) model'
            )
            raise ValueError(msg)
        encoding = OutputEncoding(
            output_mode, num_outputs, probability_dtype, threshold
        )
        writer = GeoTIFFStripWriter(
            output,
            scene.grid,
            encoding,
            blocksize=blocksize,
            compress=compress,
            resume=resume,
            overwrite=overwrite,
            threads=threads,
            inputs=paths,
            settings={
                'inputs': scene.describe(),
                'bands': list(bands) if bands is not None else None,
                'nodata': str(nodata),
                'resampling': resampling,
                'chip_size': chip_size,
                'overlap': overlap,
                'activation': activation,
                'bf16': bf16,
                **(settings or {}),
            },
        )
        resumed = writer.open()
        stack.callback(writer.close)  # the lock, however this ends
        first = grid.first_chip_row(resumed)
        accumulator = StripAccumulator(
            num_outputs,
            grid,
            top=grid.row_offsets[min(first, len(grid.row_offsets) - 1)],
            dtype=np.float32 if output_mode == 'classes' else np.float64,
        )
        remaining = (len(grid.row_offsets) - first) * len(grid.col_offsets)
        stop = threading.Event()
        chips_in: queue.Queue = queue.Queue(maxsize=prefetch)
        blend_in: queue.Queue = queue.Queue(maxsize=prefetch)
        rows_out: queue.Queue = queue.Queue(maxsize=2)
        failures: list[BaseException] = []

        def read() -> None:
            try:
                for item in iter_chips(
                    scene, grid, batch_size=batch_size, first_row=first
                ):
                    if not _put(chips_in, item, stop):
                        return
            except BaseException as err:  # handed to the main thread
                _put(chips_in, err, stop)
                return
            _put(chips_in, _DONE, stop)

        def blend() -> None:
            # Batches already predicted are blended even after the main thread
            # stopped: every row they finish is written, and a resumed run
            # starts after it.
            while (item := blend_in.get()) is not _DONE:
                if failures:
                    continue
                try:
                    if isinstance(item, RowEnd):
                        start = grid.finished_rows(item.chip_row)[0]
                        rows = encode_rows(accumulator, encoding, start, item.valid)
                        rows_out.put((start, rows))
                        if item.chip_row + 1 < len(grid.row_offsets):
                            accumulator.advance(grid.row_offsets[item.chip_row + 1])
                        continue
                    predictions, cols = item
                    for prediction, col in zip(predictions, cols, strict=True):
                        accumulator.add(prediction, col)
                except BaseException as err:  # handed to the main thread
                    failures.append(err)
            rows_out.put(_DONE)

        def write() -> None:
            while (item := rows_out.get()) is not _DONE:
                if failures:
                    continue
                try:
                    writer.write(*item)
                except BaseException as err:  # handed to the main thread
                    failures.append(err)

        reader = threading.Thread(target=read, name='predict-reader', daemon=True)
        blender = threading.Thread(target=blend, name='predict-blender')
        writer_thread = threading.Thread(target=write, name='predict-writer')
        reader.start()
        blender.start()
        writer_thread.start()
        bar = tqdm(
            total=remaining,
            unit='chip',
            desc=output.name,
            disable=not progress,
            dynamic_ncols=True,
        )

        def finish_threads() -> None:
            """Let the blender and the writer drain their queues and stop."""
            if blender.is_alive():
                blend_in.put(_DONE)
                blender.join()
            writer_thread.join()

        try:
            while True:
                item = chips_in.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if failures:
                    raise failures[0]
                if isinstance(item, ChipBatch):
                    predictions = run(item.images)
                    if predictions.shape[1] != num_outputs:
                        msg = (
                            f'the model returned {predictions.shape[1]} channels, '
                            f'expected {num_outputs}'
                        )
                        raise ValueError(msg)
                    blend_in.put((predictions, item.cols))
                    chips_done += len(item.cols)
                    bar.update(len(item.cols))
                    continue
                blend_in.put(item)
                skipped += item.skipped
                bar.update(item.skipped)
            finish_threads()
            if failures:
                raise failures[0]
            writer.commit()
        except BaseException as err:
            stop.set()
            finish_threads()
            if writer.rows_done == 0:
                # Nothing to resume from: leave no files behind.
                writer.discard()
                err.add_note(
                    'The prediction stopped before writing any row; nothing was '
                    'written.'
                )
                raise
            err.add_note(
                f'The prediction stopped after writing {writer.rows_done} of '
                f'{grid.height} rows. {writer.partial} and {writer.progress} are '
                'kept: run the same prediction again to resume, or delete them.'
            )
            raise
        finally:
            stop.set()
            bar.close()
            reader.join()
    return PredictionReport(
        output=output,
        chips=chips_done,
        skipped=skipped,
        total_chips=grid.num_chips,
        resumed_rows=resumed,
        batches=run.calls,
        seconds=time.perf_counter() - started,
        model_seconds=run.seconds,
        device=str(device),
        precision='bf16' if bf16 else '32',
    )
