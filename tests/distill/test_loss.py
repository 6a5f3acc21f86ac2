import math

import pytest
import torch

from geopeft.distill import distillation_loss, width_kl


def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Student logits [0, ln 2] and teacher [0, 0] along the width axis."""
    student = torch.tensor([0.0, math.log(2.0)]).view(1, 1, 1, 2)
    teacher = torch.zeros(1, 1, 1, 2)
    return student, teacher


def test_width_kl_by_hand() -> None:
    student, teacher = pair()
    # p_s = (1/3, 2/3), p_t = (1/2, 1/2)
    expected = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    assert width_kl(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_width_kl_temperature_by_hand() -> None:
    student, teacher = pair()
    root2 = math.sqrt(2.0)
    p_s = (1 / (1 + root2), root2 / (1 + root2))
    expected = 4 * (0.5 * math.log(0.5 / p_s[0]) + 0.5 * math.log(0.5 / p_s[1]))
    got = width_kl(student, teacher, temperature=2.0).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_width_kl_is_over_the_last_axis() -> None:
    # Along the height axis the two rows differ, along the width they are equal:
    # a softmax over the last axis sees identical distributions, KL = 0.
    student = torch.tensor([[0.0, 0.0], [5.0, 5.0]]).view(1, 1, 2, 2)
    teacher = torch.tensor([[1.0, 1.0], [-3.0, -3.0]]).view(1, 1, 2, 2)
    assert width_kl(student, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_width_kl_sums_and_divides_by_batch_only() -> None:
    student, teacher = pair()
    one = width_kl(student, teacher).item()
    # Four identical rows in one sample: four times the KL (summed, not averaged).
    rows = width_kl(student.expand(1, 2, 2, 2), teacher.expand(1, 2, 2, 2)).item()
    assert rows == pytest.approx(4 * one, rel=1e-5)
    # The same sample twice in a batch: the same value (divided by B).
    batch = width_kl(student.expand(2, 1, 1, 2), teacher.expand(2, 1, 1, 2)).item()
    assert batch == pytest.approx(one, rel=1e-5)


def test_distillation_loss_by_hand() -> None:
    student, teacher = pair()
    kl = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    mse = math.log(2.0) ** 2 / 2
    level = distillation_loss([student], [teacher]).item()
    assert level == pytest.approx(0.5 * kl + 0.5 * mse, rel=1e-5)
    kl_only = distillation_loss([student], [teacher], alpha=1.0).item()
    assert kl_only == pytest.approx(kl, rel=1e-5)
    mse_only = distillation_loss([student], [teacher], alpha=0.0).item()
    assert mse_only == pytest.approx(mse, rel=1e-5)
    # Mean over levels: a second level with zero loss halves it.
    two = distillation_loss([student, teacher], [teacher, teacher]).item()
    assert two == pytest.approx(level / 2, rel=1e-5)


def test_mse_is_on_unnormalised_features() -> None:
    student = torch.full((1, 1, 1, 2), 3.0)
    teacher = torch.zeros(1, 1, 1, 2)
    # Uniform softmaxes on both sides: KL 0, the MSE sees the raw offset 3.
    assert distillation_loss([student], [teacher]).item() == pytest.approx(4.5)


def test_gradient_reaches_the_student_only() -> None:
    student = torch.randn(2, 4, 3, 3, requires_grad=True)
    teacher = torch.randn(2, 4, 3, 3, requires_grad=True)
    distillation_loss([student], [teacher.detach()]).backward()
    assert student.grad is not None
    assert teacher.grad is None


def test_mismatches_are_clear() -> None:
    a = torch.zeros(1, 8, 3, 3)
    with pytest.raises(ValueError, match='student levels vs'):
        distillation_loss([a, a], [a])
    with pytest.raises(ValueError, match="teacher's width and grid"):
        distillation_loss([a], [torch.zeros(1, 4, 3, 3)])
