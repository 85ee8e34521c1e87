"""The batched ensemble engine against per-member and dense references (float64).

Tolerances: vmapped risks, gradients and HVPs equal the per-member FlatRisk ones to
rtol 1e-12 (same operations, different batching); Hessians equal the reverse-over-reverse
reference to rtol 1e-8; eigenvalues agree with dense ``eigh`` within the honest residual.
"""

import numpy as np
import pytest
import torch

import resland
from resland.critical import find_critical_points
from resland.curvature import HessianOperator
from resland.certificate import certify_ensemble
from resland.ensemble import Ensemble
from resland.functional import flat_parameters
from resland.models import init_model

from conftest import assert_close, reference_hessian, teacher_problem


def _members(d, seeds, **kw):
    return [init_model("resnet", d, seed=s, **kw) for s in seeds]


def _per_sample_grad(model, x):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(model(x)[0], list(model.parameters()))])


def test_vmapped_quantities_equal_per_member_ones(small_data):
    X, y = small_data
    models = _members(3, [0, 1, 2], width=3, depth=2, activation="tanh")
    ens = Ensemble(models, X, y)
    V = torch.randn(3, ens.n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = HessianOperator(ens, ens.theta)
    R, G, HV, H = ens.risk(ens.theta), ens.grad(ens.theta), op @ V, op.dense()
    B = op @ torch.stack([V, 2 * V], 2)  # blocks (k, n, 2)
    for j, model in enumerate(models):
        fr = resland.FlatRisk(model, X, y)
        assert_close(R[j], fr.risk(fr.theta0), rtol=1e-12, what="risk")
        assert_close(G[j], fr.grad(fr.theta0), rtol=1e-12, atol=1e-15, what="gradient")
        one = HessianOperator(fr, fr.theta0)
        assert_close(HV[j], one @ V[j], rtol=1e-10, atol=1e-13, what="HVP")
        assert_close(B[j, :, 1], 2 * (one @ V[j]), rtol=1e-10, atol=1e-13, what="block HVP")
        assert_close(H[j], reference_hessian(model, X, y), rtol=1e-8, atol=1e-12, what="Hessian")
        J = ens.jacobian(ens.theta[j : j + 1])[0]
        ref = torch.stack([_per_sample_grad(model, X[i : i + 1]) for i in range(5)])  # autograd, one sample
        assert_close(J[:5], ref, rtol=1e-12, atol=1e-15, what="per-sample Jacobian")


def test_batched_and_sequential_finders_agree_on_a_teacher_problem():
    _, student, X, y = teacher_problem(seed=0, L=2)  # conditioned well (see test_critical)
    models = []
    for s in range(4):
        torch.manual_seed(s)
        m = resland.ResNet(2, 2, 2, "tanh")
        m.load_state_dict(student.state_dict())
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.02 * torch.randn_like(p))
        models.append(m)
    ens = Ensemble(models, X, y)
    batched = find_critical_points(ens, "minimum", max_iter=100)
    sequential = find_critical_points(ens, "minimum", max_iter=100, batched=False)
    for b, s in zip(batched, sequential):
        assert b.converged and s.converged, (b.message, s.message)
        assert b.grad_norm <= 1e-10 * max(1.0, b.risk) and b.outcome == "critical"
        assert b.risk == pytest.approx(s.risk, abs=1e-12)
        tb = flat_parameters(b.model.parameters())
        ts = flat_parameters(s.model.parameters())
        # The minima form a manifold (theory §6: (d − 1)·k exact zero eigenvalues), and batched
        # kernels round differently, so the two runs may stop at different points of it: they must
        # differ only along the Hessian's null space.
        lam, Q = torch.linalg.eigh(reference_hessian(b.model, X, y))
        across = Q[:, lam.abs() > 1e-8 * float(lam.abs().max())].T @ (tb - ts)
        assert float(torch.linalg.norm(across)) <= 1e-8, float(torch.linalg.norm(across))
        assert float(torch.linalg.norm(tb - ts)) <= 1e-3


def test_any_kind_reaches_the_saddles_of_example2_and_certifies_them_like_certify():
    ds = resland.load_dataset("example2")
    seeds = list(range(6))
    ens = Ensemble(_members(1, seeds, width=2, depth=1), ds.X, ds.y)
    cps = find_critical_points(ens, "any", max_iter=100)
    assert sum(cp.converged for cp in cps) >= 4
    theta = torch.stack([flat_parameters(cp.model.parameters()) for cp in cps])
    certs = certify_ensemble(ens, theta, seeds)
    verdicts = {c.verdict for c in certs}
    assert "strict_saddle" in verdicts and "better_than_linear" in verdicts
    for cp, cert, s in zip(cps, certs, seeds):
        ref = resland.certify(cp.model, ds.X, ds.y, seed=s)  # the sequential path, its own eigensolver
        assert cert.verdict == ref.verdict
        assert cert.risk == pytest.approx(ref.risk, rel=1e-12)
        if ref.lambda_min is not None:
            assert abs(cert.lambda_min - ref.lambda_min) <= cert.eig_residual + 1e-10
        if cert.verdict == "strict_saddle":  # the decrease, recomputed from scratch
            v = cert.escape_direction
            fr = resland.FlatRisk(cp.model, ds.X, ds.y)
            assert float(fr.risk(fr.theta0) - fr.risk(fr.theta0 + cert.escape_step * v)) > 0


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_batched_extremes_match_dense_eigh_with_honest_residuals(small_data, method):
    X, y = small_data
    models = _members(3, [3, 4, 5], width=6, depth=3, activation="tanh")
    ens = Ensemble(models, X, y)
    res = HessianOperator(ens, ens.theta).extremes(seed=[3, 4, 5], method=method, tol=1e-10)
    for j, model in enumerate(models):
        ev, evec = np.linalg.eigh(reference_hessian(model, X, y).numpy())
        r = res[j]
        assert r.converged and r.method == f"{method}-batched"
        assert ev[0] < 0  # an indefinite Hessian: λ_min is really negative
        assert abs(r.lambda_min - ev[0]) <= max(r.residual, 1e-12) + 1e-12
        assert abs(r.lambda_max - ev[-1]) <= max(r.residual_max, 1e-12) + 1e-12
        fr = resland.FlatRisk(model, X, y)
        recomputed = float(torch.linalg.norm(HessianOperator(fr, fr.theta0) @ r.vec_min - r.lambda_min * r.vec_min))
        assert r.residual == pytest.approx(recomputed, rel=1e-6, abs=1e-14)


def test_batched_lanczos_does_not_depend_on_chunks_or_on_who_finishes_first(small_data):
    """Chunks of 1, 2 and all members, graphs rebuilt as members finish, and one call per member:
    the same Ritz values to rounding (a member's start vector is its own seed)."""
    X, y = small_data
    seeds = [10, 11, 12, 13, 14]
    models = _members(3, seeds, width=6, depth=3, activation="tanh")
    ens = Ensemble(models, X, y)
    op = HessianOperator(ens, ens.theta)
    runs = {c: op.extremes(seed=seeds, method="lanczos", tol=1e-10, chunk_size=c) for c in (1, 2, 5)}
    assert len({r.matvecs for r in runs[5]}) > 1  # members finished at different steps
    for j, model in enumerate(models):
        fr = resland.FlatRisk(model, X, y)
        single = HessianOperator(fr, fr.theta0).extremes(method="lanczos", tol=1e-10, seed=seeds[j])
        for c, out in runs.items():
            assert out[j].matvecs == single.matvecs
            assert out[j].lambda_min == pytest.approx(single.lambda_min, rel=1e-12, abs=1e-14)
            assert out[j].lambda_max == pytest.approx(single.lambda_max, rel=1e-12, abs=1e-14)


def test_lanczos_reports_not_converged_when_steps_run_out(small_data):
    X, y = small_data
    ens = Ensemble(_members(3, [0], width=6, depth=3, activation="tanh"), X, y)
    (r,) = HessianOperator(ens, ens.theta).extremes(seed=[0], method="lanczos", max_steps=3, tol=1e-12)
    assert not r.converged


def test_lanczos_on_a_matrix_with_a_known_clustered_spectrum():
    # R(θ) = ½ θᵀAθ on a linear "model" is awkward; use LinearModel with squared loss:
    # H = (2/m) [X 1]ᵀ[X 1], whose spectrum we know from numpy.
    g = np.random.default_rng(3)
    X = g.standard_normal((200, 40)) * np.r_[np.ones(20), 1e-3 * np.ones(20)]  # a tight cluster near 0
    y = g.standard_normal(200)
    model = resland.LinearModel(40)
    ens = Ensemble([model], X, y)
    (r,) = HessianOperator(ens, ens.theta).extremes(seed=[1], method="lanczos", tol=1e-12)
    A = np.c_[X, np.ones(200)]
    ev = np.linalg.eigvalsh(2 / 200 * A.T @ A)
    assert r.converged
    assert abs(r.lambda_min - ev[0]) <= r.residual + 1e-14
    assert abs(r.lambda_max - ev[-1]) <= r.residual_max + 1e-12


def test_bad_ensembles_are_refused():
    ds = resland.load_dataset("example2")
    with pytest.raises(resland.ValidationError, match="one architecture"):
        Ensemble([init_model("resnet", 1, width=2), init_model("resnet", 1, width=3)], ds.X, ds.y)
    with pytest.raises(resland.ValidationError, match="at least one model"):
        Ensemble([], ds.X, ds.y)
    with pytest.raises(resland.ValidationError, match="'kind' parameter"):
        find_critical_points(Ensemble([init_model("resnet", 1, width=2)], ds.X, ds.y), "saddle")


def test_cached_batched_hvp_equals_per_member_products(small_data):
    X, y = small_data
    models = _members(3, [0, 1, 2], width=3, depth=2, activation="tanh")
    ens = Ensemble(models, X, y)
    V = torch.randn(3, ens.n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = HessianOperator(ens, ens.theta)
    for _ in range(2):  # the graph is reused
        HV = op @ V
        for j, model in enumerate(models):
            assert_close(HV[j], reference_hessian(model, X, y) @ V[j], rtol=1e-10, atol=1e-13, what="batched HVP")
