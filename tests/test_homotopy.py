"""Continuation (resland.homotopy, docs/theory.md §12): the end point is checked with references that do not
go through the path follower: autograd on a fresh model, NumPy least squares, the unit activities by hand."""

import math

import numpy as np
import pytest
import torch

import resland
from resland.ensemble import Ensemble
from resland.homotopy import CORRECTOR_TOL, follow_path
from resland.models import init_model
from resland.symmetry import inactive_units


def _grad_by_autograd(model, X, y):
    model = model.double()
    model.zero_grad()
    risk = torch.mean((model(torch.as_tensor(X)) - torch.as_tensor(y)) ** 2)
    risk.backward()
    return float(risk.detach()), float(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm())


def test_the_tikhonov_path_ends_at_a_full_width_critical_point_better_than_linear():
    """grunfeld, a tanh ResNet of 2 blocks of 2 units (n = 32): critical to the one gradient test, recomputed by
    autograd; every unit contributes (‖V_l[:, i]‖·rms σ(z_i) > 0.1, by hand); R below NumPy's least squares."""
    ds = resland.load_dataset("grunfeld")
    net = init_model("resnet", 3, width=2, depth=2, activation="tanh", seed=0)
    cp = resland.find_critical_point(net, ds.X, ds.y, method="continuation", max_iter=400)
    assert cp.outcome == "critical" and cp.method == "continuation" and cp.path["t_end"] == 0.0
    R, gn = _grad_by_autograd(cp.model, ds.X, ds.y)
    assert math.isclose(R, cp.risk, rel_tol=1e-12) and gn <= 1e-10 * max(1.0, R)
    A = np.c_[ds.X, np.ones(len(ds.y))]
    r_lin = float(np.mean((A @ np.linalg.lstsq(A, ds.y, rcond=None)[0] - ds.y) ** 2))
    assert R < r_lin - 1e-3
    with torch.no_grad():
        h, acts = torch.as_tensor(ds.X), []
        for blk in cp.model.blocks:
            z = torch.tanh(h @ blk.branch[0].weight.T + blk.branch[0].bias)
            acts += (blk.V.weight.norm(dim=0) * z.pow(2).mean(0).sqrt()).tolist()
            h = h + z @ blk.V.weight.T
    assert min(acts) > 0.1 and inactive_units(cp.model, ds.X)["inactive"] == 0
    cert = resland.certify(cp.model, ds.X, ds.y)
    assert cert.verdict == "better_than_linear" and cert.trivial == "none"


def test_points_on_the_tikhonov_path_solve_grad_r_plus_lambda_theta():
    """Stopped after a few steps, the iterate is an exact critical point of R + ½λ‖θ‖² at the reached λ."""
    ds = resland.load_dataset("grunfeld")
    net = init_model("resnet", 3, width=2, depth=2, activation="tanh", seed=1)
    ens = Ensemble([net], ds.X, ds.y)
    run = follow_path(ens, ens.theta[0], tikhonov=1e-2, max_steps=6)
    assert run.status == "max_iter" and 0 < run.t_end < 1e-2
    model = ens.model_at(run.theta)
    torch.nn.utils.vector_to_parameters(run.theta, model.parameters())
    _, _ = _grad_by_autograd(model, ds.X, ds.y)
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    F = g + run.t_end * run.theta
    assert float(F.norm()) <= 10 * CORRECTOR_TOL


def test_continuation_refuses_relu_and_never_calls_a_path_to_infinity_critical():
    ds = resland.load_dataset("grunfeld")
    with pytest.raises(resland.ValidationError, match="smooth activation"):
        resland.find_critical_point(init_model("resnet", 3, width=2, depth=1, activation="relu"), ds.X, ds.y,
                                    method="continuation")
    wine = resland.load_dataset("wine")           # separable: the logistic risk has no finite minimum
    cp = resland.find_critical_point(init_model("resnet", 13, width=1, depth=1, activation="tanh"), wine.X, wine.y,
                                     wine.loss, method="continuation", max_iter=40)
    assert cp.outcome != "critical" and not cp.converged


def test_path_divergence_reads_the_last_decade_of_lambda():
    """‖θ(λ)‖ ~ λ^(-1/4) with R falling: diverging; ‖θ‖ settling to a limit: not; too short: None."""
    from resland.homotopy import path_divergence

    lams = [10 ** (-3 - k / 4) for k in range(17)]                     # 1e-3 … 1e-7
    growing = [(lam, 0.1 + lam, lam ** -0.25) for lam in lams]
    settling = [(lam, 0.1 + lam, 7.0 - lam) for lam in lams]
    d = path_divergence(growing)
    assert d["diverging"] and d["t_to"] == lams[-1] and math.isclose(d["growth"], 10 ** 0.25, rel_tol=1e-12)
    assert not path_divergence(settling)["diverging"]
    assert path_divergence(growing[:3]) is None
