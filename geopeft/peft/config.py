"""The PEFT configuration: one method name plus its options."""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..suggest import did_you_mean

#: Every PEFT method :func:`~geopeft.peft.apply_peft` knows, with the options it
#: reads; a method's other options must keep their defaults.
METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    'full': (),
    'linear': ('adapt_batchnorm',),
    'bitfit': ('adapt_batchnorm',),
    'adapter': ('hidden', 'scale', 'learn_scale', 'adapt_batchnorm'),
    'lora': (
        'lora_r', 'lora_alpha', 'lora_dropout', 'target_modules', 'adapt_batchnorm',
    ),
    'prompt': ('prompt_size', 'prompt_tokens', 'adapt_batchnorm'),
    'eqam': ('bits', 'hidden', 'scale', 'learn_scale', 'adapt_batchnorm'),
    'capm': ('prompt_size', 'adapt_batchnorm'),
    'upetu': (
        'bits', 'hidden', 'scale', 'learn_scale', 'prompt_size', 'adapt_batchnorm',
    ),
}  # fmt: skip
#: Every PEFT method's name, in the table's order.
METHODS = tuple(METHOD_FIELDS)

#: Allowed Q-Linear bit widths; 32 is an ordinary full-precision linear layer.
BITS = (1, 2, 4, 8, 32)


@dataclass
class PEFTConfig:
    """How to adapt a backbone: a method and its options.

    The same fields work from Python and from YAML (a mapping of these fields).

    A method reads only its own options (:data:`METHOD_FIELDS`); setting another
    method's option (``lora_r`` for ``bitfit``) is an error, not ignored.

    Attributes:
        method: One of :data:`METHODS`.
        bits: Q-Linear bit width of EQAM (``eqam``, ``upetu``), one of
            ``1, 2, 4, 8, 32``; 32 is an ordinary full-precision linear layer.
        hidden: Adapter bottleneck width; ``None`` is the method default (EQAM 16,
            fp32 ``adapter`` 64).
        scale: Adapter output scale *s*; ``None`` is the method default (EQAM 1.0,
            ``adapter`` 0.1).
        learn_scale: Learn *s* as one scalar per adapter (initialised to *scale*).
        prompt_size: Side *k* of the ``C x k x k`` prompts of CAPM and of the
            convolutional ``prompt`` baseline.
        prompt_tokens: Prompt tokens per block for the ``prompt`` method on ViT
            backbones (VPT-deep).
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (the update is scaled by
            ``lora_alpha / lora_r``).
        lora_dropout: Dropout on the LoRA input.
        target_modules: LoRA target module names (HF ``peft`` matching: a full name
            or a name suffix); ``None`` targets every ``nn.Linear`` and 1x1
            ``nn.Conv2d`` inside the backbone's blocks.
        adapt_batchnorm: Let the frozen batch norms of the backbone update their
            running statistics on the training data (their affine parameters stay
            frozen), as TorchGeo's ``freeze_backbone`` does; the statistics are then
            part of the adapter file. False keeps the pretrained statistics.
    """

    method: str = 'upetu'
    bits: int = 1
    hidden: int | None = None
    scale: float | None = None
    learn_scale: bool = False
    prompt_size: int = 4
    prompt_tokens: int = 8
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] | None = None
    adapt_batchnorm: bool = False

    def __post_init__(self) -> None:
        """Validate the fields.

        Raises:
            ValueError: If the method, the bit width or a size is invalid.
        """
        if self.method not in METHODS:
            msg = (
                f'Unknown PEFT method "{self.method}".'
                f'{did_you_mean(self.method, METHODS)} '
                f'Valid methods: {", ".join(METHODS)}.'
            )
            raise ValueError(msg)
        self._check_fields_of_method()
        if self.bits not in BITS:
            msg = (
                f'bits must be one of {", ".join(map(str, BITS))} (32 = full-precision '
                f'linear), got {self.bits}.'
            )
            raise ValueError(msg)
        for field in ('hidden', 'prompt_size', 'prompt_tokens', 'lora_r'):
            value = getattr(self, field)
            if value is not None and value < 1:
                msg = f'{field} must be >= 1, got {value}.'
                raise ValueError(msg)
        if not 0.0 <= self.lora_dropout < 1.0:
            msg = f'lora_dropout must be in [0, 1), got {self.lora_dropout}.'
            raise ValueError(msg)

    def _check_fields_of_method(self) -> None:
        """Refuse options the method does not read (instead of ignoring them).

        Raises:
            ValueError: Naming the option, the method's own options and the
                methods that have the option.
        """
        own = METHOD_FIELDS[self.method]
        for field in dataclasses.fields(self):
            if field.name == 'method' or field.name in own:
                continue
            value = getattr(self, field.name)
            if value == field.default:
                continue
            others = [m for m, names in METHOD_FIELDS.items() if field.name in names]
            msg = (
                f'PEFT method "{self.method}" has no option {field.name} (got '
                f'{value!r}); its options: {", ".join(own) or "none"}. '
                f'{field.name} belongs to {", ".join(others)}.'
            )
            raise ValueError(msg)

    @classmethod
    def from_any(
        cls, value: 'PEFTConfig | str | Mapping[str, Any] | None'
    ) -> 'PEFTConfig':
        """Build a configuration from any accepted form.

        Args:
            value: A config (returned as is), a method name, a mapping of fields or
                ``None`` (the default config, UPetu).

        Returns:
            The validated configuration.

        Raises:
            ValueError: On an unknown method, option or an invalid value.
            TypeError: If *value* has another type.
        """
        if value is None:
            return cls()
        if isinstance(value, PEFTConfig):
            return value
        if isinstance(value, str):
            return cls(method=value)
        if isinstance(value, Mapping):
            names = tuple(field.name for field in dataclasses.fields(cls))
            for key in value:
                if key not in names:
                    msg = (
                        f'Unknown PEFT option "{key}".{did_you_mean(str(key), names)} '
                        f'Valid options: {", ".join(names)}.'
                    )
                    raise ValueError(msg)
            options = dict(value)
            if options.get('target_modules') is not None:
                options['target_modules'] = list(options['target_modules'])
            return cls(**options)
        msg = (
            'A PEFT config must be a PEFTConfig, a method name, a mapping or None, '
            f'got {type(value).__name__}.'
        )
        raise TypeError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain (YAML/JSON-serialisable) dictionary.

        Returns:
            A mapping that :meth:`from_any` turns back into an equal config.
        """
        return dataclasses.asdict(self)
