"""``geopeft seeds``: run a split protocol over several seeds, report mean +- std.

Scene-classification protocols (UCM-55, AID-28, AID-55) have no official split
files: each seed draws a stratified split. This command fits and tests one config
per seed (``--data.init_args.seed`` and ``--seed_everything`` set to the seed) and
prints the test metric as mean +- std over the seeds.
"""

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_write_text


def main(argv: Sequence[str]) -> int:
    """Run the protocol.

    Args:
        argv: Arguments after ``seeds``; unknown ones pass to ``geopeft fit``.

    Returns:
        Exit status.
    """
    from ..main import lightning_cli

    parser = argparse.ArgumentParser(
        prog='geopeft seeds',
        description='Fit and test a config once per split seed; print mean +- std. '
        'Other options (e.g. --trainer.max_epochs 5) pass to geopeft fit.',
    )
    parser.add_argument('--config', required=True, action='append')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--metric', default='test_OverallAccuracy')
    parser.add_argument('--out', type=Path, default=None, help='results JSON')
    args, rest = parser.parse_known_args(argv)

    configs = [item for path in args.config for item in ('--config', path)]
    scores = []
    for seed in args.seeds:
        cli = lightning_cli(
            [
                'fit',
                *configs,
                '--seed_everything',
                str(seed),
                '--data.init_args.seed',
                str(seed),
                *rest,
            ]
        )
        callback = cli.trainer.checkpoint_callback
        best = getattr(callback, 'best_model_path', '') or None
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best)
        scores.append(float(results[0][args.metric]))
        print(f'seed {seed}: {args.metric} = {scores[-1]:.4f}')
    mean = statistics.fmean(scores)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    print(f'{args.metric}: {100 * mean:.2f} +- {100 * std:.2f} over seeds {args.seeds}')
    if args.out is not None:
        payload = {
            'configs': args.config,
            'seeds': args.seeds,
            'metric': args.metric,
            'scores': scores,
            'mean': mean,
            'std': std,
        }
        atomic_write_text(args.out, json.dumps(payload, indent=2))
    return 0
