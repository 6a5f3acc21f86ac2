"""Deep visual prompt tokens (VPT-deep) for vision transformers.

Before every transformer block a set of learnable prompt tokens is inserted after
the prefix (class/register) tokens, and the same positions are dropped from the
block output, so each block sees its own prompts and the token count outside the
blocks is unchanged.
"""

import math
from typing import Any

import torch
from torch import Tensor, nn


class PromptTokens(nn.Module):
    """Learnable prompt tokens of one transformer block.

    Initialised uniformly in ``+-sqrt(6 / (3 * patch_area + C))`` as in VPT.

    Attributes:
        tokens: ``[num_tokens, C]`` prompt tokens.
        prefix: Number of prefix tokens before which nothing is inserted.
    """

    def __init__(
        self, num_tokens: int, channels: int, *, prefix: int, patch_area: int
    ) -> None:
        """Initialize a new PromptTokens.

        Args:
            num_tokens: Prompt tokens per block.
            channels: Token width ``C``.
            prefix: Prefix tokens of the model (``num_prefix_tokens``).
            patch_area: Pixels per patch (for the VPT initialisation).
        """
        super().__init__()
        bound = math.sqrt(6.0 / (3 * patch_area + channels))
        self.tokens = nn.Parameter(torch.empty(num_tokens, channels))
        nn.init.uniform_(self.tokens, -bound, bound)
        self.prefix = prefix

    def insert(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Forward pre-hook: insert the prompts after the prefix tokens."""
        x = args[0]
        prompts = self.tokens.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = torch.cat([x[:, : self.prefix], prompts, x[:, self.prefix :]], dim=1)
        return (x, *args[1:])

    def remove(
        self, module: nn.Module, args: tuple[Any, ...], output: Tensor
    ) -> Tensor:
        """Forward hook: drop the prompt positions from the block output."""
        end = self.prefix + self.tokens.shape[0]
        return torch.cat([output[:, : self.prefix], output[:, end:]], dim=1)


def add_prompt_tokens(model: nn.Module, num_tokens: int) -> int:
    """Give every block of a timm vision transformer its own prompt tokens.

    Each :class:`PromptTokens` becomes the child ``prompt_tokens`` of its block,
    on the block's device and dtype.

    Args:
        model: A timm vision transformer (``blocks``, ``patch_embed``,
            ``embed_dim``, ``num_prefix_tokens``).
        num_tokens: Prompt tokens per block.

    Returns:
        The number of blocks prompted.
    """
    patch_height, patch_width = model.patch_embed.patch_size
    for block in model.blocks:
        reference = next(block.parameters())
        prompts = PromptTokens(
            num_tokens,
            model.embed_dim,
            prefix=model.num_prefix_tokens,
            patch_area=patch_height * patch_width,
        )
        block.add_module('prompt_tokens', prompts.to(reference.device, reference.dtype))
        block.register_forward_pre_hook(prompts.insert)
        block.register_forward_hook(prompts.remove)
    return len(model.blocks)
