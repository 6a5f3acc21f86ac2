"""The benchmark method table: rows, PEFT configs, selection and seeds."""

import pytest
import torch

from geopeft.benchmarks.methods import (
    METHODS,
    get_method,
    resolve_methods,
    resolve_seeds,
)
from geopeft.models import PEFTClassifier, build_change_model, dense_parameter_report

ROWS = [
    'full',
    'linear',
    'bitfit',
    'lora',
    'adapter',
    'eqam',
    'capm',
    'upetu-1bit',
    'upetu-2bit',
    'upetu-4bit',
    'upetu-8bit',
]


def test_rows_and_their_peft_configs() -> None:
    assert list(METHODS) == ROWS
    expected = {
        'full': ('full', 1),
        'linear': ('linear', 1),
        'bitfit': ('bitfit', 1),
        'lora': ('lora', 1),
        'adapter': ('adapter', 1),
        'eqam': ('eqam', 1),
        'capm': ('capm', 1),
        'upetu-1bit': ('upetu', 1),
        'upetu-2bit': ('upetu', 2),
        'upetu-4bit': ('upetu', 4),
        'upetu-8bit': ('upetu', 8),
    }
    for name, (method, bits) in expected.items():
        config = METHODS[name].peft
        assert (config.method, config.bits) == (method, bits)
    # UPetu's defaults besides the bit width: the paper's EQAM and CAPM sizes.
    upetu = METHODS['upetu-1bit'].peft
    assert upetu.hidden is None and upetu.prompt_size == 4
    # A fresh config every time: editing one does not change the table.
    METHODS['lora'].peft.lora_r = 99
    assert METHODS['lora'].peft.lora_r == 8


def test_alias_and_unknown_names() -> None:
    assert get_method('upetu') is METHODS['upetu-1bit']
    with pytest.raises(ValueError, match='Did you mean "bitfit"'):
        get_method('bitfti')
    with pytest.raises(ValueError, match='Known: full, linear'):
        get_method('nothing-like-it')


def test_resolve_methods() -> None:
    assert [row.name for row in resolve_methods('all')] == ROWS
    assert [row.name for row in resolve_methods(None)] == ROWS
    names = [row.name for row in resolve_methods(' lora, upetu ,full,lora')]
    assert names == ['lora', 'upetu-1bit', 'full']
    assert [row.name for row in resolve_methods(['capm'])] == ['capm']
    with pytest.raises(ValueError, match='no benchmark method'):
        resolve_methods(' , ')
    with pytest.raises(ValueError, match='Unknown benchmark method'):
        resolve_methods('full,lorra')


def test_resolve_seeds() -> None:
    assert resolve_seeds(3) == [3]
    assert resolve_seeds('0,1, 2,1') == [0, 1, 2]
    assert resolve_seeds([4, 5]) == [4, 5]
    with pytest.raises(ValueError, match='integers'):
        resolve_seeds('0,a')
    with pytest.raises(ValueError, match='at least one seed'):
        resolve_seeds([])


def _classifier_trainable(name: str) -> float:
    torch.manual_seed(0)
    model = PEFTClassifier('resnet10t', num_classes=5, peft=METHODS[name].peft)
    return model.parameter_report().trainable_percent


def _change_trainable(name: str) -> float:
    torch.manual_seed(0)
    model = build_change_model(
        'unet',
        'resnet10t',
        peft=METHODS[name].peft,
        decoder_kwargs={'decoder_channels': (16, 16, 8, 8, 8)},
    )
    return dense_parameter_report(model).trainable_percent


@pytest.mark.parametrize('count', [_classifier_trainable, _change_trainable])
def test_trainable_fractions_order_sensibly(count) -> None:
    share = {name: count(name) for name in ROWS}
    assert share['full'] == pytest.approx(100.0)
    assert share['linear'] < share['bitfit'] < share['full']
    assert share['linear'] < share['upetu-1bit'] < share['full']
    # UPetu is EQAM + CAPM: more than either part, less than the fp32 adapter.
    assert share['eqam'] < share['upetu-1bit'] and share['capm'] < share['upetu-1bit']
    assert share['upetu-1bit'] < share['adapter']
    # The bit width changes the storage, not the parameter count.
    assert share['upetu-1bit'] == share['upetu-8bit']
