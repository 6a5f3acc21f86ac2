"""Siamese change model: fusion semantics, date layouts, per-date adapters."""

from pathlib import Path

import pytest
import timm
import torch
from change_data import OSCD_BANDS
from dense_helpers import train_step

from geopeft.models import FUSIONS, FeatureFusion, build_change_model
from geopeft.models.change import tied_copy


def small_model(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_change_model(
        'upernet', 'resnet10t', decoder_kwargs={'decoder_channels': 32}, **options
    )


def pair(batch: int = 2, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 2, 3, size, size, generator=generator)


def test_fusion_channels_and_values() -> None:
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    for mode, factor in FUSIONS.items():
        fusion = FeatureFusion(mode)
        out = fusion(a, b)
        assert out.shape[1] == fusion.channels(4) == factor * 4
    assert torch.equal(FeatureFusion('diff')(a, b), b - a)
    assert torch.equal(FeatureFusion('absdiff')(a, b), (b - a).abs())
    assert torch.equal(FeatureFusion('concat+diff')(a, b)[:, 8:], b - a)
    with pytest.raises(ValueError, match='Unknown fusion "sum"'):
        FeatureFusion('sum')


def test_absdiff_is_symmetric_in_the_dates() -> None:
    model = small_model(fusion='absdiff').eval()
    x = pair()
    with torch.no_grad():
        forward = model(x)
        swapped = model(x.flip(1))
    torch.testing.assert_close(forward, swapped)


def test_diff_features_change_sign_when_dates_swap() -> None:
    model = small_model(fusion='diff').eval()
    x = pair()
    with torch.no_grad():
        forward = model.encoder(x)
        swapped = model.encoder(x.flip(1))
    for f, g in zip(forward[1:], swapped[1:], strict=True):
        torch.testing.assert_close(f, -g)


def test_identical_dates_give_zero_difference() -> None:
    model = small_model(fusion='diff').eval()
    x = pair()
    x[:, 1] = x[:, 0]
    with torch.no_grad():
        features = model.encoder(x)
    assert all(f.abs().max() == 0 for f in features[1:] if f.numel())


def test_flattened_dates_equal_stacked_dates() -> None:
    model = small_model().eval()
    x = pair()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.flatten(1, 2)))


@pytest.mark.parametrize(
    'shape', [(2, 2, 4, 64, 64), (2, 3, 3, 64, 64), (2, 5, 64, 64)]
)
def test_dates_with_other_bands_are_a_clear_error(shape: tuple[int, ...]) -> None:
    model = small_model()
    with pytest.raises(ValueError, match='two dates of 3 bands'):
        model(torch.randn(*shape))


def test_per_date_adapters_share_frozen_weights() -> None:
    model = small_model(per_date_adapters=True)
    encoder = model.encoder
    a = dict(encoder.encoder.named_parameters())
    b = dict(encoder.encoder_b.named_parameters())
    assert a.keys() == b.keys()
    for name, parameter in a.items():
        if parameter.requires_grad:
            assert b[name] is not parameter, f'{name} should be per date'
        else:
            assert b[name] is parameter, f'{name} should be shared'
    # Frozen batch-norm statistics are shared too.
    buffers_b = dict(encoder.encoder_b.named_buffers())
    for name, buffer in encoder.encoder.named_buffers():
        if '.bn' in name:
            assert buffers_b[name] is buffer

    before = {
        n: p.detach().clone() for n, p in encoder.named_parameters() if p.requires_grad
    }
    target = torch.zeros(2, 1, 64, 64)
    target[..., :32, :32] = 1
    train_step(model, pair(), target)
    for name, parameter in encoder.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
            assert not torch.equal(parameter, before[name]), name
    a = dict(encoder.encoder.named_parameters())
    b = dict(encoder.encoder_b.named_parameters())
    moved = [n for n, p in a.items() if p.requires_grad and not torch.equal(p, b[n])]
    assert moved, 'the two dates should have learnt different adapters'


def test_tied_copy_without_frozen_parameters_is_a_plain_copy() -> None:
    layer = torch.nn.Linear(3, 3)
    twin = tied_copy(layer)
    assert twin.weight is not layer.weight
    assert torch.equal(twin.weight, layer.weight)


def test_13_band_dates_on_rgb_pretrained_weights(tmp_path: Path) -> None:
    # OSCD's Sentinel-2 bands on RGB weights: no early-fusion channel mismatch
    # (each date is encoded alone) and the R, G, B filters are the pretrained ones.
    torch.manual_seed(0)
    rgb = timm.create_model('resnet10t', num_classes=0)
    weights = tmp_path / 'rgb.pth'
    torch.save(rgb.state_dict(), weights)
    bands = list(OSCD_BANDS)
    model = small_model(weights=str(weights), in_channels=13, bands=bands).eval()
    first = model.encoder.encoder.backbone.model.conv1[0].weight
    pretrained = rgb.conv1[0].weight
    scale = 3 / 13
    for band, channel in (('B04', 0), ('B03', 1), ('B02', 2)):
        torch.testing.assert_close(
            first[:, bands.index(band)], scale * pretrained[:, channel]
        )
    x = torch.randn(1, 2, 13, 64, 64)
    assert model(x).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match='two dates of 13 bands'):
        model(torch.randn(1, 2, 3, 64, 64))
