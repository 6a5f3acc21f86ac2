"""UPetu vs full fine-tuning vs frozen backbone on the LEVIR-CD sample pairs.

Fits ``experiments/change/levircd_samples.yaml`` once per PEFT method with the
same schedule, scores the last epoch on the ``test_*`` pairs and prints a table of
the changed class's F1 / IoU / precision / recall, trainable parameters, adapter
size and fit time; the same rows go to ``<out>/results.json``::

    python experiments/change/levircd_samples.py [--epochs N] [--seeds 0 1 2]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from geopeft.io import atomic_write_text
from geopeft.main import lightning_cli
from geopeft.models import dense_parameter_report

HERE = Path(__file__).parent
CONFIG = HERE / 'levircd_samples.yaml'
METHODS = {'upetu': 'UPetu', 'full': 'full fine-tuning', 'linear': 'frozen backbone'}


def run(method: str, seed: int, args: argparse.Namespace) -> dict:
    """Fit and test one method with one seed; return its row."""
    argv = [
        'fit',
        '--config',
        str(CONFIG),
        '--model.init_args.peft',
        method,
        '--data.init_args.root',
        str(args.root),
        '--trainer.max_epochs',
        str(args.epochs),
        '--trainer.default_root_dir',
        str(args.out / f'{method}-seed{seed}'),
        '--seed_everything',
        str(seed),
    ]
    start = time.perf_counter()
    cli = lightning_cli(argv)
    fit_seconds = time.perf_counter() - start
    (scores,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    report = dense_parameter_report(cli.model.model)
    return {
        'method': method,
        'seed': seed,
        'test_f1': scores['test_ChangedF1'],
        'test_iou': scores['test_ChangedIoU'],
        'test_precision': scores['test_ChangedPrecision'],
        'test_recall': scores['test_ChangedRecall'],
        'trainable': report.trainable,
        'trainable_percent': report.trainable_percent,
        'adapter_bytes': report.adapter_bytes,
        'fit_seconds': fit_seconds,
    }


def _mean_std(values: list[float]) -> str:
    """Format values as mean +- standard deviation (the mean alone for one)."""
    if len(values) == 1:
        return f'{values[0]:.3f}'
    return f'{statistics.mean(values):.3f}+-{statistics.stdev(values):.3f}'


def main(argv: list[str] | None = None) -> int:
    """Run every method and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--root', type=Path, default=Path('data/levircd_samples')
    )
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--methods', nargs='+', default=list(METHODS))
    parser.add_argument('--out', type=Path, default=Path('outputs/levircd_samples'))
    args = parser.parse_args(argv)
    if not (args.root / 'A').is_dir():
        print(f'no A/B/label folders under {args.root}: pass --root', file=sys.stderr)
        return 2
    sys.argv = sys.argv[:1]  # the fits read their own arguments, not these
    rows = [run(method, seed, args) for method in args.methods for seed in args.seeds]
    header = (
        f'{"method":<8}{"F1":>15}{"IoU":>15}{"precision":>15}{"recall":>15}'
        f'{"trainable":>12}{"%":>8}{"adapter MB":>12}{"fit s":>8}'
    )
    print(
        f'LEVIR-CD samples ({args.root}), {args.epochs} epochs, '
        f'seeds {args.seeds} (mean +- std)'
    )
    print(header)
    print('-' * len(header))
    for method in args.methods:
        runs = [row for row in rows if row['method'] == method]
        cells = ''.join(
            f'{_mean_std([r[key] for r in runs]):>15}'
            for key in ('test_f1', 'test_iou', 'test_precision', 'test_recall')
        )
        first = runs[0]
        fit = statistics.mean(r['fit_seconds'] for r in runs)
        print(
            f'{method:<8}{cells}{first["trainable"]:>12,}'
            f'{first["trainable_percent"]:>8.2f}'
            f'{first["adapter_bytes"] / 2**20:>12.2f}{fit:>8.0f}'
        )
    atomic_write_text(args.out / 'results.json', json.dumps(rows, indent=2))
    print(f'wrote {args.out / "results.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
