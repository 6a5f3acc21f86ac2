"""TrainingMeter: mean step time after warm-up and peak training memory."""

import time

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from geopeft.benchmarks.measure import TrainingMeter


class _Tiny(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def _fit(meter: TrainingMeter, batches: int) -> None:
    data = TensorDataset(
        torch.randn(4 * batches, 16), torch.randint(0, 2, (4 * batches,))
    )
    trainer = Trainer(
        max_epochs=1,
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter],
    )
    trainer.fit(_Tiny(), DataLoader(data, batch_size=4))


def test_step_time_after_warmup_and_memory() -> None:
    meter = TrainingMeter(warmup_steps=2)
    _fit(meter, batches=6)
    assert len(meter.step_times) == 6
    measurement = meter.measurement
    assert measurement.timed_steps == 4
    assert measurement.step_seconds > 0
    assert measurement.step_ms == pytest.approx(1000 * measurement.step_seconds)
    assert measurement.step_seconds == pytest.approx(sum(meter.step_times[2:]) / 4)
    assert measurement.peak_bytes >= 0
    assert measurement.peak_mb == measurement.peak_bytes / 2**20
    assert measurement.device == 'cpu'
    assert measurement.memory_source in ('cpu heap', 'cpu resident set')
    # The sampling thread is stopped after the fit.
    assert meter._sampler is None


def test_short_fits_still_report_a_step_time() -> None:
    meter = TrainingMeter(warmup_steps=5)
    _fit(meter, batches=3)
    assert meter.measurement.timed_steps == 2  # all but the first step
    meter = TrainingMeter(warmup_steps=5)
    _fit(meter, batches=1)
    assert meter.measurement.timed_steps == 1
    assert meter.measurement.step_seconds > 0


def test_peak_memory_sees_a_large_training_step() -> None:
    class _Big(_Tiny):
        def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
            scratch = torch.ones(8 * 2**20 // 4)  # 8 MB alive during the step
            time.sleep(0.01)  # long enough for the sampling thread
            loss = super().training_step(batch, batch_idx)
            return loss + 0 * scratch.sum()

    meter = TrainingMeter(warmup_steps=0)
    data = TensorDataset(torch.randn(16, 16), torch.randint(0, 2, (16,)))
    trainer = Trainer(
        max_epochs=3,
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter],
    )
    trainer.fit(_Big(), DataLoader(data, batch_size=4))
    if meter.measurement.memory_source == 'cpu heap':
        assert meter.measurement.peak_mb >= 4


def test_invalid_options_and_no_steps() -> None:
    with pytest.raises(ValueError, match='warmup_steps'):
        TrainingMeter(warmup_steps=-1)
    with pytest.raises(ValueError, match='sample_interval'):
        TrainingMeter(sample_interval=0)
    with pytest.raises(RuntimeError, match='no training step'):
        _ = TrainingMeter().measurement
