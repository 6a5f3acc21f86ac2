import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft_helpers import Classifier, images, make_backbone, train_steps
from safetensors import safe_open

from geopeft.peft import (
    METHODS,
    QLinear,
    adapter_nbytes,
    adapter_state_dict,
    apply_peft,
    load_adapter,
    save_adapter,
)


def build(family: str, peft: Any, *, seed: int, num_classes: int = 5) -> Classifier:
    """Same 'pretrained' backbone every time; PEFT modules and head from *seed*."""
    backbone = make_backbone(family)
    torch.manual_seed(seed)
    apply_peft(backbone, peft, name=family)
    return Classifier(backbone, num_classes).eval()


def trained(family: str, peft: Any, **kwargs: Any) -> Classifier:
    model = build(family, peft, seed=0, **kwargs)
    train_steps(model, images(), steps=1)
    return model


CASES = (
    [
        (family, method)
        for family in ('convnext_atto', 'resnet18', 'vit_tiny_patch16_224')
        for method in METHODS
    ]
    + [('convnext_atto', {'method': 'eqam', 'bits': bits}) for bits in (2, 4, 8, 32)]
    + [
        ('efficientnet_lite0', 'upetu'),
        ('swin_tiny_patch4_window7_224', 'upetu'),
        ('convnext_atto', {'method': 'upetu', 'learn_scale': True}),
    ]
)


@pytest.mark.parametrize(('family', 'peft'), CASES, ids=str)
def test_round_trip_is_bit_exact(family: str, peft: Any, tmp_path: Path) -> None:
    x = images()
    source = trained(family, peft)
    with torch.no_grad():
        expected = source(x)
    path = tmp_path / 'adapter.safetensors'
    written = save_adapter(source, path, metadata={'classes': 5})
    assert written == path.stat().st_size
    assert written == adapter_nbytes(source, metadata={'classes': 5})
    target = build(family, peft, seed=1)
    with torch.no_grad():
        assert not torch.equal(target(x), expected)  # loading has something to do
    metadata = load_adapter(target, path)
    with torch.no_grad():
        assert torch.equal(target(x), expected)
    assert metadata['classes'] == 5
    assert metadata['geopeft']['backbones']['backbone']['name'] == family
    # Re-saving a loaded model gives the same adapter.
    reloaded = adapter_state_dict(target)
    original = adapter_state_dict(source)
    assert reloaded.keys() == original.keys()
    assert all(torch.equal(reloaded[k], original[k]) for k in original)


def test_state_is_exactly_the_trainable_parameters() -> None:
    model = build('resnet18', 'upetu', seed=0)
    state = adapter_state_dict(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    qlinears = {n for n, m in model.named_modules() if isinstance(m, QLinear)}
    expected = (trainable - {f'{q}.weight' for q in qlinears}) | {
        f'{q}.{part}' for q in qlinears for part in ('codes', 'mean', 'std')
    }
    assert state.keys() == expected
    assert all(state[f'{q}.codes'].dtype == torch.uint8 for q in qlinears)
    down = model.get_submodule(next(iter(sorted(qlinears))))
    assert state[f'{sorted(qlinears)[0]}.codes'].numel() == down.weight.numel() // 8


def test_trained_batch_norm_keeps_its_statistics() -> None:
    model = build('resnet18', 'bitfit', seed=0)
    state = adapter_state_dict(model)
    assert 'backbone.bn1.running_mean' in state
    assert 'backbone.bn1.num_batches_tracked' in state
    assert 'backbone.conv1.weight' not in state


def test_metadata_records_qlinear_bits_and_fingerprint(tmp_path: Path) -> None:
    model = build('convnext_atto', {'method': 'eqam', 'bits': 2}, seed=0)
    path = tmp_path / 'a.safetensors'
    save_adapter(model, path, metadata={'backbone': 'convnext_atto'})
    with safe_open(path, framework='pt') as file:
        header = file.metadata()
    engine = json.loads(header['geopeft'])
    assert engine['format_version'] == 1
    assert len(engine['fingerprint']) == 64
    entry = engine['qlinear']['backbone.stages.0.blocks.0.eqam.down']
    assert entry == {'bits': 2, 'shape': [16, 40]}
    assert engine['backbones']['backbone']['peft']['bits'] == 2
    assert json.loads(header['user']) == {'backbone': 'convnext_atto'}
    assert [p.name for p in tmp_path.iterdir()] == ['a.safetensors']  # no temp left


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='nope.safetensors'):
        load_adapter(build('resnet18', 'eqam', seed=0), tmp_path / 'nope.safetensors')


def test_not_an_adapter_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / 'other.safetensors'
    save_file({'x': torch.zeros(1)}, path)
    with pytest.raises(ValueError, match='not a geopeft adapter'):
        load_adapter(build('resnet18', 'eqam', seed=0), path)


def test_other_backbone_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / 'a.safetensors'
    save_adapter(build('convnext_atto', 'upetu', seed=0), path)
    with pytest.raises(ValueError, match='fingerprint') as error:
        load_adapter(build('resnet18', 'upetu', seed=0), path)
    assert '"convnext_atto"' in str(error.value)
    assert '"resnet18"' in str(error.value)


def test_head_size_mismatch_names_num_classes(tmp_path: Path) -> None:
    path = tmp_path / 'a.safetensors'
    save_adapter(build('convnext_atto', 'eqam', seed=0, num_classes=10), path)
    target = build('convnext_atto', 'eqam', seed=0, num_classes=21)
    with pytest.raises(ValueError) as error:
        load_adapter(target, path)
    message = str(error.value)
    assert 'head.weight: file [10, 320] vs model [21, 320]' in message
    assert 'build the model with num_classes=10' in message


def test_other_peft_config_fails(tmp_path: Path) -> None:
    path = tmp_path / 'a.safetensors'
    save_adapter(build('convnext_atto', {'method': 'eqam', 'bits': 1}, seed=0), path)
    with pytest.raises(ValueError, match='file 1-bit vs model 4-bit'):
        load_adapter(
            build('convnext_atto', {'method': 'eqam', 'bits': 4}, seed=0), path
        )
    save_adapter(build('convnext_atto', 'linear', seed=0), path)
    with pytest.raises(ValueError, match='"linear".*"bitfit"'):
        load_adapter(build('convnext_atto', 'bitfit', seed=0), path)


def test_metadata_key_geopeft_is_reserved(tmp_path: Path) -> None:
    model = build('resnet18', 'linear', seed=0)
    with pytest.raises(ValueError, match='reserved'):
        save_adapter(model, tmp_path / 'a.safetensors', metadata={'geopeft': 1})


def test_frozen_head_is_not_saved() -> None:
    model = build('resnet18', 'linear', seed=0)
    model.head.requires_grad_(False)
    assert adapter_state_dict(model) == {}
