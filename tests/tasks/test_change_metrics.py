import pytest
import torch

from geopeft.tasks import ChangedClassScore


def scores(task: str, preds: torch.Tensor, target: torch.Tensor, **kw: object) -> dict:
    out = {}
    for score in ('precision', 'recall', 'f1', 'iou'):
        metric = ChangedClassScore(score, task=task, **kw)  # type: ignore[arg-type]
        metric.update(preds, target)
        out[score] = metric.compute().item()
    return out


def test_binary_scores_by_hand() -> None:
    # predicted changed: (0,0), (1,0); actually changed: (0,0), (0,1)
    logits = torch.tensor([[[[2.0, -1.0], [3.0, -2.0]]]])
    target = torch.tensor([[[[1, 1], [0, 0]]]])
    # TP = 1, FP = 1, FN = 1
    assert scores('binary', logits, target) == pytest.approx(
        {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'iou': 1 / 3}
    )


def test_multiclass_counts_any_change_class() -> None:
    # Class 0 is no change; classes 1 and 2 are both "changed".
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 1, 0, 0] = 1  # changed (class 1)
    logits[0, 2, 0, 1] = 1  # changed (class 2)
    logits[0, 0, 0, 2] = 1  # no change
    logits[0, 0, 0, 3] = 1  # no change
    target = torch.tensor([[[2, 0, 1, 0]]])
    # TP = pixel 0, FP = pixel 1, FN = pixel 2, TN = pixel 3
    assert scores('multiclass', logits, target) == pytest.approx(
        {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'iou': 1 / 3}
    )


def test_ignore_index_and_empty_counts() -> None:
    logits = torch.tensor([[[[5.0, 5.0]]]])
    target = torch.tensor([[[[255, 255]]]])
    assert scores('binary', logits, target, ignore_index=255) == {
        'precision': 0.0,
        'recall': 0.0,
        'f1': 0.0,
        'iou': 0.0,
    }


def test_scores_accumulate_over_batches() -> None:
    metric = ChangedClassScore('f1')
    metric.update(torch.tensor([[[[1.0]]]]), torch.tensor([[[[1]]]]))  # TP
    metric.update(torch.tensor([[[[1.0]]]]), torch.tensor([[[[0]]]]))  # FP
    assert metric.compute().item() == pytest.approx(2 / 3)


def test_unknown_score() -> None:
    with pytest.raises(ValueError, match='score must be one of'):
        ChangedClassScore('accuracy')  # type: ignore[arg-type]
