import pytest
import torch

import resland
from resland.losses import LogisticLoss, PseudoHuberLoss, SquaredLoss


@pytest.mark.parametrize("loss", [SquaredLoss(), LogisticLoss(), PseudoHuberLoss(0.7)])
def test_derivatives_match_autograd(loss):
    g = torch.Generator().manual_seed(0)
    p = torch.randn(30, generator=g, dtype=torch.float64) * 3
    y = torch.where(torch.rand(30, generator=g, dtype=torch.float64) > 0.5, 1.0, -1.0).to(torch.float64)
    d1 = torch.func.vmap(torch.func.grad(loss.value))(p, y)
    d2 = torch.func.vmap(torch.func.grad(torch.func.grad(loss.value)))(p, y)
    torch.testing.assert_close(loss.d1(p, y), d1, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss.d2(p, y), d2, rtol=1e-12, atol=1e-14)


def test_conventions():
    p, y = torch.tensor([3.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    assert SquaredLoss().risk(p, y).item() == 4.0  # (p − y)², no 1/2
    assert SquaredLoss().risk(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0])).item() == 2.0  # mean
    z = torch.tensor([0.0], dtype=torch.float64)
    assert LogisticLoss().value(z, y).item() == pytest.approx(0.6931471805599453, rel=1e-15)


def test_logistic_maps_zero_one_labels():
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert LogisticLoss().prepare_targets(y).tolist() == [-1.0, 1.0, 1.0, -1.0]


def test_logistic_rejects_non_binary_labels():
    with pytest.raises(resland.ValidationError) as err:
        LogisticLoss().prepare_targets(torch.tensor([0.0, 1.0, 2.0]))
    assert str(err.value) == (
        "The 'y' parameter must hold binary labels in {-1, +1} or {0, 1} for the logistic loss. "
        "Got 3 distinct values, e.g. 0, 1, 2."
    )


def test_unknown_loss_name():
    with pytest.raises(resland.ValidationError) as err:
        resland.get_loss("hinge")
    assert str(err.value) == (
        "The 'loss' parameter must be one of 'squared', 'logistic', 'pseudo_huber', 'cross_entropy'. Got 'hinge' instead."
    )
