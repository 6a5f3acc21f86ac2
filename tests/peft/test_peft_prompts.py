import timm
import torch
import torch.nn.functional as F
from peft_helpers import make_backbone
from torch import nn

from geopeft.peft import CAPM, apply_peft
from geopeft.peft.capm import StagePrompt


def gated_prompt(channels: int, layout: str) -> StagePrompt:
    torch.manual_seed(0)
    prompt = StagePrompt(channels, 3, layout=layout)
    nn.init.normal_(prompt.gate_weight)
    nn.init.normal_(prompt.gate_bias)
    return prompt


def test_gate_formula() -> None:
    prompt = gated_prompt(6, 'NCHW')
    x = torch.randn(2, 6, 7, 5)
    resized = F.interpolate(prompt.prompt[None], size=(7, 5), mode='bilinear')
    gate = torch.sigmoid(prompt.gate_weight * x.mean((2, 3)) + prompt.gate_bias)
    assert torch.allclose(prompt(x), x + gate[:, :, None, None] * resized)


def test_initial_gate_is_one_half() -> None:
    prompt = StagePrompt(4, 2)
    x = torch.randn(1, 4, 2, 2)
    assert torch.allclose(prompt(x) - x, 0.5 * prompt.prompt[None], atol=1e-6)


def test_ungated_prompt_map() -> None:
    prompt = StagePrompt(4, 2, gated=False)
    x = torch.randn(1, 4, 2, 2)
    assert prompt.gate_weight is None
    assert torch.allclose(prompt(x) - x, prompt.prompt[None], atol=1e-6)


def test_token_layout_prompts_patch_tokens_only() -> None:
    prompt = gated_prompt(6, 'NLC')
    prompt.grid = (4, 3)
    tokens = torch.randn(2, 1 + 12, 6)
    out = prompt.apply_to_stage_output(nn.Identity(), (), tokens)
    assert torch.equal(out[:, :1], tokens[:, :1])
    patches = tokens[:, 1:].transpose(1, 2).reshape(2, 6, 4, 3)
    expected = prompt(patches).flatten(2).transpose(1, 2)
    assert torch.allclose(out[:, 1:], expected)


def test_channels_last_layout() -> None:
    prompt = gated_prompt(6, 'NHWC')
    x = torch.randn(2, 4, 5, 6)
    out = prompt.apply_to_stage_output(nn.Identity(), (), x)
    assert torch.allclose(out, prompt(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


def test_capm_on_vit_with_non_square_input() -> None:
    backbone = timm.create_model(
        'vit_tiny_patch16_224', num_classes=0, img_size=64, dynamic_img_size=True
    )
    apply_peft(backbone, 'upetu')
    assert isinstance(backbone.capm, CAPM)
    x = torch.randn(1, 3, 64, 48)
    maps = backbone.forward_intermediates(x, intermediates_only=True)
    assert all(m.shape == (1, 192, 4, 3) for m in maps)
    assert {p.grid for p in backbone.capm.stages.values()} == {(4, 3)}


def test_vpt_deep_prompts_every_block() -> None:
    backbone = apply_peft(
        make_backbone('vit_tiny_patch16_224'), {'method': 'prompt', 'prompt_tokens': 5}
    )
    seen = []
    for block in backbone.blocks:
        block.attn.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    tokens = backbone.forward_features(torch.randn(2, 3, 64, 64))
    patches = 16
    assert seen == [1 + 5 + patches] * len(backbone.blocks)
    assert tokens.shape == (2, 1 + patches, 192)
    assert not hasattr(backbone, 'prompt')


def test_prompt_maps_on_convolutional_pyramid() -> None:
    backbone = apply_peft(make_backbone('convnext_atto'), 'prompt')
    assert backbone.prompt.names == ['stages.0', 'stages.1', 'stages.2', 'stages.3']
    assert all(p.gate_weight is None for p in backbone.prompt.stages.values())
