"""Every (architecture x backbone family [x fusion]) builds and trains one step."""

import pytest
import torch
from dense_helpers import (
    ARCHS,
    CANNOT_DILATE,
    FAMILIES,
    model_options,
    peft_names,
    train_step,
)
from torch import nn

from geopeft.models import (
    FUSIONS,
    build_change_model,
    build_segmentation_model,
    dense_parameter_report,
)
from geopeft.peft import METHODS


def check_training_step(model: nn.Module, x: torch.Tensor) -> None:
    """Gradients reach exactly the trainable parameters; frozen ones stay put."""
    backbone_names = {n for n, _ in model.named_parameters() if '.backbone.model.' in n}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # UPetu: in the backbone only EQAM and CAPM train; decoder and head all train.
    assert trainable & backbone_names == peft_names(model)
    assert trainable - backbone_names == {
        n for n, _ in model.named_parameters() if n not in backbone_names
    }
    frozen = {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if not p.requires_grad
    }
    target = torch.zeros(x.shape[0], 1, *x.shape[-2:])
    target[..., 16:48, 16:48] = 1
    train_step(model, x, target)
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f'{name} got no gradient'
        else:
            assert parameter.grad is None, f'frozen {name} got a gradient'
            assert torch.equal(parameter, frozen[name]), f'frozen {name} changed'


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('arch', ARCHS)
def test_segmentation_model(arch: str, family: str) -> None:
    torch.manual_seed(0)
    options = model_options(family, arch)
    if arch == 'deeplabv3+' and family in CANNOT_DILATE:
        with pytest.raises(ValueError, match='takes no output_stride'):
            build_segmentation_model(arch, num_classes=3, **options)
        return
    model = build_segmentation_model(arch, num_classes=3, peft='upetu', **options)
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 3, 64, 64)
    check_training_step(model, x)


@pytest.mark.parametrize('fusion', FUSIONS)
@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('arch', ARCHS)
def test_change_model(arch: str, family: str, fusion: str) -> None:
    torch.manual_seed(0)
    options = model_options(family, arch)
    if arch == 'deeplabv3+' and family in CANNOT_DILATE:
        with pytest.raises(ValueError, match='takes no output_stride'):
            build_change_model(arch, fusion=fusion, **options)
        return
    model = build_change_model(arch, fusion=fusion, peft='upetu', **options)
    x = torch.randn(2, 2, 3, 64, 64)
    assert model(x).shape == (2, 1, 64, 64)
    check_training_step(model, x)


@pytest.mark.parametrize('family', FAMILIES)
def test_encoder_gives_smp_strides(family: str) -> None:
    model = build_segmentation_model(
        'upernet', num_classes=2, **model_options(family, 'upernet')
    )
    x = torch.randn(1, 3, 64, 64)
    features = model.encoder(x)
    assert features[0] is x
    assert [f.shape[-1] for f in features] == [64, 32, 16, 8, 4, 2]
    assert [f.shape[1] for f in features] == model.encoder.out_channels
    # Pyramids that start at stride 4 get an empty stride-2 map, as in SMP.
    if family in ('convnext', 'swin', 'vit'):
        assert features[1].shape[1] == 0
    assert (model.encoder.neck is not None) == (family == 'vit')


def test_dilated_encoder_for_deeplab() -> None:
    model = build_segmentation_model(
        'deeplabv3+', num_classes=2, **model_options('convnext', 'deeplabv3+')
    )
    features = model.encoder(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in features[-2:]] == [4, 4]
    assert model.encoder.output_stride == 16


def test_pspnet_uses_depth_3() -> None:
    model = build_segmentation_model('pspnet', 'resnet10t', num_classes=2)
    assert len(model.encoder.out_channels) == 4
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


@pytest.mark.parametrize(
    ('arch', 'match'),
    [
        ('upernett', 'Did you mean "upernet"'),
        ('dpt', 'DPT reads the tokens'),
        ('fcn', 'no encoder'),
    ],
)
def test_unknown_or_unsupported_architecture(arch: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_segmentation_model(arch, 'resnet10t', num_classes=2)


@pytest.mark.parametrize('family', ['convnext', 'vit'])
def test_decoder_that_needs_stride_2(family: str) -> None:
    with pytest.raises(ValueError, match='no map at stride 2|none at stride 2'):
        build_segmentation_model('unet++', num_classes=2, **{**FAMILIES[family]})


def test_decoder_kwargs_cannot_set_the_encoder() -> None:
    with pytest.raises(ValueError, match='encoder_name'):
        build_segmentation_model(
            'unet',
            'resnet10t',
            num_classes=2,
            decoder_kwargs={'encoder_name': 'resnet34'},
        )


def test_parameter_report_splits_parts() -> None:
    model = build_segmentation_model(
        'upernet', num_classes=5, **model_options('vit', 'upernet')
    )
    report = dense_parameter_report(model)
    assert list(report.groups) == ['backbone', 'neck', 'decoder', 'head']
    backbone = report.groups['backbone']
    assert backbone.trainable == backbone.peft == len_params(model, peft=True)
    assert report.groups['neck'].trainable == report.groups['neck'].total
    assert report.total == sum(p.numel() for p in model.parameters())
    assert report.adapter_bytes is not None and report.adapter_bytes > 0


def len_params(model: nn.Module, *, peft: bool) -> int:
    names = peft_names(model)
    return sum(p.numel() for n, p in model.named_parameters() if (n in names) == peft)


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize(
    ('family', 'arch'),
    [('convnext', 'upernet'), ('resnet', 'deeplabv3+'), ('vit', 'pspnet')],
)
def test_every_peft_method_trains_every_trainable_parameter(
    method: str, family: str, arch: str
) -> None:
    # No trainable parameter may sit outside the forward pass (DDP would stall),
    # also where the decoder reads only some levels (DeepLabV3+, PSPNet).
    torch.manual_seed(0)
    options = {**FAMILIES[family], 'decoder_kwargs': ARCHS.get(arch)}
    model = build_segmentation_model(arch, num_classes=2, peft=method, **options)
    x = torch.randn(2, 3, 64, 64)
    target = torch.zeros(2, 1, 64, 64)
    train_step(model, x, target)
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == parameter.requires_grad, name
    backbone = model.encoder.backbone.model
    trains_backbone = any(p.requires_grad for p in backbone.parameters())
    assert trains_backbone == (method != 'linear')
