"""Adapter files: other frozen weights, corrupt and truncated files."""

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from geopeft.peft import apply_peft, load_adapter, save_adapter
from geopeft.peft.state import weights_fingerprint


class Classifier(nn.Module):
    def __init__(self, pretrained_seed: int, peft: str = 'upetu') -> None:
        super().__init__()
        torch.manual_seed(pretrained_seed)  # stands for a set of pretrained weights
        self.backbone = timm.create_model('resnet18', num_classes=0).eval()
        torch.manual_seed(100)
        apply_peft(self.backbone, peft, name='resnet18')
        self.head = nn.Linear(self.backbone.num_features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _trained(path: Path) -> Classifier:
    model = Classifier(pretrained_seed=0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01 * torch.randn_like(parameter))
    save_adapter(model, path)
    return model


def test_an_adapter_refuses_other_frozen_weights_naming_both(tmp_path: Path) -> None:
    path = tmp_path / 'adapter.safetensors'
    source = _trained(path)
    x = torch.rand(2, 3, 32, 32)
    other = Classifier(pretrained_seed=1)
    with pytest.raises(ValueError, match='other frozen weights') as info:
        load_adapter(other, path)
    message = str(info.value)
    assert weights_fingerprint(source) in message
    assert weights_fingerprint(other) in message
    assert 'other_weights=True' in message
    load_adapter(other, path, other_weights=True)  # the explicit override
    same = Classifier(pretrained_seed=0)
    load_adapter(same, path)
    with torch.no_grad():
        assert torch.equal(same.eval()(x), source.eval()(x))


def test_the_weights_fingerprint_ignores_dtype_and_the_adapter() -> None:
    model = Classifier(pretrained_seed=0)
    before = weights_fingerprint(model)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:  # adapters and head: not frozen weights
                parameter.add_(1.0)
    assert weights_fingerprint(model) == before
    assert weights_fingerprint(model.to(torch.bfloat16)) == before
    assert weights_fingerprint(Classifier(pretrained_seed=1)) != before


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'empty'])
def test_a_corrupt_adapter_file_is_named(tmp_path: Path, damage: str) -> None:
    path = tmp_path / 'adapter.safetensors'
    _trained(path)
    data = path.read_bytes()
    path.write_bytes(
        {'truncate': data[: len(data) // 2], 'garbage': b'\x00not a file' * 50,
         'empty': b''}[damage]
    )  # fmt: skip
    with pytest.raises(ValueError, match=rf'{path.name} is not a readable adapter'):
        load_adapter(Classifier(pretrained_seed=0), path)
