"""Figures written by ``geopeft demo``."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..io import save_figure  # noqa: E402

_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff')


def _save(fig: plt.Figure, path: Path) -> None:
    """Write a figure atomically and close it."""
    save_figure(fig, path)
    plt.close(fig)


def plot_samples(root: Path, path: Path, per_class: int = 4) -> None:
    """Show a few images of every class of a folder-per-class dataset.

    Args:
        root: Dataset root.
        path: Output PNG.
        per_class: Images shown per class.
    """
    classes = sorted(d for d in Path(root).iterdir() if d.is_dir())
    fig, axes = plt.subplots(
        len(classes), per_class, figsize=(1.6 * per_class, 1.6 * len(classes))
    )
    axes = np.atleast_2d(axes)
    for row, folder in enumerate(classes):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in _EXTENSIONS)
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis('off')
            if col < len(files):
                ax.imshow(Image.open(files[col]).convert('RGB'))
            if col == 0:
                ax.set_title(folder.name, fontsize=8, loc='left')
    _save(fig, path)


def plot_results(summary: dict[str, Any], path: Path) -> None:
    """Plot accuracy against trainable parameters and each confusion matrix.

    Args:
        summary: The demo's metrics summary.
        path: Output PNG.
    """
    results = summary['results']
    fig, axes = plt.subplots(
        1, 1 + len(results), figsize=(4.5 * (1 + len(results)), 4.2)
    )
    ax = axes[0]
    for row in results:
        ax.scatter(row['trainable'], 100 * row['test_accuracy'], s=60)
        ax.annotate(
            f'{row["method"]} ({row["trainable_percent"]:.2f} %)',
            (row['trainable'], 100 * row['test_accuracy']),
            textcoords='offset points',
            xytext=(6, 4),
            fontsize=9,
        )
    ax.set_xscale('log')
    ax.set_xlabel('trainable parameters')
    ax.set_ylabel('test accuracy (%)')
    ax.set_title(f'{summary["backbone"]}: accuracy per trainable parameter')
    ax.grid(alpha=0.3)
    for ax, row in zip(axes[1:], results, strict=True):
        confusion = np.asarray(row['confusion'], dtype=float)
        confusion /= np.maximum(confusion.sum(axis=1, keepdims=True), 1)
        ax.imshow(confusion, vmin=0, vmax=1, cmap='Blues')
        ax.set_title(
            f'{row["method"]}: {100 * row["test_accuracy"]:.1f} % (rows: truth)'
        )
        ticks = range(len(row['classes']))
        ax.set_xticks(ticks, row['classes'], rotation=60, ha='right', fontsize=7)
        ax.set_yticks(ticks, row['classes'], fontsize=7)
        ax.set_xlabel('predicted class')
        ax.set_ylabel('true class')
    fig.suptitle(summary['data'][:120], fontsize=9)
    _save(fig, path)
