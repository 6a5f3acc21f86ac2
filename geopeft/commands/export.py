"""``geopeft export-adapter``: adapter-only file from a Lightning checkpoint."""

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..io import read_checkpoint
from ..peft import save_adapter
from ..tasks import PEFTChangeDetection, PEFTClassification, PEFTSemanticSegmentation
from ..tasks.peft_task import TASK_KEY

#: geopeft's task classes by the name their checkpoints record.
TASKS = {
    f'{task.__module__}.{task.__qualname__}': task
    for task in (PEFTClassification, PEFTSemanticSegmentation, PEFTChangeDetection)
}


def task_class(
    checkpoint: dict,
) -> type[PEFTClassification | PEFTSemanticSegmentation | PEFTChangeDetection]:
    """Return the task class that wrote a checkpoint.

    Checkpoints record it (``geopeft_task``); older ones are recognised by their
    hyper-parameters.

    Args:
        checkpoint: The loaded checkpoint.

    Returns:
        The task class.

    Raises:
        ValueError: If the recorded class is not one of geopeft's tasks.
    """
    name = checkpoint.get(TASK_KEY)
    if name is not None:
        if name not in TASKS:
            msg = (
                f'the checkpoint was written by {name}, which is not one of '
                f"geopeft's tasks ({', '.join(TASKS)})"
            )
            raise ValueError(msg)
        return TASKS[name]
    hparams = checkpoint.get('hyper_parameters', {})
    if 'fusion' in hparams:
        return PEFTChangeDetection
    if 'backbone' in hparams:
        return PEFTSemanticSegmentation
    return PEFTClassification


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
    raw = read_checkpoint(checkpoint)
    if not isinstance(raw, dict) or 'peft' not in raw.get('hyper_parameters', {}):
        msg = (
            f'{checkpoint} is not a checkpoint of a geopeft task (no "peft" '
            'hyper-parameter); export adapters from checkpoints written by '
            'geopeft fit.'
        )
        raise ValueError(msg)
    cls = task_class(raw)
    task = cls.load_from_checkpoint(checkpoint, map_location='cpu', weights_only=True)
    hparams = task.hparams
    metadata = {
        'peft': task.peft_config.to_dict(),
        'num_outputs': hparams['num_classes'] or hparams['num_labels'] or 1,
        'in_channels': hparams['in_channels'],
        'task': cls.__name__,
    }
    if cls is PEFTClassification:
        metadata['backbone'] = hparams['model']
    else:
        metadata |= {'backbone': hparams['backbone'], 'arch': hparams['model']}
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
        description='Save only the trainable state (PEFT modules, decoder and head, '
        'Q-Linear codes bit-packed) of a checkpoint as safetensors. Load it on top '
        "of the same pretrained backbone with the task's adapter=... argument "
        '(PEFTClassification, PEFTSemanticSegmentation, PEFTChangeDetection).',
    )
    parser.add_argument('checkpoint', type=Path, help='Lightning .ckpt file')
    parser.add_argument('output', type=Path, help='adapter .safetensors file')
    args = parser.parse_args(argv)
    nbytes = export_adapter(args.checkpoint, args.output)
    print(f'wrote {args.output} ({nbytes:,} bytes)')
    return 0
