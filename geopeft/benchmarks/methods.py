"""The method table of the benchmarks: row name -> PEFT configuration.

Every benchmark row trains the same backbone, decoder (or head) and schedule; only
the PEFT configuration differs. UPetu's default (1-bit EQAM + CAPM) is the
``upetu-1bit`` row; ``upetu`` is accepted as its alias.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from ..peft import PEFTConfig
from ..suggest import did_you_mean


@dataclass(frozen=True)
class BenchmarkMethod:
    """One row of a benchmark: a name, a display label and its PEFT options.

    Attributes:
        name: Row key, e.g. ``'upetu-1bit'``.
        label: Human label, e.g. ``'UPetu 1-bit'``.
        method: PEFT method (:data:`geopeft.peft.METHODS`).
        bits: Q-Linear bit width (EQAM, UPetu).
    """

    name: str
    label: str
    method: str
    bits: int = 1

    @property
    def peft(self) -> PEFTConfig:
        """A fresh :class:`~geopeft.peft.PEFTConfig` of this row."""
        return PEFTConfig(method=self.method, bits=self.bits)


#: Every row, in table order: baselines, the ablations, then UPetu per bit width.
METHODS: dict[str, BenchmarkMethod] = {
    row.name: row
    for row in (
        BenchmarkMethod('full', 'full fine-tuning', 'full'),
        BenchmarkMethod('linear', 'linear probe (frozen backbone)', 'linear'),
        BenchmarkMethod('bitfit', 'BitFit', 'bitfit'),
        BenchmarkMethod('lora', 'LoRA (r=8)', 'lora'),
        BenchmarkMethod('adapter', 'fp32 adapter', 'adapter'),
        BenchmarkMethod('eqam', 'EQAM only (1-bit)', 'eqam', bits=1),
        BenchmarkMethod('capm', 'CAPM only', 'capm'),
        BenchmarkMethod('upetu-1bit', 'UPetu 1-bit', 'upetu', bits=1),
        BenchmarkMethod('upetu-2bit', 'UPetu 2-bit', 'upetu', bits=2),
        BenchmarkMethod('upetu-4bit', 'UPetu 4-bit', 'upetu', bits=4),
        BenchmarkMethod('upetu-8bit', 'UPetu 8-bit', 'upetu', bits=8),
    )
}

#: Other accepted names of rows.
ALIASES = {'upetu': 'upetu-1bit'}


def get_method(name: str) -> BenchmarkMethod:
    """Look a row up by name (or alias).

    Args:
        name: Row name, e.g. ``'lora'`` or ``'upetu-4bit'``.

    Returns:
        The row.

    Raises:
        ValueError: For an unknown name, with the closest match and every name.
    """
    key = ALIASES.get(name, name)
    if key in METHODS:
        return METHODS[key]
    hint = did_you_mean(name, [*METHODS, *ALIASES])
    msg = f'Unknown benchmark method "{name}".{hint} Known: {", ".join(METHODS)}.'
    raise ValueError(msg)


def resolve_methods(names: str | Sequence[str] | None = None) -> list[BenchmarkMethod]:
    """Turn a notebook's ``methods`` parameter into rows.

    Args:
        names: ``None`` or ``'all'`` (every row), a comma-separated string
            (``'full,linear,upetu-1bit'``, what ``papermill -p`` passes) or a list
            of names.

    Returns:
        The rows, in the order given, each once.

    Raises:
        ValueError: For an unknown name or an empty selection.
    """
    if names is None or names == 'all':
        return list(METHODS.values())
    if isinstance(names, str):
        names = [part.strip() for part in names.split(',') if part.strip()]
    rows: list[BenchmarkMethod] = []
    for name in names:
        row = get_method(name)
        if row not in rows:
            rows.append(row)
    if not rows:
        msg = f'no benchmark method selected; choose from {", ".join(METHODS)}'
        raise ValueError(msg)
    return rows


def resolve_seeds(seeds: int | str | Sequence[int]) -> list[int]:
    """Turn a notebook's ``seeds`` parameter into a list of seeds.

    Args:
        seeds: One seed, a comma-separated string (``'0,1,2'``) or a list.

    Returns:
        The seeds, each once, in the order given.

    Raises:
        ValueError: If no seed is given or one is not an integer.
    """
    if isinstance(seeds, int):
        values = [seeds]
    elif isinstance(seeds, str):
        try:
            values = [int(part) for part in seeds.split(',') if part.strip()]
        except ValueError as error:
            msg = f'seeds must be integers such as "0,1,2", got {seeds!r}'
            raise ValueError(msg) from error
    else:
        values = [int(seed) for seed in seeds]
    values = list(dict.fromkeys(values))
    if not values:
        msg = 'give at least one seed'
        raise ValueError(msg)
    return values
