"""Figures of the benchmarks: accuracy against cost, predictions next to labels.

The figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state,
no backend switch), so a notebook shows them inline and a script saves them.
"""

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter
from torch import Tensor

from ..io import save_figure

#: The x axes of :func:`plot_tradeoffs`: table column, axis label, log scale.
TRADEOFF_AXES = (
    ('trainable', 'trainable parameters', True),
    ('step ms', 'training step time (ms)', False),
    ('peak MB', 'peak training memory (MB)', False),
)


def _colour(method: str) -> str:
    """UPetu rows red, its parts orange, full / linear grey, other baselines blue."""
    if method.startswith('upetu'):
        return 'tab:red'
    if method in ('eqam', 'capm'):
        return 'tab:orange'
    if method in ('full', 'linear'):
        return 'tab:gray'
    return 'tab:blue'


def plot_tradeoffs(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """Plot a test metric against trainable parameters, step time and memory.

    Args:
        rows: A benchmark table (:meth:`BenchmarkResult.table`): ``method``,
            *metric* (and ``<metric> std`` with several seeds), ``trainable``,
            ``step ms`` and ``peak MB``.
        metric: The column on the y axes, e.g. ``'F1'`` or ``'OA %'``.
        path: Where to save the PNG (not saved when ``None``).
        title: Figure title.

    Returns:
        The figure (three panels; UPetu's bit widths joined by a dashed line).

    Raises:
        ValueError: If there is no row or *metric* is not a column.
    """
    if not rows:
        msg = 'no benchmark rows to plot'
        raise ValueError(msg)
    if metric not in rows[0]:
        msg = f'{metric!r} is not a column of the table: {sorted(rows[0])}'
        raise ValueError(msg)
    figure = Figure(figsize=(15, 4.4), layout='constrained')
    axes = figure.subplots(1, len(TRADEOFF_AXES), sharey=True)
    upetu = [row for row in rows if str(row['method']).startswith('upetu-')]
    for ax, (column, label, log) in zip(axes, TRADEOFF_AXES, strict=True):
        for row in rows:
            x, y = float(row[column]), float(row[metric])
            error = row.get(f'{metric} std')
            ax.errorbar(
                x,
                y,
                yerr=error if error else None,
                fmt='o',
                color=_colour(str(row['method'])),
                capsize=3,
            )
            ax.annotate(
                str(row['method']),
                (x, y),
                textcoords='offset points',
                xytext=(4, 4),
                fontsize=7,
            )
        if len(upetu) > 1:
            ax.plot(
                [float(row[column]) for row in upetu],
                [float(row[metric]) for row in upetu],
                '--',
                color='tab:red',
                linewidth=0.8,
            )
        if log and all(float(row[column]) > 0 for row in rows):
            ax.set_xscale('log')
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(EngFormatter(sep=''))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(metric)
    if title:
        figure.suptitle(title)
    if path is not None:
        save_figure(figure, path, dpi=120)
    return figure


def _display_rgb(image: Tensor, rgb: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Stretch both dates of ``[2, C, H, W]`` to 0-1 RGB (one stretch for both).

    Each channel is scaled between its 2nd and 98th percentile over the two
    dates, so that a change keeps its contrast. One-band images are shown grey.
    """
    channels = list(rgb) if image.shape[1] >= max(rgb) + 1 else [0, 0, 0]
    pair = image[:, channels].float()
    flat = pair.transpose(0, 1).reshape(3, -1)
    low = torch.quantile(flat, 0.02, dim=1)[None, :, None, None]
    high = torch.quantile(flat, 0.98, dim=1)[None, :, None, None]
    pair = ((pair - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)
    a, b = pair.permute(0, 2, 3, 1).numpy()
    return a, b


def plot_predictions(
    samples: Mapping[str, Sequence[Mapping[str, Tensor]]],
    path: str | Path | None = None,
    rgb: Sequence[int] = (0, 1, 2),
    count: int | None = None,
) -> Figure:
    """Show test pairs as A | B | label | each method's prediction.

    Args:
        samples: Method label -> kept test samples (``image [2, C, H, W]``,
            ``mask [H, W]``, ``prediction [H, W]``), the same pairs in the same
            order for every method (see
            :func:`~geopeft.benchmarks.change.prediction_samples`).
        path: Where to save the PNG (not saved when ``None``).
        rgb: Channels shown as red, green, blue.
        count: Pairs shown (all kept when ``None``).

    Returns:
        The figure: one row per pair.

    Raises:
        ValueError: If there is nothing to show.
    """
    labels = [label for label, kept in samples.items() if kept]
    if not labels:
        msg = 'no test predictions were kept (render_pairs = 0?)'
        raise ValueError(msg)
    pairs = min(len(samples[label]) for label in labels)
    if count is not None:
        pairs = min(pairs, count)
    columns = ['A', 'B', 'label', *labels]
    figure = Figure(figsize=(1.7 * len(columns), 1.8 * pairs), layout='constrained')
    axes = np.atleast_2d(figure.subplots(pairs, len(columns), squeeze=False))
    for index in range(pairs):
        first = samples[labels[0]][index]
        image_a, image_b = _display_rgb(first['image'], rgb)
        panels = [image_a, image_b, first['mask'].numpy()]
        panels += [samples[label][index]['prediction'].numpy() for label in labels]
        for column, (ax, panel) in enumerate(zip(axes[index], panels, strict=True)):
            if column < 2:
                ax.imshow(panel)
            else:
                ax.imshow(panel, cmap='gray', vmin=0, vmax=1, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if index == 0:
                ax.set_title(textwrap.fill(columns[column], 16), fontsize=8)
    if path is not None:
        save_figure(figure, path, dpi=120)
    return figure
