"""k-fold cross-validation splits of a small labelled set.

Small folders (a dozen change pairs, a few hundred scenes) cannot spare a test
split large enough to rank methods. Cross-validation scores every item once: the
items are dealt into *k* folds, and run *i* trains on the other folds and tests
on fold *i*. The deal is seeded and independent of the training seed, so every
method of a benchmark sees the same folds.
"""

from collections.abc import Sequence

import torch


def check_folds(folds: int, fold: int, count: int, what: str = 'items') -> None:
    """Check a fold request against the number of items.

    Args:
        folds: Number of folds *k*.
        fold: Index of the test fold, ``0 <= fold < folds``.
        count: Number of items to split.
        what: Name of the items, for the message.

    Raises:
        ValueError: If *folds* is below 2, larger than *count*, or *fold* is out
            of range.
    """
    if folds < 2:
        msg = f'folds must be at least 2 (got {folds}); use no folds for one split'
        raise ValueError(msg)
    if folds > count:
        msg = (
            f'{folds} folds need at least {folds} {what}, but there are only '
            f'{count}: use at most --folds {count} (leave-one-out)'
        )
        raise ValueError(msg)
    if not 0 <= fold < folds:
        msg = f'fold must be in 0..{folds - 1} for {folds} folds, got {fold}'
        raise ValueError(msg)


def kfold_indices(
    count: int,
    folds: int,
    *,
    seed: int = 0,
    labels: Sequence[int] | None = None,
) -> list[list[int]]:
    """Deal item indices into *folds* disjoint folds that cover every item.

    Items are shuffled with *seed* and dealt round-robin, so fold sizes differ by
    at most one. With *labels* the deal is stratified: each class is shuffled and
    dealt on its own, continuing where the previous class stopped, so every fold
    gets its share of every class.

    Args:
        count: Number of items.
        folds: Number of folds.
        seed: Seed of the shuffle.
        labels: Optional class of every item (stratified folds).

    Returns:
        The sorted item indices of each fold.

    Raises:
        ValueError: If *labels* does not have *count* entries, or see
            :func:`check_folds`.
    """
    check_folds(folds, 0, count)
    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        groups = [list(range(count))]
    else:
        if len(labels) != count:
            msg = f'labels has {len(labels)} entries for {count} items'
            raise ValueError(msg)
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_class.setdefault(int(label), []).append(index)
        groups = [by_class[key] for key in sorted(by_class)]
    result: list[list[int]] = [[] for _ in range(folds)]
    position = 0
    for group in groups:
        order = torch.randperm(len(group), generator=generator).tolist()
        for index in order:
            result[position % folds].append(group[index])
            position += 1
    return [sorted(fold) for fold in result]


def train_test_indices(
    count: int,
    folds: int,
    fold: int,
    *,
    seed: int = 0,
    labels: Sequence[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Return the training and test indices of one fold.

    Args:
        count: Number of items.
        folds: Number of folds.
        fold: The test fold.
        seed: Seed of the deal (see :func:`kfold_indices`).
        labels: Optional class of every item (stratified folds).

    Returns:
        ``(train, test)``: sorted, disjoint, together every item.
    """
    check_folds(folds, fold, count)
    dealt = kfold_indices(count, folds, seed=seed, labels=labels)
    train = sorted(i for k, indices in enumerate(dealt) if k != fold for i in indices)
    return train, dealt[fold]
