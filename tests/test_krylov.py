"""The matrix-free layer (resland.krylov) against dense float64 references.

References: the one-batch :class:`~resland.functional.FlatRisk`, the dense Hessian of
``torch.func.hessian``, ``G = (1/m) Jᵀ diag(ℓ'') J`` from ``torch.func.jacrev``, ``numpy.linalg``
solves and pseudo-inverses. Tolerances are relative, a few hundred ulps of the quantities' scale.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import hessian, jacrev

import resland
from resland import tolerances as T
from resland.functional import FlatRisk
from resland.krylov import ChunkedRisk, NewtonCG, minres, solve, steihaug

REL = 1e-12   # products summed in another order: agreement to ~100 ulps of their norm


def _problem(loss="squared", m=203, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, d, generator=g, dtype=torch.float64)
    y = torch.tanh(X @ torch.randn(d, generator=g, dtype=torch.float64)) + 0.1 * torch.randn(m, generator=g, dtype=torch.float64)
    if loss == "logistic":
        y = torch.where(y > 0, 1.0, -1.0).to(torch.float64)
    torch.manual_seed(seed)
    model = resland.ResNet(d, 4, 2, "tanh").double()
    return model, X, y


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("cached", [True, False])
def test_chunked_products_equal_the_dense_references(loss, cached, monkeypatch):
    """R, ∇R, Hv (vector and block) and Gv over chunks of 50 (m = 203: a ragged last chunk), with the
    graphs kept (4 or 5 chunks) or recomputed per product."""
    monkeypatch.setattr(T, "CACHED_CHUNKS", 5 if cached else 0)
    model, X, y = _problem(loss)
    fr, cr = FlatRisk(model, X, y, loss), ChunkedRisk(model, X, y, loss, chunk=50)
    assert [s.stop - s.start for s in cr.slices] == [50, 50, 50, 50, 3]
    th = fr.theta0
    v = torch.randn(fr.n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    V = torch.randn(fr.n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    H = hessian(fr.risk)(th)
    J = jacrev(fr.predict)(th)
    d2 = fr.loss.d2(fr.predict(th), fr.y)
    G = J.T @ (d2[:, None] * J) / fr.m
    assert abs(float(cr.risk(th)) - float(fr.risk(th))) <= REL * max(1.0, float(fr.risk(th)))
    R, g = cr.risk_and_grad(th)
    assert torch.linalg.norm(g - fr.grad(th)) <= REL * torch.linalg.norm(fr.grad(th))
    assert torch.linalg.norm(cr.grad(th) - g) <= REL * torch.linalg.norm(g)
    assert torch.linalg.norm(cr.hvp(th, v) - H @ v) <= REL * torch.linalg.norm(H) * torch.linalg.norm(v)
    assert torch.linalg.norm(cr.hvp(th, V) - H @ V) <= REL * torch.linalg.norm(H) * torch.linalg.norm(V)
    assert torch.linalg.norm(cr.ggn(th, v) - G @ v) <= REL * torch.linalg.norm(G) * torch.linalg.norm(v)
    assert torch.equal(cr.predict(th), torch.cat([fr.predict(th, X[s]) for s in cr.slices]))


def test_the_hessian_operator_and_lanczos_use_the_chunked_products():
    """λ_min, λ_max of a ChunkedRisk's HessianOperator by Lanczos = eigvalsh of the dense Hessian; a warm
    start (the eigenvector itself) converges in a few products."""
    model, X, y = _problem()
    fr, cr = FlatRisk(model, X, y), ChunkedRisk(model, X, y, chunk=64)
    th = fr.theta0
    ev = np.linalg.eigvalsh(hessian(fr.risk)(th).numpy())
    op = resland.HessianOperator(cr, th)
    eig = op.extremes(method="lanczos", tol=1e-12, seed=3)
    scale = abs(ev).max()
    assert abs(eig.lambda_min - ev[0]) <= 1e-9 * scale and abs(eig.lambda_max - ev[-1]) <= 1e-9 * scale
    assert cr.products >= eig.matvecs
    warm = resland.HessianOperator(cr, th).extremes(method="lanczos", which="smallest", tol=1e-10,
                                                    start=eig.vec_min)
    assert abs(warm.lambda_min - ev[0]) <= 1e-8 * scale and warm.matvecs < eig.matvecs


def _spd_indefinite_singular(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    spd = Q @ torch.diag(torch.linspace(0.1, 10, n, dtype=torch.float64)) @ Q.T
    ind = Q @ torch.diag(torch.linspace(-3, 5, n, dtype=torch.float64)) @ Q.T
    d = torch.cat([torch.zeros(4, dtype=torch.float64), torch.linspace(-2, 4, n - 4, dtype=torch.float64)])
    sing = Q @ torch.diag(d) @ Q.T
    return spd, ind, sing, torch.randn(n, generator=g, dtype=torch.float64)


def test_minres_solves_symmetric_systems_to_its_residual_and_gives_the_least_norm_solution():
    spd, ind, sing, b = _spd_indefinite_singular()
    for A in (spd, ind):
        x, k = minres(lambda v: A @ v, b, 1e-12, 500)
        ref = torch.as_tensor(np.linalg.solve(A.numpy(), b.numpy()))
        assert torch.linalg.norm(A @ x - b) <= 1e-11 * torch.linalg.norm(b)
        assert torch.linalg.norm(x - ref) <= 1e-9 * torch.linalg.norm(ref) and k <= 80   # n = 40, plus the rounding of a short recurrence
    bc = sing @ b                                 # consistent singular system: the pseudo-inverse solution
    x, _ = minres(lambda v: sing @ v, bc, 1e-13, 500)
    ref = torch.as_tensor(np.linalg.pinv(sing.numpy()) @ bc.numpy())
    assert torch.linalg.norm(x - ref) <= 1e-9 * torch.linalg.norm(ref)
    x, k = minres(lambda v: spd @ v, b, 0.1, 500)   # an inexact solve stops at its residual
    assert torch.linalg.norm(spd @ x - b) <= 0.1 * torch.linalg.norm(b) and k < 20


def test_steihaug_cg_is_newton_inside_the_region_and_stays_on_its_boundary():
    spd, ind, _, b = _spd_indefinite_singular()
    newton = torch.as_tensor(np.linalg.solve(spd.numpy(), -b.numpy()))
    p, _ = steihaug(lambda v: spd @ v, b, 10 * float(torch.linalg.norm(newton)), 1e-12, 500)
    assert torch.linalg.norm(p - newton) <= 1e-9 * torch.linalg.norm(newton)
    for A in (spd, ind):                          # a small region, and negative curvature: the boundary
        p, _ = steihaug(lambda v: A @ v, b, 0.05, 1e-12, 500)
        assert abs(float(torch.linalg.norm(p)) - 0.05) <= 1e-12
        assert float(b @ p + 0.5 * p @ (A @ p)) < 0   # the model decreases


def test_the_krylov_finder_reaches_the_dense_finders_critical_point():
    """A well-conditioned teacher problem (conftest), matrix-free (dense_max_params = 0) and dense: both
    critical to 1e-10 and at the same risk to 1e-12. (Saddle search, kind any, is weaker matrix-free: on
    this problem it stalls at ‖∇R‖ ~ 5e-4 where the dense LM converges; docs/performance.md.)"""
    from conftest import teacher_problem

    _, student, X, y = teacher_problem(seed=0, L=2)
    for kind in ("minimum",):
        kr = resland.find_critical_point(student, X, y, kind=kind, dense_max_params=0)
        de = resland.find_critical_point(student, X, y, kind=kind)
        assert kr.method == "krylov" and kr.outcome == "critical", kr.message
        assert kr.grad_norm <= 1e-10 * max(1.0, kr.risk) and set(kr.steps) <= {"ggn", "newton", "newton_mr", "lm"}
        assert de.outcome == "critical" and abs(kr.risk - de.risk) <= 1e-12 * max(1.0, de.risk)


def test_a_strategy_is_one_class_and_the_driver_takes_it():
    """The driver runs any list of steps: Newton-CG alone converges on a strictly convex problem (a linear
    model, squared loss) and only Newton steps are counted."""
    torch.manual_seed(0)
    X = torch.randn(80, 4, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64) + 0.3 * torch.randn(80, dtype=torch.float64)
    model = resland.LinearModel(4).double()
    cr = ChunkedRisk(model, X, y, chunk=30)
    state, status, _ = solve(cr, cr.theta0, kind="minimum", steps=[NewtonCG()])
    assert status == "converged" and set(state.steps) == {"newton"}
    fit = resland.best_linear(X, y)
    assert abs(state.risk - fit.risk) <= 1e-12 * max(1.0, fit.risk)
    state, status, _ = solve(cr, cr.theta0, kind="any")      # saddle search's default steps, same point
    assert status == "converged" and abs(state.risk - fit.risk) <= 1e-12 * max(1.0, fit.risk)


def test_certify_on_chunked_data_equals_certify_in_one_batch(monkeypatch):
    """The same verdict, R, ‖∇R‖ and λ_min whether the certificate sums over chunks or not."""
    torch.manual_seed(0)
    X = torch.randn(300, 2, dtype=torch.float64)
    y = torch.sin(X[:, 0]) + 0.1 * torch.randn(300, dtype=torch.float64)
    cp = resland.find_critical_point(resland.ResNet(2, 2, 1, "tanh").double(), X, y, kind="any")
    one = resland.certify(cp.model, X, y)
    monkeypatch.setattr(T, "CHUNKED_MIN_ROWS", 100)
    monkeypatch.setattr(T, "CHUNK_BYTES", 1)      # the smallest chunks: 256 rows, two of them
    chunked = resland.certify(cp.model, X, y)
    assert one.verdict == chunked.verdict and one.trivial == chunked.trivial
    assert abs(one.risk - chunked.risk) <= 1e-14 * max(1.0, one.risk)
    assert abs(one.grad_norm - chunked.grad_norm) <= 1e-13
    assert math.isclose(one.lambda_min, chunked.lambda_min, rel_tol=1e-8, abs_tol=1e-12)
