from pathlib import Path
from typing import Any

import pytest
import torch
from ktda_helpers import TINY_STUDENT, TINY_TEACHER
from lightning.pytorch import LightningDataModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from geopeft.distill import DINOv2Teacher
from geopeft.tasks import KTDASegmentation
from geopeft.tasks.optim import decay_groups, poly_factor

pytestmark = pytest.mark.filterwarnings('ignore:KTDASegmentation has no teacher')


class Blobs(Dataset[dict[str, Tensor]]):
    """Images whose bright square is class 1 (the rest class 0)."""

    def __init__(self, count: int = 4, size: int = 28) -> None:
        self.count = count
        self.size = size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(index)
        image = torch.randn(3, self.size, self.size, generator=generator) * 0.1
        mask = torch.zeros(self.size, self.size, dtype=torch.long)
        start = index % (self.size // 2)
        mask[start : start + self.size // 2, start : start + self.size // 2] = 1
        image[:, mask.bool()] += 1.0
        return {'image': image, 'mask': mask}


class BlobsModule(LightningDataModule):
    def __init__(self) -> None:
        super().__init__()

    def _loader(self) -> DataLoader[dict[str, Tensor]]:
        return DataLoader(Blobs(), batch_size=2)

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        return self._loader()

    def val_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        return self._loader()

    def test_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        return self._loader()

    def predict_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        return self._loader()


def task(**kwargs: Any) -> KTDASegmentation:
    options: dict[str, Any] = {
        'backbone': 'resnet18',
        'num_classes': 2,
        'warmup_iters': 1,
        **TINY_STUDENT,
    }
    options.update(kwargs)
    return KTDASegmentation(**options)


def trainer(tmp_path: Path, **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {
        'accelerator': 'cpu',
        'max_epochs': 1,
        'logger': False,
        'enable_progress_bar': False,
        'default_root_dir': tmp_path,
        'enable_model_summary': False,
    }
    options.update(kwargs)
    return Trainer(**options)


def batch() -> dict[str, Tensor]:
    items = [Blobs()[i] for i in range(2)]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


@pytest.mark.parametrize('distill_pass', ['reuse', 'second'])
def test_no_gradient_reaches_the_teacher(distill_pass: str) -> None:
    model = task(distill_pass=distill_pass)
    teacher = model.build_teacher()
    loss = model.training_step(batch(), 0)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and p.grad is None
    ]
    assert missing == []
    # The FAM gets a gradient from the distillation loss alone.
    model.zero_grad()
    model.hparams['aux_weight'] = 0.0
    out = model.model.forward_train(batch()['image'])
    from geopeft.distill import distillation_loss

    distillation_loss(out.aligned, model.teacher_features(batch()['image'])).backward()
    assert all(p.grad is not None for p in model.model.fam.parameters())
    assert all(p.grad is None for p in model.model.decode_head.parameters())


def test_teacher_is_not_a_submodule_nor_a_hyperparameter(tmp_path: Path) -> None:
    weights = tmp_path / 'teacher.pth'
    torch.save(
        DINOv2Teacher(
            'dinov2_vits14', model_kwargs=TINY_TEACHER, taps=[1, 2, 3, 4]
        ).model.state_dict(),
        weights,
    )
    model = task(teacher_weights=str(weights))
    assert 'teacher_weights' not in model.hparams
    fit = trainer(tmp_path, max_steps=2)
    fit.fit(model, datamodule=BlobsModule())
    assert model.teacher is not None
    teacher_params = {id(p) for p in model.teacher.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}
    path = tmp_path / 'last.ckpt'
    fit.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert not any('teacher' in key for key in checkpoint['state_dict'])
    assert 'teacher_weights' not in checkpoint['hyper_parameters']
    teacher_tensors = [t for t in model.teacher.state_dict().values()]
    for tensor in checkpoint['state_dict'].values():
        assert not any(
            tensor.shape == t.shape and torch.equal(tensor, t)
            for t in teacher_tensors
            if t.numel() > 32
        )


def test_validate_test_predict_without_a_teacher(tmp_path: Path) -> None:
    model = task()
    fit = trainer(tmp_path, max_steps=1)
    fit.fit(model, datamodule=BlobsModule())
    path = tmp_path / 'model.ckpt'
    fit.save_checkpoint(path)
    # A teacher file that does not exist: nothing may try to build the teacher.
    restored = KTDASegmentation.load_from_checkpoint(
        path, teacher_weights=str(tmp_path / 'missing.pth')
    )
    run = trainer(tmp_path)
    run.validate(restored, datamodule=BlobsModule())
    metrics = run.test(restored, datamodule=BlobsModule())[0]
    assert 'test_AverageJaccardIndex' in metrics
    predictions = run.predict(restored, datamodule=BlobsModule())
    assert predictions is not None
    first = predictions[0]
    assert isinstance(first, dict)
    assert first['probabilities'].shape == (2, 2, 28, 28)
    assert restored.teacher is None


def test_without_distillation_no_teacher_is_built(tmp_path: Path) -> None:
    model = task(distill_weight=0.0, aux_weight=0.0)
    assert model.model.aux_head is None
    trainer(tmp_path, max_steps=1).fit(model, datamodule=BlobsModule())
    assert model.teacher is None


def test_teacher_runs_in_bf16_when_asked() -> None:
    model = task(teacher_precision='bf16')
    features = model.teacher_features(batch()['image'])
    assert all(f.dtype == torch.float32 for f in features)
    reference = task(teacher_precision='32')
    reference.__dict__['_teacher'] = model.teacher
    exact = reference.teacher_features(batch()['image'])
    assert not torch.equal(features[0], exact[0])
    torch.testing.assert_close(features[0], exact[0], atol=0.1, rtol=0.05)


def test_fp32_teacher_stays_fp32_inside_bf16_autocast() -> None:
    model = task(teacher_precision='32')
    x = batch()['image']
    exact = model.teacher_features(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        inside = model.teacher_features(x)
    assert all(torch.equal(a, b) for a, b in zip(exact, inside, strict=True))


def test_training_reduces_the_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = task(lr=1e-3, warmup_iters=0)
    data = batch()

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return model.criterion(model(data['image']), data['mask']).item()

    first = loss()
    trainer(tmp_path, max_steps=12).fit(model, datamodule=BlobsModule())
    assert loss() < first


def test_poly_schedule_and_norms_without_decay() -> None:
    assert poly_factor(0, max_iters=100, warmup_iters=10) == pytest.approx(1e-3)
    assert poly_factor(5, max_iters=100, warmup_iters=10) == pytest.approx(
        (1 - 0.05) ** 0.9 * (1e-3 + (1 - 1e-3) * 0.5)
    )
    assert poly_factor(10, max_iters=100, warmup_iters=10) == pytest.approx(0.9**0.9)
    assert poly_factor(100, max_iters=100) == 0.0
    model = task()
    groups = decay_groups(model, 0.01)
    decayed, normed = groups
    assert decayed['weight_decay'] == 0.01
    assert normed['weight_decay'] == 0.0
    norm_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, torch.nn.LayerNorm | torch.nn.BatchNorm2d)
        for p in m.parameters()
    }
    assert {id(p) for p in normed['params']} == norm_ids  # type: ignore[union-attr]
    total = len(decayed['params']) + len(normed['params'])  # type: ignore[arg-type]
    assert total == sum(1 for p in model.parameters() if p.requires_grad)


def test_learning_rate_follows_the_schedule_per_iteration(tmp_path: Path) -> None:
    model = task(lr=1e-2, warmup_iters=2, max_iters=10)
    rates: list[float] = []

    from lightning.pytorch.callbacks import Callback

    class LearningRates(Callback):
        def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
            rates.append(trainer.optimizers[0].param_groups[0]['lr'])

    trainer(tmp_path, max_steps=4, max_epochs=2, callbacks=[LearningRates()]).fit(
        model, datamodule=BlobsModule()
    )
    expected = [1e-2 * poly_factor(i, max_iters=10, warmup_iters=2) for i in range(4)]
    assert rates == pytest.approx(expected)
    assert rates[0] == pytest.approx(1e-5)  # warm-up from 1e-3 x lr


def test_bad_options_are_clear() -> None:
    with pytest.raises(ValueError, match='alpha must be in'):
        task(alpha=1.5)
    with pytest.raises(ValueError, match="'reuse' or 'second'"):
        task(distill_pass='twice')
    with pytest.raises(ValueError, match='Unknown teacher'):
        task(teacher='dino_vitb8')
