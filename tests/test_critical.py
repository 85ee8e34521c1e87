"""find_critical_point: convergence to float64 precision, honest statuses, and Shamir's case."""

import warnings

import numpy as np
import pytest
import torch

import resland
from conftest import reference_hessian, teacher_problem
from test_certificate import constructed_saddle
from resland.models import init_model

TEACHERS = [dict(seed=0, L=2), dict(seed=2, L=1), dict(seed=3, L=2, d=3), dict(seed=4, L=3),
            dict(seed=3, L=2, d=3, activation="softplus")]


@pytest.mark.parametrize("cfg", TEACHERS, ids=[str(c) for c in TEACHERS])
def test_minimum_on_realizable_data(cfg):
    teacher, student, X, y = teacher_problem(**cfg)
    # the teacher is conditioned well enough: smallest clearly nonzero eigenvalue ≥ 1e-8 · λ_max
    ev = np.linalg.eigvalsh(reference_hessian(teacher, X, y).numpy())
    assert ev[ev > 1e-12 * ev[-1]][0] >= 1e-8 * ev[-1]
    before = [p.detach().clone() for p in student.parameters()]
    cp = resland.find_critical_point(student, X, y, tol=1e-10)
    assert all(torch.equal(a, b) for a, b in zip(before, student.parameters())), "input model modified"
    assert cp.converged and cp.status == "converged", cp.message
    assert cp.grad_norm <= 1e-10 * max(1.0, cp.risk)
    assert cp.risk <= 1e-16  # the global minimum is R = 0
    # certificate consistent with an independent dense computation at the returned point
    cert = resland.certify(cp.model, X, y)
    assert cert.verdict == "better_than_linear"
    evals = np.linalg.eigvalsh(reference_hessian(cp.model, X, y).numpy())
    assert abs(cert.lambda_min - evals[0]) <= 1e-8 * abs(evals[-1])
    assert abs(cert.lambda_max - evals[-1]) <= 1e-8 * abs(evals[-1])
    assert evals[0] >= -cert.tolerances["lambda_tol"]  # a minimum: no negative curvature


def test_krylov_path_matches_dense():
    _, student, X, y = teacher_problem(seed=0, L=2)
    cp = resland.find_critical_point(student, X, y, dense_max_params=0)
    assert cp.method == "krylov"
    assert cp.converged, cp.message
    assert cp.grad_norm <= 1e-10 * max(1.0, cp.risk)


def test_diverging_when_no_finite_minimiser():
    """Logistic loss on separable data: the infimum 0 is approached only as ‖θ‖ → ∞."""
    torch.manual_seed(0)
    X = torch.randn(40, 2, dtype=torch.float64)
    y = torch.sign(X[:, 0] + 0.5 * X[:, 1])
    X[:, 0] += 0.5 * y
    cp = resland.find_critical_point(resland.ResNet(2, 2, 1, "tanh"), X, y, loss="logistic")
    assert cp.outcome == "diverging" and not cp.converged, cp.message
    ev = cp.divergence  # the evidence, recomputed from the run's history
    assert ev["diverging"] and ev["growth"] >= 1.05 and ev["risk_decrease"] > 0
    R, g, t = zip(*cp.history)
    h = len(cp.history) // 2
    assert t[-1] > t[h] and R[-1] < R[h]


@pytest.mark.parametrize("seed", range(4))
def test_never_converged_above_tolerance(seed, small_data):
    torch.manual_seed(seed)
    cp = resland.find_critical_point(resland.ResNet(3, 3, 2, "softplus"), *small_data, max_iter=3)
    assert not cp.converged and cp.status in ("max_iter", "diverging", "stalled")
    assert cp.outcome in ("below_linear", "diverging", "unresolved")
    assert cp.grad_norm > cp.grad_tol or cp.newton_step > 1e-6 * (1 + cp.param_norm)


def test_kind_any_reaches_a_saddle():
    """Newton-type search from near the constructed strict saddle converges to a saddle."""
    model, X, y = constructed_saddle()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3 * torch.randn(p.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5)))
    cp = resland.find_critical_point(model, X, y, kind="any")
    assert cp.converged, cp.message
    cert = resland.certify(cp.model, X, y)
    assert cert.lambda_min < -cert.tolerances["lambda_tol"]


@pytest.mark.parametrize("kind", ["minimum", "any"])
def test_shamir_critical_points_are_better_than_linear_or_strict_saddles(kind, noisy_teacher_data):
    """C5 (L = 1): at converged critical points from many seeds, never a point worse than linear without
    negative curvature (degenerate_saddle, local_minimum_worse, degenerate)."""
    X, y = noisy_teacher_data
    verdicts = []
    for seed in range(8):
        torch.manual_seed(seed)
        cp = resland.find_critical_point(resland.ResNet(2, 2, 1, "tanh"), X, y, kind=kind, max_iter=150)
        if cp.converged:
            cert = resland.certify(cp.model, X, y)
            verdicts.append(cert.verdict)
            assert cert.verdict in ("better_than_linear", "strict_saddle"), f"seed={seed}: {cert.reason}"
    assert len(verdicts) >= 5, f"only {len(verdicts)} of 8 seeds converged"


def test_validation_messages(small_data):
    torch.manual_seed(0)
    model = resland.ResNet(3, 2, 1)
    with pytest.raises(resland.ValidationError) as err:
        resland.find_critical_point(model, *small_data, kind="saddle")
    assert str(err.value) == "The 'kind' parameter must be one of 'minimum', 'any'. Got 'saddle' instead."
    with pytest.raises(resland.ValidationError) as err:
        resland.find_critical_point(model, *small_data, tol=0)
    assert str(err.value) == "The 'tol' parameter must be a float in the range (0, inf). Got 0 instead."
    with pytest.raises(resland.ValidationError) as err:
        resland.find_critical_point(model, *small_data, max_iter=0)
    assert str(err.value) == "The 'max_iter' parameter must be an int in the range [1, inf). Got 0 instead."


def test_newton_always_max_sets_where_second_order_steps_are_tried_every_iteration():
    """n = 32: by default (150) Newton steps from the start; with 0, GGN alone far from a critical point."""
    ds = resland.load_dataset("diabetes")
    steps = {nam: resland.find_critical_point(init_model("resnet", 10, width=1, depth=1, activation="tanh"),
                                              ds.X, ds.y, max_iter=5, newton_always_max=nam).steps
             for nam in (150, 0)}
    assert steps[150].get("newton", 0) > 0
    assert set(steps[0]) == {"ggn"}
    with pytest.raises(resland.ValidationError, match="newton_always_max"):
        resland.find_critical_point(init_model("resnet", 10, width=1), ds.X, ds.y, newton_always_max=-1)
