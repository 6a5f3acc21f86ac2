"""EQAM: the efficient quantization adapter module, in parallel with each block.

``eqam(z) = s * QLinear(C_in -> d)(z) -> act -> QLinear(d -> C_out)``, channels last.
One EQAM per block reads the input of the block's channel-MLP / pointwise path and
adds its output to the block's residual branch output (see
:mod:`geopeft.peft.blocks` for the place in each block type). For a ConvNeXt
block: ``out = x + drop_path(gamma * mlp(z)) + s * eqam(z)``, ``z = norm(dwconv(x))``.
With ``bits=32``, a bias and ReLU the same module is the AdaptFormer-style fp32
adapter baseline.
"""

from typing import Any

import torch
from torch import Tensor, nn

from .blocks import Placement, find_blocks, from_channels_last, to_channels_last
from .qlinear import QLinear


class EQAM(nn.Module):
    """Quantized bottleneck adapter: down Q-Linear, activation, up Q-Linear, scale.

    The up-projection starts near zero (truncated normal, std 1e-3) so that the
    adapted backbone starts as the pretrained one.

    Attributes:
        down: ``QLinear(in_features -> hidden)``.
        act: The activation.
        up: ``QLinear(hidden -> out_features)``.
        scale: Output scale *s*: a float, or a learned scalar parameter.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: int = 16,
        bits: int = 1,
        scale: float = 1.0,
        learn_scale: bool = False,
        bias: bool = False,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        """Initialize a new EQAM.

        Args:
            in_features: Channels read from the block.
            out_features: Channels added to the block output.
            hidden: Bottleneck width *d*.
            bits: Q-Linear bit width (32: full precision).
            scale: Output scale *s* (its initial value if learned).
            learn_scale: Learn *s* as a scalar parameter.
            bias: Give both projections a bias.
            activation: Activation class between the projections.
        """
        super().__init__()
        self.down = QLinear(in_features, hidden, bits=bits, bias=bias)
        self.act = activation()
        self.up = QLinear(hidden, out_features, bits=bits, bias=bias)
        nn.init.trunc_normal_(self.up.weight, std=1e-3, a=-2e-3, b=2e-3)
        self.scale: nn.Parameter | float = (
            nn.Parameter(torch.tensor(float(scale))) if learn_scale else float(scale)
        )
        self.placement: Placement | None = None
        self._input: Tensor | None = None

    def forward(self, z: Tensor) -> Tensor:
        """Compute the adapter output.

        Args:
            z: Channels-last input ``[..., in_features]``.

        Returns:
            ``s * up(act(down(z)))``, ``[..., out_features]``.
        """
        return self.scale * self.up(self.act(self.down(z)))

    def attach(self, block: nn.Module, placement: Placement) -> None:
        """Run in parallel with a path of *block* (forward hooks; keys unchanged).

        Args:
            block: The block that holds the path.
            placement: Where to read and write inside *block*.
        """
        self.placement = placement
        block.get_submodule(placement.src).register_forward_pre_hook(self._read)
        block.get_submodule(placement.dst).register_forward_hook(self._write)

    def _read(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """Keep the input of the path the adapter runs next to."""
        self._input = args[0]

    def _write(
        self, module: nn.Module, args: tuple[Any, ...], output: Tensor
    ) -> Tensor:
        """Add the adapter output to the residual branch output."""
        assert self.placement is not None and self._input is not None
        z, self._input = self._input, None
        delta = self(to_channels_last(z, self.placement.src_layout))
        return output + from_channels_last(delta, output, self.placement.dst_layout)


def add_eqam(model: nn.Module, *, attribute: str = 'eqam', **options: Any) -> int:
    """Insert one EQAM into every block of a backbone that has a placement rule.

    Each adapter becomes a child ``<block>.<attribute>`` on the device and dtype of
    the block.

    Args:
        model: The backbone.
        attribute: Child name of the adapter in each block.
        **options: Keyword arguments of :class:`EQAM` (not the widths).

    Returns:
        The number of adapters inserted.
    """
    blocks = find_blocks(model)
    for _, block, where in blocks:
        adapter = EQAM(where.in_features, where.out_features, **options)
        reference = next(block.parameters())
        block.add_module(attribute, adapter.to(reference.device, reference.dtype))
        adapter.attach(block, where)
    return len(blocks)
