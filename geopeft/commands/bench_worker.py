"""Subprocess body of ``geopeft bench peft``: time and measure one method."""

import json
import resource
import statistics
import sys
import time
from typing import Any

import psutil
import torch
from torch import nn

from ..models import PEFTClassifier
from ..tasks.optim import trainable_parameters


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(options: dict[str, Any]) -> dict[str, Any]:
    """Build the model, run training steps and measure them.

    Args:
        options: The benchmark options (see :func:`geopeft.commands.bench.run_method`).

    Returns:
        Measurements: trainable %, median step time, peak training memory, adapter
        bytes.
    """
    torch.manual_seed(0)
    name = options['device']
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(name)
    peft: dict[str, Any] = {'method': options['method']}
    for key in ('bits', 'hidden'):
        if options[key] is not None:
            peft[key] = options[key]
    model = PEFTClassifier(
        options['backbone'],
        num_classes=options['num_classes'],
        in_channels=options['in_channels'],
        peft=peft,
        img_size=options['img_size'],
    )
    report = model.parameter_report()
    memory_format = (
        torch.channels_last if options['channels_last'] else torch.contiguous_format
    )
    model = model.to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    size = options['image_size']
    x = torch.randn(options['batch_size'], options['in_channels'], size, size)
    x = x.to(device, memory_format=memory_format)
    y = torch.randint(
        0, options['num_classes'], (options['batch_size'],), device=device
    )

    _sync(device)
    rss_before = psutil.Process().memory_info().rss
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        allocated_before = torch.cuda.memory_allocated(device)
    times = []
    for step in range(options['warmup'] + options['steps']):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= options['warmup']:
            times.append(time.perf_counter() - start)
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device) - allocated_before
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = max(0, peak_rss - rss_before)
    return {
        'method': options['method'],
        'device': str(device),
        'torch': torch.__version__,
        'trainable': report.trainable,
        'total': report.total,
        'trainable_percent': report.trainable_percent,
        'adapter_bytes': report.adapter_bytes,
        'step_ms': 1000 * statistics.median(times),
        'peak_mb': peak / 2**20,
    }


if __name__ == '__main__':
    print(json.dumps(measure(json.loads(sys.argv[1]))))
