import socket
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F
from ktda_helpers import TINY_TAPS, TINY_TEACHER
from torch import Tensor
from torchvision.models._api import WeightsEnum

from geopeft.distill import DINOv2Teacher, teacher_grid, teacher_spec


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('a teacher test tried to use the network')

    monkeypatch.setattr(socket.socket, 'connect', refuse)


def tiny(**kwargs: Any) -> DINOv2Teacher:
    return DINOv2Teacher(
        'dinov2_vits14', taps=TINY_TAPS, model_kwargs=TINY_TEACHER, **kwargs
    )


@pytest.mark.parametrize(('size', 'grid'), [(256, 19), (512, 37), (266, 19)])
def test_grid_of_padded_inputs(size: int, grid: int) -> None:
    assert teacher_grid(size, size) == (grid, grid)
    out = tiny()(torch.randn(1, 3, size, size))
    assert [tuple(o.shape) for o in out] == [(1, 32, grid, grid)] * 4


def test_padding_is_zero_bottom_right() -> None:
    teacher = tiny()
    x = torch.randn(1, 3, 30, 40)
    padded = F.pad(x, (0, 2, 0, 12))  # to 42 x 42
    for a, b in zip(teacher(x), teacher(padded), strict=True):
        torch.testing.assert_close(a, b)


def test_norm_only_on_the_last_tap() -> None:
    teacher = tiny()
    x = torch.randn(2, 3, 28, 28)
    raw = teacher.model.forward_intermediates(
        x, indices=[0, 1, 2, 3], norm=False, intermediates_only=True
    )
    out = teacher(x)
    for a, b in zip(out[:-1], raw[:-1], strict=True):
        torch.testing.assert_close(a, b)
    normed = teacher.model.norm(raw[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out[-1], normed)
    assert not torch.allclose(out[-1], raw[-1])


def test_taps_are_one_based_and_blocks_after_the_last_are_dropped() -> None:
    teacher = DINOv2Teacher('dinov2_vits14', taps=[2, 3], model_kwargs=TINY_TEACHER)
    assert len(teacher.model.blocks) == 3
    assert len(teacher(torch.randn(1, 3, 28, 28))) == 2
    assert DINOv2Teacher('dinov2_vitb14', weights=None).taps == (3, 6, 9, 12)
    assert teacher_spec('dinov2_vitl14').taps == (8, 12, 16, 24)


def test_teacher_is_frozen_and_stays_in_eval() -> None:
    teacher = tiny()
    teacher.train()
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(1, 3, 28, 28, requires_grad=True)
    assert all(not o.requires_grad for o in teacher(x))


def test_position_embeddings_follow_the_grid() -> None:
    teacher = tiny()
    # Built for 518 px (37 x 37) but any grid works; a 19 x 19 grid differs from
    # a crop of the 37 x 37 embedding, so the embedding was resampled.
    assert teacher.model.pos_embed.shape[1] == 1 + 37 * 37
    assert teacher(torch.randn(1, 3, 256, 256))[0].shape[-2:] == (19, 19)


def save(state: dict[str, Tensor], path: Path) -> str:
    torch.save(state, path)
    return str(path)


def tiny_state(**kwargs: Any) -> dict[str, Tensor]:
    return timm.create_model(
        'vit_small_patch14_dinov2', num_classes=0, **TINY_TEACHER, **kwargs
    ).state_dict()


def test_loads_a_local_file_in_timm_or_dinov2_names(tmp_path: Path) -> None:
    state = tiny_state()
    original = dict(state)
    original['mask_token'] = torch.zeros(1, 32)  # DINOv2's own checkpoints have it
    for name, source in [('timm.pth', state), ('dinov2.pth', original)]:
        teacher = tiny(weights=save(source, tmp_path / name))
        loaded = teacher.model.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_checkpoint_of_another_size_is_refused(tmp_path: Path) -> None:
    path = save(tiny_state(), tmp_path / 'small.pth')
    with pytest.raises(ValueError, match='32-d, 4-block ViT') as info:
        DINOv2Teacher('dinov2_vitb14', weights=path)
    assert 'dinov2_vitb14' in str(info.value)


def test_checkpoint_of_another_size_names_the_teacher_that_fits(
    tmp_path: Path,
) -> None:
    state = timm.create_model('vit_small_patch14_dinov2', num_classes=0).state_dict()
    path = save(state, tmp_path / 'vits.pth')
    with pytest.raises(ValueError, match="teacher='dinov2_vits14' fits them"):
        DINOv2Teacher('dinov2_vitb14', weights=path)


def test_torchgeo_dinov2_enum_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    source = timm.create_model(
        'vit_small_patch14_dinov2', num_classes=0, in_chans=13
    ).state_dict()

    def get_state_dict(self: WeightsEnum, *args: Any, **kwargs: Any) -> dict:
        return source

    monkeypatch.setattr(WeightsEnum, 'get_state_dict', get_state_dict)
    teacher = DINOv2Teacher(
        'dinov2_vits14',
        weights='ViTSmall14_DINOv2_Weights.SENTINEL2_ALL_SOFTCON',
        in_channels=13,
    )
    loaded = teacher.model.state_dict()
    assert torch.equal(
        loaded['blocks.5.mlp.fc2.weight'], source['blocks.5.mlp.fc2.weight']
    )
    assert teacher(torch.randn(1, 13, 28, 28))[-1].shape == (1, 384, 2, 2)


def test_torchgeo_enum_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match='vit_base_patch14_dinov2'):
        DINOv2Teacher(
            'dinov2_vits14',
            weights='ViTBase14_DINOv2_Weights.SENTINEL2_ALL_SOFTCON',
            in_channels=13,
        )


def test_hub_weights_go_through_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    source = tiny_state()
    asked: list[str] = []

    def download(name: str) -> dict[str, Tensor]:
        asked.append(name)
        return source

    monkeypatch.setattr('geopeft.backbones.imagenet.download_timm_state_dict', download)
    teacher = tiny(weights=True)
    assert asked == ['vit_small_patch14_dinov2']
    assert torch.equal(teacher.model.cls_token, source['cls_token'])


def test_bad_settings_are_clear() -> None:
    with pytest.raises(ValueError, match="Did you mean 'dinov2_vitb14'"):
        DINOv2Teacher('dinov2_vitb16')
    with pytest.raises(ValueError, match='blocks 1..4'):
        DINOv2Teacher('dinov2_vits14', taps=[0, 4], model_kwargs=TINY_TEACHER)
    with pytest.raises(ValueError, match='must increase'):
        DINOv2Teacher('dinov2_vits14', taps=[3, 2], model_kwargs=TINY_TEACHER)
    with pytest.raises(ValueError, match='patch size 14 does not divide'):
        tiny(pad=False)(torch.randn(1, 3, 256, 256))
    assert tiny(pad=False)(torch.randn(1, 3, 28, 28))[0].shape[-1] == 2
