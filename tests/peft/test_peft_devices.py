import copy
from pathlib import Path

import pytest
import torch
from peft_helpers import Classifier, images, make_backbone, train_steps

from geopeft.peft import apply_peft, load_adapter, save_adapter

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('method', ['upetu', 'adapter', 'lora', 'prompt'])
@pytest.mark.parametrize('family', ['convnext_atto', 'vit_tiny_patch16_224'])
def test_peft_modules_follow_the_backbone(
    device: str, method: str, family: str, tmp_path: Path
) -> None:
    # Applied to a backbone already on the device (and in float64): every new
    # module and buffer must land on the backbone's device and dtype.
    def build(seed: int) -> Classifier:
        backbone = make_backbone(family).to(device, torch.float64)
        torch.manual_seed(seed)
        apply_peft(backbone, method, name=family)
        return Classifier(backbone).to(device, torch.float64).eval()

    x = images().to(device, torch.float64)
    model = build(0)
    for tensor in [*model.parameters(), *model.buffers()]:
        assert tensor.device.type == device
        assert tensor.dtype == torch.float64 or not tensor.is_floating_point()
    train_steps(model, x, steps=1)
    with torch.no_grad():
        expected = model(x)
    save_adapter(model, tmp_path / 'a.safetensors')
    loaded = build(1)
    load_adapter(loaded, tmp_path / 'a.safetensors')
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_moving_an_adapted_model_moves_its_buffers() -> None:
    model = Classifier(apply_peft(make_backbone('resnet18'), 'upetu'))
    x = images()
    with torch.no_grad():
        expected = model.eval()(x)
        assert torch.allclose(model.cuda()(x.cuda()).cpu(), expected, atol=1e-4)


def test_deepcopy_gets_its_own_adapters() -> None:
    # Per-date adapters of a Siamese encoder copy an adapted backbone: the copy's
    # hooks must drive the copy's modules.
    x = images()
    model = Classifier(apply_peft(make_backbone('convnext_atto'), 'upetu')).eval()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        before = model(x)
        assert torch.equal(twin(x), before)
        twin.backbone.stages[0].blocks[0].eqam.up.weight.mul_(1000)
        twin.backbone.capm.stages['stages_3'].prompt.mul_(100)
        assert not torch.equal(twin(x), before)
        assert torch.equal(model(x), before)
