"""Fixtures shared by the fault-injection tests."""

from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from geopeft.tasks import PEFTSemanticSegmentation


@pytest.fixture(scope='session')
def seg_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained UPetu segmentation checkpoint: 1 band in, 2 classes out."""
    task = PEFTSemanticSegmentation(
        model='unet', backbone='resnet18', weights=None, peft='upetu', in_channels=1,
        num_classes=2,
    )  # fmt: skip
    trainer = Trainer(accelerator='cpu', logger=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    path = tmp_path_factory.mktemp('ckpt') / 'seg.ckpt'
    trainer.save_checkpoint(path)
    return path
