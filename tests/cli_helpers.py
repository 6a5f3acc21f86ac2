"""What the end-to-end CLI tests share: trainer arguments and logged metrics."""

import csv
from pathlib import Path


def trainer_args(out: Path) -> list[str]:
    """CLI arguments for one CPU epoch, logging every step to a CSVLogger in *out*."""
    return [
        '--trainer.accelerator',
        'cpu',
        '--trainer.max_epochs',
        '1',
        '--trainer.log_every_n_steps',
        '1',
        '--trainer.enable_model_summary',
        'false',
        '--trainer.default_root_dir',
        str(out),
        '--trainer.logger',
        'CSVLogger',
        '--trainer.logger.save_dir',
        str(out),
    ]


def logged_metrics(out: Path) -> dict[str, float]:
    """Every metric the CSVLogger wrote under *out* (last value of each)."""
    values: dict[str, float] = {}
    for path in sorted(out.rglob('metrics.csv')):
        with path.open() as f:
            for row in csv.DictReader(f):
                values.update({k: float(v) for k, v in row.items() if v != ''})
    return values
