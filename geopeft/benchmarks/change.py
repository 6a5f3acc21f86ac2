"""The change-detection benchmark: every PEFT method on the same Siamese model.

One fit + test per method (and seed) with the same backbone, decoder, fusion,
schedule and seed; the last epoch is scored on the test split by the changed
class's F1, IoU, precision and recall (``PEFTChangeDetection``'s ``test_Changed*``
metrics). Datasets:

* ``levircd``: LEVIR-CD through TorchGeo (``LEVIRCDChangeDataModule``; random
  ``patch_size`` training crops, the centre crop of every val/test pair scored);
* ``oscd``: OSCD through TorchGeo (``OSCDChangeDataModule``, 13 Sentinel-2 bands
  on band-aware first-layer weights);
* ``folder``: any A/B/label folder (``ChangeFolderDataModule``: random crops,
  flips, rotations and per-date colour jitter; whole val/test images scored);
* ``smoke``: a tiny generated A/B/label folder with a known answer (see
  :func:`~geopeft.benchmarks.smoke_data.make_smoke_change_folder`).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import (
    Callback,
    LightningDataModule,
    LightningModule,
    Trainer,
)
from torch import Tensor
from torchgeo.datasets import OSCD

from ..datamodules import (
    ChangeFolderDataModule,
    LEVIRCDChangeDataModule,
    OSCDChangeDataModule,
)
from ..datasets.errors import DataNotFoundError
from ..models import dense_parameter_report
from ..tasks import PEFTChangeDetection
from .methods import BenchmarkMethod, resolve_methods, resolve_seeds
from .runs import (
    BenchmarkResult,
    Metric,
    Progress,
    RunResult,
    fit_row,
    run_methods,
)
from .settings import BenchmarkSettings
from .smoke_data import make_smoke_change_folder

#: OSCD's Sentinel-2 bands, in TorchGeo's order.
OSCD_BANDS = tuple(OSCD.all_bands)

_OSCD_IMAGES = 'Onera Satellite Change Detection dataset - Images'

#: The table's test metrics (the changed class).
CHANGE_METRICS = [
    Metric('F1', 'test_ChangedF1'),
    Metric('IoU', 'test_ChangedIoU'),
    Metric('precision', 'test_ChangedPrecision'),
    Metric('recall', 'test_ChangedRecall'),
]


@dataclass
class ChangeBenchmarkSettings(BenchmarkSettings):
    """Settings of the change benchmark, shared by every method.

    Besides :class:`~geopeft.benchmarks.settings.BenchmarkSettings`:

    Attributes:
        arch: SMP decoder architecture (``'upernet'``, ``'unet'``...).
        fusion: Fusion of the dates' features (``'diff'``, ``'absdiff'``...).
        patch_size: Training crop side (``None``: preset).
        train_repeats: Random crops of every training pair per epoch (``folder``
            and ``smoke`` only; ``None``: preset).
        val_every: Validate every this many epochs (``None``: preset).
        decoder_kwargs: Further SMP decoder options, e.g.
            ``{'decoder_channels': 128}``.
        render_pairs: Test pairs kept with their predictions for the figure.
    """

    DATASETS: ClassVar[tuple[str, ...]] = ('levircd', 'oscd', 'folder', 'smoke')
    #: Schedules of experiments/upetu/levircd.yaml, oscd.yaml and
    #: experiments/change/levircd_samples.yaml (for small folders).
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        'levircd': {
            'root': 'data/levircd',
            'epochs': 200,
            'batch_size': 8,
            'patch_size': 256,
            'warmup_epochs': 5,
            'train_repeats': 1,
            'val_every': 1,
        },
        'oscd': {
            'root': 'data/oscd',
            'epochs': 2000,
            'batch_size': 4,
            'patch_size': 64,
            'warmup_epochs': 50,
            'train_repeats': 1,
            'val_every': 20,
        },
        'folder': {
            'epochs': 40,
            'batch_size': 4,
            'patch_size': 128,
            'warmup_epochs': 4,
            'train_repeats': 8,
            'val_every': 1,
        },
        'smoke': {
            'epochs': 2,
            'batch_size': 4,
            'patch_size': 32,
            'warmup_epochs': 0,
            'train_repeats': 1,
            'val_every': 1,
        },
    }
    SMOKE: ClassVar[dict[str, Any]] = {
        'download': False,
        'backbone': 'resnet10t',
        'weights': None,
        'arch': 'unet',
        'decoder_kwargs': {'decoder_channels': [16, 16, 8, 8, 8]},
        'epochs': 2,
        'batch_size': 4,
        'patch_size': 32,
        'train_repeats': 1,
        'lr': 0.01,
        'warmup_epochs': 0,
        'val_every': 1,
        'limit_train_batches': None,
        'limit_eval_batches': None,
        'warmup_steps': 1,
        'render_pairs': 2,
        'precision': '32-true',
    }

    dataset: str = 'levircd'
    arch: str = 'upernet'
    fusion: str = 'diff'
    patch_size: int | None = None
    train_repeats: int | None = None
    val_every: int | None = None
    decoder_kwargs: dict[str, Any] | None = None
    render_pairs: int = 4
    out_dir: str = 'outputs/change_detection_benchmark'

    @property
    def in_channels(self) -> int:
        """Bands of each date."""
        return len(OSCD_BANDS) if self.dataset == 'oscd' else 3

    @property
    def bands(self) -> list[str] | None:
        """Band names of each date (band-aware first layer), where known."""
        return list(OSCD_BANDS) if self.dataset == 'oscd' else None

    @property
    def rgb(self) -> tuple[int, int, int]:
        """Channels shown as red, green and blue in the figures."""
        return (3, 2, 1) if self.dataset == 'oscd' else (0, 1, 2)

    def dataset_name(self) -> str:
        """The data's name for tables and records."""
        names = {
            'levircd': 'LEVIR-CD',
            'oscd': 'OSCD',
            'smoke': 'generated A-B-label pairs',
        }
        if self.dataset == 'folder':
            return Path(str(self.root)).resolve().name
        return names[self.dataset]


def check_change_data(settings: ChangeBenchmarkSettings) -> None:
    """Fail early, with the fix, when the dataset is not where the settings say.

    Args:
        settings: Resolved settings.

    Raises:
        ValueError: If ``folder`` has no root.
        DataNotFoundError: If the data is missing (with the download hint).
    """
    if settings.dataset == 'smoke':
        return
    if settings.root is None:
        msg = 'dataset "folder" needs root: the folder that holds A/, B/ and label/'
        raise ValueError(msg)
    root = Path(settings.root)
    if settings.dataset == 'folder':
        missing = [name for name in ('A', 'B', 'label') if not (root / name).is_dir()]
        if missing:
            msg = (
                f'{root} is not an A/B/label change folder: it lacks '
                f'{", ".join(missing)} (expected root/A/x.png, root/B/x.png, '
                'root/label/x.png with train_/val_/test_ prefixes or list/*.txt)'
            )
            raise DataNotFoundError(msg)
        return
    if settings.download:
        return
    if settings.dataset == 'levircd' and not (root / 'A').is_dir():
        msg = (
            f'LEVIR-CD not found under root={root} (no A/, B/, label/ there): pass '
            '-p download True to let TorchGeo download it (about 2.4 GB), or point '
            'root at the folder holding the extracted train/val/test archives'
        )
        raise DataNotFoundError(msg)
    if settings.dataset == 'oscd' and not (root / _OSCD_IMAGES).is_dir():
        msg = (
            f'OSCD not found under root={root} (no "{_OSCD_IMAGES}" folder): pass '
            '-p download True to let TorchGeo download it, or point root at the '
            'folder holding the extracted OSCD archives'
        )
        raise DataNotFoundError(msg)


def build_change_datamodule(
    settings: ChangeBenchmarkSettings, seed: int
) -> LightningDataModule:
    """The data module of the settings' dataset.

    Args:
        settings: Resolved settings.
        seed: Seed of the validation hold-out where the data module draws one.

    Returns:
        A data module with A/B images ``[B, 2, C, H, W]`` and binary masks.
    """
    common: dict[str, Any] = {
        'batch_size': settings.batch_size,
        'patch_size': settings.patch_size,
        'num_workers': settings.num_workers,
    }
    if settings.dataset == 'levircd':
        return LEVIRCDChangeDataModule(
            root=settings.root, download=settings.download, **common
        )
    if settings.dataset == 'oscd':
        return OSCDChangeDataModule(
            val_split_pct=0.2,
            root=settings.root,
            bands=list(OSCD_BANDS),
            download=settings.download,
            **common,
        )
    return ChangeFolderDataModule(
        root=str(settings.root),
        seed=seed,
        train_repeats=settings.train_repeats or 1,
        **common,
    )


def build_change_task(
    settings: ChangeBenchmarkSettings, peft: Any
) -> PEFTChangeDetection:
    """The Siamese change-detection task of one row.

    Args:
        settings: Resolved settings.
        peft: The row's PEFT configuration.

    Returns:
        The task (AdamW, warm-up + cosine schedule).
    """
    return PEFTChangeDetection(
        model=settings.arch,
        backbone=settings.backbone,
        weights=settings.weights,
        in_channels=settings.in_channels,
        bands=settings.bands,
        peft=peft.to_dict(),
        fusion=settings.fusion,  # type: ignore[arg-type]
        decoder_kwargs=settings.decoder_kwargs,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        scheduler='cosine',
        warmup_epochs=settings.warmup_epochs or 0,
    )


class PredictionSampler(Callback):
    """Keep the first test pairs with the model's change predictions.

    Reads each test batch as the model saw it (after the data module's on-device
    normalisation and crop) and predicts it again, so images, labels and
    predictions line up whatever the data module's test transform.
    """

    def __init__(self, count: int) -> None:
        """Initialize a new PredictionSampler instance.

        Args:
            count: Number of pairs to keep.
        """
        self.count = count
        self.samples: list[dict[str, Tensor]] = []

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep pairs of this batch until :attr:`count` are kept."""
        if len(self.samples) >= self.count:
            return
        image = batch['image']
        with torch.no_grad():
            logits = pl_module(image)
        if image.ndim == 4:  # TorchGeo's flattened [B, 2C, H, W]
            image = image.unflatten(1, (2, image.shape[1] // 2))
        prediction = (logits[:, 0] > 0) if logits.shape[1] == 1 else logits.argmax(1)
        mask = batch['mask']
        mask = mask[:, 0] if mask.ndim == 4 else mask
        for index in range(image.shape[0]):
            if len(self.samples) >= self.count:
                break
            self.samples.append(
                {
                    'image': image[index].float().cpu().clone(),
                    'mask': mask[index].to(torch.uint8).cpu(),
                    'prediction': prediction[index].to(torch.uint8).cpu(),
                }
            )


def run_change_benchmark(
    settings: ChangeBenchmarkSettings,
    methods: str | list[str] | None = 'all',
    seeds: int | str | list[int] = 0,
    progress: Progress = print,
) -> BenchmarkResult:
    """Fit and test every method (and seed) with the same settings.

    Args:
        settings: The benchmark settings (``None`` fields take the dataset's
            preset; call ``settings.smoke()`` first for a smoke run).
        methods: Rows to run: ``'all'``, ``'full,linear,upetu-1bit'`` or a list
            (see :data:`~geopeft.benchmarks.methods.METHODS`).
        seeds: One seed, ``'0,1,2'`` or a list; each seeds the model and the
            training, and a folder's validation hold-out.
        progress: Called with one line per step of progress.

    Returns:
        The runs and their table.
    """
    settings = settings.resolve()
    rows = resolve_methods(methods)
    seed_list = resolve_seeds(seeds)
    check_change_data(settings)
    if settings.dataset == 'smoke':
        make_smoke_change_folder(str(settings.root), size=settings.patch_size or 32)
    result = BenchmarkResult(
        settings=settings,
        methods=rows,
        seeds=seed_list,
        metrics=CHANGE_METRICS,
        dataset_name=settings.dataset_name(),
    )
    count = len(rows) * len(seed_list)
    progress(
        f'change benchmark on {result.dataset_name} ({settings.dataset}, root '
        f'{settings.root}): {settings.arch} on {settings.backbone} '
        f'(weights {settings.weights}), {settings.epochs} epochs, {count} runs'
    )
    return run_methods(
        result, lambda row, seed: _fit_change(settings, row, seed), progress
    )


def _fit_change(
    settings: ChangeBenchmarkSettings, row: BenchmarkMethod, seed: int
) -> RunResult:
    """Build, fit and test one row with one seed."""
    datamodule = build_change_datamodule(settings, seed)
    task = build_change_task(settings, row.peft)
    sampler = PredictionSampler(settings.render_pairs)
    run = fit_row(
        task,
        datamodule,
        settings,
        row,
        seed,
        lambda fitted: dense_parameter_report(fitted.model),
        callbacks=[sampler],
    )
    run.samples = sampler.samples
    return run


def prediction_samples(
    result: BenchmarkResult, methods: list[str] | None = None
) -> dict[str, list[dict[str, Tensor]]]:
    """The kept test pairs per method (first seed), for the prediction figure.

    Args:
        result: A change benchmark's result.
        methods: Row names to include (all rows when ``None``).

    Returns:
        Method label -> kept samples (``image [2, C, H, W]``, ``mask``,
        ``prediction``).
    """
    chosen = resolve_methods(methods) if methods else result.methods
    samples = {}
    for row in chosen:
        runs = result.runs_of(row)
        if runs and runs[0].samples:
            samples[row.label] = runs[0].samples
    return samples
