"""What every benchmark run shares: the settings of one fit, the same for all rows.

The change and scene benchmarks extend :class:`BenchmarkSettings` with their own
fields. Each field is also a parameter of the benchmark notebooks (same name), so
a run is reproduced by passing the fields to papermill (see
:func:`~geopeft.benchmarks.records.papermill_command`). Fields left ``None`` take
the dataset's preset (:meth:`BenchmarkSettings.resolve`).
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from ..suggest import did_you_mean


@dataclass
class BenchmarkSettings:
    """Settings shared by all rows of a benchmark (one fit per method and seed).

    Attributes:
        dataset: Dataset key (each benchmark lists its own).
        root: Dataset root; ``None`` is the dataset's default folder.
        download: Let TorchGeo download the dataset into *root* when missing.
        backbone: timm backbone name.
        weights: Backbone weights: ``'imagenet'``, a TorchGeo weights name, a
            local file, or ``None`` for random weights.
        epochs: Training epochs (``None``: the dataset's preset).
        batch_size: Mini-batch size (``None``: preset).
        lr: AdamW learning rate, the same for every method.
        weight_decay: AdamW weight decay.
        warmup_epochs: Linear warm-up epochs before the cosine decay (``None``:
            preset).
        accelerator: Lightning accelerator (``'auto'``, ``'cpu'``, ``'gpu'``...).
        precision: Lightning precision (``'32-true'``, ``'bf16-mixed'``...).
        num_workers: Data-loading worker processes.
        threads: CPU threads of torch during the runs (``None``: torch's
            default). On a CPU shared with other jobs, 1 avoids the stalls of
            threads waiting for each other.
        limit_train_batches: Training batches per epoch (``None``: all).
        limit_eval_batches: Validation and test batches (``None``: all).
        warmup_steps: Training steps left out of the mean step time.
        out_dir: Where logs, figures and per-run results go.
    """

    #: Dataset keys this benchmark accepts.
    DATASETS: ClassVar[tuple[str, ...]] = ()
    #: Per dataset, values of the fields left ``None``.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Fields :meth:`smoke` sets (besides ``dataset='smoke'``).
    SMOKE: ClassVar[dict[str, Any]] = {}

    dataset: str = ''
    root: str | None = None
    download: bool = False
    backbone: str = 'convnext_base'
    weights: str | None = 'imagenet'
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int | None = None
    accelerator: str = 'auto'
    precision: str = '32-true'
    num_workers: int = 0
    threads: int | None = None
    limit_train_batches: int | None = None
    limit_eval_batches: int | None = None
    warmup_steps: int = 5
    out_dir: str = 'outputs/benchmark'

    def __post_init__(self) -> None:
        """Check the dataset key.

        Raises:
            ValueError: For an unknown dataset, with the closest match.
        """
        if self.dataset not in self.DATASETS:
            msg = (
                f'Unknown dataset "{self.dataset}".'
                f'{did_you_mean(self.dataset, self.DATASETS)} '
                f'Choose one of: {", ".join(self.DATASETS)}.'
            )
            raise ValueError(msg)
        if self.weights in ('', 'none', 'None'):
            self.weights = None

    @property
    def is_smoke(self) -> bool:
        """Whether the data is generated (a pipeline check, not a result)."""
        return self.dataset == 'smoke'

    def smoke(self) -> Self:
        """The tiny smoke-test variant of these settings.

        Generated data under ``<out_dir>/smoke_data``, a tiny backbone with random
        weights (nothing to download) and a few steps; the accelerator and the
        output folder are kept.

        Returns:
            New settings.
        """
        root = str(Path(self.out_dir) / 'smoke_data')
        return dataclasses.replace(self, dataset='smoke', root=root, **self.SMOKE)

    def resolve(self) -> Self:
        """Fill the fields left ``None`` from the dataset's preset.

        A ``smoke`` dataset without a root is generated under
        ``<out_dir>/smoke_data``.

        Returns:
            New settings with every preset field set.
        """
        preset = self.PRESETS.get(self.dataset, {})
        values = {
            key: value for key, value in preset.items() if getattr(self, key) is None
        }
        if self.is_smoke and self.root is None:
            values['root'] = str(Path(self.out_dir) / 'smoke_data')
        return dataclasses.replace(self, **values)

    def parameters(self) -> dict[str, Any]:
        """The settings as notebook parameters (field name -> value).

        Returns:
            A copy of every field.
        """
        return dataclasses.asdict(self)
