import pytest
import torch
from ktda_helpers import TINY_STUDENT
from torch import nn

from geopeft.distill import (
    FCNHead,
    FeatureAlignment,
    FeatureModulation,
    KTDAModel,
    PyramidNeck,
    UPerHead,
    build_ktda_model,
    ktda_parameter_report,
)
from geopeft.distill.modulation import BottleneckMLP, TokenBlocks


@pytest.mark.parametrize(
    ('size', 'grid', 'levels'),
    [(256, 19, [76, 38, 19, 9]), (512, 37, [148, 74, 37, 18])],
)
def test_shapes_through_fam_neck_fmm(size: int, grid: int, levels: list[int]) -> None:
    # A ConvNeXt-B student's stage widths at strides 4..32 of a size x size crop.
    channels = [128, 256, 512, 1024]
    maps = [
        torch.randn(1, c, size // s, size // s)
        for c, s in zip(channels, [4, 8, 16, 32], strict=True)
    ]
    aligned = FeatureAlignment(channels, 768)(maps, (grid, grid))
    assert [tuple(a.shape) for a in aligned] == [(1, 768, grid, grid)] * 4
    dim = 16  # the neck and FMM keep any width; a small one keeps the test fast
    small = [a[:, :dim] for a in aligned]
    pyramid = PyramidNeck(dim)(small)
    assert [p.shape[-1] for p in pyramid] == levels
    assert [p.shape[-2] for p in pyramid] == levels
    for kind in ('vit', 'mlp', 'none'):
        out = FeatureModulation(dim, kind=kind, depth=1, heads=2)(pyramid)
        assert [o.shape for o in out] == [p.shape for p in pyramid]


def test_model_outputs_for_256_and_512_crops() -> None:
    model = build_ktda_model('resnet18', num_classes=5, **TINY_STUDENT).eval()
    for size, grid in [(256, 19), (512, 37)]:
        with torch.no_grad():
            out = model.forward_train(torch.randn(1, 3, size, size))
            logits = model(torch.randn(1, 3, size, size))
        assert out.logits.shape == logits.shape == (1, 5, size, size)
        assert out.aux_logits is not None
        assert out.aux_logits.shape == (1, 5, size, size)
        assert [tuple(a.shape) for a in out.aligned] == [(1, 32, grid, grid)] * 4


def test_reference_size_matches_the_paper() -> None:
    with torch.device('meta'):
        model = build_ktda_model(
            'convnext_base', num_classes=5, model_kwargs={'drop_path_rate': 0.4}
        )

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    # FMM: 16 ViT blocks of 768 (about 113 M); deployable student about 258 M.
    assert sum(isinstance(m, TokenBlocks) for m in model.fmm.levels) == 4
    assert all(len(m.blocks) == 4 for m in model.fmm.levels)
    assert count(model.fmm) == pytest.approx(113.4e6, rel=0.01)
    assert model.aux_head is not None
    deployable = count(model) - count(model.aux_head)
    assert deployable == pytest.approx(258.3e6, rel=0.01)
    assert model.backbone.out_channels == [128, 256, 512, 1024]
    assert all(p.requires_grad for p in model.parameters())


def test_parameter_report_groups() -> None:
    model = build_ktda_model('resnet18', num_classes=3, peft='upetu', **TINY_STUDENT)
    report = ktda_parameter_report(model)
    assert list(report.groups) == [
        'student',
        'fam',
        'neck',
        'fmm',
        'decode_head',
        'aux_head',
    ]
    assert report.total == sum(p.numel() for p in model.parameters())
    student = report.groups['student']
    assert 0 < student.trainable < student.total


def test_mlp_fmm_is_a_bottleneck_without_residual() -> None:
    fmm = FeatureModulation(768, kind='mlp', depth=1)
    mlp = fmm.levels[0]
    assert isinstance(mlp, BottleneckMLP)
    (only,) = mlp.mlps
    assert only.fc1.weight.shape == (192, 768)
    assert only.fc2.weight.shape == (768, 192)
    assert len(FeatureModulation(768, kind='mlp', depth=3).levels[0].mlps) == 3
    nn.init.zeros_(only.fc2.weight)
    nn.init.zeros_(only.fc2.bias)
    x = torch.randn(1, 768, 2, 2)
    assert torch.equal(mlp(x), torch.zeros_like(x))  # no residual


def test_fmm_depth_and_kinds() -> None:
    assert FeatureModulation(64, kind='vit', depth=0, heads=8).kind == 'none'
    vit = FeatureModulation(64, kind='vit', depth=3, heads=8)
    assert all(len(level.blocks) == 3 for level in vit.levels)
    # Separate weights per level.
    params = [id(p) for level in vit.levels for p in level.parameters()]
    assert len(params) == len(set(params))
    with pytest.raises(ValueError, match='does not divide'):
        FeatureModulation(60, heads=8)
    with pytest.raises(ValueError, match="'vit', 'mlp' or 'none'"):
        FeatureModulation(64, kind='conv')  # type: ignore[arg-type]


def test_heads() -> None:
    features = [torch.randn(2, 8, s, s) for s in (16, 8, 4, 2)]
    assert UPerHead([8] * 4, 3, channels=16)(features).shape == (2, 3, 16, 16)
    assert FCNHead(8, 3, channels=4)(features[2]).shape == (2, 3, 4, 4)


def test_peft_student_trains_only_its_adapters() -> None:
    model = build_ktda_model('resnet18', num_classes=3, peft='upetu', **TINY_STUDENT)
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert trainable
    assert all('eqam' in n or 'capm' in n for n in trainable)
    for part in (model.fam, model.neck, model.fmm, model.decode_head):
        assert all(p.requires_grad for p in part.parameters())
    out = model.forward_train(torch.randn(2, 3, 56, 56))
    assert out.aux_logits is not None
    loss = out.logits.mean() + out.aux_logits.mean()
    (loss + sum(a.mean() for a in out.aligned)).backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and p.grad is None
    ]
    assert missing == []


def test_student_levels_must_match_the_taps() -> None:
    options = dict(TINY_STUDENT, teacher_taps=[1, 2, 3, 4])
    with pytest.raises(ValueError, match='fewer than the teacher taps'):
        build_ktda_model('resnet18', num_classes=2, out_indices=[3, 4], **options)
    # ResNet gives 5 levels: the last 4 feed the 4 taps.
    model = build_ktda_model('resnet18', num_classes=2, **options)
    assert model.backbone.out_channels == [64, 128, 256, 512]
    # Fewer taps, fewer levels: the neck scales follow.
    two = build_ktda_model(
        'resnet18', num_classes=2, **dict(options, teacher_taps=[2, 4])
    )
    assert two.backbone.out_channels == [256, 512]
    assert two.neck.scales == (4.0, 2.0)
    assert two.aux_head is None


def test_mismatched_widths_are_clear() -> None:
    fam = FeatureAlignment([8, 16], 32)
    with pytest.raises(ValueError, match=r'maps of \[8, 8\] channels'):
        fam([torch.randn(1, 8, 4, 4)] * 2, (2, 2))
    with pytest.raises(ValueError, match="width must be the teacher's"):
        PyramidNeck(32)([torch.randn(1, 16, 4, 4)] * 4)
    with pytest.raises(ValueError, match='neck has 4 levels'):
        PyramidNeck(32)([torch.randn(1, 32, 4, 4)] * 3)
    backbone = build_ktda_model('resnet18', num_classes=2, **TINY_STUDENT).backbone
    with pytest.raises(ValueError, match='aux_level'):
        KTDAModel(backbone, 2, dim=32, aux_level=4)
