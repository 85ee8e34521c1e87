"""Vector outputs (issue 27): k-output models, the cross-entropy, products, R_lin for matrices, the finder
and the certificate. References: torch.func (dense Hessian, Jacobian), scikit-learn, closed forms."""

import warnings

import numpy as np
import pytest
import torch
from torch.func import hessian, jacrev

import resland
from resland import ValidationError
from resland.data import MULTI, load_dataset, outputs
from resland.functional import FlatRisk
from resland.krylov.products import ChunkedRisk
from resland.linear import NotAttainedWarning, best_linear
from resland.losses import get_loss
from resland.models import FCNet, LinearModel, ResNet, build_model, init_model, param_count

REL = 1e-12          # products against the dense references, relative


def _problem(loss: str, k: int, m: int = 40, d: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, d, generator=g, dtype=torch.float64)
    if loss == "cross_entropy":
        y = torch.arange(m, dtype=torch.float64) % k
    else:
        y = torch.randn(m, k, generator=g, dtype=torch.float64)
    return X, y


@pytest.mark.parametrize("loss", ["squared", "pseudo_huber", "cross_entropy"])
@pytest.mark.parametrize("family", ["resnet", "fc"])
def test_products_match_dense_references(loss, family):
    """R, ∇R, Hv and the GGN product of a 3-output net against torch.func's dense Hessian and Jacobian."""
    X, y = _problem(loss, 3)
    net = init_model(family, 3, width=4, depth=2, activation="tanh", seed=1, d_out=3)
    fr = FlatRisk(net, X, y, loss)
    cr = ChunkedRisk(net, X, y, loss, chunk=13)              # ragged chunks
    th = fr.theta0
    assert fr.k == 3 and fr.predict(th).shape == (40, 3)
    L = get_loss(loss)
    with torch.no_grad():
        direct = float(L.per_sample(net(X), L.prepare_targets(y)).mean())
    assert float(cr.risk(th)) == pytest.approx(direct, rel=1e-14)
    assert torch.allclose(cr.grad(th), torch.func.grad(fr.risk)(th), rtol=REL, atol=0)
    H = hessian(fr.risk)(th)
    V = torch.randn(fr.n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert float((cr.hvp(th, V) - H @ V).norm() / (H @ V).norm()) < REL
    J = jacrev(fr.predict)(th)                                # (m, k, n)
    p = fr.predict(th).detach()
    v = V[:, 0]
    Jv = torch.einsum("mkn,n->mk", J, v)
    if loss == "cross_entropy":      # diag(s) − ssᵀ, written out
        s = torch.softmax(p, 1)
        HJv = s * Jv - s * (s * Jv).sum(1, keepdim=True)
    else:
        HJv = L.d2(p, y) * Jv
    G = torch.einsum("mkn,mk->n", J, HJv) / fr.m
    assert float((cr.ggn(th, v) - G).norm() / G.norm()) < REL


def test_cross_entropy_derivatives_match_autograd():
    L = get_loss("cross_entropy")
    g = torch.Generator().manual_seed(3)
    p = torch.randn(7, 4, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 1, 2, 3, 3, 1, 0], dtype=torch.float64)
    f = lambda q: L.value(q, y).sum()          # noqa: E731
    assert torch.allclose(L.d1(p, y), torch.func.grad(f)(p), rtol=1e-14, atol=1e-16)
    H = hessian(f)(p)                          # (7, 4, 7, 4): block diagonal over samples
    v = torch.randn(7, 4, dtype=torch.float64, generator=g)
    assert torch.allclose(L.d2v(p, y, v), torch.einsum("iajb,jb->ia", H, v), rtol=1e-13, atol=1e-15)
    ref = torch.nn.functional.cross_entropy(p, y.long(), reduction="mean")
    assert float(L.risk(p, y)) == pytest.approx(float(ref), rel=1e-15)


def test_models_with_outputs_rebuild_and_count():
    for family, cls in (("resnet", ResNet), ("fc", FCNet), ("linear", LinearModel)):
        net = init_model(family, 5, width=3, depth=2, seed=0, d_out=4)
        assert isinstance(net, cls) and net(torch.zeros(2, 5, dtype=torch.float64)).shape == (2, 4)
        assert sum(p.numel() for p in net.parameters()) == param_count(family, 5, width=3, depth=2, d_out=4)
        assert net.config()["d_out"] == 4 and build_model(net.config()).config() == net.config()
        assert "d_out" not in init_model(family, 5, width=3, depth=2, seed=0).config()   # one output: ids unchanged
    net = ResNet(3, 2, 1, d_out=2)
    assert net.w.shape == (2, 3) and net.c.shape == (2,)


def test_bad_targets_are_refused():
    X, y = _problem("cross_entropy", 3)
    with pytest.raises(ValidationError, match="one logit per class"):
        FlatRisk(ResNet(3, 2, 1), X, y, "cross_entropy")                # one output, 3 classes
    with pytest.raises(ValidationError, match="output"):
        FlatRisk(ResNet(3, 2, 1, d_out=2), X, torch.randn(40, 3, dtype=torch.float64))
    with pytest.raises(ValidationError, match="integer class labels"):
        FlatRisk(ResNet(3, 2, 1, d_out=3), X, y + 0.5, "cross_entropy")
    with pytest.raises(ValidationError, match="shape"):
        best_linear(X, torch.zeros(40, 2, 2, dtype=torch.float64))


def test_multivariate_least_squares_matches_scikit_learn():
    from sklearn.linear_model import LinearRegression

    ds = load_dataset("linnerud-3")
    fit = best_linear(ds.X, ds.y)
    ref = LinearRegression().fit(ds.X, ds.y)
    r_ref = float(((ref.predict(ds.X) - ds.y) ** 2).sum(1).mean())
    assert fit.risk == pytest.approx(r_ref, rel=1e-12)
    assert fit.risk_lower <= r_ref * (1 + 1e-14) and r_ref <= fit.risk_upper * (1 + 1e-14)
    assert fit.risk_upper - fit.risk_lower <= 1e-13 * fit.risk
    assert fit.coef.shape == (3, 3) and np.allclose(fit.coef, ref.coef_, rtol=1e-9, atol=1e-12)
    # the sum of the per-output fits
    parts = [best_linear(ds.X, ds.y[:, j]).risk for j in range(3)]
    assert fit.risk == pytest.approx(sum(parts), rel=1e-15)


def test_multinomial_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    ds = load_dataset("wine-3")
    X = ds.X[:, :2]                         # two features: the classes overlap (not separable)
    fit = best_linear(X, ds.y, "cross_entropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegression(C=np.inf, tol=1e-13, max_iter=100_000).fit(X, ds.y)
    r_ref = log_loss(ds.y, ref.predict_proba(X))
    assert fit.attained and fit.bound == "exact-dual"
    assert fit.risk == pytest.approx(r_ref, rel=1e-9)
    assert fit.risk_lower <= r_ref + 1e-12 and fit.risk_upper - fit.risk_lower <= 1e-12
    assert fit.coef.shape == (3, 2) and fit.intercept.shape == (3,)
    # the reported W, w0 give the reported risk
    logits = torch.as_tensor(X @ fit.coef.T + fit.intercept)
    assert float(get_loss("cross_entropy").risk(logits, torch.as_tensor(ds.y))) == pytest.approx(fit.risk, rel=1e-14)


def test_separable_and_quasi_separable_classes():
    ds = load_dataset("penguins")
    with pytest.warns(NotAttainedWarning, match="separable"):
        fit = best_linear(ds.X, ds.y, "cross_entropy")
    assert (fit.risk, fit.risk_lower, fit.risk_upper, fit.attained, fit.bound) == (0.0, 0.0, 0.0, False, "separable")
    ds = load_dataset("iris-3")             # setosa is separable from the rest, the other two overlap
    with pytest.warns(NotAttainedWarning, match="quasi-separable"):
        fit = best_linear(ds.X, ds.y, "cross_entropy")
    assert not fit.attained and fit.risk_lower <= fit.risk <= fit.risk_upper
    assert fit.why_wide          # the interval says why it is wide


@pytest.mark.parametrize("name", MULTI)
def test_multi_output_sets_load(name):
    ds = load_dataset(name)
    k = {"iris-3": 3, "wine-3": 3, "digits": 10, "penguins": 3, "linnerud-3": 3}[name]
    assert ds.outputs == k == outputs(ds.y, ds.loss)
    assert np.allclose(ds.X.mean(0), 0, atol=1e-12)
    if ds.loss == "cross_entropy":
        assert set(np.unique(ds.y)) == set(range(k))
    else:
        assert ds.y.shape == (ds.X.shape[0], k)


def test_a_three_class_saddle_is_found_and_certified():
    """Saddle search on wine-3 (two features, overlapping classes): a non-trivial strict saddle of a 3-output
    ResNet, its negative eigenvalue confirmed by the dense Hessian and its escape lowering R."""
    ds = load_dataset("wine-3")
    X = ds.X[:, :2]
    net = init_model("resnet", 2, width=2, depth=1, activation="tanh", seed=0, d_out=3)
    cp = resland.find_critical_point(net, X, ds.y, loss="cross_entropy", kind="any", max_iter=300)
    assert cp.outcome == "critical" and cp.grad_norm <= 1e-10 * max(1, cp.risk)
    cert = resland.certify(cp.model, X, ds.y, loss="cross_entropy")
    assert cert.verdict == "strict_saddle" and cert.trivial == "none"
    fr = FlatRisk(cp.model, X, ds.y, "cross_entropy")
    lam = torch.linalg.eigvalsh(hessian(fr.risk)(fr.theta0))
    assert float(lam[0]) == pytest.approx(cert.lambda_min, rel=1e-8)
    assert cert.risk > cert.linear_risk


def test_a_three_class_minimum_better_than_linear():
    ds = load_dataset("wine-3")
    X = ds.X[:, :2]
    net = init_model("fc", 2, width=2, depth=1, activation="tanh", seed=1, d_out=3)
    cp = resland.find_critical_point(net, X, ds.y, loss="cross_entropy", max_iter=300)
    cert = resland.certify(cp.model, X, ds.y, loss="cross_entropy")
    assert cp.outcome == "critical" and cert.verdict == "better_than_linear" and cert.trivial == "none"
    assert cert.risk < cert.linear_risk_lower


def test_last_block_symmetry_directions_with_outputs_are_exact():
    """With k outputs the directions N = a e_jᵀ, a ∈ null(W), leave every prediction unchanged, and there are
    (d − k)·width of them."""
    from resland.symmetry import symmetry_directions

    X, y = _problem("squared", 2, d=5)
    net = init_model("resnet", 5, width=3, depth=2, activation="tanh", seed=4, d_out=2)
    fr = FlatRisk(net, X, y)
    dirs = [s for s in symmetry_directions(fr, fr.theta0) if s.name.startswith("V_L")]
    assert len(dirs) == (5 - 2) * 3
    p0 = fr.predict(fr.theta0)
    for s in dirs:
        assert float((fr.predict(fr.theta0 + 0.7 * s.vector) - p0).abs().max()) < 1e-14


def test_separated_classes_are_a_path_to_infinity_not_a_critical_point():
    """On separable classes the cross-entropy vanishes only at infinity: descent drives R and ‖∇R‖ towards 0
    together, and the finder calls the run diverging, not critical (outcomes.vanishing)."""
    from resland.outcomes import vanishing

    ds = load_dataset("penguins")
    net = init_model("fc", 4, width=2, depth=1, activation="tanh", seed=0, d_out=3)
    cp = resland.find_critical_point(net, ds.X, ds.y, loss="cross_entropy", max_iter=200)
    assert cp.outcome == "diverging" and cp.status == "diverging" and cp.risk <= 1e-10
    assert "path to infinity" in cp.message
    # the rule itself: only for losses that vanish at infinity, only at R ≤ VANISHING_RISK
    assert vanishing("converged", 1e-12, get_loss("squared")) == ("converged", "")
    assert vanishing("converged", 1e-3, get_loss("logistic")) == ("converged", "")
    assert vanishing("kink", 1e-12, get_loss("logistic"))[0] == "diverging"


@pytest.mark.parametrize("m", [6, 40])          # m·k < n (push-through) and m·k > n (solved in n)
def test_the_dense_ggn_step_with_outputs_solves_its_system(m):
    """The batched finder's GGN step for k outputs is −(G + λI)⁻¹∇R with G from torch.func's Jacobian."""
    from resland.ensemble import Ensemble
    from resland.second_order import ggn_step

    X, y = _problem("cross_entropy", 3, m=m)
    net = init_model("resnet", 3, width=4, depth=2, activation="tanh", seed=2, d_out=3)
    ens = Ensemble([net], X, y, "cross_entropy")
    th = ens.theta
    g = ens.grad(th)
    lam = torch.tensor([1e-2], dtype=torch.float64)
    step, pred = ggn_step(ens, th, g, lam, absolute=True)
    fr = ens.fr
    J = jacrev(fr.predict)(th[0])
    s = torch.softmax(fr.predict(th[0]), 1)
    Hout = torch.diag_embed(s) - s[:, :, None] * s[:, None, :]
    G = torch.einsum("mkn,mkl,mlp->np", J, Hout, J) / fr.m
    ref = -torch.linalg.solve(G + 1e-2 * torch.eye(fr.n, dtype=torch.float64), g[0])
    assert float((step[0] - ref).norm() / ref.norm()) < 1e-10
    assert float(pred[0]) == pytest.approx(-float(g[0] @ ref + 0.5 * ref @ G @ ref), rel=1e-10)


@pytest.mark.parametrize("family", ["resnet", "fc"])
def test_the_closed_form_jacobian_covers_k_outputs_and_the_hessian_stays_autodiff(family):
    """ChainDerivatives.jacobian with k outputs (one reverse sweep per output) against torch.func; the dense
    Hessian of a k-output net is autodiff's (the closed-form Hessian is for one output)."""
    X, y = _problem("cross_entropy", 3)
    net = init_model(family, 3, width=4, depth=2, activation="tanh", seed=6, d_out=3)
    fr = FlatRisk(net, X, y, "cross_entropy")
    chain = fr.chain_derivatives
    assert chain is not None and chain.k == 3
    p, J = chain.jacobian(fr.theta0[None])
    assert torch.allclose(p[0], fr.predict(fr.theta0), rtol=1e-14, atol=1e-15)
    J_ref = jacrev(fr.predict)(fr.theta0)
    assert float((J[0] - J_ref).norm() / J_ref.norm()) < 1e-13
    with pytest.raises(TypeError):
        chain.hessian(fr.theta0[None])
    from resland.curvature import HessianOperator
    H = HessianOperator(fr, fr.theta0).dense()
    assert float((H - hessian(fr.risk)(fr.theta0)).norm() / H.norm()) < 1e-12
