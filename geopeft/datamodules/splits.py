"""Seeded, stratified train/val/test splits and the scene-classification protocols.

Scene-classification benchmarks such as UC Merced and AID ship no official split
files: papers draw a random split per class at a fixed train : test ratio and report
overall accuracy as mean +- std over several seeds. :func:`stratified_split` draws
such a split reproducibly and :data:`PROTOCOLS` names the usual ratios.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Split seeds of the evaluation protocol (report mean +- std over them).
PROTOCOL_SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class SplitProtocol:
    """A named train : test protocol of a scene-classification benchmark.

    Attributes:
        name: Name used in papers, e.g. ``'AID-28'``.
        dataset: Key of the dataset in ``data_catalog.yaml``, e.g. ``'aid'``.
        train_fraction: Fraction of every class used for training; the rest is
            the test set.
        seeds: Split seeds whose results are averaged (mean +- std).
    """

    name: str
    dataset: str
    train_fraction: float
    seeds: tuple[int, ...] = PROTOCOL_SEEDS


#: The scene-classification protocols, by key.
PROTOCOLS: dict[str, SplitProtocol] = {
    'ucm55': SplitProtocol(name='UCM-55', dataset='ucmerced', train_fraction=0.5),
    'aid28': SplitProtocol(name='AID-28', dataset='aid', train_fraction=0.2),
    'aid55': SplitProtocol(name='AID-55', dataset='aid', train_fraction=0.5),
}


def _round_half_up(value: float) -> int:
    """Round to the nearest integer, halves upwards (2.5 -> 3, unlike ``round``)."""
    return math.floor(value + 0.5 + 1e-9)


def stratified_split(
    targets: Sequence[int],
    train_fraction: float,
    *,
    seed: int,
    val_fraction: float = 0.0,
) -> dict[str, list[int]]:
    """Split sample indices per class into train, validation and test sets.

    For every class ``c`` with ``n_c`` samples, a seeded random permutation of its
    indices gives ``round(n_c * train_fraction)`` training indices (halves rounded
    up; at least one sample on each side when ``n_c >= 2``; a class's only sample
    goes to training) and the rest for testing. When ``val_fraction > 0`` the
    validation indices are carved out of the training part
    (``round(n_train * val_fraction)``, at least one, leaving at least one for
    training), so the protocol's train : test ratio is kept.

    Args:
        targets: Class index of every sample.
        train_fraction: Fraction of each class for training (+ validation), in
            ``(0, 1)``.
        seed: Seed of the split (the protocol's seeds are 0-4).
        val_fraction: Fraction of each class's training part held out for
            validation, in ``[0, 1)``.

    Returns:
        ``{'train': [...], 'val': [...], 'test': [...]}``: sorted, disjoint sample
        indices that together cover ``range(len(targets))``; ``'val'`` is empty when
        ``val_fraction`` is 0.

    Raises:
        ValueError: If a fraction is out of range.
    """
    if not 0 < train_fraction < 1:
        msg = f'train_fraction must be in (0, 1), got {train_fraction}'
        raise ValueError(msg)
    if not 0 <= val_fraction < 1:
        msg = f'val_fraction must be in [0, 1), got {val_fraction}'
        raise ValueError(msg)

    labels = np.asarray(targets, dtype=np.int64)
    rng = np.random.default_rng(seed)
    split: dict[str, list[int]] = {'train': [], 'val': [], 'test': []}
    for label in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == label))
        count = len(indices)
        n_train = _round_half_up(count * train_fraction)
        n_train = min(max(n_train, 1), max(count - 1, 1))
        n_val = 0
        if val_fraction > 0 and n_train >= 2:
            n_val = min(max(_round_half_up(n_train * val_fraction), 1), n_train - 1)
        split['val'].extend(indices[:n_val].tolist())
        split['train'].extend(indices[n_val:n_train].tolist())
        split['test'].extend(indices[n_train:].tolist())
    return {name: sorted(indices) for name, indices in split.items()}
