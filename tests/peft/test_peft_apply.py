import pytest
import torch
from peft_helpers import FAMILIES, Classifier, images, make_backbone, train_steps
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from geopeft.peft import METHODS, apply_peft
from geopeft.peft.apply import NORM_TYPES

# Output change allowed right after apply_peft (relative L2 of pooled features).
INIT_TOLERANCE = {'lora': 1e-6, 'eqam': 0.05, 'adapter': 0.05, 'upetu': 0.15}


def expected_trainable(backbone: nn.Module, method: str, family: str) -> set[str]:
    """The backbone parameters each method must train, stated independently."""
    names = {name for name, _ in backbone.named_parameters()}

    def owner(name: str) -> nn.Module:
        return backbone.get_submodule(name.rpartition('.')[0])

    if method == 'full':
        return names
    if method == 'bitfit':
        return {
            n for n in names if n.endswith('.bias') or isinstance(owner(n), NORM_TYPES)
        }
    if method == 'prompt' and family.startswith('vit'):
        return {n for n in names if '.prompt_tokens.' in n}
    parts = {
        'linear': (),
        'eqam': ('.eqam.',),
        'adapter': ('.adapter.',),
        'capm': ('capm.',),
        'upetu': ('.eqam.', 'capm.'),
        'lora': ('.lora_A.', '.lora_B.'),
        'prompt': ('prompt.',),
    }[method]
    return {n for n in names if any(n.startswith(p) or p in n for p in parts)}


def pooled(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return backbone.forward_head(backbone.forward_features(x), pre_logits=True)


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('method', METHODS)
def test_method_on_family(method: str, family: str) -> None:
    x = images()
    backbone = make_backbone(family)
    with torch.no_grad():
        reference = pooled(backbone, x)
        reference_maps = backbone.forward_intermediates(x, intermediates_only=True)
    torch.manual_seed(0)
    apply_peft(backbone, method, name=family)
    model = Classifier(backbone)

    # Only the intended parameters are trainable.
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == expected_trainable(backbone, method, family)
    assert trainable or method == 'linear'

    # Near-zero init reproduces the pretrained model; prompts stay finite.
    with torch.no_grad():
        adapted = pooled(backbone, x)
        maps = backbone.forward_intermediates(x, intermediates_only=True)
    assert torch.isfinite(adapted).all()
    if method in ('full', 'linear', 'bitfit'):
        assert torch.equal(adapted, reference)
    if method in INIT_TOLERANCE:
        change = (adapted - reference).norm() / reference.norm()
        assert change < INIT_TOLERANCE[method]
    assert [m.shape for m in maps] == [m.shape for m in reference_maps]

    # Training: gradients reach exactly the trainable parameters, the rest is
    # bit-identical afterwards. Two steps so zero-initialised LoRA B has moved.
    frozen = {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if not p.requires_grad
    }
    train_steps(model, x, steps=2)
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert parameter.grad is None, name
            assert torch.equal(parameter, frozen[name]), name
        else:
            assert parameter.grad is not None, name
            assert parameter.grad.abs().sum() > 0, name


def unknown_backbone() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    model.feature_info = [{'module': '1', 'num_chs': 8, 'reduction': 1}]
    return model


@pytest.mark.parametrize('method', ['eqam', 'upetu', 'adapter'])
def test_adapter_needs_known_blocks(method: str) -> None:
    with pytest.raises(ValueError) as error:
        apply_peft(unknown_backbone(), method, name='foo')
    message = str(error.value)
    for fact in (
        f'"{method}"',
        '"foo"',
        'MLP/pointwise path',
        'Conv2d',
        'ConvNeXtBlock',
    ):
        assert fact in message


def test_failed_apply_changes_nothing() -> None:
    model = unknown_backbone()
    with pytest.raises(ValueError):
        apply_peft(model, 'upetu', name='foo')
    assert all(p.requires_grad for p in model.parameters())
    assert not hasattr(model, 'geopeft_config')


def test_lora_needs_known_blocks_or_targets() -> None:
    with pytest.raises(ValueError, match=r'"lora".*"foo".*target_modules'):
        apply_peft(unknown_backbone(), 'lora', name='foo')
    model = apply_peft(unknown_backbone(), {'method': 'lora', 'target_modules': ['2']})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'2.lora_A.default.weight', '2.lora_B.default.weight'}


def test_lora_unmatched_target() -> None:
    config = {'method': 'lora', 'target_modules': ['qkv', 'nope']}
    with pytest.raises(ValueError, match=r"\['nope'\] match no module"):
        apply_peft(make_backbone('vit_tiny_patch16_224'), config, name='vit')


@pytest.mark.parametrize('method', ['capm', 'prompt'])
def test_stage_prompts_need_feature_info(method: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(ValueError, match=rf'"{method}".*"bar".*feature_info'):
        apply_peft(model, method, name='bar')


def test_apply_twice_fails() -> None:
    model = apply_peft(make_backbone('resnet18'), 'eqam', name='resnet18')
    with pytest.raises(ValueError, match='already applied.*"eqam"'):
        apply_peft(model, 'capm', name='resnet18')


def test_eqam_count_and_placement_records() -> None:
    backbone = apply_peft(make_backbone('convnext_atto'), 'eqam')
    eqam = sum(p.numel() for n, p in backbone.named_parameters() if '.eqam.' in n)
    # 2 * d * sum of block widths; convnext_atto: depths (2, 2, 6, 2), widths 40..320.
    assert eqam == 2 * 16 * (2 * 40 + 2 * 80 + 6 * 160 + 2 * 320)
    assert backbone.geopeft_config['method'] == 'eqam'


def test_capm_on_every_feature_module_including_resnet_stem() -> None:
    backbone = apply_peft(
        make_backbone('resnet18'), {'method': 'capm', 'prompt_size': 2}
    )
    channels = [entry['num_chs'] for entry in backbone.feature_info]
    assert backbone.capm.names == ['act1', 'layer1', 'layer2', 'layer3', 'layer4']
    count = sum(p.numel() for p in backbone.capm.parameters())
    assert count == sum(c * 2 * 2 + 2 * c for c in channels)


@pytest.mark.parametrize('conv_mlp', [True, False])
def test_eqam_in_convnext_block(conv_mlp: bool) -> None:
    torch.manual_seed(0)
    block = make_convnext_block(conv_mlp)
    x = torch.randn(2, 16, 5, 6)
    original = block(x)
    apply_peft(block.owner, {'method': 'eqam', 'scale': 0.5})
    adapter = block.eqam
    nn.init.normal_(adapter.up.weight)  # a visible adapter output
    z = block.norm(block.conv_dw(x)) if conv_mlp else None
    if z is None:
        z = block.norm(block.conv_dw(x).permute(0, 2, 3, 1))
    else:
        z = z.permute(0, 2, 3, 1)
    expected = original + (0.5 * adapter.up(adapter.act(adapter.down(z)))).permute(
        0, 3, 1, 2
    )
    assert torch.allclose(block(x), expected, atol=1e-6)


def make_convnext_block(conv_mlp: bool) -> nn.Module:
    from timm.models.convnext import ConvNeXtBlock

    block = ConvNeXtBlock(16, conv_mlp=conv_mlp, ls_init_value=0.5)
    block.owner = nn.Sequential(block)
    return block


def test_eqam_in_resnet_bottleneck() -> None:
    torch.manual_seed(0)
    backbone = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=0).eval()
    block = backbone.layer2[0]
    x = torch.randn(2, 256, 8, 8)
    apply_peft(backbone, 'eqam')
    adapter = block.eqam
    assert (adapter.down.in_features, adapter.up.out_features) == (128, 512)
    nn.init.normal_(adapter.up.weight)
    with torch.no_grad():
        z = block.act2(block.bn2(block.conv2(block.act1(block.bn1(block.conv1(x))))))
        branch = block.bn3.forward(block.conv3.forward(z))  # .forward: no hooks
        branch = branch + adapter(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        expected = block.act3(branch + block.downsample(x))
        assert torch.allclose(block(x), expected, atol=1e-5)
