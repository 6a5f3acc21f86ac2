"""``geopeft export-adapter``: adapter-only file from a Lightning checkpoint."""

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from ..peft import save_adapter
from ..tasks import PEFTClassification


def export_adapter(checkpoint: Path, output: Path) -> int:
    """Write the trainable state of a checkpointed task to an adapter file.

    Args:
        checkpoint: Lightning checkpoint of a geopeft task.
        output: Destination ``.safetensors`` file (written atomically).

    Returns:
        Bytes written.

    Raises:
        FileNotFoundError: If *checkpoint* does not exist.
        ValueError: If the checkpoint is not a geopeft task checkpoint.
    """
    if not checkpoint.is_file():
        msg = f'checkpoint not found: {checkpoint}'
        raise FileNotFoundError(msg)
    raw = torch.load(checkpoint, map_location='cpu', weights_only=True)
    if 'peft' not in raw.get('hyper_parameters', {}):
        msg = (
            f'{checkpoint} is not a checkpoint of a geopeft task (no "peft" '
            'hyper-parameter); export adapters from checkpoints written by '
            'geopeft fit.'
        )
        raise ValueError(msg)
    task = PEFTClassification.load_from_checkpoint(
        checkpoint, map_location='cpu', weights_only=True
    )
    hparams = task.hparams
    metadata = {
        'backbone': hparams['model'],
        'peft': task.peft_config.to_dict(),
        'num_outputs': task.model.head.out_features,
        'in_channels': hparams['in_channels'],
        'task': 'classification',
    }
    return save_adapter(task.model, output, metadata=metadata)


def main(argv: Sequence[str]) -> int:
    """Export an adapter file.

    Args:
        argv: Arguments after ``export-adapter``.

    Returns:
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog='geopeft export-adapter',
        description='Save only the trainable state (PEFT modules + head, Q-Linear '
        'codes bit-packed) of a checkpoint as safetensors. Load it on top of the '
        'same pretrained backbone with PEFTClassification(adapter=...).',
    )
    parser.add_argument('checkpoint', type=Path, help='Lightning .ckpt file')
    parser.add_argument('output', type=Path, help='adapter .safetensors file')
    args = parser.parse_args(argv)
    nbytes = export_adapter(args.checkpoint, args.output)
    print(f'wrote {args.output} ({nbytes:,} bytes)')
    return 0
