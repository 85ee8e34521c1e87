"""The model-family conformance suite (issue 27): every family, with one output and with three, against
independent autodiff references (torch.func on a risk written here, not resland's FlatRisk code path).

Per family: the risk, gradient, Hessian (resland's dense Hessian: closed form where the family declares a
chain layout, else autodiff) and prediction Jacobian (the batched finder's), float64, relative 1e-12; its
declared symmetry directions exactly null (the predictions' derivative along each is 0 to rounding, and at
a critical point of the risk the Hessian annihilates them); its parameter count."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev

from resland import ValidationError
from resland.curvature import HessianOperator
from resland.ensemble import Ensemble
from resland.families import FAMILIES, Family, family, family_of
from resland.functional import FlatRisk
from resland.losses import get_loss
from resland.models import init_model
from resland.symmetry import symmetry_directions

REL = 1e-12


class TwoPath(nn.Module):
    """A custom module: ``W2 relu(W1 x + b1) + S x`` (a hand-written skip), k outputs."""

    def __init__(self, d, k, width=3):
        super().__init__()
        self.inner = nn.Linear(d, width, dtype=torch.float64)
        self.outer = nn.Linear(width, k, dtype=torch.float64)
        self.skip = nn.Linear(d, k, bias=False, dtype=torch.float64)
        self.k = k

    def forward(self, x):
        out = self.outer(torch.tanh(self.inner(x))) + self.skip(x)
        return out[:, 0] if self.k == 1 else out


def _model(name, k, activation="tanh"):
    torch.manual_seed(3)
    if name == "custom":
        return TwoPath(3, k)
    return init_model(name, 3, width=3, depth=2, activation=activation, seed=3, d_out=k)


def _data(k, loss):
    g = torch.Generator().manual_seed(5)
    X = torch.randn(30, 3, dtype=torch.float64, generator=g)
    if loss == "cross_entropy":
        return X, torch.arange(30, dtype=torch.float64) % k
    return X, torch.randn(30, dtype=torch.float64, generator=g) if k == 1 else torch.randn(30, k, dtype=torch.float64,
                                                                                           generator=g)


CASES = [(name, k, loss) for name in (*FAMILIES, "custom") for k, loss in
         ((1, "squared"), (3, "squared"), (3, "cross_entropy"))]


def _reference_risk(model, X, y, loss):
    """R(θ) from named parameters, written without resland's FlatRisk."""
    L = get_loss(loss)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def predict(theta):
        params = {n: t.view(s) for n, t, s in zip(names, torch.split(theta, sizes), shapes)}
        return functional_call(model, params, (X,))

    def risk(theta):
        return L.per_sample(predict(theta), y).mean()

    return predict, risk


@pytest.mark.parametrize("name,k,loss", CASES)
def test_family_conformance(name, k, loss):
    model = _model(name, k)
    X, y = _data(k, loss)
    fr = FlatRisk(model, X, y, loss)
    fam = family_of(model)
    assert fam.name == name and fr.k == k
    assert fam.outputs(model) in (k, None)
    predict, risk = _reference_risk(model, X, y, loss)
    th = fr.theta0
    assert float(fr.risk(th)) == pytest.approx(float(risk(th)), rel=1e-15)
    assert torch.allclose(fr.grad(th), grad(risk)(th), rtol=REL, atol=1e-15)
    H_ref = hessian(risk)(th)
    H = HessianOperator(fr, th).dense()
    assert float((H - H_ref).norm() / H_ref.norm()) < REL
    J_ref = jacrev(predict)(th)                                # (m, n) or (m, k, n)
    J = Ensemble([model], X, y, loss).jacobian(th[None])[0]
    assert float((J - J_ref).norm() / J_ref.norm()) < REL
    if name != "custom":
        assert fam.count(3, width=3, depth=2, d_out=k) == fr.n
        assert family(name) is fam
    else:
        with pytest.raises(ValidationError):
            fam.count(3)


@pytest.mark.parametrize("name", ["resnet", "fc"])
@pytest.mark.parametrize("k", [1, 3])
def test_declared_symmetries_are_exactly_null(name, k):
    """ReLU rescalings and the last block's V_L ⊥ w: the predictions do not move to first order (Jξ = 0), and at
    a critical point Hξ = 0 (the point here is a critical point of R on the model's own predictions: y = f)."""
    model = _model(name, k, activation="relu")
    X, _ = _data(k, "squared")
    with torch.no_grad():
        y = model(X)                        # R = 0 at θ0: a critical point, every Hessian term but JᵀJ vanishes
    fr = FlatRisk(model, X, y)
    th = fr.theta0
    dirs = symmetry_directions(fr, th)
    width, depth, d = 3, 2, 3
    expected = width * depth + (((d - k) if name == "resnet" else 0) * width if k < d else 0)
    assert len(dirs) == expected
    predict, _ = _reference_risk(model, X, y, "squared")
    J = jacrev(predict)(th).reshape(-1, fr.n)
    H = hessian(fr.risk)(th)
    scale = float(J.abs().max())
    for s in dirs:
        xi = s.vector / s.vector.norm()
        assert float((J @ xi).abs().max()) <= 1e-13 * scale, s.name
        assert float((H @ xi).norm()) <= 1e-13 * float(H.norm()), s.name


def test_the_custom_family_declares_nothing():
    fam = family_of(TwoPath(3, 2))
    assert isinstance(fam, Family) and fam.name == "custom"
    assert fam.symmetry_directions(TwoPath(3, 2), torch.zeros(5)) == [] and fam.chain_layout(TwoPath(3, 2)) is None
    assert not fam.residual and not fam.grid_keys


def test_no_module_branches_on_a_model_name():
    """Outside the families and the model classes, no resland module compares a model name or class."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "resland"
    pattern = re.compile(r"""(==|!=)\s*["'](resnet|fc|linear)["']|isinstance\([^)]*\b(ResNet|FCNet|LinearModel)\b"""
                         r"""|type\(\w+\) is (ResNet|FCNet|LinearModel)""")
    offenders = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if p.name not in ("families.py", "models.py")
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []
