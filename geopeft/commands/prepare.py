"""``geopeft prepare``: build datasets that need a preparation step.

* ``geopeft prepare l8biome L8BIOME_ROOT OUTPUT``: KTDA's 512 px cloud patches from
  TorchGeo's L8 Biome scenes (:func:`~geopeft.datasets.prepare_l8biome_patches`).
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str]) -> int:
    """Prepare a dataset.

    Args:
        argv: Arguments after ``prepare``.

    Returns:
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft prepare', description='Build datasets that need preparation.'
    )
    datasets = parser.add_subparsers(dest='dataset', required=True)
    l8 = datasets.add_parser(
        'l8biome',
        help="KTDA's L8-Biome cloud patches",
        description='Cut TorchGeo L8 Biome scenes into non-overlapping RGB patches '
        '(bands 4, 3, 2; fill ignored) with a seeded train/val/test split. Re-running '
        'on a prepared output does nothing; an interrupted run resumes.',
    )
    l8.add_argument('root', type=Path, help="TorchGeo's L8Biome root (the scenes)")
    l8.add_argument('output', type=Path, help='folder for the patches')
    l8.add_argument('--patch-size', type=int, default=512)
    l8.add_argument('--seed', type=int, default=0)
    l8.add_argument('--overwrite', action='store_true', help='rebuild from scratch')
    l8.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)

    from ..datasets import prepare_l8biome_patches

    counts = prepare_l8biome_patches(
        args.root,
        args.output,
        patch_size=args.patch_size,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(json.dumps({'output': str(args.output), 'patches': counts}))
    return 0
