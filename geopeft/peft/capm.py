"""CAPM: context-aware prompts added to every stage output of a backbone.

For stage *i* with ``C_i`` channels a learnable prompt ``P_i`` (``C_i x k x k``) is
resized bilinearly to the stage's feature size, scaled by a gate computed from the
feature itself, and added: ``F_i' = F_i + g_i * resize(P_i)`` with
``g_i = sigmoid(a_i * GAP(F_i) + b_i)`` (per-channel ``a_i``, ``b_i``). It is applied
at the stage output, so the next stage, ``forward_features`` and
``forward_intermediates`` all see it. Without the gate (``gated=False``) the same
module is the additive prompt-map baseline of the ``prompt`` method.
"""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import stage_layout


class StagePrompt(nn.Module):
    """A prompt map with an optional context gate for one stage.

    Init: ``P ~ N(0, 0.02)``, ``a = b = 0`` (gate 0.5 at the start).

    Attributes:
        prompt: ``[C, k, k]`` prompt.
        gate_weight: Per-channel ``a`` (``None`` without gate).
        gate_bias: Per-channel ``b`` (``None`` without gate).
        layout: Layout of the stage output: ``NCHW``, ``NHWC`` or ``NLC`` (tokens,
            prefix tokens first; the patch grid is set in :attr:`grid`).
        grid: ``(height, width)`` of the patch grid for ``NLC`` outputs.
    """

    def __init__(
        self, channels: int, size: int = 4, *, gated: bool = True, layout: str = 'NCHW'
    ) -> None:
        """Initialize a new StagePrompt.

        Args:
            channels: Channels ``C`` of the stage output.
            size: Prompt side ``k``.
            gated: Scale the prompt by the context gate.
            layout: Layout of the stage output.
        """
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(channels, size, size) * 0.02)
        self.gate_weight = nn.Parameter(torch.zeros(channels)) if gated else None
        self.gate_bias = nn.Parameter(torch.zeros(channels)) if gated else None
        self.layout = layout
        self.grid: tuple[int, int] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Add the (gated) prompt to a feature map.

        Args:
            x: Feature map ``[B, C, H, W]``.

        Returns:
            ``x + g * resize(P)``.
        """
        prompt = F.interpolate(
            self.prompt.unsqueeze(0),
            size=x.shape[-2:],
            mode='bilinear',
            align_corners=False,
        )
        if self.gate_weight is None or self.gate_bias is None:
            return x + prompt
        context = x.mean(dim=(2, 3))
        gate = torch.sigmoid(self.gate_weight * context + self.gate_bias)
        return x + gate[:, :, None, None] * prompt

    def apply_to_stage_output(
        self, module: nn.Module, args: tuple[Any, ...], output: Tensor
    ) -> Tensor:
        """Forward hook: add the prompt to a stage output in its own layout."""
        if self.layout == 'NCHW':
            return self(output)
        if self.layout == 'NHWC':
            return self(output.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if self.grid is None:
            msg = 'the patch grid of a token backbone was not recorded'
            raise RuntimeError(msg)
        height, width = self.grid
        prefix = output.shape[1] - height * width
        tokens = output[:, prefix:]
        batch, _, channels = tokens.shape
        feature = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        patches = self(feature).flatten(2).transpose(1, 2)
        return torch.cat([output[:, :prefix], patches], dim=1)


class CAPM(nn.Module):
    """Context-aware prompt module over the stages of a backbone.

    Holds one :class:`StagePrompt` per stage (``stages`` maps a sanitised stage
    name to it) and adds them to the stage outputs with forward hooks, so the
    backbone's own modules and their state-dict keys are unchanged. For token
    backbones (ViT) the prompt is added to the patch tokens only; the patch grid
    is recorded from the input of ``model.patch_embed`` (timm ``PatchEmbed``, any
    aspect ratio).

    Attributes:
        names: Stage module names (as in ``model.feature_info``).
        stages: The per-stage prompts.
    """

    def __init__(
        self,
        names: Sequence[str],
        channels: Sequence[int],
        *,
        size: int = 4,
        gated: bool = True,
        layout: str = 'NCHW',
    ) -> None:
        """Initialize a new CAPM.

        Args:
            names: Stage module names.
            channels: Output channels of each stage.
            size: Prompt side ``k``.
            gated: Use the context gate (CAPM); ``False`` gives plain prompt maps.
            layout: Layout of the stage outputs.
        """
        super().__init__()
        self.names = list(names)
        self.stages = nn.ModuleDict(
            {
                name.replace('.', '_'): StagePrompt(c, size, gated=gated, layout=layout)
                for name, c in zip(names, channels, strict=True)
            }
        )

    @classmethod
    def for_backbone(
        cls, model: nn.Module, *, size: int = 4, gated: bool = True
    ) -> 'CAPM':
        """Build prompts for every stage in ``model.feature_info``.

        Args:
            model: The backbone.
            size: Prompt side ``k``.
            gated: Use the context gate.

        Returns:
            The (not yet attached) module.
        """
        info = model.feature_info
        return cls(
            [entry['module'] for entry in info],
            [entry['num_chs'] for entry in info],
            size=size,
            gated=gated,
            layout=stage_layout(model),
        )

    def attach(self, model: nn.Module) -> None:
        """Hook the prompts onto the stage outputs of *model*.

        Args:
            model: The backbone whose ``feature_info`` built this module.
        """
        for name, prompt in zip(self.names, self.stages.values(), strict=True):
            _output_module(model.get_submodule(name)).register_forward_hook(
                prompt.apply_to_stage_output
            )
        if any(prompt.layout == 'NLC' for prompt in self.stages.values()):
            model.patch_embed.register_forward_pre_hook(self._record_grid)

    def _record_grid(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """Forward pre-hook on the patch embedding: record the patch grid size."""
        height, width = args[0].shape[-2:]
        grid = tuple(module.dynamic_feat_size((height, width)))
        for prompt in self.stages.values():
            prompt.grid = grid


def _output_module(stage: nn.Module) -> nn.Module:
    """Return the module whose output is a stage's output, and that always runs.

    An ``nn.Sequential`` stage (ResNet ``layer1``, EfficientNet ``blocks.0``)
    returns its last child's output, and timm's activation checkpointing calls
    those children directly, never the stage itself: a hook on the stage would be
    skipped, one on its last child is not.

    Args:
        stage: A stage module named in ``feature_info``.

    Returns:
        The innermost last child of nested ``nn.Sequential`` stages, else *stage*.
    """
    while isinstance(stage, nn.Sequential) and len(stage) > 0:
        stage = stage[-1]
    return stage
