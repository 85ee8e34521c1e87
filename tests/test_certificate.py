"""The certificate's verdicts (theory.md §5), each checked by an independent computation."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import resland
from conftest import REF_LOSSES, reference_hessian


def constructed_saddle(seed=0, m=30, d=2, k=2):
    """An exact critical point with w = 0, V_L = 0 and R > R_lin that is a strict saddle.

    L = 2. With w = 0 every block gradient vanishes; with V_2 = 0, h_2 = h_1. Targets y are
    chosen orthogonal to span{1, h_1} (so ∂R/∂w = r_2 = 0 and μ = 0 at c = 0) but correlated
    with x (so R_lin < R) and with φ_2 (so C ≠ 0 in theory.md §4.2: negative curvature).
    """
    torch.manual_seed(seed)
    model = resland.ResNet(d, k, 2, "tanh")
    X = torch.randn(m, d, dtype=torch.float64)
    with torch.no_grad():
        model.U(1).mul_(3.0)  # a clearly nonlinear first block
        model.V(1).mul_(3.0)
        model.V(2).zero_()
        model.out.weight.zero_()
        model.out.bias.zero_()
        h1 = model.hidden_states(X)[1]
    A = torch.cat([torch.ones(m, 1, dtype=torch.float64), h1], dim=1)
    z = X[:, 0]
    y = z - A @ torch.linalg.lstsq(A, z[:, None]).solution[:, 0]
    return model, X, y


def test_constructed_strict_saddle():
    model, X, y = constructed_saddle()
    cert = resland.certify(model, X, y)
    assert cert.grad_norm <= 1e-14
    assert cert.risk > 1.1 * cert.linear_risk
    assert cert.verdict == "strict_saddle", cert.reason
    # independent re-verification: dense reference Hessian, curvature along v, and the risk drop
    H = reference_hessian(model, X, y)
    v = cert.escape_direction
    assert float(v @ H @ v) < 0
    assert float(v @ H @ v) == pytest.approx(cert.escape_curvature, rel=1e-8)
    evals = np.linalg.eigvalsh(H.numpy())
    assert cert.lambda_min == pytest.approx(evals[0], rel=1e-8)
    assert cert.index == int(np.sum(evals < -cert.tolerances["lambda_tol"]))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    moved = resland.FlatRisk(model, X, y).model_at(theta + cert.escape_step * v)
    with torch.no_grad():
        R_new = float(REF_LOSSES["squared"](moved(X), y))
    assert cert.risk - R_new == pytest.approx(cert.escape_decrease, rel=1e-10)
    assert cert.escape_decrease > 0


def test_not_critical_at_random_point(small_data):
    torch.manual_seed(0)
    cert = resland.certify(resland.ResNet(3, 2, 2), *small_data)
    assert cert.verdict == "not_critical"
    assert cert.lambda_min is None and cert.grad_norm > cert.tolerances["grad_tol"]


def test_nondifferentiable_when_relu_preactivation_is_zero(small_data):
    X, y = small_data
    torch.manual_seed(0)
    model = resland.ResNet(3, 2, 1, "relu")
    with torch.no_grad():  # first hidden unit exactly at its kink on sample 0
        model.b(1)[0] = -(model.U(1)[0] @ X[0])
    cert = resland.certify(model, X, y)
    assert cert.verdict == "nondifferentiable"
    assert cert.tolerances["kink_tol"] > 0


def test_a_constant_predictor_is_a_local_minimum_worse_than_linear_and_trivial(small_data):
    """A constant predictor at its minimum is worse than linear with no negative curvature."""

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, x):
            return self.c.expand(x.shape[0])

    X, y = small_data
    model = Constant()
    with torch.no_grad():
        model.c.fill_(float(y.mean()))
    cert = resland.certify(model, X, y)
    assert cert.verdict == "local_minimum_worse" and cert.trivial == "constant"
    assert cert.higher_order["null_dim"] == 0 and cert.higher_order["symmetries"]["count"] == 0
    assert cert.lambda_min == pytest.approx(2.0, rel=1e-12)  # ℓ'' = 2, mean risk
    assert cert.parameters == [float(y.mean())]  # saved for replay
    assert cert.gap_bound is None  # theory fields for resland.ResNet only


def test_shamir_minimum_is_better_than_linear_and_json_ready(noisy_teacher_data):
    X, y = noisy_teacher_data
    torch.manual_seed(0)
    cp = resland.find_critical_point(resland.ResNet(2, 2, 1, "tanh"), X, y)
    assert cp.converged, cp.message
    cert = resland.certify(cp.model, X, y)
    assert cert.verdict == "better_than_linear"
    d = json.loads(json.dumps(cert.to_dict()))
    assert d["verdict"] == "better_than_linear" and d["gap_bound"]["G"] == 0.0
    assert d["theory_checks"]["convexity_slack"] >= -1e-12
    assert set(d["tolerances"]) >= {"grad_tol", "risk_tol", "lambda_tol", "decrease_tol", "kink_tol"}


def test_jsonable_handles_numpy_scalars():
    from resland._json import jsonable

    out = jsonable({"a": np.bool_(True), "b": np.float64(np.inf), "c": np.int64(3), "d": [np.float32(0.5)],
                    "t": torch.tensor([1.0, float("nan")])})
    assert json.loads(json.dumps(out)) == {"a": True, "b": "inf", "c": 3, "d": [0.5], "t": [1.0, "nan"]}


def test_certificate_renders_as_an_html_table_in_jupyter(small_data):
    cert = resland.certify(resland.ResNet(3, 2, 1), *small_data)
    page = cert._repr_html_()
    assert page.startswith("<table>") and f"<td>{cert.verdict}</td>" in page and "R_lin" in page


def _evidence(R, *, lower=1.0, upper=1.0, gnorm=0.0, lam=(0.5, 2.0), polish=None, kink=None, null_dim=0, found=False):
    from resland.certificate import Evidence
    from resland.curvature import EigResult
    from resland.linear import LinearFit

    fit = LinearFit(risk=upper, coef=None, intercept=None, attained=True, grad_norm=0.0, iterations=0,
                    method="lstsq", risk_lower=lower, risk_upper=upper)
    tols = {"grad_tol": 1e-10, "risk_tol": 1e-10, "decrease_tol": 1e-13, "kink_tol": 1e-8, "lambda_tol": 1e-9,
            "polish_max_move": 1e-3}
    v = torch.tensor([1.0, 0.0])
    eig = EigResult(lam[0], lam[1], v, v, 0.0, 0.0, 2, "dense")
    from resland.higher_order import HigherOrder, NullAnalysis

    null = None
    if null_dim is not None:
        test = None if null_dim == 0 else HigherOrder(found, null_dim, [0.5, 1e-7, 24], R - 1e-3 * found, 66)
        if found:
            test.step, test.decrease, test.order, test.run = 1e-2, 1e-9, 3.0, [0.5, 1e-2]
        null = NullAnalysis({"count": 1, "names": ["s"], "max_residual": 0.0, "rejected": []}, 0.3, null_dim, test)
    return Evidence(R, gnorm, fit, tols, kink=kink, eig=eig, polish=polish, null=null)


def test_decide_maps_evidence_to_verdicts_without_computing_anything():
    """The verdict rules of the module docstring, one per line, on hand-made evidence."""
    from resland.certificate import decide

    assert decide(_evidence(float("nan")))[0] == "not_critical"
    assert decide(_evidence(2.0, kink=1e-12))[0] == "nondifferentiable"
    assert decide(_evidence(2.0, gnorm=1e-6))[0] == "not_critical"
    assert decide(_evidence(1.0 + 5e-11))[0] == "better_than_linear"
    # inside the R_lin interval: neither side can be defended
    verdict, why = decide(_evidence(1.05, lower=1.0, upper=1.1))
    assert verdict == "inconclusive" and "R_lin interval" in why
    # worse than linear, no negative curvature: positive definite beyond the symmetries → the polish decides
    ok = {"risk": 2.0, "grad_norm": 1e-14, "distance": 1e-9, "iterations": 3, "status": "converged", "err": 1e-13}
    assert decide(_evidence(2.0, polish=ok))[0] == "local_minimum_worse"
    # a null space with a verified higher-order descent, and one without
    verdict, why = decide(_evidence(2.0, lam=(0.0, 2.0), null_dim=2, found=True))
    assert verdict == "degenerate_saddle" and "order ≈ 3" in why
    verdict, why = decide(_evidence(2.0, lam=(0.0, 2.0), null_dim=2, polish=ok))
    assert verdict == "degenerate" and "no verified descent" in why and "best probe risk" in why
    # without the dense spectrum (n > dense_max_params) §8 cannot be decided
    assert decide(_evidence(2.0, null_dim=None))[0] == "inconclusive"
    closes = dict(ok, risk=1.0 + 1e-11)
    verdict, why = decide(_evidence(1.0 + 3e-10, polish=closes))
    assert verdict == "better_than_linear" and "polished" in why
    within_err = dict(ok, risk=1.0 + 3e-10, err=1e-9)
    verdict, why = decide(_evidence(1.0 + 3e-10, polish=within_err))
    assert verdict == "inconclusive" and "a-posteriori" in why
    moved = dict(ok, distance=1.0)
    assert decide(_evidence(2.0, polish=moved))[0] == "inconclusive"
    not_critical = dict(ok, grad_norm=1e-6)
    assert decide(_evidence(2.0, polish=not_critical))[0] == "inconclusive"


def test_certificates_are_frozen(small_data):
    import dataclasses

    cert = resland.certify(resland.ResNet(3, 2, 1), *small_data)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cert.verdict = "local_minimum_worse"
