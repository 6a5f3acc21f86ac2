import logging
import socket
from pathlib import Path
from typing import Any

import change_data
import pytest
import timm
import torch
from torch import Tensor
from torch.nn import functional as F
from torchgeo.models import ResNet18_Weights
from torchvision.models._api import WeightsEnum

from geopeft.backbones import (
    CANONICAL_BANDS,
    IMAGENET_BANDS,
    TimmBackbone,
    adapt_first_layer_weight,
    canonical_band,
    canonical_bands,
    load_backbone_weights,
    pretrained_bands,
)
from geopeft.models import PEFTClassifier
from geopeft.tasks import PEFTClassification

#: TorchGeo's OSCD band order (Sentinel-2, zero-padded).
OSCD_BANDS = list(change_data.OSCD_BANDS)

#: Tiny timm models and their first layer.
FAMILIES = [
    ('resnet18', {}, 'conv1'),
    ('convnext_atto', {}, 'stem.0'),
    ('efficientnet_lite0', {}, 'conv_stem'),
    ('vit_tiny_patch16_224', {'img_size': 32}, 'patch_embed.proj'),
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('a band test tried to use the network')

    monkeypatch.setattr(socket.socket, 'connect', refuse)


def rgb_kernel() -> Tensor:
    """Two 1x1 filters over red, green, blue with easy exact values."""
    return torch.tensor([[1.0, 2.0, 4.0], [8.0, -4.0, 0.0]]).reshape(2, 3, 1, 1)


def serve_as_imagenet(monkeypatch: pytest.MonkeyPatch, source: dict) -> None:
    """Serve *source* as the ImageNet weights of every backbone."""
    monkeypatch.setattr(
        'geopeft.backbones.weights.imagenet_state_dict', lambda name: source
    )


def serve_as_torchgeo(monkeypatch: pytest.MonkeyPatch, source: dict) -> None:
    """Serve *source* as every TorchGeo download."""

    def get_state_dict(self: WeightsEnum, *args: Any, **kwargs: Any) -> dict:
        return source

    monkeypatch.setattr(WeightsEnum, 'get_state_dict', get_state_dict)


# Band names


@pytest.mark.parametrize(
    ('name', 'canonical'),
    [
        ('red', 'red'),
        ('RED', 'red'),
        ('R', 'red'),
        ('g', 'green'),
        ('B', 'blue'),
        ('N', 'nir'),
        ('NIR', 'nir'),
        ('B04', 'red'),
        ('b8a', 'nir08'),
        ('B12', 'swir2'),
        ('red-edge 1', 'rededge1'),
        ('Red_Edge_3', 'rededge3'),
        ('water vapour', 'watervapour'),
        ('SWIR16', 'swir1'),
        ('sentinel2:B8', 'nir'),
        ('Sentinel-2:B10', 'cirrus'),
        ('landsat8:B4', 'red'),
        ('landsat9:B5', 'nir'),
        ('L8:B10', 'thermal'),
        ('landsat7:B4', 'nir'),
        ('landsat5:SR_B3', 'red'),
        ('tm:B6', 'thermal'),
        ('landsat7:B6_VCID_1', 'thermal'),
        ('VV', 'vv'),
        ('other', 'other'),
    ],
)
def test_band_names_resolve_case_insensitively(name: str, canonical: str) -> None:
    assert canonical_band(name) == canonical


def test_sensor_argument_reads_unprefixed_numbered_names() -> None:
    assert canonical_bands(['B4', 'B5'], sensor='landsat8') == ['red', 'nir']
    assert canonical_bands(['B4', 'B5'], sensor='landsat7') == ['nir', 'swir1']
    assert canonical_bands(['B4', 'sentinel2:B5'], sensor='landsat8') == [
        'red',
        'rededge1',
    ]


def test_oscd_band_list_is_read_as_sentinel2() -> None:
    assert canonical_bands(OSCD_BANDS) == [
        'coastal',
        'blue',
        'green',
        'red',
        'rededge1',
        'rededge2',
        'rededge3',
        'nir',
        'nir08',
        'watervapour',
        'cirrus',
        'swir1',
        'swir2',
    ]


@pytest.mark.parametrize('name', ['B4', 'B10', 'SR_B5'])
def test_numbered_names_without_sensor_are_ambiguous(name: str) -> None:
    with pytest.raises(ValueError, match=rf"'{name}' is ambiguous.*'landsat8:{name}'"):
        canonical_band(name)


def test_ambiguous_message_names_every_reading() -> None:
    with pytest.raises(
        ValueError,
        match=r'red on Sentinel-2, red on Landsat 8/9.*nir on Landsat 4-7.*'
        r"'red', 'nir'",
    ):
        canonical_bands(['B4', 'B3', 'B2'])


def test_unknown_band_suggests_and_lists_known_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"Unknown band 'rde'\. Did you mean 'red'.*Known names: coastal, blue"
        r".*swir2.*'other'",
    ):
        canonical_band('rde')


def test_unknown_sensor_lists_sensors() -> None:
    with pytest.raises(ValueError, match=r"Unknown sensor 'modis'.*landsat8"):
        canonical_band('modis:B1')


def test_name_outside_the_sensors_bands_fails() -> None:
    with pytest.raises(ValueError, match=r"'landsat7:B9' is not a Landsat 4-7"):
        canonical_band('landsat7:B9')


def test_a_string_of_band_letters_is_refused() -> None:
    with pytest.raises(TypeError, match=r"not the string 'RGBN'.*list\('RGBN'\)"):
        canonical_bands('RGBN')


def test_every_canonical_name_resolves_to_itself() -> None:
    assert all(canonical_band(name) == name for name in CANONICAL_BANDS)


# Bands of weights sources


def test_imagenet_weights_are_red_green_blue() -> None:
    assert pretrained_bands(True) == IMAGENET_BANDS == ('red', 'green', 'blue')
    assert pretrained_bands('imagenet') == IMAGENET_BANDS


def test_files_and_random_init_have_no_band_names(tmp_path: Path) -> None:
    assert pretrained_bands(tmp_path / 'weights.pth') is None
    assert pretrained_bands(str(tmp_path / 'weights.pth')) is None
    assert pretrained_bands(None) is None


@pytest.mark.parametrize(
    ('weights', 'bands'),
    [
        (ResNet18_Weights.SENTINEL2_RGB_MOCO, ('red', 'green', 'blue')),
        ('ResNet18_Weights.SENTINEL2_RGB_MOCO', ('red', 'green', 'blue')),
        (
            ResNet18_Weights.LANDSAT_OLI_SR_MOCO,
            ('coastal', 'blue', 'green', 'red', 'nir', 'swir1', 'swir2'),
        ),
        (
            ResNet18_Weights.LANDSAT_TM_TOA_MOCO,
            ('blue', 'green', 'red', 'nir', 'swir1', 'thermal', 'swir2'),
        ),
    ],
)
def test_torchgeo_bands_are_read_with_the_enums_sensor(
    weights: WeightsEnum | str, bands: tuple[str, ...]
) -> None:
    assert pretrained_bands(weights) == bands


def test_torchgeo_sentinel2_all_bands() -> None:
    assert pretrained_bands(ResNet18_Weights.SENTINEL2_ALL_MOCO) == tuple(
        canonical_bands(OSCD_BANDS)
    )


def test_torchgeo_meta_without_bands_is_positional() -> None:
    from torchgeo.models import ResNet50_Weights

    assert ResNet50_Weights.FMOW_RGB_GASSL.meta.get('bands') is None
    assert pretrained_bands(ResNet50_Weights.FMOW_RGB_GASSL) is None


# The rule on hand-made kernels


def test_rgbn_on_rgb_copies_scales_and_gives_nir_the_mean() -> None:
    weight = rgb_kernel()

    adapted, mapping = adapt_first_layer_weight(
        weight, IMAGENET_BANDS, ['R', 'G', 'B', 'N'], 4
    )

    expected = torch.tensor([[0.75, 1.5, 3.0, 1.75], [6.0, -3.0, 0.0, 1.0]])
    assert torch.equal(adapted.reshape(2, 4), expected)
    assert mapping == [
        'R (red) <- 3/4 x red (by name)',
        'G (green) <- 3/4 x green (by name)',
        'B (blue) <- 3/4 x blue (by name)',
        'N (nir) <- 3/4 x mean of all 3 (no match)',
    ]


def test_bands_match_by_name_in_any_order() -> None:
    weight = rgb_kernel()

    adapted, _ = adapt_first_layer_weight(
        weight, IMAGENET_BANDS, ['nir', 'B02', 'B03', 'B04'], 4
    )

    assert torch.equal(adapted[:, 1], 0.75 * weight[:, 2])  # B02 = blue
    assert torch.equal(adapted[:, 2], 0.75 * weight[:, 1])  # B03 = green
    assert torch.equal(adapted[:, 3], 0.75 * weight[:, 0])  # B04 = red
    assert torch.equal(adapted[:, 0], 0.75 * weight.mean(1))


def test_same_bands_keep_the_weight_and_reordered_bands_permute_it() -> None:
    weight = rgb_kernel()

    same, mapping = adapt_first_layer_weight(weight, IMAGENET_BANDS, ['R', 'G', 'B'], 3)
    bgr, _ = adapt_first_layer_weight(weight, IMAGENET_BANDS, ['B', 'G', 'R'], 3)

    assert same is weight
    assert mapping == []
    assert torch.equal(bgr, weight.flip(1))


def test_oscd_bands_on_rgb_weights() -> None:
    weight = torch.randn(8, 3, 3, 3)

    adapted, mapping = adapt_first_layer_weight(weight, IMAGENET_BANDS, OSCD_BANDS, 13)

    assert adapted.shape == (8, 13, 3, 3)
    scale = 3 / 13
    torch.testing.assert_close(adapted[:, 3], scale * weight[:, 0])  # B04 -> red
    torch.testing.assert_close(adapted[:, 2], scale * weight[:, 1])  # B03 -> green
    torch.testing.assert_close(adapted[:, 1], scale * weight[:, 2])  # B02 -> blue
    for index in [0, 4, 5, 6, 7, 8, 9, 10, 11, 12]:
        torch.testing.assert_close(adapted[:, index], scale * weight.mean(1))
    assert mapping[3] == 'B04 (red) <- 3/13 x red (by name)'
    assert mapping[8] == 'B8A (nir08) <- 3/13 x mean of all 3 (no match)'


def test_without_names_bands_match_by_position() -> None:
    weight = rgb_kernel()

    unnamed_input, mapping = adapt_first_layer_weight(weight, IMAGENET_BANDS, None, 4)
    unnamed_weights, _ = adapt_first_layer_weight(weight, None, ['N', 'B', 'G', 'R'], 4)

    expected = torch.tensor([[0.75, 1.5, 3.0, 1.75], [6.0, -3.0, 0.0, 1.0]])
    assert torch.equal(unnamed_input.reshape(2, 4), expected)
    assert torch.equal(unnamed_weights, unnamed_input)
    assert mapping[0] == 'band 0 <- 3/4 x red (by position)'
    assert mapping[3] == 'band 3 <- 3/4 x mean of all 3 (no match)'


def test_bands_named_other_never_match() -> None:
    weight = rgb_kernel()

    by_position, _ = adapt_first_layer_weight(weight, None, ['other'], 1)
    named, _ = adapt_first_layer_weight(
        weight, IMAGENET_BANDS, ['other', 'R', 'G', 'B'], 4
    )
    positional, _ = adapt_first_layer_weight(weight, None, ['other', 'R', 'G', 'B'], 4)

    assert torch.equal(by_position[:, 0], weight.sum(1))
    assert torch.equal(named[:, 0], 0.75 * weight.mean(1))
    assert torch.equal(named[:, 1:], 0.75 * weight)
    assert torch.equal(positional, named)


@pytest.mark.parametrize('band', ['pan', 'red'])
def test_a_single_band_gets_the_sum_of_the_filters(band: str) -> None:
    weight = rgb_kernel()

    adapted, _ = adapt_first_layer_weight(weight, IMAGENET_BANDS, [band], 1)

    assert torch.equal(adapted, weight.sum(1, keepdim=True))


def test_missing_pretrained_bands_are_estimated_from_the_matched_ones() -> None:
    weight = torch.arange(1.0, 14.0).reshape(1, 13, 1, 1)
    sentinel2 = canonical_bands(OSCD_BANDS)

    adapted, mapping = adapt_first_layer_weight(
        weight, sentinel2, ['R', 'G', 'B', 'N'], 4
    )

    others = weight.sum() - weight[0, [3, 2, 1, 7]].sum()  # 9 missing bands
    expected = weight[0, [3, 2, 1, 7], 0, 0] + others / 4
    assert torch.equal(adapted.flatten(), expected)
    assert mapping[0].startswith('R (red) <- 1 x red + 1/4 x (coastal + rededge1')


def test_repeated_bands_share_their_filter() -> None:
    weight = rgb_kernel()

    adapted, _ = adapt_first_layer_weight(
        weight, IMAGENET_BANDS, ['R', 'G', 'B', 'R', 'G', 'B'], 6
    )

    assert torch.equal(adapted, torch.cat([weight, weight], 1) / 2)


def test_repeated_pretrained_bands_match_occurrence_by_occurrence() -> None:
    weight = torch.arange(1.0, 5.0).reshape(1, 4, 1, 1)  # two dates of R, G

    adapted, _ = adapt_first_layer_weight(
        weight, ['R', 'G', 'R', 'G'], ['G', 'R', 'G', 'R'], 4
    )

    assert adapted.flatten().tolist() == [2.0, 1.0, 4.0, 3.0]


def test_linear_weights_adapt_too() -> None:
    weight = rgb_kernel().reshape(2, 3)

    adapted, _ = adapt_first_layer_weight(weight, IMAGENET_BANDS, ['R', 'N'], 2)

    assert adapted.shape == (2, 2)
    torch.testing.assert_close(adapted.sum(1), weight.sum(1))


def test_dtype_and_device_are_kept() -> None:
    weight = rgb_kernel().half()

    adapted, _ = adapt_first_layer_weight(weight, IMAGENET_BANDS, None, 5)

    assert adapted.dtype == torch.float16
    assert adapted.device == weight.device


CASES = [
    (['R', 'G', 'B', 'N'], 4),
    (['pan'], 1),
    (['red'], 1),
    (['red', 'nir'], 2),
    (['B', 'G', 'R'], 3),
    (['R', 'G', 'B', 'R', 'G', 'B'], 6),
    (OSCD_BANDS, 13),
    (['vv', 'vh'], 2),
    (None, 2),
    (None, 7),
]


@pytest.mark.parametrize(('bands', 'in_channels'), CASES)
def test_constant_image_keeps_the_pretrained_response(
    bands: list[str] | None, in_channels: int
) -> None:
    weight = torch.randn(16, 3, 3, 3, dtype=torch.float64)
    adapted, _ = adapt_first_layer_weight(weight, IMAGENET_BANDS, bands, in_channels)

    value = 0.37
    pretrained = F.conv2d(torch.full((1, 3, 8, 8), value, dtype=torch.float64), weight)
    new = F.conv2d(
        torch.full((1, in_channels, 8, 8), value, dtype=torch.float64), adapted
    )

    torch.testing.assert_close(new, pretrained)


def test_rgbn_layer_is_the_pretrained_layer_on_estimated_rgb() -> None:
    weight = torch.randn(16, 3, 3, 3, dtype=torch.float64)
    adapted, _ = adapt_first_layer_weight(weight, IMAGENET_BANDS, list('RGBN'), 4)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    no_nir = x.clone()
    no_nir[:, 3] = 0

    estimate = 0.75 * x[:, :3] + 0.25 * x[:, 3:]

    torch.testing.assert_close(F.conv2d(x, adapted), F.conv2d(estimate, weight))
    torch.testing.assert_close(
        F.conv2d(no_nir, adapted), 0.75 * F.conv2d(x[:, :3], weight)
    )


# Errors of the rule


def test_band_names_must_fit_in_channels() -> None:
    with pytest.raises(ValueError, match=r"3 input band names \(\['R', 'G', 'B'\]"):
        adapt_first_layer_weight(rgb_kernel(), IMAGENET_BANDS, ['R', 'G', 'B'], 4)


def test_weight_without_band_axis_fails() -> None:
    with pytest.raises(ValueError, match=r'shape \(3,\) has no band axis'):
        adapt_first_layer_weight(torch.ones(3), IMAGENET_BANDS, None, 4)


def test_unknown_pretrained_names_are_never_matched() -> None:
    weight = rgb_kernel()

    adapted, _ = adapt_first_layer_weight(weight, ['R', 'NDVI', None], list('RG'), 2)

    # green has no pretrained band: it takes the 1/2 share of every filter
    assert torch.equal(adapted[:, 1], weight.sum(1) / 2)


# Backbones: timm models on weights pretrained on other bands


def family_state(name: str, kwargs: dict[str, Any], **extra: Any) -> dict:
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=0, **kwargs, **extra).state_dict()


@pytest.mark.parametrize(('name', 'kwargs', 'layer'), FAMILIES)
def test_backbones_on_imagenet_weights_see_the_estimated_rgb_image(
    monkeypatch: pytest.MonkeyPatch, name: str, kwargs: dict[str, Any], layer: str
) -> None:
    source = family_state(name, kwargs)
    serve_as_imagenet(monkeypatch, source)

    pretrained = TimmBackbone(name, weights=True, **kwargs).eval()
    adapted = TimmBackbone(
        name, weights=True, in_channels=4, bands=['N', 'B', 'G', 'R'], **kwargs
    ).eval()

    weight = source[f'{layer}.weight']
    first = adapted.model.state_dict()[f'{layer}.weight']
    torch.testing.assert_close(first[:, 0], 0.75 * weight.mean(1))
    torch.testing.assert_close(first[:, 1:], 0.75 * weight.flip(1))
    assert adapted.bands == ['N', 'B', 'G', 'R']
    torch.manual_seed(1)
    x = torch.randn(2, 4, 32, 32)
    rgb = 0.75 * x[:, [3, 2, 1]] + 0.25 * x[:, :1]  # each band's estimate
    with torch.no_grad():
        torch.testing.assert_close(
            adapted.forward_pooled(x), pretrained.forward_pooled(rgb)
        )
        constant = adapted.forward_pooled(torch.full((1, 4, 32, 32), 0.5))
        expected = pretrained.forward_pooled(torch.full((1, 3, 32, 32), 0.5))
    torch.testing.assert_close(constant, expected)


@pytest.mark.parametrize(('name', 'kwargs', 'layer'), FAMILIES)
def test_backbones_on_rgb_files_map_bands_by_position(
    tmp_path: Path, name: str, kwargs: dict[str, Any], layer: str
) -> None:
    source = family_state(name, kwargs)
    torch.save(source, tmp_path / 'rgb.pth')

    backbone = TimmBackbone(
        name, weights=tmp_path / 'rgb.pth', in_channels=5, bands=list('RGBNN'), **kwargs
    )

    weight = source[f'{layer}.weight']
    first = backbone.model.state_dict()[f'{layer}.weight']
    torch.testing.assert_close(first[:, :3], 0.6 * weight)
    torch.testing.assert_close(first[:, 3], 0.6 * weight.mean(1))
    torch.testing.assert_close(first[:, 4], 0.6 * weight.mean(1))
    loaded = backbone.model.state_dict()
    assert all(
        torch.equal(loaded[k], v) for k, v in source.items() if k != f'{layer}.weight'
    )


def test_single_band_backbone_on_rgb_file(tmp_path: Path) -> None:
    source = family_state('convnext_atto', {})
    torch.save(source, tmp_path / 'rgb.pth')

    backbone = TimmBackbone(
        'convnext_atto', weights=tmp_path / 'rgb.pth', in_channels=1
    )

    first = backbone.model.state_dict()['stem.0.weight']
    torch.testing.assert_close(first, source['stem.0.weight'].sum(1, keepdim=True))


def test_torchgeo_enum_with_other_bands_adapts_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = family_state('resnet18', {}, in_chans=13)
    serve_as_torchgeo(monkeypatch, source)

    backbone = TimmBackbone(
        'resnet18',
        weights='ResNet18_Weights.SENTINEL2_ALL_MOCO',
        in_channels=4,
        bands=['R', 'G', 'B', 'N'],
    )

    weight = source['conv1.weight']
    first = backbone.model.conv1.weight.detach()
    missing = weight.sum(1) - weight[:, [3, 2, 1, 7]].sum(1)
    expected = weight[:, [3, 2, 1, 7]] + missing.unsqueeze(1) / 4
    torch.testing.assert_close(first, expected)
    assert torch.equal(
        backbone.model.layer1[0].conv1.weight, source['layer1.0.conv1.weight']
    )


def test_torchgeo_rgb_enum_on_oscd_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    source = family_state('resnet18', {})
    serve_as_torchgeo(monkeypatch, source)

    backbone = TimmBackbone(
        'resnet18',
        weights=ResNet18_Weights.SENTINEL2_RGB_MOCO,
        in_channels=13,
        bands=OSCD_BANDS,
    )

    weight = source['conv1.weight']
    first = backbone.model.conv1.weight.detach()
    torch.testing.assert_close(first[:, [3, 2, 1]], 3 / 13 * weight)
    torch.testing.assert_close(first[:, 0], 3 / 13 * weight.mean(1))


def test_mapping_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serve_as_imagenet(monkeypatch, family_state('resnet18', {}))

    with caplog.at_level(logging.INFO, logger='geopeft'):
        TimmBackbone('resnet18', weights=True, in_channels=4, bands=list('RGBN'))

    assert "first layer 'conv1.weight' adapted" in caplog.text
    assert 'N (nir) <- 3/4 x mean of all 3 (no match)' in caplog.text


def test_unnamed_bands_on_named_weights_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    serve_as_imagenet(monkeypatch, family_state('resnet18', {}))

    with pytest.warns(UserWarning, match=r'matched by position.*Pass bands=\[\.\.\.\]'):
        TimmBackbone('resnet18', weights=True, in_channels=4)


def test_same_bands_load_unchanged_without_a_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = family_state('resnet18', {})
    serve_as_imagenet(monkeypatch, source)

    with caplog.at_level(logging.INFO, logger='geopeft'):
        backbone = TimmBackbone('resnet18', weights=True, bands=['B04', 'B03', 'B02'])

    assert torch.equal(backbone.model.conv1.weight, source['conv1.weight'])
    assert 'adapted' not in caplog.text


# Errors of the backbone


def test_bands_length_must_match_in_channels() -> None:
    with pytest.raises(
        ValueError,
        match=r"bands has 3 names \(\['R', 'G', 'B'\]\) but in_channels=4.*"
        r'set in_channels=3',
    ):
        TimmBackbone('resnet18', in_channels=4, bands=['R', 'G', 'B'])


def test_unknown_band_fails_before_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: WeightsEnum, *args: Any, **kwargs: Any) -> dict:
        raise AssertionError('downloaded weights for unknown bands')

    monkeypatch.setattr(WeightsEnum, 'get_state_dict', refuse)
    with pytest.raises(ValueError, match=r"Unknown band 'nri'\. Did you mean 'nir'"):
        TimmBackbone(
            'resnet18',
            weights=ResNet18_Weights.SENTINEL2_RGB_MOCO,
            in_channels=4,
            bands=['R', 'G', 'B', 'nri'],
        )


def test_bands_as_a_string_fail(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not the string 'RGBN'"):
        TimmBackbone('resnet18', in_channels=4, bands='RGBN')


def test_first_layer_that_reads_no_band_axis_fails(tmp_path: Path) -> None:
    state = family_state('resnet18', {})
    state['conv1.weight'] = torch.zeros(64)
    torch.save(state, tmp_path / 'odd.pth')
    model = timm.create_model('resnet18', num_classes=0)

    with pytest.raises(
        ValueError, match=r"first layer 'conv1.weight' of shape \(64,\).*cannot adapt"
    ):
        load_backbone_weights(
            model, tmp_path / 'odd.pth', name='resnet18', in_channels=3
        )


# Models and tasks pass the bands through


def test_classifier_and_task_take_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    serve_as_imagenet(monkeypatch, family_state('resnet18', {}))

    classifier = PEFTClassifier(
        'resnet18', num_classes=2, weights=True, in_channels=4, bands=list('RGBN')
    )
    task = PEFTClassification(
        model='resnet18', num_classes=2, in_channels=13, bands=OSCD_BANDS, peft='linear'
    )

    assert classifier.backbone.bands == ['R', 'G', 'B', 'N']
    assert task.hparams['bands'] == OSCD_BANDS
    assert task.model.backbone.bands == OSCD_BANDS
    assert task(torch.randn(2, 13, 32, 32)).shape == (2, 2)
