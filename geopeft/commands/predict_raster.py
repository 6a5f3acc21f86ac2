"""``geopeft predict-raster``: a trained task over whole rasters into a GeoTIFF.

The model comes from a checkpoint of any geopeft dense task (its class is the one
the checkpoint records under ``geopeft_task``), from a training config (YAML, as
given to ``geopeft fit``), or from both (the config's datamodule, the checkpoint's
weights). Chips are normalised either with ``--mean``/``--std`` (per band, in the
rasters' stored scale) or, with ``--config``, by the datamodule's evaluation
augmentation (``predict_aug``, else ``aug``: what ``geopeft predict`` applies);
``--mean``/``--std`` win when both are given. Everything else is
:func:`geopeft.predict.predict_raster`; see ``docs/prediction.md``.
"""

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningModule
from torch import Tensor
from torchgeo.tasks import ChangeDetection, SemanticSegmentation

from ..io import read_checkpoint
from ..predict import predict_raster
from ..predict.sources import fingerprint
from ..predict.writer import COMPRESSIONS
from ..tasks.peft_task import TASK_KEY, PEFTTaskMixin
from .export import task_class

#: The model's input as the scene gives it -> normalised input.
Normaliser = Callable[[Tensor], Tensor]


def task_class_of(checkpoint: dict[str, Any]) -> type[LightningModule]:
    """Return the task class that wrote a checkpoint.

    Args:
        checkpoint: The loaded checkpoint.

    Returns:
        The class named under ``geopeft_task`` (any geopeft task), or the one
        :func:`geopeft.commands.export.task_class` infers for older checkpoints.

    Raises:
        ValueError: If the recorded class is not a geopeft task.
    """
    name = checkpoint.get(TASK_KEY)
    if name is None:
        return task_class(checkpoint)
    module, _, qualname = str(name).rpartition('.')
    found = None
    if module.startswith('geopeft.'):
        try:
            found = getattr(importlib.import_module(module), qualname, None)
        except ImportError:
            found = None
    if not (isinstance(found, type) and issubclass(found, PEFTTaskMixin)):
        msg = f'the checkpoint was written by {name}, which is not a geopeft task'
        raise ValueError(msg)
    return found


def load_task(checkpoint: Path) -> LightningModule:
    """Load a geopeft task from a Lightning checkpoint, on the CPU.

    Args:
        checkpoint: The ``.ckpt`` file.

    Returns:
        The task, in eval mode.

    Raises:
        FileNotFoundError: If *checkpoint* does not exist.
        ValueError: If it is not a geopeft checkpoint.
    """
    raw = read_checkpoint(checkpoint)
    if not isinstance(raw, dict) or 'hyper_parameters' not in raw:
        msg = (
            f'{checkpoint} is not a Lightning checkpoint of a geopeft task (no '
            'hyper-parameters); use a checkpoint written by geopeft fit'
        )
        raise ValueError(msg)
    cls = task_class_of(raw)
    del raw
    return cls.load_from_checkpoint(checkpoint, map_location='cpu', weights_only=True)


def load_config(path: Path, with_model: bool) -> tuple[Any, LightningModule | None]:
    """Instantiate the datamodule (and the task) of a training config.

    Args:
        path: YAML with ``data`` (and ``model``) sections, as for ``geopeft fit``;
            classes may be given by bare name.
        with_model: Also build the task from the ``model`` section.

    Returns:
        The datamodule (None without a ``data`` section) and the task (None
        unless *with_model*).

    Raises:
        FileNotFoundError: If *path* does not exist.
        ValueError: If a needed section is missing or does not instantiate.
    """
    from jsonargparse import ArgumentParser
    from torchgeo.datamodules import BaseDataModule
    from torchgeo.tasks import BaseTask

    import geopeft.datamodules  # noqa: F401  (bare class names)
    import geopeft.tasks  # noqa: F401

    if not path.is_file():
        msg = f'config not found: {path}'
        raise FileNotFoundError(msg)
    config = yaml.safe_load(path.read_text()) or {}
    sections = {'data': BaseDataModule}
    if with_model:
        sections['model'] = BaseTask
    missing = [name for name in sections if name not in config]
    if with_model and 'model' in missing:
        msg = f'{path} has no model section: add one or pass --ckpt'
        raise ValueError(msg)
    parser = ArgumentParser(exit_on_error=False)
    given = {}
    for name, base in sections.items():
        if name in config:
            parser.add_subclass_arguments(base, name)
            given[name] = config[name]
    try:
        parsed = parser.instantiate_classes(parser.parse_object(given))
    except (argparse.ArgumentError, TypeError, ValueError) as err:
        msg = f'{path} does not describe a datamodule/task geopeft can build: {err}'
        raise ValueError(msg) from err
    return parsed.get('data'), parsed.get('model')


def mean_std_normaliser(mean: Sequence[float], std: Sequence[float]) -> Normaliser:
    """``(x - mean) / std`` per band (of one date, or of both).

    Args:
        mean: One value per band (or one for all); for change detection the
            same values serve both dates, or give one per band of each date.
        std: Likewise.

    Returns:
        The normaliser of ``[B, C, h, w]`` or ``[B, 2, C, h, w]`` inputs.

    Raises:
        ValueError: If a value is not finite or a std is not positive.
    """
    from ..datamodules.change_augmentation import _statistics

    mean_t = _statistics(list(mean), 'mean')
    std_t = _statistics(list(std), 'std')

    def normalise(x: Tensor) -> Tensor:
        both_dates = x.ndim == 5 and mean_t.numel() == 2 * x.shape[2]
        shape = (2, -1, 1, 1) if both_dates else (-1, 1, 1)
        mean_x = mean_t.view(shape).to(x.device)
        return (x - mean_x) / std_t.view(shape).to(x.device)

    return normalise


def datamodule_normaliser(datamodule: Any) -> Normaliser:
    """The evaluation augmentation of a datamodule, applied to images.

    Args:
        datamodule: A TorchGeo-style datamodule (``predict_aug`` or ``aug``).

    Returns:
        The normaliser.

    Raises:
        ValueError: If the datamodule has neither.
    """
    aug = getattr(datamodule, 'predict_aug', None) or getattr(datamodule, 'aug', None)
    if aug is None:
        msg = (
            f'{type(datamodule).__name__} has no aug or predict_aug to normalise '
            'with: pass --mean and --std'
        )
        raise ValueError(msg)

    def normalise(x: Tensor) -> Tensor:
        if isinstance(aug, torch.nn.Module):
            aug.to(x.device)
        return aug({'image': x})['image']

    return normalise


def model_function(task: LightningModule, normalise: Normaliser | None) -> Any:
    """Wrap a task as ``[B, C, h, w] -> [B, K, h, w]`` logits for predict_raster.

    Change-detection tasks get their two dates as ``[B, 2, C, h, w]`` (the scene
    gives both rasters' bands one after the other).

    Args:
        task: A segmentation or change-detection task.
        normalise: Applied to the input first (None: none).

    Returns:
        A module (so that predict_raster moves it to the device) computing logits.
    """
    change = isinstance(task, ChangeDetection)

    class _Predict(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.task = task

        def forward(self, x: Tensor) -> Tensor:
            if change:
                x = x.unflatten(1, (2, -1))
            if normalise is not None:
                x = normalise(x)
            return self.task(x)

    return _Predict()


def output_channels(task: LightningModule) -> tuple[int, str]:
    """Channels of a task's output and the activation that makes probabilities.

    Args:
        task: A segmentation or change-detection task.

    Returns:
        ``(channels, 'softmax' | 'sigmoid')``.
    """
    hparams = task.hparams
    kind = hparams.get('task', 'multiclass')
    if kind == 'multiclass':
        return int(hparams['num_classes']), 'softmax'
    if kind == 'multilabel':
        return int(hparams['num_labels']), 'sigmoid'
    return 1, 'sigmoid'


def build_parser() -> argparse.ArgumentParser:
    """The ``geopeft predict-raster`` argument parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft predict-raster',
        description='Predict over a whole raster (two for change detection) with a '
        'trained geopeft task and write a tiled, compressed GeoTIFF on the first '
        "raster's grid: chips blended with smooth weights, memory bounded by the "
        "scene's width, resumable after an interruption, written atomically.",
    )
    parser.add_argument(
        'rasters',
        nargs='+',
        metavar='PATH',
        help='INPUT [INPUT_B] OUTPUT: one input raster (two for change detection, '
        'the earlier date first) and the GeoTIFF to write',
    )
    parser.add_argument('--ckpt', type=Path, help='checkpoint of a geopeft task')
    parser.add_argument(
        '--config',
        type=Path,
        help='training YAML: its datamodule normalises the chips, and its model is '
        'used when there is no --ckpt',
    )
    parser.add_argument(
        '--mode',
        '--output',
        dest='output',
        choices=['classes', 'probabilities'],
        default='classes',
        help='class map (arg-max; one-channel models: probability > --threshold) '
        'or one band of probability per class',
    )
    parser.add_argument(
        '--probability-dtype',
        choices=['float32', 'uint8'],
        default='float32',
        help='float32 (nodata NaN) or uint8 = round(254 p) (nodata 255)',
    )
    parser.add_argument('--threshold', type=float, default=0.5)
    parser.add_argument('--chip-size', type=int, default=512)
    parser.add_argument(
        '--overlap',
        type=int,
        default=64,
        help='pixels shared by neighbouring chips, blended; half of it pads the '
        "scene's edges",
    )
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument(
        '--mean', type=float, nargs='+', help='per-band mean (stored scale)'
    )
    parser.add_argument('--std', type=float, nargs='+', help='per-band std')
    parser.add_argument(
        '--bands', type=int, nargs='+', help='1-based bands to read from each input'
    )
    parser.add_argument(
        '--nodata', type=float, help="inputs' nodata value (default: the files')"
    )
    parser.add_argument(
        '--resampling',
        default='bilinear',
        help="resampling of a second raster onto the first one's grid",
    )
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda:0'")
    parser.add_argument(
        '--precision',
        choices=['auto', '32', 'bf16'],
        default='auto',
        help='auto: bfloat16 autocast on CUDA, float32 elsewhere',
    )
    parser.add_argument(
        '--channels-last',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='channels-last chips (default: on CUDA)',
    )
    parser.add_argument('--blocksize', type=int, default=512, help='output tile side')
    parser.add_argument('--compress', choices=COMPRESSIONS, default='deflate')
    parser.add_argument(
        '--overwrite', action='store_true', help='replace an existing output'
    )
    parser.add_argument(
        '--no-resume',
        action='store_true',
        help='start over even if an interrupted run left a partial file',
    )
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--json', action='store_true', help='print the report as JSON')
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Predict as the parsed arguments say.

    Args:
        args: Parsed ``geopeft predict-raster`` arguments.

    Returns:
        The run's report as a dictionary.
    """
    *inputs, output = args.rasters
    datamodule = None
    task = None
    if args.config is not None:
        datamodule, task = load_config(args.config, with_model=args.ckpt is None)
    if args.ckpt is not None:
        task = load_task(args.ckpt)
    assert task is not None
    if not isinstance(task, SemanticSegmentation | ChangeDetection):
        msg = (
            f'{type(task).__name__} is not a dense task: predict-raster needs a '
            'segmentation or change-detection checkpoint'
        )
        raise ValueError(msg)
    change = isinstance(task, ChangeDetection)
    if change != (len(inputs) == 2):
        msg = (
            f'{type(task).__name__} takes {"two rasters" if change else "one raster"}'
            f', got {len(inputs)}'
        )
        raise ValueError(msg)
    normalise: Normaliser | None = None
    normalisation: dict[str, Any] = {}
    if args.mean is not None or args.std is not None:
        if args.mean is None or args.std is None or len(args.mean) != len(args.std):
            msg = '--mean and --std need the same number of values'
            raise ValueError(msg)
        normalise = mean_std_normaliser(args.mean, args.std)
        normalisation = {'mean': args.mean, 'std': args.std}
    elif datamodule is not None:
        normalise = datamodule_normaliser(datamodule)
        normalisation = {'config': fingerprint(args.config)}
    else:
        print(
            'note: no normalisation: chips go to the model as stored; pass --mean '
            "and --std, or --config for its datamodule's",
            file=sys.stderr,
        )
    channels, activation = output_channels(task)
    if args.output == 'classes' and task.hparams.get('task') == 'multilabel':
        msg = (
            'a multi-label task has no single class per pixel: use --mode probabilities'
        )
        raise ValueError(msg)
    source = args.ckpt if args.ckpt is not None else args.config
    report = predict_raster(
        model_function(task, normalise),
        inputs,
        output,
        chip_size=args.chip_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        output_mode=args.output,
        activation=activation,
        probability_dtype=args.probability_dtype,
        threshold=args.threshold,
        num_outputs=channels,
        bands=args.bands,
        in_channels=int(task.hparams['in_channels']),
        nodata=args.nodata,
        resampling=args.resampling,
        device=args.device,
        precision=args.precision,
        channels_last=args.channels_last,
        blocksize=args.blocksize,
        compress=args.compress,
        overwrite=args.overwrite,
        resume=not args.no_resume,
        progress=not args.no_progress,
        settings={'model': fingerprint(source), 'normalisation': normalisation},
    )
    result = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(report).items()
    }
    return result


def main(argv: Sequence[str]) -> int:
    """Run ``geopeft predict-raster``.

    Args:
        argv: Arguments after ``predict-raster``.

    Returns:
        Exit status: 0, 1 on bad input or a failed run (with the reason on
        stderr), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.rasters) not in (2, 3):
        parser.error('give INPUT OUTPUT, or INPUT_A INPUT_B OUTPUT (change detection)')
    if args.ckpt is None and args.config is None:
        parser.error('give the model: --ckpt, --config, or both')
    try:
        report = run(args)
    except KeyboardInterrupt as err:
        notes = ' '.join(getattr(err, '__notes__', []))
        print(f'geopeft predict-raster: interrupted. {notes}', file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as err:
        notes = ''.join(f'\n{note}' for note in getattr(err, '__notes__', []))
        print(f'geopeft predict-raster: error: {err}{notes}', file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        resumed = (
            f', resumed at row {report["resumed_rows"]}'
            if report['resumed_rows']
            else ''
        )
        print(
            f'wrote {report["output"]}: {report["chips"]} chips computed, '
            f'{report["skipped"]} nodata chips skipped{resumed}, '
            f'{report["seconds"]:.1f} s on {report["device"]}'
        )
    return 0
