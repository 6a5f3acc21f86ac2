"""Faults in training: degenerate normalisation and non-finite losses."""

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from rasters_data import make_raster
from torch.utils.data import DataLoader

from geopeft.commands import predict_raster as command
from geopeft.datamodules import ChangeFolderDataModule, SceneFolderDataModule
from geopeft.datamodules.change_augmentation import change_train_augmentation
from geopeft.tasks import PEFTSemanticSegmentation

NAN = float('nan')


@pytest.mark.parametrize(
    ('mean', 'std', 'message'),
    [
        ([0.0], [0.0], 'std of band 1 is 0: .*a constant band'),
        ([0.0, 0.0], [1.0, -1.0], 'std of band 2 is -1'),
        ([NAN], [1.0], 'mean of band 1 is nan'),
        ([0.0], [float('inf')], 'std of band 1 is inf'),
        ([], [], 'mean is empty'),
    ],
)
def test_degenerate_normalisation_is_refused_where_it_is_set(
    tmp_path: Path, mean: list[float], std: list[float], message: str
) -> None:
    builders: list[Any] = [
        lambda: ChangeFolderDataModule(root=tmp_path, mean=mean, std=std),
        lambda: SceneFolderDataModule(root=tmp_path, mean=mean, std=std),
        lambda: change_train_augmentation(mean, std, 32),
    ]
    for build in builders:
        with pytest.raises(ValueError, match=message):
            build()


def test_predict_raster_refuses_a_zero_std(
    tmp_path: Path, seg_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = make_raster(tmp_path / 'scene.tif', size=32, bands=1, values='random')
    out = tmp_path / 'map.tif'
    argv = [str(scene), str(out), '--ckpt', str(seg_checkpoint)]
    assert command.main([*argv, '--mean', '0', '--std', '0', '--no-progress']) == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if 'error' in x]
    assert len(errors) == 1 and 'std of band 1 is 0' in errors[0], errors
    assert not out.exists()


def _tiny_task(**options: Any) -> PEFTSemanticSegmentation:
    return PEFTSemanticSegmentation(
        model='unet', backbone='resnet18', weights=None, peft='full', in_channels=1,
        num_classes=2, **options,
    )  # fmt: skip


def _fit(
    task: PEFTSemanticSegmentation,
    image: torch.Tensor,
    root: Path,
    mask: torch.Tensor | None = None,
) -> None:
    if mask is None:
        mask = torch.zeros(2, 32, 32, dtype=torch.long)
    batch = {'image': image, 'mask': mask}
    trainer = Trainer(
        accelerator='cpu',
        max_steps=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(task, train_dataloaders=DataLoader([batch] * 3, batch_size=None))


def test_nan_inputs_stop_training_at_the_first_step_with_the_cause(
    tmp_path: Path,
) -> None:
    task = _tiny_task()
    before = {k: v.detach().clone() for k, v in task.named_parameters()}
    image = torch.rand(2, 1, 32, 32)
    image[0, 0, 3, 4] = NAN
    with pytest.raises(FloatingPointError, match='step 0 .*NaN or infinite'):
        _fit(task, image, tmp_path)
    after = dict(task.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step taken


def test_a_diverging_loss_on_finite_inputs_names_the_learning_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _tiny_task()

    class Exploding(torch.nn.Module):
        """The task's loss, infinite from the second step on."""

        def __init__(self, criterion: torch.nn.Module) -> None:
            super().__init__()
            self.criterion = criterion
            self.calls = 0

        def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            loss = self.criterion(y_hat, y)
            return loss * float('inf') if self.calls > 1 else loss

    monkeypatch.setattr(task, 'criterion', Exploding(task.criterion))
    with pytest.raises(FloatingPointError, match=r'step 1 .*lr=0.001.*gradient_clip'):
        _fit(task, torch.rand(2, 1, 32, 32), tmp_path)


def test_a_foreground_that_equals_ignore_index_is_a_loud_warning(
    tmp_path: Path,
) -> None:
    mask = torch.zeros(2, 32, 32, dtype=torch.long)
    mask[:, 8:20, 8:20] = 255  # a 0/255 label raster read as is
    with pytest.warns(UserWarning, match='look like 0/255 masks whose foreground'):
        _fit(
            _tiny_task(ignore_index=255, scheduler='cosine'),
            torch.rand(2, 1, 32, 32),
            tmp_path,
            mask,
        )
    mask[:, 0, :] = 1  # real foreground next to the ignored pixels: no warning
    with warnings.catch_warnings():
        warnings.filterwarnings('error', message='.*whose foreground is ignored')
        _fit(
            _tiny_task(ignore_index=255, scheduler='cosine'),
            torch.rand(2, 1, 32, 32),
            tmp_path,
            mask,
        )
