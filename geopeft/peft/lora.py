"""LoRA through Hugging Face ``peft`` on the linear and pointwise layers of blocks."""

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from .blocks import find_blocks


def default_lora_targets(model: nn.Module) -> list[str]:
    """Name every ``nn.Linear`` and ungrouped 1x1 ``nn.Conv2d`` inside the blocks.

    The blocks are those with a placement rule (:func:`~geopeft.peft.blocks.
    find_blocks`).

    Args:
        model: The backbone.

    Returns:
        Full module names, in module order.
    """
    targets = []
    for block_name, block, _ in find_blocks(model):
        for name, module in block.named_modules():
            pointwise = (
                isinstance(module, nn.Conv2d)
                and module.kernel_size == (1, 1)
                and module.groups == 1
            )
            if isinstance(module, nn.Linear) or pointwise:
                targets.append(f'{block_name}.{name}')
    return targets


def add_lora(
    model: nn.Module,
    targets: list[str],
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
) -> None:
    """Inject LoRA layers (``peft.inject_adapter_in_model``) and train only them.

    HF ``peft`` wraps each target (``<target>.base_layer`` keeps the original
    layer) and adds ``lora_A`` / ``lora_B``; ``lora_B`` starts at zero, so the
    model starts as the pretrained one. For ``nn.Conv2d`` targets ``lora_A`` is a
    convolution with the target's kernel and stride and ``lora_B`` a 1x1
    convolution.

    Args:
        model: The backbone (modified in place).
        targets: Target module names (full names or name suffixes).
        r: Rank.
        alpha: Scaling numerator (``alpha / r``).
        dropout: Dropout on the LoRA input.
    """
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets
    )
    inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_('lora_' in name)
