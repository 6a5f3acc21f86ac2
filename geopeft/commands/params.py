"""``geopeft params``: parameter report of a PEFT model."""

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ..models import PEFTClassifier
from ..peft import METHODS


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
    parser.add_argument('--img-size', type=int, default=None, help='ViT/Swin input')


def peft_options(args: argparse.Namespace, method: str | None = None) -> dict[str, Any]:
    """Collect the PEFT configuration given on the command line.

    Args:
        args: Parsed arguments from :func:`add_peft_arguments`.
        method: Method to use instead of ``args.peft``.

    Returns:
        A mapping of :class:`~geopeft.peft.PEFTConfig` fields.
    """
    options: dict[str, Any] = {'method': method or args.peft}
    if args.bits is not None:
        options['bits'] = args.bits
    if args.hidden is not None:
        options['hidden'] = args.hidden
    return options


def main(argv: Sequence[str]) -> int:
    """Print the parameter report.

    Args:
        argv: Arguments after ``params``.

    Returns:
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft params',
        description='Count total and trainable parameters of a PEFT classifier and '
        'the size of its adapter file. Weights are not needed (random init).',
    )
    add_peft_arguments(parser)
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    args = parser.parse_args(argv)
    model = PEFTClassifier(
        args.backbone,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        peft=peft_options(args),
        img_size=args.img_size,
    )
    report = model.parameter_report()
    if args.json:
        payload = report.to_dict() | {
            'backbone': args.backbone,
            'peft': model.peft_config.to_dict(),
        }
        print(json.dumps(payload))
    else:
        print(
            f'{args.backbone} + {model.peft_config.method}, {args.num_classes} classes'
        )
        print(report.format_table())
    return 0
