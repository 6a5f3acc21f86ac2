"""Subprocess body of ``geopeft bench predict``: one scene size, measured alone.

The worker builds the model (random weights), warms it up, then

1. reads exactly the chips the prediction will run, in the same batches
   (:func:`~geopeft.predict.iter_chips`), and times only the model's forward pass
   on each batch (synchronised on CUDA): the pure model time;
2. runs :func:`~geopeft.predict.predict_raster` over the scene into a GeoTIFF and
   takes its wall time (end to end: reading, inference, blending, writing) and
   the peak resident set size of the process so far (``ru_maxrss``);
3. times the model alone again as in 1.

The overhead is (2) over the mean of (1) and (3), which cancels a steady drift
of a shared machine's load; ``cpu_overhead`` is the same ratio of process CPU
time (all threads), less sensitive to other processes. Each size runs in its own
process so that its peak memory is its own.
"""

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import rasterio
import segmentation_models_pytorch as smp
import torch
from torch import Tensor, nn

from ..predict import ChipGrid, SceneInputs, iter_chips, predict_raster
from ..predict.scene import ChipBatch, resolve_device


class ScaledModel(nn.Module):
    """The benchmark's model: 8-bit chips scaled to [0, 1], then the SMP model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """Scale and predict."""
        return self.model(x / 255)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(options: dict[str, Any]) -> dict[str, Any]:
    """Predict over one scene and time the model alone on the same chips.

    Args:
        options: ``scene`` (path), ``arch``, ``encoder``, ``in_channels``,
            ``classes``, ``chip_size``, ``overlap``, ``batch_size``, ``device``,
            ``precision``, ``threads`` (optional).

    Returns:
        The measurements.
    """
    torch.manual_seed(0)
    if options.get('threads'):
        torch.set_num_threads(options['threads'])
    device, bf16, channels_last = resolve_device(
        None if options['device'] == 'auto' else options['device'],
        options['precision'],
        None,
    )
    model = ScaledModel(
        smp.create_model(
            options['arch'],
            encoder_name=options['encoder'],
            encoder_weights=None,
            in_channels=options['in_channels'],
            classes=options['classes'],
        )
    )
    model.eval().to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    size, batch = options['chip_size'], options['batch_size']
    overlap = options['overlap']

    def forward(images: Tensor) -> None:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, torch.bfloat16, enabled=bf16),
        ):
            model(images.to(device, memory_format=memory_format))
        _sync(device)

    scene = Path(options['scene'])
    with rasterio.open(scene) as dataset:
        width, height = dataset.width, dataset.height
    columns = len(ChipGrid(height, width, size, overlap).col_offsets)
    # Warm up on every batch shape the scene gives (a chip-row's last batch may
    # be smaller), so that neither measurement pays for first calls.
    for shape in {batch, columns % batch} - {0}:
        forward(torch.zeros(shape, options['in_channels'], size, size))

    def model_alone() -> tuple[float, float, int]:
        """Wall and CPU seconds of the forward passes alone, and the chips."""
        wall = cpu = 0.0
        chips = 0
        with SceneInputs([scene]) as inputs:
            grid = ChipGrid(inputs.grid.height, inputs.grid.width, size, overlap)
            for item in iter_chips(inputs, grid, batch_size=batch):
                if isinstance(item, ChipBatch):
                    images = torch.from_numpy(item.images)
                    start, start_cpu = time.perf_counter(), time.process_time()
                    forward(images)
                    wall += time.perf_counter() - start
                    cpu += time.process_time() - start_cpu
                    chips += len(item.cols)
        return wall, cpu, chips

    before = model_alone()
    rss_before = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory(prefix='geopeft-bench-predict-') as folder:
        start_cpu = time.process_time()
        report = predict_raster(
            model,
            scene,
            Path(folder) / 'prediction.tif',
            chip_size=size,
            overlap=overlap,
            batch_size=batch,
            num_outputs=options['classes'],
            device=device,
            precision=options['precision'],
            progress=False,
        )
        cpu_seconds = time.process_time() - start_cpu
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        output_bytes = (Path(folder) / 'prediction.tif').stat().st_size
    after = model_alone()
    # The mean of a pass before and one after cancels a steady drift of the
    # machine's load during the measurement.
    model_seconds = (before[0] + after[0]) / 2
    model_cpu_seconds = (before[1] + after[1]) / 2
    return {
        'size': width,
        'height': height,
        'chips': report.chips,
        'model_chips': after[2],
        'batches': report.batches,
        'seconds': report.seconds,
        'model_seconds': model_seconds,
        'model_seconds_before': before[0],
        'model_seconds_after': after[0],
        'overhead': report.seconds / model_seconds,
        'cpu_seconds': cpu_seconds,
        'model_cpu_seconds': model_cpu_seconds,
        'cpu_overhead': cpu_seconds / model_cpu_seconds,
        'in_run_model_seconds': report.model_seconds,
        'peak_rss_mb': peak_rss / 2**20,
        'rss_before_mb': rss_before / 2**20,
        'output_bytes': output_bytes,
        'device': str(device),
        'precision': report.precision,
        'threads': torch.get_num_threads(),
        'torch': torch.__version__,
    }


if __name__ == '__main__':
    print(json.dumps(measure(json.loads(sys.argv[1]))))
