import timm
import torch
from peft_helpers import Classifier, make_backbone
from torch import nn

from geopeft.peft import adapter_nbytes, apply_peft, parameter_report


def test_counts_per_group() -> None:
    backbone = apply_peft(make_backbone('convnext_atto'), 'upetu')
    head = nn.Linear(320, 7)
    report = parameter_report({'backbone': backbone, 'head': head}, adapter_bytes=123)
    peft = sum(
        p.numel()
        for n, p in backbone.named_parameters()
        if '.eqam.' in n or 'capm.' in n
    )
    pretrained = sum(p.numel() for p in make_backbone('convnext_atto').parameters())
    groups = report.groups
    assert groups['backbone'].peft == groups['backbone'].trainable == peft
    assert groups['backbone'].frozen == pretrained
    assert groups['head'].total == groups['head'].trainable == 320 * 7 + 7
    assert groups['head'].peft == 0
    assert report.total == pretrained + peft + 320 * 7 + 7
    assert report.trainable == peft + 320 * 7 + 7
    assert report.trainable_percent == 100 * report.trainable / report.total
    assert report.adapter_bytes == 123


def test_lora_parameters_count_as_peft() -> None:
    backbone = apply_peft(make_backbone('vit_tiny_patch16_224'), 'lora')
    report = parameter_report({'backbone': backbone})
    assert (
        report.groups['backbone'].peft
        == report.trainable
        == 12 * 8 * ((192 + 576) + (192 + 192) + (192 + 768) + (768 + 192))
    )


def test_shared_parameters_are_counted_once() -> None:
    layer = nn.Linear(4, 4)
    report = parameter_report({'a': layer, 'b': layer})
    assert report.total == 20
    assert report.groups['a'].total == report.groups['b'].total == 20


def test_to_dict_and_table() -> None:
    model = Classifier(apply_peft(make_backbone('resnet18'), 'bitfit'))
    report = parameter_report(
        {'backbone': model.backbone, 'head': model.head},
        adapter_bytes=adapter_nbytes(model),
    )
    data = report.to_dict()
    assert set(data) == {
        'total',
        'trainable',
        'trainable_percent',
        'adapter_bytes',
        'groups',
    }
    assert data['groups']['head'] == {
        'total': 2565,
        'trainable': 2565,
        'frozen': 0,
        'peft': 0,
    }
    table = report.format_table()
    lines = table.splitlines()
    assert lines[0].split()[:3] == ['part', 'total', 'trainable']
    assert lines[2].startswith('backbone') and lines[3].startswith('head')
    assert lines[4].startswith('all') and f'{report.total:,}' in lines[4]
    assert f'{report.trainable_percent:.3f}%' in lines[4]
    assert f'adapter file: {report.adapter_bytes:,} bytes' in table


def test_upetu_on_convnext_base_matches_the_paper_budget() -> None:
    torch.manual_seed(0)
    backbone = timm.create_model('convnext_base', pretrained=False, num_classes=0)
    apply_peft(backbone, 'upetu', name='convnext_base')
    model = Classifier(backbone, num_classes=21)
    nbytes = adapter_nbytes(model)
    report = parameter_report(
        {'backbone': model.backbone, 'head': model.head}, adapter_bytes=nbytes
    )
    eqam = sum(p.numel() for n, p in backbone.named_parameters() if '.eqam.' in n)
    capm = sum(p.numel() for p in backbone.capm.parameters())
    assert eqam == 2 * 16 * (3 * 128 + 3 * 256 + 27 * 512 + 3 * 1024) == 577_536
    assert capm == 16 * 1920 + 2 * 1920  # k = 4 prompts + gates
    assert abs(report.trainable_percent - 0.73) <= 0.05
    assert nbytes <= 512 * 1024
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 21)
