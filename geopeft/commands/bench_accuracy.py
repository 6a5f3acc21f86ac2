"""``geopeft bench accuracy``: geopeft's methods beside plain TorchGeo, same data.

Trains each row (geopeft methods and the anchor ``torchgeo-full`` /
``torchgeo-frozen``) on the same cross-validation folds, backbone, pretrained
weights, data pipeline, schedule and seeds, scores the last epoch on the held-out
fold and prints mean +- std per row and each row's paired difference to TorchGeo
full fine-tuning (see :mod:`geopeft.benchmarks.accuracy`)::

    geopeft bench accuracy --task change --root data/levircd_samples --folds 4
    geopeft bench accuracy --task classification --root data/UCMerced/Images
    geopeft bench accuracy --task segmentation --image chip.tif --labels mask.tif

Finished runs are kept in ``<out>/runs.jsonl``; running the same command again
continues where it stopped.
"""

import argparse
import json
import sys
from collections.abc import Sequence

from .results import add_record_argument, save_command_record

#: Columns of the ``--record`` result record.
RECORD_COLUMNS = (
    'method',
    'score_mean',
    'std',
    'diff_mean',
    'diff_std',
    'iou_mean',
    'precision_mean',
    'recall_mean',
    'trainable',
    'trainable_percent',
    'runs',
    'collapsed',
    'under_predicted',
)


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    from ..benchmarks.accuracy import DEFAULT_METHODS, AccuracySettings

    d = AccuracySettings()
    parser = argparse.ArgumentParser(
        prog='geopeft bench accuracy',
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add = parser.add_argument
    add(
        '--task', choices=('change', 'segmentation', 'classification'), default='change'
    )
    add('--root', help='change: A/B/label folder; classification: class folders')
    add('--image', help='segmentation: the image raster')
    add('--labels', help='segmentation: the label raster (or vector file)')
    add('--backbone', default=d.backbone, help='timm backbone name')
    add('--weights', default=d.weights, help="'imagenet' or 'none'")
    add(
        '--model',
        '--arch',
        dest='arch',
        default=d.arch,
        help="geopeft's SMP architecture (dense tasks), as model: in YAML",
    )
    add(
        '--methods',
        nargs='+',
        default=list(DEFAULT_METHODS),
        help='rows: torchgeo-full, torchgeo-frozen, and PEFT methods with options, '
        'e.g. upetu upetu:peft_lr=0.003,adapt_batchnorm=true lora full linear; '
        'every row takes loss=ce|bce|jaccard|focal|dice and class_weights=1+4 '
        '(torchgeo-full:loss=dice)',
    )
    add('--folds', type=int, default=d.folds, help='cross-validation folds')
    add('--fold-seed', type=int, default=d.fold_seed, help='seed of the fold deal')
    add('--seeds', type=int, nargs='+', default=list(d.seeds), help='training seeds')
    add('--epochs', type=int, default=d.epochs)
    add('--batch-size', type=int, default=d.batch_size)
    add(
        '--patch-size',
        type=int,
        default=d.patch_size,
        help='training crop (dense) or image size (classification), px',
    )
    add('--train-repeats', type=int, default=d.train_repeats)
    add('--lr', type=float, default=d.lr)
    add('--weight-decay', type=float, default=d.weight_decay)
    add('--warmup', type=float, default=d.warmup, help='warm-up fraction of steps')
    add(
        '--augment',
        default=None,
        help='change: augmentation preset of every row (crop, geometric, full); '
        "default: ChangeFolderDataModule's",
    )
    add('--block-size', type=int, default=None, help='segmentation: fold blocks, px')
    add('--num-classes', type=int, default=d.num_classes, help='segmentation')
    add('--ignore-index', type=int, default=None, help='segmentation')
    add(
        '--label-column',
        default='class',
        help="segmentation, vector labels: the class column; 'none' when every "
        'polygon is class 1 (e.g. building footprints)',
    )
    add('--teacher', default=d.teacher, help='ktda rows: the DINOv2 teacher size')
    add(
        '--teacher-weights',
        default=None,
        help='ktda rows: the teacher weights (local safetensors file, or imagenet)',
    )
    add('--accelerator', default=d.accelerator)
    add('--precision', default=d.precision)
    add('--threads', type=int, default=None, help='torch CPU threads')
    add('--limit-train-batches', type=int, default=None)
    add('--out', default=d.out_dir, help='runs are kept here (resumable)')
    add('--no-resume', action='store_true', help='ignore runs already in --out')
    add('--json', action='store_true', help='print one JSON object instead')
    add_record_argument(parser)
    return parser


def _none(text: str | None) -> str | None:
    """An option's value, None for ``'none'`` or an empty string."""
    return None if str(text).lower() in ('none', '') else text


def main(argv: Sequence[str]) -> int:
    """Run ``geopeft bench accuracy``.

    Args:
        argv: Arguments after ``bench accuracy``.

    Returns:
        Exit status: 0, or 2 for a usage or data error.
    """
    from ..benchmarks.accuracy import AccuracySettings, run_accuracy

    parser = build_parser()
    args = parser.parse_args(list(argv))
    settings = AccuracySettings(
        task=args.task,
        root=args.root,
        image=args.image,
        labels=args.labels,
        backbone=args.backbone,
        weights=_none(args.weights),
        arch=args.arch,
        folds=args.folds,
        fold_seed=args.fold_seed,
        seeds=tuple(args.seeds),
        epochs=args.epochs,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        train_repeats=args.train_repeats,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        augment=args.augment,
        block_size=args.block_size,
        num_classes=args.num_classes,
        ignore_index=args.ignore_index,
        label_column=_none(args.label_column),
        teacher=args.teacher,
        teacher_weights=args.teacher_weights,
        accelerator=args.accelerator,
        precision=args.precision,
        threads=args.threads,
        limit_train_batches=args.limit_train_batches,
        out_dir=args.out,
    )
    progress = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        result = run_accuracy(
            settings, args.methods, progress=progress, resume=not args.no_resume
        )
    except (ValueError, FileNotFoundError) as error:
        print(f'geopeft bench accuracy: error: {error}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(result.format_table())
    if args.record is not None:
        score = settings.score_name
        rows = [
            {**row, 'score_mean': row[f'{score}_mean'], 'iou_mean': row.get('iou_mean')}
            for row in result.table()
        ]
        save_command_record(
            args,
            parser,
            experiment=f'bench_accuracy_{settings.task}',
            command=['bench', 'accuracy', *argv],
            title=f'{settings.task} accuracy: geopeft methods beside plain TorchGeo',
            dataset=result.data,
            columns=RECORD_COLUMNS,
            rows=rows,
            device=settings.accelerator if settings.accelerator != 'auto' else 'cpu',
            notes=(
                f'score: {score} of the last epoch on the held-out fold, mean +- std '
                f'over {settings.folds} folds x seeds {list(settings.seeds)}; '
                'diff: paired difference to torchgeo-full on the same fold and seed.'
            ),
        )
    return 0
