"""Benchmark figures: accuracy against cost, predictions next to labels."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from geopeft.benchmarks.plots import plot_predictions, plot_tradeoffs


def _rows(std: bool) -> list[dict]:
    rows = []
    for index, method in enumerate(
        ['full', 'linear', 'lora', 'upetu-1bit', 'upetu-2bit']
    ):
        row = {
            'method': method,
            'F1': 0.5 + 0.05 * index,
            'trainable': 10 ** (index + 2),
            'step ms': 10.0 + index,
            'peak MB': 100.0 - index,
        }
        if std:
            row['F1 std'] = 0.01 * index
        rows.append(row)
    return rows


@pytest.mark.parametrize('std', [False, True])
def test_tradeoffs_figure_is_written(tmp_path: Path, std: bool) -> None:
    path = tmp_path / 'figures' / 'tradeoffs.png'
    figure = plot_tradeoffs(_rows(std), 'F1', path, title='title')
    assert len(figure.axes) == 3
    assert figure.axes[0].get_xscale() == 'log'
    assert Image.open(path).size[0] > 500


def test_tradeoffs_refuses_an_unknown_metric_or_no_rows() -> None:
    with pytest.raises(ValueError, match="'OA %' is not a column"):
        plot_tradeoffs(_rows(False), 'OA %')
    with pytest.raises(ValueError, match='no benchmark rows'):
        plot_tradeoffs([], 'F1')


def _samples(count: int, bands: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            'image': torch.randn(2, bands, 16, 16, generator=generator),
            'mask': (torch.rand(16, 16, generator=generator) > 0.5).to(torch.uint8),
            'prediction': (torch.rand(16, 16, generator=generator) > 0.5).to(
                torch.uint8
            ),
        }
        for _ in range(count)
    ]


@pytest.mark.parametrize(
    ('bands', 'rgb'), [(3, (0, 1, 2)), (13, (3, 2, 1)), (1, (0, 1, 2))]
)
def test_predictions_figure_is_written(tmp_path: Path, bands: int, rgb: tuple) -> None:
    samples = {
        'UPetu 1-bit': _samples(3, bands),
        'full fine-tuning': _samples(3, bands),
    }
    path = tmp_path / 'predictions.png'
    figure = plot_predictions(samples, path, rgb=rgb, count=2)
    assert len(figure.axes) == 2 * 5  # 2 pairs x (A, B, label, 2 methods)
    assert path.is_file()


def test_predictions_need_samples() -> None:
    with pytest.raises(ValueError, match='no test predictions'):
        plot_predictions({'UPetu 1-bit': []})
