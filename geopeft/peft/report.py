"""Parameter report: total, trainable and PEFT-added parameters per model part."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .capm import CAPM
from .eqam import EQAM
from .vpt import PromptTokens

#: Module types whose parameters the PEFT engine adds.
PEFT_MODULE_TYPES = (EQAM, CAPM, PromptTokens)


def peft_parameter_names(module: nn.Module) -> set[str]:
    """Name the parameters of *module* that a PEFT method added.

    These are the parameters of EQAM / fp32 adapters, CAPM / prompt maps, prompt
    tokens and LoRA (``lora_*``) layers.

    Args:
        module: Any module.

    Returns:
        Parameter names as in ``module.named_parameters()``.
    """
    names = set()
    for module_name, child in module.named_modules():
        if isinstance(child, PEFT_MODULE_TYPES):
            prefix = f'{module_name}.' if module_name else ''
            names.update(prefix + name for name, _ in child.named_parameters())
    for name, _ in module.named_parameters():
        if any(part.startswith('lora_') for part in name.split('.')):
            names.add(name)
    return names


@dataclass(frozen=True)
class GroupParameters:
    """Parameter counts of one model part.

    Attributes:
        total: All parameters.
        trainable: Parameters with ``requires_grad``.
        peft: Parameters added by the PEFT method (adapters, prompts, LoRA).
    """

    total: int
    trainable: int
    peft: int

    @property
    def frozen(self) -> int:
        """Parameters without ``requires_grad``."""
        return self.total - self.trainable

    def to_dict(self) -> dict[str, int]:
        """Return the counts as a dictionary.

        Returns:
            ``total``, ``trainable``, ``frozen`` and ``peft``.
        """
        return {
            'total': self.total,
            'trainable': self.trainable,
            'frozen': self.frozen,
            'peft': self.peft,
        }


@dataclass(frozen=True)
class ParameterReport:
    """Parameter counts of a PEFT model, per part and overall.

    Attributes:
        groups: Counts per part (e.g. ``backbone``, ``head``, ``decoder``).
        total: All parameters (each counted once across parts).
        trainable: Trainable parameters (each counted once).
        adapter_bytes: Size of the adapter file, if measured.
    """

    groups: dict[str, GroupParameters]
    total: int
    trainable: int
    adapter_bytes: int | None = None

    @property
    def trainable_percent(self) -> float:
        """Trainable parameters as a percentage of all parameters."""
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dictionary.

        Returns:
            ``total``, ``trainable``, ``trainable_percent``, ``adapter_bytes`` and
            ``groups`` (per part: ``total``, ``trainable``, ``frozen``, ``peft``).
        """
        return {
            'total': self.total,
            'trainable': self.trainable,
            'trainable_percent': self.trainable_percent,
            'adapter_bytes': self.adapter_bytes,
            'groups': {name: group.to_dict() for name, group in self.groups.items()},
        }

    def format_table(self) -> str:
        """Format the report as a text table.

        Returns:
            One row per part plus a total row (``% of all`` is the part's trainable
            parameters as a percentage of all parameters), then the adapter size.
        """
        header = (
            f'{"part":<12}{"total":>14}{"trainable":>13}{"frozen":>14}'
            f'{"PEFT-added":>12}{"% of all":>10}'
        )
        lines = [header, '-' * len(header)]
        rows = [*self.groups.items(), ('all', None)]
        for name, group in rows:
            total = group.total if group else self.total
            trainable = group.trainable if group else self.trainable
            peft = f'{group.peft:,}' if group else ''
            percent = 100.0 * trainable / self.total if self.total else 0.0
            lines.append(
                f'{name:<12}{total:>14,}{trainable:>13,}{total - trainable:>14,}'
                f'{peft:>12}{percent:>9.3f}%'
            )
        if self.adapter_bytes is not None:
            kib = self.adapter_bytes / 1024
            lines.append(f'adapter file: {self.adapter_bytes:,} bytes ({kib:.1f} KiB)')
        return '\n'.join(lines)


def parameter_report(
    groups: Mapping[str, nn.Module], *, adapter_bytes: int | None = None
) -> ParameterReport:
    """Count total, trainable and PEFT-added parameters per model part.

    Args:
        groups: Model parts by name, e.g. ``{'backbone': ..., 'head': ...}``.
        adapter_bytes: Size of the adapter file
            (:func:`~geopeft.peft.adapter_nbytes`), if known.

    Returns:
        The report.
    """
    counts = {}
    for group_name, module in groups.items():
        added = peft_parameter_names(module)
        total = trainable = peft = 0
        for name, parameter in module.named_parameters():
            total += parameter.numel()
            trainable += parameter.numel() if parameter.requires_grad else 0
            peft += parameter.numel() if name in added else 0
        counts[group_name] = GroupParameters(total, trainable, peft)
    unique = {
        id(parameter): parameter
        for module in groups.values()
        for parameter in module.parameters()
    }
    return ParameterReport(
        groups=counts,
        total=sum(p.numel() for p in unique.values()),
        trainable=sum(p.numel() for p in unique.values() if p.requires_grad),
        adapter_bytes=adapter_bytes,
    )
