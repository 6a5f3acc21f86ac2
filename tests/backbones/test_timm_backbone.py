import socket
from typing import Any

import pytest
import torch

from geopeft.backbones import TimmBackbone, build_backbone, list_backbones


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('a backbone test tried to use the network')

    monkeypatch.setattr(socket.socket, 'connect', refuse)


FAMILIES = [
    ('convnext_atto', {}),
    ('resnet18', {}),
    ('efficientnet_lite0', {}),
    ('vit_tiny_patch16_224', {'img_size': 64}),
    ('swin_tiny_patch4_window7_224', {'img_size': 64}),
]


@pytest.mark.parametrize(('name', 'kwargs'), FAMILIES)
def test_feature_maps_match_declared_channels_and_strides(
    name: str, kwargs: dict[str, Any]
) -> None:
    backbone = TimmBackbone(name, in_channels=4, **kwargs).eval()
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        maps = backbone(x)
        pooled = backbone.forward_pooled(x)
    assert len(maps) == len(backbone.out_channels) == len(backbone.reductions)
    for feature, channels, reduction in zip(
        maps, backbone.out_channels, backbone.reductions, strict=True
    ):
        assert feature.shape == (2, channels, 64 // reduction, 64 // reduction)
    assert pooled.shape == (2, backbone.num_features)
    assert backbone.model.num_classes == 0
    assert backbone.in_channels == 4
    assert backbone.name == name


def test_hierarchical_models_return_every_stage() -> None:
    backbone = TimmBackbone('convnext_atto')
    assert backbone.out_indices == [0, 1, 2, 3]
    assert backbone.out_channels == [40, 80, 160, 320]
    assert backbone.reductions == [4, 8, 16, 32]


def test_plain_vit_returns_four_evenly_spaced_blocks() -> None:
    backbone = TimmBackbone('vit_tiny_patch16_224', img_size=64)
    assert backbone.out_indices == [2, 5, 8, 11]
    assert backbone.reductions == [16, 16, 16, 16]


def test_out_indices_select_levels_and_accept_negative_indices() -> None:
    backbone = TimmBackbone('convnext_atto', out_indices=[1, -1])
    assert backbone.out_indices == [1, 3]
    assert backbone.out_channels == [80, 320]
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [80, 320]


def test_out_indices_out_of_range_fails() -> None:
    with pytest.raises(ValueError, match=r'4 is out of range.*has 4 feature levels'):
        TimmBackbone('convnext_atto', out_indices=[0, 4])


def test_out_indices_must_increase() -> None:
    with pytest.raises(ValueError, match='increasing, distinct'):
        TimmBackbone('convnext_atto', out_indices=[2, 1])


def test_forward_pooled_keeps_the_pre_logits_layers() -> None:
    backbone = TimmBackbone('efficientnet_lite0').eval()
    pooled = backbone.forward_pooled(torch.randn(1, 3, 64, 64))
    assert pooled.shape == (1, 1280)  # after conv_head, as the classifier sees it


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown backbone 'convnext_atoo'.*'convnext_atto'"
    ):
        TimmBackbone('convnext_atoo')


def test_img_size_on_a_model_without_it_fails_clearly() -> None:
    with pytest.raises(ValueError, match="'resnet18' takes no img_size"):
        TimmBackbone('resnet18', img_size=64)


def test_in_channels_must_be_positive() -> None:
    with pytest.raises(ValueError, match='in_channels must be >= 1'):
        TimmBackbone('resnet18', in_channels=0)


def test_build_backbone_passes_options_through() -> None:
    backbone = build_backbone('convnext_atto', in_channels=2, out_indices=[-1])
    assert isinstance(backbone, TimmBackbone)
    assert backbone.in_channels == 2
    assert backbone.out_channels == [320]


def test_list_backbones_filters_timm_names() -> None:
    names = list_backbones('convnext_at*')
    assert 'convnext_atto' in names
    assert all(n.startswith('convnext_at') for n in names)
    assert 'efficientnet_lite0' in list_backbones()


def test_reentrant_checkpointing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.layers

    monkeypatch.setattr(timm.layers, 'use_reentrant_ckpt', lambda: True)
    with pytest.raises(ValueError, match='TIMM_REENTRANT_CKPT'):
        TimmBackbone('resnet10t', grad_checkpointing=True)
