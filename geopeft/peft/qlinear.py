"""Q-Linear: a linear layer whose weight is fake-quantized to Lloyd-Max levels.

The weight tensor is standardised as a whole, quantized to the ``2**bits`` levels of
the Lloyd-Max quantizer of a standard normal, trained with a straight-through
estimator and de-standardised. A trained layer is stored as its bit-packed codes
plus one mean and one standard deviation (:func:`pack_codes`).
"""

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Added to the standard deviation before dividing by it.
EPS = 1e-5
#: Bit widths that are really quantized (32 is a plain linear layer).
QUANTIZED_BITS = (1, 2, 4, 8)


def _centroids(levels: Tensor) -> Tensor:
    """Map levels to the N(0, 1) centroids of their nearest-level bins."""
    sqrt2 = math.sqrt(2.0)
    inf = levels.new_tensor([math.inf])
    edges = torch.cat([-inf, (levels[1:] + levels[:-1]) / 2, inf])
    pdf = torch.exp(-(edges**2) / 2) / math.sqrt(2 * math.pi)
    # Bin probability from the tail on each side of zero, which keeps precision.
    survival = torch.special.erfc(edges / sqrt2) / 2
    cdf = torch.special.erfc(-edges / sqrt2) / 2
    mass = torch.where(
        edges[:-1] >= 0, survival[:-1] - survival[1:], cdf[1:] - cdf[:-1]
    )
    return (pdf[:-1] - pdf[1:]) / mass


@functools.cache
def _lloyd_max(bits: int) -> tuple[float, ...]:
    """Solve the Lloyd-Max quantizer of N(0, 1) in float64 (cached per bit width).

    The fixed point ``levels = centroids(levels)`` is found with Newton's method,
    started from the normal quantiles at the bin centres (a few steps; Lloyd's
    plain iteration needs tens of thousands at 8 bits).
    """
    n = 2**bits
    probs = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    levels = math.sqrt(2.0) * torch.special.erfinv(2 * probs - 1)
    identity = torch.eye(n, dtype=torch.float64)
    for _ in range(50):
        residual = _centroids(levels) - levels
        jacobian = torch.autograd.functional.jacobian(
            _centroids, levels, vectorize=True
        )
        jacobian = jacobian - identity
        step = torch.linalg.solve(jacobian, residual)
        levels = levels - step
        if step.abs().max() < 1e-10:
            break
    # The quantizer of a symmetric density is symmetric; remove rounding noise.
    levels = (levels - levels.flip(0)) / 2
    return tuple(levels.tolist())


def lloyd_max_levels(bits: int) -> Tensor:
    """Return the Lloyd-Max reconstruction levels of a standard normal.

    Computed once per bit width (numerically, in float64) and cached.

    Args:
        bits: Bit width, one of ``1, 2, 4, 8``.

    Returns:
        The ``2**bits`` increasing levels, float32 (1 bit: ``+-0.7979``).

    Raises:
        ValueError: If *bits* is not a quantized bit width.
    """
    if bits not in QUANTIZED_BITS:
        msg = f'Lloyd-Max levels exist for bits in {QUANTIZED_BITS}, got {bits}'
        raise ValueError(msg)
    return torch.tensor(_lloyd_max(bits), dtype=torch.float32)


def _check_bits(bits: int) -> int:
    """Return the number of codes per byte for a packable bit width."""
    if bits not in QUANTIZED_BITS:
        msg = f'codes can be packed at bits in {QUANTIZED_BITS}, got {bits}'
        raise ValueError(msg)
    return 8 // bits


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes at *bits* bits each into bytes.

    Codes are flattened in row-major order; code ``j`` of a byte occupies bits
    ``bits*j .. bits*(j+1)-1`` (least significant first). The last byte is padded
    with zeros.

    Args:
        codes: Integer codes in ``[0, 2**bits)``, any shape.
        bits: Bits per code, one of ``1, 2, 4, 8``.

    Returns:
        A 1-D ``uint8`` tensor of ``ceil(numel * bits / 8)`` bytes.

    Raises:
        ValueError: If *bits* is not packable or a code does not fit.
    """
    per_byte = _check_bits(bits)
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() and (flat.min() < 0 or flat.max() >= 2**bits):
        msg = f'codes must lie in [0, {2**bits}) to be packed at {bits} bits'
        raise ValueError(msg)
    padding = -flat.numel() % per_byte
    flat = F.pad(flat, (0, padding)).reshape(-1, per_byte)
    shifts = torch.arange(per_byte, device=flat.device) * bits
    return (flat << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: Tensor, bits: int, numel: int) -> Tensor:
    """Invert :func:`pack_codes`.

    Args:
        packed: The bytes from :func:`pack_codes`.
        bits: Bits per code, one of ``1, 2, 4, 8``.
        numel: Number of codes that were packed.

    Returns:
        A 1-D ``uint8`` tensor of *numel* codes.

    Raises:
        ValueError: If *bits* is not packable or *packed* is too short.
    """
    per_byte = _check_bits(bits)
    if packed.numel() * per_byte < numel:
        msg = f'{packed.numel()} bytes cannot hold {numel} codes at {bits} bits'
        raise ValueError(msg)
    shifts = torch.arange(per_byte, device=packed.device) * bits
    codes = (packed.to(torch.int64).reshape(-1, 1) >> shifts) & (2**bits - 1)
    return codes.reshape(-1)[:numel].to(torch.uint8)


def weight_statistics(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Return the mean and standard deviation used to standardise a weight.

    Args:
        weight: The full-precision weight.

    Returns:
        ``(mean, std)`` of the whole tensor, detached 0-d tensors.
    """
    weight = weight.detach()
    return weight.mean(), weight.std()


def dequantize(levels: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """De-standardise standardized weight values.

    Both training and stored (code) forward passes go through this one expression,
    so that a layer rebuilt from its codes computes bit-identical weights.

    Args:
        levels: Standardized values (quantization levels, possibly carrying an
            exactly-zero straight-through term).
        mean: Weight mean.
        std: Weight standard deviation (``EPS`` is added here).

    Returns:
        The weight ``levels * (std + EPS) + mean``.
    """
    return levels * (std + EPS) + mean


class QLinear(nn.Module):
    """Linear layer with a fake-quantized weight (Q-Linear).

    Forward pass at ``bits < 32``: ``w' = (W - mean) / (std + 1e-5)`` over the whole
    tensor, ``w'`` is replaced by its nearest Lloyd-Max level of N(0, 1)
    (:func:`lloyd_max_levels`), de-standardised with the same mean and std, and
    ``y = x W_q^T (+ bias)``. The straight-through estimator treats the rounding as
    the identity and the statistics as constants, so ``dL/dW = dL/dW_q``. At
    ``bits == 32`` the layer is an ordinary linear layer.

    A layer can be switched to *stored codes* mode (:meth:`load_codes`): the weight
    parameter is replaced by the buffers ``codes`` (one ``uint8`` per weight),
    ``mean`` and ``std``; the layer then reproduces the trained layer bit for bit and
    is meant for inference.

    Attributes:
        in_features: Input width.
        out_features: Output width.
        bits: Bit width of the weight.
    """

    def __init__(
        self, in_features: int, out_features: int, bits: int = 1, bias: bool = False
    ) -> None:
        """Initialize a new QLinear.

        Args:
            in_features: Input width.
            out_features: Output width.
            bits: Weight bit width, one of ``1, 2, 4, 8, 32``.
            bias: Add a (full-precision) bias.

        Raises:
            ValueError: If *bits* is not allowed.
        """
        super().__init__()
        if bits not in (*QUANTIZED_BITS, 32):
            msg = f'QLinear bits must be one of 1, 2, 4, 8, 32, got {bits}'
            raise ValueError(msg)
        self.in_features = in_features
        self.out_features = out_features
        self.bits = bits
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.quantized:
            levels = lloyd_max_levels(bits)
            self.register_buffer('levels', levels, persistent=False)
            self.register_buffer(
                'thresholds', (levels[1:] + levels[:-1]) / 2, persistent=False
            )

    @property
    def quantized(self) -> bool:
        """Whether the weight is quantized (``bits < 32``)."""
        return self.bits in QUANTIZED_BITS

    @property
    def stored(self) -> bool:
        """Whether the layer runs from stored codes (see :meth:`load_codes`)."""
        return 'codes' in self._buffers

    def quantize(self) -> tuple[Tensor, Tensor, Tensor]:
        """Quantize the current weight.

        Returns:
            ``(codes, mean, std)``: ``uint8`` codes shaped like the weight (indices
            into :func:`lloyd_max_levels`) and the 0-d statistics.

        Raises:
            RuntimeError: If the layer is not quantized.
        """
        if not self.quantized:
            msg = 'a 32-bit QLinear has no codes'
            raise RuntimeError(msg)
        if self.stored:
            return self.codes, self.mean, self.std
        mean, std = weight_statistics(self.weight)
        standardized = (self.weight.detach() - mean) / (std + EPS)
        codes = torch.bucketize(standardized, self.thresholds)
        return codes.to(torch.uint8), mean, std

    def quantized_weight(self) -> Tensor:
        """Return the weight the forward pass uses.

        Returns:
            ``W_q`` (with a straight-through gradient to ``weight`` while training),
            or the plain weight at 32 bits.
        """
        if not self.quantized:
            return self.weight
        if self.stored:
            return dequantize(self.levels[self.codes.long()], self.mean, self.std)
        codes, mean, std = self.quantize()
        standardized = (self.weight - mean) / (std + EPS)
        # The added term is exactly zero in value, so W_q equals the stored-codes
        # weight bit for bit, but carries the identity gradient (STE).
        levels = self.levels[codes.long()] + (standardized - standardized.detach())
        return dequantize(levels, mean, std)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            x: Input ``[..., in_features]``.

        Returns:
            Output ``[..., out_features]``.
        """
        return F.linear(x, self.quantized_weight(), self.bias)

    def load_codes(self, codes: Tensor, mean: Tensor, std: Tensor) -> None:
        """Switch to stored-codes mode: drop the weight, keep codes and statistics.

        Args:
            codes: Integer codes, ``numel == out_features * in_features``.
            mean: Weight mean (0-d).
            std: Weight standard deviation (0-d, without ``EPS``).

        Raises:
            RuntimeError: If the layer is not quantized.
            ValueError: If the codes do not fit the layer.
        """
        if not self.quantized:
            msg = 'a 32-bit QLinear cannot load codes'
            raise RuntimeError(msg)
        shape = (self.out_features, self.in_features)
        if codes.numel() != shape[0] * shape[1]:
            msg = f'{codes.numel()} codes do not fit a QLinear of weight shape {shape}'
            raise ValueError(msg)
        device = self.levels.device
        if 'weight' in self._parameters:
            del self._parameters['weight']
        self.register_buffer('codes', codes.reshape(shape).to(device, torch.uint8))
        self.register_buffer('mean', mean.detach().reshape(()).to(device))
        self.register_buffer('std', std.detach().reshape(()).to(device))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Switch to stored-codes mode when loading a state dict that holds codes."""
        codes = state_dict.get(prefix + 'codes')
        if codes is not None and not self.stored:
            self.load_codes(
                codes, state_dict[prefix + 'mean'], state_dict[prefix + 'std']
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        """Describe the layer."""
        mode = ', stored codes' if self.stored else ''
        return (
            f'in_features={self.in_features}, out_features={self.out_features}, '
            f'bits={self.bits}, bias={self.bias is not None}{mode}'
        )
