"""``geopeft bench accuracy``: rows, the anchor, scoring, schedule, runs per task."""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchgeo.tasks
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from geopeft.backbones import TimmBackbone
from geopeft.benchmarks import accuracy
from geopeft.benchmarks.accuracy import (
    AccuracySettings,
    FoldScorer,
    SharedSchedule,
    parse_row,
    problem_for,
)
from geopeft.benchmarks.accuracy_segmentation import block_windows
from geopeft.benchmarks.smoke_data import make_smoke_change_folder
from geopeft.commands import bench_accuracy
from geopeft.tasks import PEFTChangeDetection

TINY = {
    'backbone': 'efficientnet_lite0',
    'weights': None,
    'folds': 2,
    'seeds': (0,),
    'epochs': 1,
    'batch_size': 2,
    'patch_size': 32,
    'train_repeats': 1,
    'limit_train_batches': 2,
}


@pytest.fixture(autouse=True)
def _keep_threads() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_rows_parse_methods_options_and_anchors() -> None:
    row = parse_row('upetu:peft_lr=0.003,hidden=32,adapt_batchnorm=true')
    assert row.peft is not None and not row.is_anchor
    assert (row.peft.method, row.peft.hidden, row.peft.adapt_batchnorm) == (
        'upetu',
        32,
        True,
    )
    assert dict(row.task_options) == {'peft_lr': 0.003}
    assert parse_row('upetu-4bit').peft.bits == 4
    anchor = parse_row('torchgeo-frozen')
    assert anchor.is_anchor and anchor.freeze_backbone
    assert not parse_row('torchgeo-full').freeze_backbone


def test_every_row_takes_loss_options_and_anchors_only_those() -> None:
    anchor = parse_row('torchgeo-full:loss=dice')
    assert anchor.is_anchor and not anchor.freeze_backbone
    assert dict(anchor.task_options) == {'loss': 'dice'}
    row = parse_row('upetu:class_weights=1+4,loss=ce,peft_lr=0.01')
    assert dict(row.task_options) == {
        'class_weights': (1.0, 4.0),
        'loss': 'ce',
        'peft_lr': 0.01,
    }
    assert dict(parse_row('ktda:loss=focal').task_options) == {'loss': 'focal'}
    with pytest.raises(ValueError, match='Valid options: class_weights, loss'):
        parse_row('torchgeo-frozen:hidden=8')
    with pytest.raises(ValueError, match='Did you mean "dice"'):
        parse_row('linear:loss=dise')


@pytest.mark.parametrize(
    ('spec', 'message'),
    [
        ('uptu', 'Did you mean "upetu"'),
        ('torchgeo-ful', 'Did you mean "torchgeo-full"'),
        ('upetu:hiden=3', 'Did you mean "hidden"'),
        ('upetu:hidden', 'key=value'),
    ],
)
def test_unknown_rows_fail_with_a_hint(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_row(spec)


def test_the_anchor_is_torchgeo_with_the_same_pretrained_encoder(
    tmp_path: Path,
) -> None:
    root = make_smoke_change_folder(tmp_path, pairs={'train': 4})
    settings = AccuracySettings(
        task='change', root=str(root), backbone='efficientnet_lite0'
    )
    problem = problem_for(settings)
    anchor = problem.task(parse_row('torchgeo-full'))
    assert type(anchor) is torchgeo.tasks.ChangeDetection
    assert anchor.hparams['model'] == 'fcsiamdiff'
    frozen = problem.task(parse_row('torchgeo-frozen'))
    assert type(frozen) is torchgeo.tasks.ChangeDetection
    assert not any(p.requires_grad for p in frozen.model.encoder.parameters())
    ours = problem.task(parse_row('full'))
    assert isinstance(ours, PEFTChangeDetection)
    reference = TimmBackbone('efficientnet_lite0', weights='imagenet').model
    for model in (anchor.model.encoder.model, frozen.model.encoder.model):
        for name in ('conv_stem.weight', 'blocks.6.0.conv_pwl.weight'):
            assert torch.equal(model.state_dict()[name], reference.state_dict()[name])


def test_loss_options_reach_the_anchor_and_geopeft_tasks(tmp_path: Path) -> None:
    import segmentation_models_pytorch as smp

    root = make_smoke_change_folder(tmp_path, pairs={'train': 4})
    settings = AccuracySettings(task='change', root=str(root), weights=None)
    problem = problem_for(settings)
    assert isinstance(problem.task(parse_row('torchgeo-full')).criterion, nn.Module)
    for spec in ('torchgeo-full:loss=dice', 'upetu:loss=dice'):
        task = problem.task(parse_row(spec))
        assert isinstance(task.criterion, smp.losses.DiceLoss), spec
        assert task.hparams['loss'] == 'dice'


def test_an_anchor_that_cannot_take_the_backbone_is_a_clear_error(
    tmp_path: Path,
) -> None:
    root = make_smoke_change_folder(tmp_path, pairs={'train': 4})
    settings = AccuracySettings(
        task='change', root=str(root), backbone='vit_tiny_patch16_224', weights=None
    )
    with pytest.raises(ValueError, match='cannot take backbone "vit_tiny'):
        problem_for(settings).task(parse_row('torchgeo-full'))


def test_fold_scorer_counts_pixels_of_the_positive_class() -> None:
    scorer = FoldScorer(2)

    class Fixed(LightningModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    # prediction 1 where logit > 0: TP 2, FP 1, FN 1, TN 4
    logits = torch.tensor([[1.0, 1, 1, -1, -1, -1, -1, -1]]).reshape(1, 1, 2, 4)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0, 0, 0]]).reshape(1, 1, 2, 4)
    scorer.on_test_batch_end(None, Fixed(), None, {'image': logits, 'mask': mask}, 0)  # type: ignore[arg-type]
    scores = scorer.scores()
    assert scores['precision'] == pytest.approx(2 / 3)
    assert scores['recall'] == pytest.approx(2 / 3)
    assert scores['f1'] == pytest.approx(2 / 3)
    assert scores['iou'] == pytest.approx(0.5)
    assert scores['accuracy'] == pytest.approx(6 / 8)
    assert scores['predicted'] == pytest.approx(3 / 8)
    collapsed = FoldScorer(2)
    collapsed.on_test_batch_end(
        None, Fixed(), None, {'image': -logits.abs(), 'mask': mask}, 0
    )  # type: ignore[arg-type]
    run = accuracy.AccuracyRun('x', 0, 0, collapsed.scores(), 1, 1, 0.0)
    assert run.collapsed and run.scores['f1'] == 0.0
    assert not run.under_predicted and run.actual == pytest.approx(3 / 8)


def test_runs_that_nearly_collapse_are_flagged_under_predicted() -> None:
    def run(predicted: float, actual: float, **scores: float) -> accuracy.AccuracyRun:
        values = {'predicted': predicted, 'actual': actual, 'f1': 0.1, **scores}
        return accuracy.AccuracyRun('x', 0, 0, values, 1, 1, 0.0)

    assert run(0.02, 0.15).under_predicted  # 13 % of the labelled share
    assert not run(0.05, 0.15).under_predicted  # a third of it
    assert not run(0.0, 0.15).under_predicted  # collapsed, flagged as such
    # older records without 'actual': derived from precision and recall
    old = accuracy.AccuracyRun(
        'x', 0, 0, {'predicted': 0.01, 'precision': 0.6, 'recall': 0.05}, 1, 1, 0.0
    )
    assert old.actual == pytest.approx(0.12) and old.under_predicted


def test_fold_scorer_ignores_the_ignore_index_and_scores_labels() -> None:
    scorer = FoldScorer(3, ignore_index=255)

    class Fixed(LightningModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    logits = torch.eye(3)[[0, 1, 2, 2]].float()  # predictions 0 1 2 2
    batch = {'image': logits, 'label': torch.tensor([0, 1, 2, 255])}
    scorer.on_test_batch_end(None, Fixed(), None, batch, 0)  # type: ignore[arg-type]
    assert scorer.confusion.sum() == 3 and scorer.scores()['accuracy'] == 1.0


def test_shared_schedule_warms_up_then_decays_every_group() -> None:
    model = nn.Linear(2, 1)

    class Task(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.rates: list[list[float]] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.rates.append([g['lr'] for g in self.optimizers().param_groups])
            return self.model(batch[0]).sum()

        def configure_optimizers(self) -> Any:
            groups = [
                {'params': [model.weight], 'lr': 1.0},
                {'params': [model.bias], 'lr': 10.0},
            ]
            optimizer = torch.optim.SGD(groups, lr=1.0)
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
            return {
                'optimizer': optimizer,
                'lr_scheduler': {'scheduler': plateau, 'monitor': 'x'},
            }

        def train_dataloader(self) -> Any:
            return torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(torch.ones(10, 2)), batch_size=1
            )

    task = Task()
    trainer = Trainer(
        max_epochs=1,
        callbacks=[SharedSchedule(0.2)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task)
    first = [rates[0] for rates in task.rates]
    assert first[0] == pytest.approx(1 / 3) and first[1] == pytest.approx(2 / 3)
    assert first[2] == pytest.approx(1.0)
    assert all(b <= a for a, b in zip(first[2:], first[3:], strict=False))
    assert first[-1] < 0.1
    assert all(rates[1] == pytest.approx(10 * rates[0]) for rates in task.rates)


def test_block_windows_cover_the_raster_without_slivers() -> None:
    windows = block_windows(900, 900, 256)
    assert len(windows) == 16
    assert sum(w.width * w.height for w in windows) == 900 * 900
    assert windows[-1].width == 900 - 768
    assert len(block_windows(520, 260, 256)) == 2  # 8 px remainders merged


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert bench_accuracy.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _tiny_args(out: Path) -> list[str]:
    return [
        '--backbone', 'efficientnet_lite0', '--weights', 'none', '--folds', '2',
        '--seeds', '0', '--epochs', '1', '--batch-size', '2', '--patch-size', '32',
        '--train-repeats', '1', '--limit-train-batches', '2', '--out', str(out),
        '--json',
    ]  # fmt: skip


def test_change_run_end_to_end_with_the_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_smoke_change_folder(tmp_path / 'cd', pairs={'train': 4, 'test': 1})
    argv = [
        '--task', 'change', '--root', str(root), '--methods', 'torchgeo-full',
        'upetu', *_tiny_args(tmp_path / 'out'), '--record', str(tmp_path / 'rec'),
    ]  # fmt: skip
    result = _run_cli(argv, capsys)
    rows = {row['method']: row for row in result['rows']}
    assert list(rows) == ['torchgeo-full', 'upetu']
    for row in rows.values():
        assert row['folds'] == [0, 1] and row['seeds'] == [0] and row['runs'] == 2
        assert 0.0 <= row['f1_mean'] <= 1.0 and row['std'] >= 0.0
    assert rows['torchgeo-full']['kind'] == 'torchgeo'
    assert rows['torchgeo-full']['diff_mean'] == 0.0
    assert rows['upetu']['diff_mean'] == pytest.approx(
        rows['upetu']['f1_mean'] - rows['torchgeo-full']['f1_mean']
    )
    assert rows['upetu']['trainable'] < rows['torchgeo-full']['trainable']
    (record,) = (tmp_path / 'rec').glob('*.json')
    assert json.loads(record.read_text())['experiment'] == 'bench_accuracy_change'
    lines = (tmp_path / 'out' / 'runs.jsonl').read_text().splitlines()
    assert len(lines) == 4


def test_a_rerun_resumes_from_the_finished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_smoke_change_folder(tmp_path / 'cd', pairs={'train': 4})
    argv = ['--root', str(root), '--methods', 'linear', *_tiny_args(tmp_path / 'o')]
    first = _run_cli(argv, capsys)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError('a finished run was trained again')

    monkeypatch.setattr(accuracy, 'fit_and_score', fail)
    assert _run_cli(argv, capsys)['rows'] == first['rows']


def test_classification_run_end_to_end(
    scene_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        '--task', 'classification', '--root', str(scene_root), '--methods',
        'torchgeo-frozen', 'linear', *_tiny_args(tmp_path / 'out'),
    ]  # fmt: skip
    rows = _run_cli(argv, capsys)['rows']
    assert [row['method'] for row in rows] == ['torchgeo-frozen', 'linear']
    assert all(0.0 <= row['accuracy_mean'] <= 1.0 for row in rows)
    assert rows[0]['diff_mean'] is None  # no torchgeo-full row to compare with


def test_segmentation_run_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rasters_data import make_raster

    rng = np.random.default_rng(0)
    labels = np.zeros((1, 128, 128), dtype=np.uint8)
    labels[:, 20:60, 10:100] = 1
    image = (
        rng.integers(100, 200, (1, 128, 128)) + 500 * labels.astype(np.int64)
    ).astype(np.uint16)
    make_raster(tmp_path / 'image.tif', values=image, nodata=0)
    make_raster(tmp_path / 'mask.tif', values=labels)
    argv = [
        '--task', 'segmentation', '--image', str(tmp_path / 'image.tif'),
        '--labels', str(tmp_path / 'mask.tif'), '--methods', 'torchgeo-full',
        'upetu', *_tiny_args(tmp_path / 'out'),
    ]  # fmt: skip
    rows = _run_cli(argv, capsys)['rows']
    assert [row['method'] for row in rows] == ['torchgeo-full', 'upetu']
    folds = sorted((tmp_path / 'out' / 'folds').glob('*.geojson'))
    assert len(folds) == 2
    splits = [
        [f['properties']['split'] for f in json.loads(p.read_text())['features']]
        for p in folds
    ]
    assert all(a != b for a, b in zip(*splits, strict=True))  # each block tested once


def test_ktda_rows_parse_their_options() -> None:
    row = parse_row('ktda:distill_weight=0,fmm=mlp,teacher_taps=1+2,lr=0.01')
    assert row.ktda and not row.is_anchor
    assert dict(row.ktda_options) == {
        'distill_weight': 0,
        'fmm': 'mlp',
        'teacher_taps': [1, 2],
    }
    assert dict(row.task_options) == {'lr': 0.01}
    assert not parse_row('upetu').ktda
    with pytest.raises(ValueError, match='Unknown option "peft_lr"'):
        parse_row('ktda:peft_lr=0.1')
    with pytest.raises(ValueError, match='Unknown option "fmm"'):
        parse_row('upetu:fmm=mlp')
    with pytest.raises(ValueError, match='Unknown option "hidden"'):
        parse_row('ktda:hidden=32')  # no PEFT modules to size


def test_settings_added_later_keep_the_keys_of_recorded_runs() -> None:
    settings = AccuracySettings(task='segmentation', image='a.tif')
    values = dataclasses.asdict(settings)
    later = accuracy._LATER_SETTINGS
    for name in ('seeds', 'out_dir', 'threads', 'accelerator', *later):
        values.pop(name)
    text = json.dumps(values, sort_keys=True, default=str)
    assert settings.key() == hashlib.sha256(text.encode()).hexdigest()[:16]
    changed = dataclasses.replace(settings, label_column=None)
    assert changed.key() != settings.key()
    assert dataclasses.replace(settings, seeds=(5,)).key() == settings.key()


def _segmentation_chip(tmp_path: Path) -> tuple[Path, Path]:
    """A 1-band 128 px chip with two building footprints (GeoJSON, no class)."""
    from rasters_data import (
        DEFAULT_ORIGIN,
        make_raster,
        make_vector_labels,
        pixel_box,
    )

    rng = np.random.default_rng(0)
    inside = np.zeros((1, 128, 128), dtype=np.int64)
    boxes = [((20, 60), (10, 100)), ((80, 110), (30, 70))]
    for rows, cols in boxes:
        inside[:, slice(*rows), slice(*cols)] = 1
    image = (rng.integers(100, 200, (1, 128, 128)) + 500 * inside).astype(np.uint16)
    make_raster(tmp_path / 'image.tif', values=image, nodata=0)
    polygons = [pixel_box(DEFAULT_ORIGIN, 10.0, rows=r, cols=c) for r, c in boxes]
    labels = make_vector_labels(
        tmp_path / 'buildings.geojson', polygons, ['yes', 'yes'], column='building'
    )
    return tmp_path / 'image.tif', labels


def test_ktda_rows_distil_from_the_teacher_or_train_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ktda_helpers import TINY_STUDENT

    import geopeft.tasks

    built: list[float] = []

    class TinyKTDA(geopeft.tasks.KTDASegmentation):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.update(TINY_STUDENT)
            kwargs['teacher_weights'] = None  # a random tiny teacher
            super().__init__(**kwargs)

        def build_teacher(self) -> Any:
            built.append(self.hparams['distill_weight'])
            return super().build_teacher()

    monkeypatch.setattr(geopeft.tasks, 'KTDASegmentation', TinyKTDA)
    image, labels = _segmentation_chip(tmp_path)
    argv = [
        '--task', 'segmentation', '--image', str(image), '--labels', str(labels),
        '--label-column', 'none', '--teacher-weights', str(tmp_path / 'teacher'),
        '--methods', 'ktda', 'ktda:distill_weight=0', *_tiny_args(tmp_path / 'out'),
    ]  # fmt: skip
    with pytest.warns(UserWarning, match='randomly initialised teacher'):
        rows = _run_cli(argv, capsys)['rows']
    assert [row['method'] for row in rows] == ['ktda', 'ktda:distill_weight=0']
    assert all(0 <= row['f1_mean'] <= 1 for row in rows)
    assert built and set(built) == {1.0}  # only the distilling row has a teacher


@pytest.mark.parametrize(
    ('extra', 'message'),
    [
        (['--methods', 'ktda', '--label-column', 'none'], 'pass --teacher-weights'),
        (
            ['--methods', 'ktda:distill_weight=0', '--label-column', 'kind'],
            "no column 'kind'",
        ),
    ],
)
def test_bad_ktda_requests_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    image, labels = _segmentation_chip(tmp_path)
    argv = [
        '--task', 'segmentation', '--image', str(image), '--labels', str(labels),
        *_tiny_args(tmp_path / 'out'), *extra,
    ]  # fmt: skip
    assert bench_accuracy.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_ktda_rows_need_the_segmentation_task(tmp_path: Path) -> None:
    root = make_smoke_change_folder(tmp_path / 'cd', pairs={'train': 4})
    settings = AccuracySettings(root=str(root), out_dir=str(tmp_path / 'o'), **TINY)
    with pytest.raises(ValueError, match='runs with --task segmentation'):
        accuracy.run_accuracy(settings, ['ktda:distill_weight=0'])


@pytest.mark.parametrize(
    ('extra', 'message'),
    [
        (['--folds', '9'], 'use at most --folds 4'),
        (['--methods', 'uptu'], 'Did you mean "upetu"'),
    ],
)
def test_bad_requests_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    root = make_smoke_change_folder(tmp_path / 'cd', pairs={'train': 4})
    argv = ['--root', str(root), '--out', str(tmp_path / 'o'), *extra]
    assert bench_accuracy.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_runs_made_under_other_peft_lr_defaults_are_run_again() -> None:
    settings = AccuracySettings(lr=1e-3)

    def recorded(name: str, peft_lr: float | None = None) -> accuracy.AccuracyRun:
        return accuracy.AccuracyRun(name, 0, 0, {'f1': 0.5}, 1, 1, 0.0, peft_lr)

    # Recorded before the rate was kept: UPetu then trained its modules at lr.
    assert not accuracy._still_valid(recorded('upetu'), parse_row('upetu'), settings)
    for spec in ('linear', 'full', 'upetu:peft_lr=0.01', 'torchgeo-full'):
        assert accuracy._still_valid(recorded(spec), parse_row(spec), settings)
    assert accuracy.row_peft_lr(parse_row('upetu'), settings) == pytest.approx(0.01)
    assert accuracy._still_valid(recorded('upetu', 0.01), parse_row('upetu'), settings)
    assert not accuracy._still_valid(
        recorded('upetu', 0.01), parse_row('upetu'), AccuracySettings(lr=1e-4)
    )


def test_segmentation_runs_made_under_another_loss_are_run_again() -> None:
    settings = AccuracySettings(task='segmentation', lr=1e-3, num_classes=2)

    def recorded(name: str, loss: str | None) -> accuracy.AccuracyRun:
        peft_lr = accuracy.row_peft_lr(parse_row(name), settings)
        run = accuracy.AccuracyRun(name, 0, 0, {'f1': 0.5}, 1, 1, 0.0, peft_lr)
        run.loss = loss
        return run

    # geopeft's two-class default is dice; TorchGeo's anchors and KTDA keep 'ce'.
    expected = {
        'upetu': 'dice', 'linear': 'dice', 'upetu:loss=ce': 'ce',
        'upetu:class_weights=1+4': 'ce', 'torchgeo-full': 'ce',
        'torchgeo-full:loss=dice': 'dice', 'ktda': 'ce',
    }  # fmt: skip
    for spec, loss in expected.items():
        assert accuracy.row_loss(parse_row(spec), settings) == loss, spec
    # Runs recorded before the loss was kept trained with 'ce'.
    assert not accuracy._still_valid(
        recorded('upetu', None), parse_row('upetu'), settings
    )
    assert accuracy._still_valid(
        recorded('upetu', 'dice'), parse_row('upetu'), settings
    )
    assert accuracy._still_valid(
        recorded('torchgeo-full', None), parse_row('torchgeo-full'), settings
    )
    three = dataclasses.replace(settings, num_classes=3)
    assert accuracy.row_loss(parse_row('upetu'), three) == 'ce'
    assert accuracy.row_loss(parse_row('upetu'), AccuracySettings()) is None
