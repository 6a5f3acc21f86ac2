"""``geopeft params``: parameter report of a PEFT model."""

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ..models import (
    ARCHITECTURES,
    FUSIONS,
    PEFTClassifier,
    build_change_model,
    build_segmentation_model,
    dense_parameter_report,
)
from ..peft import METHODS, ParameterReport, PEFTConfig
from ..peft.config import METHOD_FIELDS

#: What ``--task`` accepts.
TASKS = ('classification', 'segmentation', 'change')


def add_peft_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose a backbone and a PEFT method.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument('--backbone', default='convnext_base', help='timm model')
    parser.add_argument('--peft', default='upetu', help=f'one of {", ".join(METHODS)}')
    parser.add_argument('--bits', type=int, default=None, help='Q-Linear bits')
    parser.add_argument('--hidden', type=int, default=None, help='adapter width')
    parser.add_argument('--num-classes', type=int, default=21)
    parser.add_argument('--in-channels', type=int, default=3)


def peft_options(args: argparse.Namespace, method: str | None = None) -> dict[str, Any]:
    """Collect the PEFT configuration given on the command line.

    Args:
        args: Parsed arguments from :func:`add_peft_arguments`.
        method: Method to use instead of ``args.peft``.

    Returns:
        A mapping of :class:`~geopeft.peft.PEFTConfig` fields: ``--bits`` and
        ``--hidden`` only for the methods that have them.
    """
    options: dict[str, Any] = {'method': method or args.peft}
    own = METHOD_FIELDS.get(options['method'], ())
    if args.bits is not None and 'bits' in own:
        options['bits'] = args.bits
    if args.hidden is not None and 'hidden' in own:
        options['hidden'] = args.hidden
    return options


def build_report(args: argparse.Namespace) -> tuple[str, ParameterReport]:
    """Build the model the arguments describe and count its parameters.

    Args:
        args: Parsed ``geopeft params`` arguments.

    Returns:
        A one-line description of the model and its report.
    """
    peft = peft_options(args)
    if args.task == 'classification':
        model = PEFTClassifier(
            args.backbone,
            num_classes=args.num_classes,
            in_channels=args.in_channels,
            peft=peft,
            img_size=args.img_size,
        )
        title = f'{args.backbone} + {peft["method"]}, {args.num_classes} classes'
        return title, model.parameter_report()
    options = {
        'num_classes': args.num_classes,
        'in_channels': args.in_channels,
        'peft': peft,
        'img_size': args.img_size,
    }
    if args.decoder_channels is not None:
        options['decoder_kwargs'] = {'decoder_channels': args.decoder_channels}
    if args.task == 'segmentation':
        dense = build_segmentation_model(args.arch, args.backbone, **options)
        title = (
            f'{args.arch} on {args.backbone} + {peft["method"]}, '
            f'{args.num_classes} classes'
        )
    else:
        dense = build_change_model(
            args.arch,
            args.backbone,
            fusion=args.fusion,
            per_date_adapters=args.per_date_adapters,
            **options,
        )
        adapters = 'per-date' if args.per_date_adapters else 'shared'
        title = (
            f'Siamese {args.arch} on {args.backbone} + {peft["method"]} '
            f'({adapters} adapters, fusion {args.fusion}), '
            f'{args.num_classes} output(s)'
        )
    return title, dense_parameter_report(dense)


def method_table(*, as_json: bool = False) -> str:
    """Every PEFT method with its own options and their defaults.

    Args:
        as_json: One JSON object ``{method: {option: default}}`` instead.

    Returns:
        The table (or JSON) as text.
    """
    defaults = PEFTConfig().to_dict()
    table = {
        method: {name: defaults[name] for name in METHOD_FIELDS[method]}
        for method in METHODS
    }
    if as_json:
        return json.dumps(table)
    width = max(map(len, METHODS)) + 2
    lines = [f'{"method":<{width}}options (defaults)']
    for method, options in table.items():
        shown = ', '.join(f'{k}={v}' for k, v in options.items()) or '-'
        lines.append(f'{method:<{width}}{shown}')
    lines.append(
        'hidden/scale None: the method default (EQAM 16 / 1.0, adapter 64 / 0.1); '
        'YAML: peft: {method: lora, lora_r: 4}'
    )
    return '\n'.join(lines)


def main(argv: Sequence[str]) -> int:
    """Print the parameter report.

    Args:
        argv: Arguments after ``params``.

    Returns:
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft params',
        description='Count total and trainable parameters of a PEFT model per part '
        '(backbone with its PEFT modules, neck, decoder, head) and the size of its '
        'adapter file. Weights are not needed (random init).',
    )
    add_peft_arguments(parser)
    parser.add_argument(
        '--image-size',
        '--img-size',
        dest='img_size',
        type=int,
        default=None,
        help='input size of models that take one (ViT, Swin)',
    )
    parser.add_argument('--task', choices=TASKS, default='classification')
    parser.add_argument(
        '--model',
        '--arch',
        dest='arch',
        default='upernet',
        help=f'SMP decoder for dense tasks: {", ".join(ARCHITECTURES)}',
    )
    parser.add_argument('--fusion', choices=list(FUSIONS), default='diff')
    parser.add_argument('--per-date-adapters', action='store_true')
    parser.add_argument(
        '--decoder-channels',
        type=int,
        default=None,
        help='decoder width of dense models (architecture default if unset)',
    )
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument(
        '--list-methods',
        action='store_true',
        help='print every PEFT method with its options and their defaults',
    )
    args = parser.parse_args(argv)
    if args.list_methods:
        print(method_table(as_json=args.json))
        return 0
    if args.task == 'change' and args.num_classes == parser.get_default('num_classes'):
        args.num_classes = 1
    try:
        title, report = build_report(args)
    except ValueError as err:  # unknown method, backbone, option: say which
        parser.error(str(err))
    if args.json:
        payload = report.to_dict() | {
            'backbone': args.backbone,
            'task': args.task,
            'peft': peft_options(args),
        }
        if args.task != 'classification':
            payload['arch'] = args.arch
        print(json.dumps(payload))
    else:
        print(title)
        print(report.format_table())
    return 0
