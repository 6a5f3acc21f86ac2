"""k-fold cross-validation: the deal, and the change and scene data modules."""

from pathlib import Path

import pytest

from geopeft.benchmarks.smoke_data import make_smoke_change_folder
from geopeft.datamodules import ChangeFolderDataModule, SceneFolderDataModule
from geopeft.datamodules.folds import check_folds, kfold_indices, train_test_indices
from geopeft.datasets import ChangeFolder


@pytest.mark.parametrize(('count', 'folds'), [(11, 4), (11, 11), (5, 2), (40, 7)])
def test_folds_are_disjoint_cover_everything_and_balance(
    count: int, folds: int
) -> None:
    dealt = kfold_indices(count, folds, seed=3)
    flat = [i for fold in dealt for i in fold]
    assert sorted(flat) == list(range(count))  # every item once: no pair in two folds
    sizes = [len(fold) for fold in dealt]
    assert max(sizes) - min(sizes) <= 1
    assert dealt == kfold_indices(count, folds, seed=3)  # seeded
    assert dealt != kfold_indices(count, folds, seed=4) or folds == count


def test_stratified_folds_share_every_class() -> None:
    labels = [0] * 8 + [1] * 4 + [2] * 12
    dealt = kfold_indices(len(labels), 4, seed=0, labels=labels)
    for fold in dealt:
        assert [sum(labels[i] == c for i in fold) for c in range(3)] == [2, 1, 3]


def test_train_and_test_of_a_fold_partition_the_items() -> None:
    tests = []
    for fold in range(4):
        train, test = train_test_indices(11, 4, fold, seed=0)
        assert not set(train) & set(test)
        assert sorted(train + test) == list(range(11))
        tests += test
    assert sorted(tests) == list(range(11))  # each item tested exactly once


@pytest.mark.parametrize(
    ('folds', 'fold', 'count', 'message'),
    [
        (12, 0, 11, 'use at most --folds 11'),
        (1, 0, 11, 'at least 2'),
        (4, 4, 11, 'fold must be in 0..3'),
    ],
)
def test_bad_fold_requests_say_what_to_do(
    folds: int, fold: int, count: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_folds(folds, fold, count, what='labelled pairs')


def test_change_folder_all_split_ignores_prefixes(tmp_path: Path) -> None:
    root = make_smoke_change_folder(tmp_path, pairs={'train': 3, 'val': 1, 'test': 2})
    names = [f['image1'].name for f in ChangeFolder(root, split='all').files]
    assert sorted(names) == names and len(names) == 6


def test_change_datamodule_folds_hold_out_each_pair_once(tmp_path: Path) -> None:
    root = make_smoke_change_folder(tmp_path, pairs={'train': 5, 'val': 1, 'test': 3})
    every = ChangeFolder(root, split='all')
    tested: list[int] = []
    for fold in range(3):
        dm = ChangeFolderDataModule(
            root=root, batch_size=2, patch_size=32, folds=3, fold=fold, val_split_pct=0
        )
        dm.setup('fit')
        dm.setup('test')
        train_ids = list(dm.train_dataset.indices)
        test_ids = list(dm.test_dataset.indices)
        assert dm.train_dataset.dataset is not None and dm.val_dataset is None
        assert not set(train_ids) & set(test_ids)
        assert len(train_ids) + len(test_ids) == len(every)
        tested += test_ids
    assert sorted(tested) == list(range(len(every)))


def test_change_datamodule_folds_with_validation_and_repeats(tmp_path: Path) -> None:
    root = make_smoke_change_folder(tmp_path, pairs={'train': 8})
    dm = ChangeFolderDataModule(
        root=root, batch_size=2, patch_size=32, folds=4, fold=1, train_repeats=3
    )
    dm.setup('fit')
    assert len(dm.val_dataset) == 1  # 20 % of the 6 training pairs
    assert len(dm.train_dataset) == 5 * 3


def test_change_datamodule_refuses_more_folds_than_pairs(tmp_path: Path) -> None:
    root = make_smoke_change_folder(tmp_path, pairs={'train': 3})
    dm = ChangeFolderDataModule(root=root, batch_size=1, patch_size=32, folds=4)
    with pytest.raises(ValueError, match='only 3'):
        dm.setup('fit')


def test_scene_datamodule_stratified_folds(scene_root: Path) -> None:
    tested: list[int] = []
    for fold in range(4):
        dm = SceneFolderDataModule(
            root=scene_root, image_size=32, folds=4, fold=fold, val_fraction=0.0
        )
        dm.setup('fit')
        split = dm.split_indices
        assert not set(split['train']) & set(split['test']) and split['val'] == []
        assert sorted([dm.targets[i] for i in split['test']]) == [0, 0, 1, 1, 2, 2]
        tested += split['test']
    assert sorted(tested) == list(range(24))
