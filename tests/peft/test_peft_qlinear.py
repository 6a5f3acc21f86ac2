import math

import pytest
import torch
from torch import nn

from geopeft.peft import QLinear, lloyd_max_levels, pack_codes, unpack_codes
from geopeft.peft.qlinear import EPS


def test_one_bit_levels() -> None:
    expected = math.sqrt(2 / math.pi)  # E[X | X > 0], about 0.7979
    assert lloyd_max_levels(1).tolist() == pytest.approx([-expected, expected])


def test_two_bit_levels_match_tables() -> None:
    # Max (1960): 4-level quantizer of N(0, 1).
    assert lloyd_max_levels(2).tolist() == pytest.approx(
        [-1.5104, -0.4528, 0.4528, 1.5104], abs=1e-4
    )


@pytest.mark.parametrize('bits', [1, 2, 4, 8])
def test_levels_are_the_centroids_of_their_bins(bits: int) -> None:
    levels = lloyd_max_levels(bits).double()
    assert levels.numel() == 2**bits
    assert torch.all(levels[1:] > levels[:-1])
    assert torch.allclose(levels, -levels.flip(0))
    # Conditional means of N(0, 1) on each bin, by fine numerical integration.
    x = torch.linspace(-9, 9, 2_000_001, dtype=torch.float64)
    density = torch.exp(-(x**2) / 2)
    bins = torch.bucketize(x, (levels[1:] + levels[:-1]) / 2)
    mass = torch.zeros_like(levels).index_add_(0, bins, density)
    moment = torch.zeros_like(levels).index_add_(0, bins, density * x)
    assert torch.allclose(moment / mass, levels, atol=1e-4)


def test_invalid_bits() -> None:
    with pytest.raises(ValueError, match='1, 2, 4, 8, 32'):
        QLinear(4, 4, bits=3)
    with pytest.raises(ValueError, match='Lloyd-Max'):
        lloyd_max_levels(32)


@pytest.mark.parametrize('bits', [1, 2, 4, 8])
def test_weight_takes_exactly_the_levels(bits: int) -> None:
    torch.manual_seed(0)
    layer = QLinear(64, 80, bits=bits)
    nn.init.normal_(layer.weight)
    weight = layer.quantized_weight().detach()
    codes, mean, std = layer.quantize()
    used = torch.unique(codes).long()
    distinct = torch.unique(weight)
    assert distinct.numel() == used.numel()
    if bits < 8:  # 5120 normal weights reach every level below 8 bits
        assert distinct.numel() == 2**bits
    levels = lloyd_max_levels(bits)
    assert torch.allclose((distinct - mean) / (std + EPS), levels[used], atol=1e-5)
    # Each weight is the nearest level of its standardized full-precision value.
    raw = (layer.weight.detach() - mean) / (std + EPS)
    nearest = (raw.reshape(-1, 1) - levels).abs().argmin(dim=1)
    assert torch.equal(codes.reshape(-1).long(), nearest)


def test_one_bit_weight_is_plus_minus_0_7979() -> None:
    torch.manual_seed(0)
    layer = QLinear(16, 8, bits=1)
    weight = layer.quantized_weight().detach()
    mean, std = layer.weight.mean(), layer.weight.std() + EPS
    values = torch.unique((weight - mean) / std).tolist()
    assert values == pytest.approx([-0.7979, 0.7979], abs=1e-4)
    assert torch.equal(weight > mean, layer.weight > mean)


def test_straight_through_gradient() -> None:
    torch.manual_seed(0)
    layer = QLinear(3, 2, bits=1, bias=True)
    x = torch.randn(5, 3)
    upstream = torch.randn(5, 2)
    (layer(x) * upstream).sum().backward()
    # STE: dL/dW = dL/dW_q = upstream^T x; the bias gradient is upstream summed.
    assert torch.allclose(layer.weight.grad, upstream.T @ x, rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer.bias.grad, upstream.sum(0))


def test_32_bits_is_a_plain_linear() -> None:
    torch.manual_seed(0)
    layer = QLinear(6, 4, bits=32, bias=True)
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    assert not hasattr(layer, 'levels')


@pytest.mark.parametrize('bits', [1, 2, 4, 8])
@pytest.mark.parametrize('numel', [1, 7, 13, 1001])
def test_pack_round_trip(bits: int, numel: int) -> None:
    codes = torch.randint(
        0, 2**bits, (numel,), generator=torch.Generator().manual_seed(0)
    )
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == math.ceil(numel * bits / 8)
    assert torch.equal(unpack_codes(packed, bits, numel), codes.to(torch.uint8))


def test_pack_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match='at 2 bits'):
        pack_codes(torch.tensor([4]), 2)
    with pytest.raises(ValueError, match='packed at bits'):
        pack_codes(torch.tensor([1]), 3)
    with pytest.raises(ValueError, match='cannot hold'):
        unpack_codes(torch.zeros(1, dtype=torch.uint8), 1, 9)


@pytest.mark.parametrize('bits', [1, 2, 4, 8])
def test_stored_codes_reproduce_outputs_bit_for_bit(bits: int) -> None:
    torch.manual_seed(0)
    trained = QLinear(24, 10, bits=bits)
    x = torch.randn(4, 7, 24)
    expected = trained(x)
    codes, mean, std = trained.quantize()
    packed = pack_codes(codes, bits)
    stored = QLinear(24, 10, bits=bits)
    stored.load_codes(unpack_codes(packed, bits, codes.numel()), mean, std)
    assert stored.stored and 'weight' not in dict(stored.named_parameters())
    assert torch.equal(stored(x), expected)


def test_state_dict_with_codes_switches_to_stored_mode() -> None:
    torch.manual_seed(0)
    source = QLinear(8, 4, bits=2)
    source.load_codes(*source.quantize())
    target = QLinear(8, 4, bits=2)
    target.load_state_dict(source.state_dict())
    x = torch.randn(3, 8)
    assert target.stored
    assert torch.equal(target(x), source(x))
