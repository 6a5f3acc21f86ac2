"""Scores of the changed class in change detection."""

from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric

ChangeScore = Literal['precision', 'recall', 'f1', 'iou']

#: Metric names (as logged, after the stage prefix) of each score.
CHANGE_SCORE_NAMES: dict[ChangeScore, str] = {
    'precision': 'ChangedPrecision',
    'recall': 'ChangedRecall',
    'f1': 'ChangedF1',
    'iou': 'ChangedIoU',
}


class ChangedClassScore(Metric):
    r"""Precision, recall, F1 or IoU of "changed" pixels over a whole epoch.

    A pixel is predicted changed when its binary logit is above 0 (probability
    above 0.5) or, for multiclass change maps, when its arg-max class is not 0
    ("no change"); the same rule reads the target. Pixels equal to
    *ignore_index* count nowhere. Counts are summed over the epoch (and across
    processes), then

    * precision :math:`= TP / (TP + FP)`, recall :math:`= TP / (TP + FN)`,
    * F1 :math:`= 2TP / (2TP + FP + FN)`, IoU :math:`= TP / (TP + FP + FN)`,

    each 0 when its denominator is 0. These are the scores change-detection papers
    report (LEVIR-CD: F1 of the changed class).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        score: ChangeScore,
        *,
        task: Literal['binary', 'multiclass', 'multilabel'] = 'binary',
        ignore_index: int | None = None,
    ) -> None:
        """Initialize a new ChangedClassScore.

        Args:
            score: ``'precision'``, ``'recall'``, ``'f1'`` or ``'iou'``.
            task: How predictions are laid out: ``'binary'`` (one logit channel),
                ``'multiclass'`` (class 0 is no change) or ``'multilabel'`` (a
                pixel is changed when any label is).
            ignore_index: Target value that marks pixels to skip.

        Raises:
            ValueError: For an unknown score.
        """
        super().__init__()
        if score not in CHANGE_SCORE_NAMES:
            msg = f'score must be one of {", ".join(CHANGE_SCORE_NAMES)}, got {score}'
            raise ValueError(msg)
        self.score = score
        self.task = task
        self.ignore_index = ignore_index
        for name in ('tp', 'fp', 'fn'):
            self.add_state(name, torch.tensor(0, dtype=torch.long), 'sum')

    def _changed(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Turn logits and labels into boolean changed maps ``[B, H, W]``."""
        if self.task == 'multiclass':
            predicted = preds.argmax(dim=1) != 0
            actual = target.reshape(predicted.shape) != 0
        elif self.task == 'multilabel':
            predicted = (preds > 0).any(dim=1)
            actual = (target > 0.5).any(dim=1)
        else:
            predicted = preds.reshape(preds.shape[0], *preds.shape[-2:]) > 0
            actual = target.reshape(predicted.shape) > 0.5
        return predicted, actual

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate the counts of one batch.

        Args:
            preds: Logits, ``[B, 1, H, W]`` / ``[B, H, W]`` (binary) or
                ``[B, K, H, W]``.
            target: Labels ``[B, H, W]`` or ``[B, 1, H, W]`` (or ``[B, K, H, W]``
                for multilabel).
        """
        predicted, actual = self._changed(preds, target)
        if self.ignore_index is not None and self.task != 'multilabel':
            keep = target.reshape(predicted.shape) != self.ignore_index
            predicted, actual = predicted & keep, actual & keep
        self.tp += (predicted & actual).sum()
        self.fp += (predicted & ~actual).sum()
        self.fn += (~predicted & actual).sum()

    def compute(self) -> Tensor:
        """Return the score over everything accumulated.

        Returns:
            A scalar in [0, 1].
        """
        tp, fp, fn = self.tp.double(), self.fp.double(), self.fn.double()
        numerator, denominator = {
            'precision': (tp, tp + fp),
            'recall': (tp, tp + fn),
            'f1': (2 * tp, 2 * tp + fp + fn),
            'iou': (tp, tp + fp + fn),
        }[self.score]
        if denominator == 0:
            return torch.tensor(0.0, device=tp.device)
        return (numerator / denominator).float()
