import pytest

from geopeft.peft import METHODS, PEFTConfig


def test_none_is_upetu_1_bit() -> None:
    config = PEFTConfig.from_any(None)
    assert (config.method, config.bits) == ('upetu', 1)


def test_method_name() -> None:
    assert PEFTConfig.from_any('lora').method == 'lora'


def test_mapping_round_trip() -> None:
    config = PEFTConfig.from_any({'method': 'eqam', 'bits': 4, 'hidden': 8})
    assert config.bits == 4 and config.hidden == 8
    assert PEFTConfig.from_any(config.to_dict()) == config
    lora = PEFTConfig.from_any({'method': 'lora', 'target_modules': ('fc1',)})
    assert lora.target_modules == ['fc1']
    assert PEFTConfig.from_any(lora.to_dict()) == lora


@pytest.mark.parametrize(
    ('options', 'message'),
    [
        ({'method': 'bitfit', 'lora_r': 4}, 'has no option lora_r.*belongs to lora'),
        (
            {'method': 'lora', 'bits': 8},
            'its options: lora_r, .*belongs to eqam, upetu',
        ),
        ({'method': 'full', 'hidden': 8}, 'its options: none'),
        ({'method': 'eqam', 'target_modules': ['fc1']}, 'no option target_modules'),
    ],
)
def test_options_of_another_method_are_refused(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PEFTConfig.from_any(options)


def test_config_instance_passes_through() -> None:
    config = PEFTConfig(method='capm', prompt_size=2)
    assert PEFTConfig.from_any(config) is config


def test_every_method_is_valid() -> None:
    assert {PEFTConfig.from_any(m).method for m in METHODS} == set(METHODS)


def test_unknown_method_lists_methods_and_suggests() -> None:
    with pytest.raises(ValueError, match='eqm') as error:
        PEFTConfig.from_any('eqm')
    message = str(error.value)
    assert 'Did you mean "eqam"' in message
    assert all(method in message for method in METHODS)


@pytest.mark.parametrize('bits', [0, 3, 16])
def test_invalid_bits(bits: int) -> None:
    with pytest.raises(
        ValueError, match=r'bits must be one of 1, 2, 4, 8, 32'
    ) as error:
        PEFTConfig.from_any({'bits': bits})
    assert f'got {bits}' in str(error.value)


def test_unknown_option_names_key_and_valid_ones() -> None:
    with pytest.raises(ValueError, match='"bit"') as error:
        PEFTConfig.from_any({'method': 'eqam', 'bit': 2})
    assert 'Did you mean "bits"' in str(error.value)
    assert 'prompt_size' in str(error.value)


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError, match='hidden must be >= 1'):
        PEFTConfig(hidden=0)
    with pytest.raises(ValueError, match='lora_dropout'):
        PEFTConfig(lora_dropout=1.0)


def test_wrong_type() -> None:
    with pytest.raises(TypeError, match='int'):
        PEFTConfig.from_any(3)  # type: ignore[arg-type]
