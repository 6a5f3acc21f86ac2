"""The scene-classification benchmark: every PEFT method on the same classifier.

The twin of :mod:`geopeft.benchmarks.change` for scene classification under the
split protocols of the UPetu paper: one fit + test per method and split seed with
the same backbone, head and schedule, the last epoch scored on the protocol's test
part by overall and average accuracy, reported as mean +- std over the seeds.
Datasets:

* ``ucm55``: UC Merced, 50 : 50 per class (TorchGeo's ``UCMerced``, downloadable);
* ``aid28`` / ``aid55``: AID, 20 : 80 / 50 : 50 (no automated download);
* ``folder``: any folder-per-class dataset, split ``train_fraction`` : rest;
* ``smoke``: the demo's synthetic scenes at a tiny size (no download).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..datamodules import (
    AIDDataModule,
    SceneClassificationDataModule,
    SceneFolderDataModule,
    UCMercedProtocolDataModule,
)
from ..datasets.errors import DataNotFoundError
from ..tasks import PEFTClassification
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
from .smoke_data import make_smoke_scenes

#: The table's test metrics, in percent.
SCENE_METRICS = [
    Metric('OA %', 'test_OverallAccuracy', scale=100.0, digits=2),
    Metric('AA %', 'test_AverageAccuracy', scale=100.0, digits=2),
]

_RECIPE = {'epochs': 100, 'batch_size': 64, 'image_size': 224, 'warmup_epochs': 5}


@dataclass
class SceneBenchmarkSettings(BenchmarkSettings):
    """Settings of the scene benchmark, shared by every method.

    Besides :class:`~geopeft.benchmarks.settings.BenchmarkSettings`:

    Attributes:
        image_size: Side of the images fed to the model (``None``: preset).
        train_fraction: Training share of each class for ``folder`` and
            ``smoke`` (the protocols fix theirs).
        val_fraction: Share of each class's training part held out for
            validation (logged only: the last epoch is scored). 0, as in the
            papers, trains on the whole training part.
    """

    DATASETS: ClassVar[tuple[str, ...]] = ('ucm55', 'aid28', 'aid55', 'folder', 'smoke')
    #: The schedule of experiments/upetu/ucm55.yaml, aid28.yaml and aid55.yaml.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        'ucm55': {'root': 'data/ucmerced', **_RECIPE},
        'aid28': {'root': 'data/AID', **_RECIPE},
        'aid55': {'root': 'data/AID', **_RECIPE},
        'folder': dict(_RECIPE),
        'smoke': {
            'epochs': 1,
            'batch_size': 8,
            'image_size': 32,
            'warmup_epochs': 0,
        },
    }
    SMOKE: ClassVar[dict[str, Any]] = {
        'download': False,
        'backbone': 'resnet10t',
        'weights': None,
        'epochs': 1,
        'batch_size': 8,
        'image_size': 32,
        'lr': 0.01,
        'warmup_epochs': 0,
        'train_fraction': 0.5,
        'val_fraction': 0.0,
        'limit_train_batches': None,
        'limit_eval_batches': None,
        'warmup_steps': 1,
        'precision': '32-true',
    }

    dataset: str = 'ucm55'
    image_size: int | None = None
    train_fraction: float = 0.5
    val_fraction: float = 0.0
    out_dir: str = 'outputs/scene_classification_benchmark'

    def dataset_name(self) -> str:
        """The data's name for tables and records."""
        names = {
            'ucm55': 'UCM-55',
            'aid28': 'AID-28',
            'aid55': 'AID-55',
            'smoke': 'generated synthetic scenes',
        }
        if self.dataset == 'folder':
            return Path(str(self.root)).resolve().name
        return names[self.dataset]


def check_scene_data(settings: SceneBenchmarkSettings) -> None:
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
        msg = 'dataset "folder" needs root: the folder that holds one folder per class'
        raise ValueError(msg)
    root = Path(settings.root)
    if settings.dataset == 'ucm55':
        if not settings.download and not (root / 'UCMerced_LandUse').is_dir():
            msg = (
                f'UC Merced not found under root={root} (no UCMerced_LandUse/): '
                'pass -p download True to let TorchGeo download it (about 330 MB) '
                'with its split files'
            )
            raise DataNotFoundError(msg)
        return
    if not root.is_dir():
        hint = (
            'AID has no automated download: get it from the project page '
            '(http://www.captain-whu.com/project/AID/) and point root at its 30 '
            'class folders'
            if settings.dataset.startswith('aid')
            else 'point root at a folder with one sub-folder of images per class'
        )
        msg = f'{settings.dataset}: root={root} does not exist; {hint}'
        raise DataNotFoundError(msg)


def build_scene_datamodule(
    settings: SceneBenchmarkSettings, seed: int
) -> SceneClassificationDataModule:
    """The data module of the settings' dataset, split with *seed*.

    Args:
        settings: Resolved settings.
        seed: Split seed (the protocols use 0-4).

    Returns:
        The data module.
    """
    common: dict[str, Any] = {
        'root': str(settings.root),
        'seed': seed,
        'val_fraction': settings.val_fraction,
        'image_size': settings.image_size,
        'batch_size': settings.batch_size,
        'num_workers': settings.num_workers,
    }
    if settings.dataset == 'ucm55':
        return UCMercedProtocolDataModule(
            protocol='ucm55', download=settings.download, **common
        )
    if settings.dataset in ('aid28', 'aid55'):
        return AIDDataModule(protocol=settings.dataset, **common)  # type: ignore[arg-type]
    return SceneFolderDataModule(train_fraction=settings.train_fraction, **common)


def build_scene_task(
    settings: SceneBenchmarkSettings, peft: Any, num_classes: int, labels: list[str]
) -> PEFTClassification:
    """The classification task of one row.

    Args:
        settings: Resolved settings.
        peft: The row's PEFT configuration.
        num_classes: Number of classes.
        labels: Class names.

    Returns:
        The task (AdamW, warm-up + cosine schedule).
    """
    return PEFTClassification(
        model=settings.backbone,
        weights=settings.weights,
        num_classes=num_classes,
        labels=labels,
        peft=peft.to_dict(),
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        scheduler='cosine',
        warmup_epochs=settings.warmup_epochs or 0,
    )


def run_scene_benchmark(
    settings: SceneBenchmarkSettings,
    methods: str | list[str] | None = 'all',
    seeds: int | str | list[int] = '0,1,2,3,4',
    progress: Progress = print,
) -> BenchmarkResult:
    """Fit and test every method on every split seed with the same settings.

    Args:
        settings: The benchmark settings (``None`` fields take the dataset's
            preset; call ``settings.smoke()`` first for a smoke run).
        methods: Rows to run: ``'all'``, ``'full,linear,upetu-1bit'`` or a list.
        seeds: Split seeds: one, ``'0,1,2'`` or a list; each draws the
            protocol's stratified split and seeds the model and the training.
        progress: Called with one line per step of progress.

    Returns:
        The runs and their table (mean +- std over the seeds).
    """
    settings = settings.resolve()
    rows = resolve_methods(methods)
    seed_list = resolve_seeds(seeds)
    check_scene_data(settings)
    if settings.dataset == 'smoke':
        make_smoke_scenes(str(settings.root), size=settings.image_size or 32)
    result = BenchmarkResult(
        settings=settings,
        methods=rows,
        seeds=seed_list,
        metrics=SCENE_METRICS,
        dataset_name=settings.dataset_name(),
    )
    count = len(rows) * len(seed_list)
    progress(
        f'scene benchmark on {result.dataset_name} ({settings.dataset}, root '
        f'{settings.root}): {settings.backbone} (weights {settings.weights}), '
        f'{settings.epochs} epochs, split seeds {seed_list}, {count} runs'
    )
    return run_methods(
        result, lambda row, seed: _fit_scene(settings, row, seed), progress
    )


def _fit_scene(
    settings: SceneBenchmarkSettings, row: BenchmarkMethod, seed: int
) -> RunResult:
    """Build, fit and test one row on the split of one seed."""
    datamodule = build_scene_datamodule(settings, seed)
    task = build_scene_task(
        settings, row.peft, datamodule.num_classes, datamodule.classes
    )
    return fit_row(
        task,
        datamodule,
        settings,
        row,
        seed,
        lambda fitted: fitted.model.parameter_report(),
    )
