"""HessianOperator and hessian_extremes against a dense reverse-over-reverse Hessian + numpy eigh (float64)."""

import numpy as np
import pytest
import torch
from torch import nn

import resland
from conftest import assert_close, reference_hessian

RTOL = 1e-8


def _models():
    torch.manual_seed(0)
    yield "resnet-softplus", resland.ResNet(3, 4, 2, "softplus"), "squared"
    yield "resnet-tanh-2layer-branch", resland.ResNet(3, 3, 3, "tanh", branch_layers=2), "squared"
    yield "resnet-gelu-logistic", resland.ResNet(3, 3, 2, "gelu"), "logistic"
    yield "fc-tanh", resland.FCNet(3, 5, 2, "tanh"), "pseudo_huber"
    yield "user-sequential", nn.Sequential(nn.Linear(3, 4, dtype=torch.float64), nn.Tanh(),
                                           nn.Linear(4, 1, dtype=torch.float64)), "squared"


MODELS = list(_models())


def _data(loss, small_data, binary_data):
    return binary_data if loss == "logistic" else small_data


@pytest.mark.parametrize("name,model,loss", MODELS, ids=[m[0] for m in MODELS])
def test_hvp_matches_dense_reference(name, model, loss, small_data, binary_data):
    X, y = _data(loss, small_data, binary_data)
    H = reference_hessian(model, X, y, loss)
    n = H.shape[0]
    V = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    op = resland.HessianOperator.from_model(model, X, y, loss)
    atol = 1e-12 * float(H.abs().max())
    assert op.shape == (n, n)
    for j in range(3):
        assert_close(op @ V[:, j], H @ V[:, j], rtol=RTOL, atol=atol, what=f"HVP {name}")
    assert_close(op @ V, H @ V, rtol=RTOL, atol=atol, what=f"block product {name}")
    assert_close(op.dense(), H, rtol=RTOL, atol=atol, what=f"dense Hessian {name}")
    assert_close(torch.as_tensor(op.to_scipy() @ V[:, 0].numpy()), H @ V[:, 0], rtol=RTOL, atol=atol,
                 what=f"SciPy operator {name}")


@pytest.mark.parametrize("method", ["dense", "lanczos", "arpack"])
@pytest.mark.parametrize("name,model,loss", MODELS, ids=[m[0] for m in MODELS])
def test_extremes_match_eigh(name, model, loss, method, small_data, binary_data):
    X, y = _data(loss, small_data, binary_data)
    evals = np.linalg.eigh(reference_hessian(model, X, y, loss).numpy())[0]
    eig = resland.hessian_extremes(model, X, y, loss=loss, method=method, tol=1e-12)
    scale = max(abs(evals[0]), abs(evals[-1]))
    assert eig.method == method and eig.converged
    assert abs(eig.lambda_min - evals[0]) <= RTOL * scale, (eig.lambda_min, evals[0])
    assert abs(eig.lambda_max - evals[-1]) <= RTOL * scale, (eig.lambda_max, evals[-1])
    assert float(torch.linalg.norm(eig.vec_min)) == pytest.approx(1.0, abs=1e-12)
    # the reported residual is honest: recompute ‖Hv − λv‖ with the reference Hessian
    H = reference_hessian(model, X, y, loss)
    res = float(torch.linalg.norm(H @ eig.vec_min - eig.lambda_min * eig.vec_min))
    assert eig.residual == pytest.approx(res, rel=1e-6, abs=1e-13 * scale)
    assert eig.residual <= 1e-5 * scale


def test_indefinite_case_is_covered(small_data):
    """At random parameters the Hessian is indefinite: λ_min < 0 is exercised above."""
    torch.manual_seed(0)
    model = resland.ResNet(3, 4, 2, "softplus")
    eig = resland.hessian_extremes(model, *small_data)
    assert eig.lambda_min < -1e-3 * eig.lambda_max


@pytest.mark.parametrize("method", ["lanczos", "arpack"])
def test_lanczos_not_converged_flag(small_data, method):
    torch.manual_seed(3)
    model = resland.ResNet(3, 8, 4, "tanh")
    eig = resland.hessian_extremes(model, *small_data, method=method, tol=1e-14, maxiter=1, ncv=4)
    assert not eig.converged


def test_unknown_method(small_data):
    torch.manual_seed(0)
    with pytest.raises(resland.ValidationError) as err:
        resland.hessian_extremes(resland.ResNet(3, 2, 1), *small_data, method="power")
    assert str(err.value) == ("The 'method' parameter must be one of 'auto', 'dense', 'lanczos', 'arpack'. "
                              "Got 'power' instead.")


SPECTRA = {
    "clustered": np.r_[np.full(30, 1.0), np.full(30, 1.0 + 1e-9), np.linspace(2, 3, 20)],
    "tiny_gap": np.r_[-1.0, -1.0 + 1e-7, np.linspace(0, 1, 60)],
    "negative": np.r_[np.linspace(-5, -4, 10), np.linspace(-1, 1e-3, 50), 7.0],
}


@pytest.mark.parametrize("which", ["smallest", "largest", "both"])
@pytest.mark.parametrize("name", sorted(SPECTRA))
def test_native_lanczos_on_known_spectra(name, which):
    """Random symmetric matrices A = Q diag(λ) Qᵀ with clustered, nearly equal and negative eigenvalues."""
    lam = SPECTRA[name]
    n = len(lam)
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))
    A = torch.as_tensor(Q @ np.diag(lam) @ Q.T)
    out, vecs, matvecs, converged = resland.curvature.lanczos(lambda idx, V: V @ A, n, seeds=[1], which=which,
                                                             tol=1e-12)
    assert converged[0] and 0 < matvecs[0] <= n
    ends = {"smallest": [0], "largest": [1], "both": [0, 1]}[which]
    for e in ends:
        ref = lam.min() if e == 0 else lam.max()
        v = vecs[0, e]
        res = float(torch.linalg.norm(A @ v - out[0, e] * v))  # the honest residual
        assert abs(float(out[0, e]) - ref) <= res + 1e-12 * np.abs(lam).max()
        assert res <= 1e-10 * np.abs(lam).max()


def test_operator_products_agree_with_the_reference(small_data):
    """The cached-graph product (vectors) and forward-over-reverse (blocks): the same values, the
    graph reused, under no_grad too; a product of the wrong shape is refused."""
    torch.manual_seed(5)
    model = resland.ResNet(3, 4, 2, "tanh")
    X, y = small_data
    fr = resland.FlatRisk(model, X, y)
    H = reference_hessian(model, X, y)
    op = resland.HessianOperator(fr, fr.theta0)
    for seed in range(3):
        v = torch.randn(fr.n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert_close(op @ v, H @ v, rtol=1e-10, atol=1e-13, what="HVP")
        assert_close((op @ v[:, None])[:, 0], H @ v, rtol=1e-10, atol=1e-13, what="block HVP")
    assert op.products == 6  # one per vector, per column of a block
    with torch.no_grad():  # works under no_grad too
        assert_close(op @ v, H @ v, rtol=1e-10, atol=1e-13, what="HVP under no_grad")
    with pytest.raises(resland.ValidationError, match="H @ V"):
        op @ torch.ones(fr.n + 1, dtype=torch.float64)
    with pytest.raises(resland.ValidationError, match="'theta' parameter"):
        resland.HessianOperator(fr, torch.ones(2, 3, fr.n, dtype=torch.float64))
    with pytest.raises(resland.ValidationError, match="one member"):
        resland.HessianOperator(fr, torch.stack([fr.theta0, fr.theta0])).to_scipy()


@pytest.mark.parametrize("which", ["smallest", "largest", "both"])
def test_thick_restart_with_a_small_basis(which):
    """A basis of 12 vectors for a 402 × 402 operator whose extremes need ~150 products:
    the thick restarts keep the wanted Ritz pairs, and the answer matches eigh."""
    lam = np.r_[-1e-3, np.linspace(0, 1, 400), 1.001]
    n = len(lam)
    Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((n, n)))
    A = torch.as_tensor(Q @ np.diag(lam) @ Q.T)
    tol = 1e-10
    out, vecs, matvecs, converged = resland.curvature.lanczos(lambda idx, V: V @ A, n, seeds=[0], which=which,
                                                             tol=tol, max_basis=12, max_steps=3000)
    assert converged[0] and matvecs[0] > 12  # restarted, and still converged
    for e in {"smallest": [0], "largest": [1], "both": [0, 1]}[which]:
        v = vecs[0, e]
        res = float(torch.linalg.norm(A @ v - out[0, e] * v))
        assert res <= 2 * tol * 1.001  # the stopping estimate |β s| is the residual, to rounding
        assert abs(float(out[0, e]) - (lam.min() if e == 0 else lam.max())) <= res


def test_thick_restart_batched_operators_finish_at_different_steps():
    """Three operators, one batch, a basis of 10: each member restarts and stops on its own."""
    rng = np.random.default_rng(4)
    spectra = [np.r_[-2.0, np.linspace(-1, 1, 80)], np.r_[np.linspace(0, 1, 80), 1.5], np.linspace(-1, 1, 81)]
    As = []
    for lam in spectra:
        Q, _ = np.linalg.qr(rng.standard_normal((81, 81)))
        As.append(torch.as_tensor(Q @ np.diag(lam) @ Q.T))
    A = torch.stack(As)
    out, vecs, matvecs, converged = resland.curvature.lanczos(
        lambda idx, V: torch.einsum("kij,kj->ki", A[idx], V), 81, seeds=[0, 1, 2], tol=1e-10, max_basis=10,
        max_steps=5000)
    assert all(converged) and len(set(matvecs)) > 1 and min(matvecs) > 10
    for j, lam in enumerate(spectra):
        for e, ref in ((0, lam.min()), (1, lam.max())):
            v = vecs[j, e]
            res = float(torch.linalg.norm(A[j] @ v - out[j, e] * v))
            assert res <= 2e-10 * max(1.0, np.abs(lam).max())
            # |θ − λ| ≤ ‖r‖ for the rounded A, whose eigenvalues differ from lam by up to ~n·eps·‖A‖
            assert abs(float(out[j, e]) - ref) <= res + 81 * np.finfo(float).eps * np.abs(lam).max()
