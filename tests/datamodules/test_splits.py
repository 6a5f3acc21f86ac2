import pytest

from geopeft.datamodules import PROTOCOLS, stratified_split


def _per_class(indices: list[int], targets: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for index in indices:
        counts[targets[index]] = counts.get(targets[index], 0) + 1
    return counts


def _check_partition(split: dict[str, list[int]], n: int) -> None:
    train, val, test = set(split['train']), set(split['val']), set(split['test'])
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(n))
    for indices in split.values():
        assert indices == sorted(indices)


def test_exact_per_class_counts_ucm55_shape() -> None:
    targets = [c for c in range(21) for _ in range(10)]
    split = stratified_split(targets, 0.5, seed=0)
    _check_partition(split, len(targets))
    assert split['val'] == []
    assert _per_class(split['train'], targets) == dict.fromkeys(range(21), 5)
    assert _per_class(split['test'], targets) == dict.fromkeys(range(21), 5)


def test_unbalanced_classes_aid28_shape() -> None:
    sizes = [220, 310, 420]
    targets = [c for c, size in enumerate(sizes) for _ in range(size)]
    # Interleave so that class members are not contiguous.
    targets = targets[::2] + targets[1::2]
    split = stratified_split(targets, 0.2, seed=3)
    _check_partition(split, len(targets))
    assert _per_class(split['train'], targets) == {0: 44, 1: 62, 2: 84}
    assert _per_class(split['test'], targets) == {0: 176, 1: 248, 2: 336}


def test_reproducible_for_a_seed_and_different_across_seeds() -> None:
    targets = [c for c in range(5) for _ in range(20)]
    first = stratified_split(targets, 0.5, seed=1, val_fraction=0.2)
    assert first == stratified_split(targets, 0.5, seed=1, val_fraction=0.2)
    assert first['train'] != stratified_split(targets, 0.5, seed=2)['train']


def test_validation_is_carved_from_the_train_part() -> None:
    targets = [c for c in range(4) for _ in range(20)]
    plain = stratified_split(targets, 0.5, seed=0)
    split = stratified_split(targets, 0.5, seed=0, val_fraction=0.2)
    _check_partition(split, len(targets))
    # The test split (the protocol's ratio) is the same with or without validation.
    assert split['test'] == plain['test']
    assert sorted(split['train'] + split['val']) == plain['train']
    assert _per_class(split['val'], targets) == dict.fromkeys(range(4), 2)
    assert _per_class(split['train'], targets) == dict.fromkeys(range(4), 8)


def test_tiny_classes_keep_one_sample_each_side() -> None:
    targets = [0, 0, 1, 1, 1, 2]
    split = stratified_split(targets, 0.2, seed=0, val_fraction=0.5)
    _check_partition(split, len(targets))
    assert _per_class(split['test'], targets) == {0: 1, 1: 2}
    assert set(_per_class(split['train'], targets)) == {0, 1, 2}


@pytest.mark.parametrize(
    ('train_fraction', 'val_fraction'),
    [(0.0, 0.0), (1.0, 0.0), (0.5, 1.0), (0.5, -0.1)],
)
def test_fractions_out_of_range(train_fraction: float, val_fraction: float) -> None:
    with pytest.raises(ValueError, match='fraction'):
        stratified_split([0, 1], train_fraction, seed=0, val_fraction=val_fraction)


def test_protocols() -> None:
    assert {k: p.train_fraction for k, p in PROTOCOLS.items()} == {
        'ucm55': 0.5,
        'aid28': 0.2,
        'aid55': 0.5,
    }
    assert PROTOCOLS['ucm55'].dataset == 'ucmerced'
    assert all(p.seeds == (0, 1, 2, 3, 4) for p in PROTOCOLS.values())
