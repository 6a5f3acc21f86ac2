import socket
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import timm
import torch
from torch import Tensor
from torchgeo.models import ResNet18_Weights, ResNet50_Weights
from torchvision.models._api import WeightsEnum

from geopeft.backbones import TimmBackbone, load_backbone_weights, resolve_state_dict


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('a backbone test tried to use the network')

    monkeypatch.setattr(socket.socket, 'connect', refuse)


def timm_state(name: str, **kwargs: Any) -> dict[str, Tensor]:
    """A fresh timm model's state dict, classifier included (as checkpoints hold)."""
    return timm.create_model(name, **kwargs).state_dict()


def assert_loaded(backbone: TimmBackbone, source: dict[str, Tensor]) -> None:
    loaded = backbone.model.state_dict()
    shared = [k for k in source if k in loaded]
    assert len(shared) == len(loaded)
    assert all(torch.equal(loaded[k], source[k]) for k in shared)


# TorchGeo weights enums


@pytest.fixture
def torchgeo_resnet18(monkeypatch: pytest.MonkeyPatch) -> dict[str, Tensor]:
    """Serve a fresh timm resnet18 as every TorchGeo download."""
    source = timm_state('resnet18')

    def get_state_dict(self: WeightsEnum, *args: Any, **kwargs: Any) -> dict:
        return source

    monkeypatch.setattr(WeightsEnum, 'get_state_dict', get_state_dict)
    return source


@pytest.mark.parametrize(
    'weights',
    [ResNet18_Weights.SENTINEL2_RGB_MOCO, 'ResNet18_Weights.SENTINEL2_RGB_MOCO'],
)
def test_torchgeo_weights_load_as_enum_or_name(
    weights: WeightsEnum | str, torchgeo_resnet18: dict[str, Tensor]
) -> None:
    backbone = TimmBackbone('resnet18', weights=weights)
    assert_loaded(backbone, torchgeo_resnet18)


def test_torchgeo_weights_for_another_architecture_fail_before_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: WeightsEnum, *args: Any, **kwargs: Any) -> dict:
        raise AssertionError('downloaded weights that cannot fit')

    monkeypatch.setattr(WeightsEnum, 'get_state_dict', refuse)
    with pytest.raises(
        ValueError,
        match=r"weights for 'resnet50', not for backbone 'resnet18'.*name='resnet50'"
        r".*'ResNet18_Weights.SENTINEL2_RGB_MOCO'",
    ):
        TimmBackbone('resnet18', weights=ResNet50_Weights.SENTINEL2_RGB_MOCO)


def test_torchgeo_weights_with_other_bands_adapt_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = timm_state('resnet18', in_chans=13)
    monkeypatch.setattr(WeightsEnum, 'get_state_dict', lambda self, **kw: source)
    weight = source['conv1.weight']  # bands B1 ... B12 of Sentinel-2

    with pytest.warns(UserWarning, match='matched by position'):
        unnamed = TimmBackbone(
            'resnet18', weights='ResNet18_Weights.SENTINEL2_ALL_MOCO'
        )
    named = TimmBackbone(
        'resnet18',
        weights='ResNet18_Weights.SENTINEL2_ALL_MOCO',
        bands=['red', 'green', 'blue'],
    )

    # bands 0-2 take B1-B3 by position, or B4, B3, B2 by name; the 10 pretrained
    # bands without an input are shared among them
    for backbone, taken in [(unnamed, [0, 1, 2]), (named, [3, 2, 1])]:
        missing = weight.sum(1) - weight[:, taken].sum(1)
        torch.testing.assert_close(
            backbone.model.conv1.weight.detach(),
            weight[:, taken] + missing.unsqueeze(1) / 3,
        )
        rest = {k: v for k, v in source.items() if k.startswith('layer')}
        assert all(
            torch.equal(backbone.model.state_dict()[k], v) for k, v in rest.items()
        )


def test_multispectral_torchgeo_weights_load_with_matching_bands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = timm_state('resnet18', in_chans=13)
    monkeypatch.setattr(WeightsEnum, 'get_state_dict', lambda self, **kw: source)

    backbone = TimmBackbone(
        'resnet18', weights=ResNet18_Weights.SENTINEL2_ALL_MOCO, in_channels=13
    )

    assert_loaded(backbone, source)


def test_unknown_weights_name_suggests_torchgeo_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"neither 'imagenet'.*Did you mean 'ResNet18_Weights.SENTINEL2_RGB_MOCO'",
    ):
        TimmBackbone('resnet18', weights='ResNet18_Weights.SENTINEL2_RGB_MOKO')


def test_unsupported_weights_type_fails() -> None:
    with pytest.raises(TypeError, match='not float'):
        TimmBackbone('resnet18', weights=1.5)  # type: ignore[arg-type]


# Local files


def test_raw_state_dict_file_loads_and_ignores_the_classifier(tmp_path: Path) -> None:
    source = timm_state('resnet18')  # holds fc.weight / fc.bias
    torch.save(source, tmp_path / 'resnet18.pth')

    backbone = TimmBackbone('resnet18', weights=str(tmp_path / 'resnet18.pth'))

    assert_loaded(backbone, source)


def test_lightning_checkpoint_prefix_is_stripped(tmp_path: Path) -> None:
    source = timm_state('convnext_atto')
    checkpoint = {
        'epoch': 3,
        'state_dict': {f'model.backbone.model.{k}': v for k, v in source.items()},
        'optimizer_states': [],
    }
    checkpoint['state_dict']['model.decoder.weight'] = torch.zeros(2, 2)
    torch.save(checkpoint, tmp_path / 'last.ckpt')

    backbone = TimmBackbone('convnext_atto', weights=tmp_path / 'last.ckpt')

    assert_loaded(backbone, source)


@pytest.mark.parametrize('prefix', ['', 'backbone.', 'encoder.', 'model.', 'module.'])
def test_model_wrapper_and_prefixes_are_accepted(tmp_path: Path, prefix: str) -> None:
    source = timm_state('resnet18')
    wrapped = {'model': {f'{prefix}{k}': v for k, v in source.items()}}
    torch.save(wrapped, tmp_path / 'weights.pt')

    state = resolve_state_dict(tmp_path / 'weights.pt', name='resnet18')

    assert state is not None
    assert set(state) == set(source) - {'fc.weight', 'fc.bias'}


def test_safetensors_file_loads(tmp_path: Path) -> None:
    source = timm_state('convnext_atto')
    safetensors.torch.save_file(source, tmp_path / 'model.safetensors')

    backbone = TimmBackbone('convnext_atto', weights=tmp_path / 'model.safetensors')

    assert_loaded(backbone, source)


def test_vit_file_weights_are_resampled_to_img_size(tmp_path: Path) -> None:
    source = timm_state('vit_tiny_patch16_224')
    torch.save(
        {'state_dict': {f'model.{k}': v for k, v in source.items()}},
        tmp_path / 'a.ckpt',
    )

    backbone = TimmBackbone(
        'vit_tiny_patch16_224', weights=tmp_path / 'a.ckpt', img_size=64
    )

    loaded = backbone.model.state_dict()
    assert loaded['pos_embed'].shape == (1, 17, 192)
    assert torch.equal(
        loaded['blocks.0.attn.qkv.weight'], source['blocks.0.attn.qkv.weight']
    )


def test_random_init_resolves_to_nothing() -> None:
    assert resolve_state_dict(None, name='resnet18') is None
    assert resolve_state_dict(False, name='resnet18') is None


def test_load_backbone_weights_into_a_model_with_a_classifier(tmp_path: Path) -> None:
    source = timm_state('resnet18', num_classes=0)
    torch.save(source, tmp_path / 'headless.pth')
    model = timm.create_model('resnet18', num_classes=5)

    load_backbone_weights(
        model, tmp_path / 'headless.pth', name='resnet18', in_channels=3
    )

    assert torch.equal(model.conv1.weight, source['conv1.weight'])


# Errors


def test_missing_file_fails_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / 'nowhere.pth'
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere\.pth' does not exist"):
        TimmBackbone('resnet18', weights=str(path))


@pytest.mark.parametrize(
    'filename', ['broken.pth', 'broken.safetensors', 'broken.ckpt']
)
def test_corrupt_file_is_not_a_readable_checkpoint(
    tmp_path: Path, filename: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(b'this is not a checkpoint')
    with pytest.raises(
        ValueError, match=rf"'.*{filename}' is not a readable checkpoint"
    ):
        TimmBackbone('resnet18', weights=path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save(timm.create_model('resnet18'), tmp_path / 'module.pth')
    with pytest.raises(ValueError, match=r'not a readable checkpoint.*state_dict\(\)'):
        TimmBackbone('resnet18', weights=tmp_path / 'module.pth')


def test_file_without_tensors_fails(tmp_path: Path) -> None:
    torch.save({'epoch': 1}, tmp_path / 'empty.pth')
    with pytest.raises(ValueError, match='holds no tensors'):
        TimmBackbone('resnet18', weights=tmp_path / 'empty.pth')


def test_band_count_mismatch_adapts_the_first_layer(tmp_path: Path) -> None:
    source = timm_state('resnet18')
    torch.save(source, tmp_path / 'rgb.pth')

    backbone = TimmBackbone('resnet18', weights=tmp_path / 'rgb.pth', in_channels=4)

    # a file has no band names: the first 3 bands take its filters by position,
    # the 4th their mean, all scaled by 3/4
    weight = source['conv1.weight']
    first = backbone.model.conv1.weight.detach()
    assert torch.equal(first[:, :3], 0.75 * weight)
    torch.testing.assert_close(first[:, 3], 0.75 * weight.mean(1))
    loaded = backbone.model.state_dict()
    assert all(
        torch.equal(loaded[k], v)
        for k, v in source.items()
        if k in loaded and k != 'conv1.weight'
    )


def test_mismatched_keys_are_counted_and_listed(tmp_path: Path) -> None:
    state = {
        k: v for k, v in timm_state('resnet18').items() if not k.startswith('layer4.')
    }
    state['extra.weight'] = torch.zeros(1)
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(
        ValueError,
        match=r"do not match backbone 'resnet18': \d+ missing keys \(first: "
        r"'layer4\.0\.conv1\.weight'.*1 unexpected keys \(first: 'extra\.weight'\)",
    ):
        TimmBackbone('resnet18', weights=tmp_path / 'partial.pth')


def test_other_architecture_file_reports_shapes(tmp_path: Path) -> None:
    state = timm_state('resnet18')
    state['layer1.0.conv1.weight'] = torch.zeros(32, 64, 3, 3)
    torch.save(state, tmp_path / 'narrow.pth')
    with pytest.raises(
        ValueError, match=r"1 tensors with another shape.*'layer1\.0\.conv1\.weight'"
    ):
        TimmBackbone('resnet18', weights=tmp_path / 'narrow.pth')
