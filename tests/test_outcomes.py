"""The one finder: an outcome for every run, Newton-MR on singular critical sets, ReLU regions and kinks.

Every outcome is produced on a small constructed case and its evidence is checked with code
that does not go through the finder (autograd, finite differences, least squares).
"""

import json
import math

import numpy as np
import pytest
import torch

import resland
from conftest import assert_close, teacher_problem
from resland.census.runner import CANDIDATES
from resland.critical import divergence, find_critical_point
from resland.functional import FlatRisk, flat_parameters
from resland.models import ResNet, init_model
from resland.tolerances import KINK_CAPTURE
from resland.regions import fixed_pattern, kink_margin, preactivations

RHO = 1.0


def example1_hinge(rho=RHO):
    """``w(x + (ρ/2)·relu(x − 3)) + c`` with the best (w, c): the paper's point, hinge on x = 3."""
    ds = resland.load_dataset("example1", rho=rho)
    X, Y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)
    h = X[:, 0] + (rho / 2) * torch.relu(X[:, 0] - 3)
    w, c = torch.linalg.lstsq(torch.stack([h, torch.ones_like(h)], 1), Y[:, None]).solution[:, 0]
    model = ResNet(1, 1, 1, "relu")
    with torch.no_grad():
        model.U(1).fill_(1.0)
        model.b(1).fill_(-3.0)
        model.V(1).fill_(rho / 2)
        model.out.weight.fill_(float(w))
        model.out.bias.fill_(float(c))
    return model, X, Y


def test_example1_hinge_is_a_clarke_stationary_kink_with_checked_one_sided_derivatives():
    model, X, Y = example1_hinge()
    fr = FlatRisk(model, X, Y)
    R2 = RHO**2 * (12 * RHO**2 + 82 * RHO + 215) / (21 * RHO**2 + 156 * RHO + 420)
    assert float(fr.risk(fr.theta0)) == pytest.approx(R2, rel=1e-14)       # the paper's R2(ρ)
    assert kink_margin(model, X) == 0.0                                     # the hinge sits on x = 3
    cp = find_critical_point(model, X, Y)
    assert cp.outcome == "kink" and cp.converged and cp.status == "kink", cp.message
    k = cp.kink
    assert k["clarke_stationary"] and k["clarke_residual"] <= k["grad_tol"]
    assert k["kinked"] == [[0, 3, 0]]                                       # sample x = 3, the one unit
    assert cp.risk == pytest.approx(29 / 57, rel=1e-12)                     # the exact global minimum (theory §2)
    assert k["local_minimum"] and k["pieces_minimal"]
    # One-sided derivatives along ±∇z, by one-sided finite differences of the true (ReLU) risk.
    fr = FlatRisk(cp.model, X, Y)
    theta = fr.theta0
    grad_z = torch.func.jacrev(lambda t: t[0] * X[3, 0] + t[1])(theta)       # z_3 = u·x_3 + b (U, b first)
    n = grad_z / torch.linalg.norm(grad_z)
    for side, key in ((1.0, "d_plus"), (-1.0, "d_minus")):
        h = 1e-7
        fd = float(fr.risk(theta + side * h * n) - fr.risk(theta)) / h
        assert fd == pytest.approx(k["one_sided"][0][key], rel=1e-5, abs=1e-8)
    # Both sides go up: no descent direction across the kink, although the two pieces differ.
    assert k["one_sided"][0]["d_plus"] > 0 and k["one_sided"][0]["d_minus"] > 0


def test_relu_interior_critical_point_is_certified_against_the_region_hessian():
    teacher, student, X, y = teacher_problem(seed=1, d=2, k=2, L=1, activation="relu", noise=0.0)
    assert kink_margin(teacher, X) > 10 * KINK_CAPTURE                      # an interior teacher
    cp = find_critical_point(student, X, y)
    assert cp.outcome == "critical" and cp.kink_margin > 0, cp.message
    cert = resland.certify(cp.model, X, y)
    assert cert.verdict == "better_than_linear" and cert.kink_margin == cp.kink_margin
    # Reference: the region's smooth piece (pattern frozen), dense torch.func.hessian + eigh.
    masks = [(z > 0).to(torch.float64) for z in preactivations(cp.model, X)]
    fr = FlatRisk(cp.model, X, y)
    with fixed_pattern(cp.model, masks):
        H = torch.func.hessian(fr.risk)(fr.theta0)
        assert float(fr.risk(fr.theta0)) == pytest.approx(cert.risk, rel=1e-12, abs=1e-30)
    ev = torch.linalg.eigvalsh(0.5 * (H + H.T))
    scale = float(ev.abs().max())
    assert abs(cert.lambda_min - float(ev[0])) <= 1e-8 * scale
    assert abs(cert.lambda_max - float(ev[-1])) <= 1e-8 * scale


def test_newton_mr_converges_superlinearly_on_a_singular_critical_set():
    """d = 3, L = 2: (d − 1)·k = 4 exact zero eigenvalues at the minimum (theory §6)."""
    teacher, student, X, y = teacher_problem(seed=3, d=3, L=2)
    cp = find_critical_point(student, X, y)
    assert cp.outcome == "critical", cp.message
    fr = FlatRisk(cp.model, X, y)
    ev = torch.linalg.eigvalsh(torch.func.hessian(fr.risk)(fr.theta0))
    assert int((ev.abs() <= 1e-8 * float(ev.abs().max())).sum()) >= 4     # singular: Newton does not exist
    assert cp.steps.get("newton_mr", 0) >= 1, cp.steps
    g = [h[1] for h in cp.history]
    # Faster than linear: the gradient ratio per step falls towards 0 at the end.
    ratios = [g[i + 1] / g[i] for i in range(len(g) - 1) if g[i] > 1e-13]
    assert min(ratios[-3:]) <= 1e-2, ratios[-6:]
    assert any(g[i + 1] <= 10 * g[i] ** 1.5 for i in range(len(g) - 1) if 1e-9 < g[i] < 1e-3), g


def xor_data(m=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, 2, generator=g, dtype=torch.float64) * 0.3
    corners = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    lab = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    X = X + corners[torch.arange(m) % 4]
    return X, lab[torch.arange(m) % 4]


def test_xor_logistic_is_below_linear_with_a_recomputed_path_minimum():
    X, y = xor_data()
    fit = resland.best_linear(X, y, "logistic")
    cp = find_critical_point(init_model("resnet", 2, width=4, depth=1, activation="tanh", seed=0), X, y,
                             loss="logistic", max_iter=150)
    assert cp.outcome == "below_linear" and not cp.converged, cp.message
    assert cp.path_min_risk < fit.risk - 1e-10
    # The path minimum is a risk the run actually visited: the smallest recorded iterate risk.
    assert cp.path_min_risk == pytest.approx(min(h[0] for h in cp.history), rel=1e-12)
    ev = divergence(cp.history)
    assert ev is not None and ev["risk_decrease"] > 0


def test_a_vanishing_gradient_plateau_is_critical_by_the_one_test_that_certify_uses():
    """A deep narrow tanh FC net on iris stalls where the gradient vanishes (the constant predictor,
    R = log 2); its Newton-distance estimate stays above xtol, yet the finder and certify agree.
    Depth 32: at depth 24 the same start left the plateau once the dense Hessian's rounding changed."""
    ds = resland.load_dataset("iris")
    cp = find_critical_point(init_model("fc", 4, width=2, depth=32, activation="tanh", seed=0), ds.X, ds.y,
                             loss=ds.loss, max_iter=100)
    assert cp.outcome == "critical" and cp.converged, cp.message
    assert cp.newton_step > 1e-6 * (1 + cp.param_norm)          # the distance test alone would not pass
    fr = FlatRisk(cp.model, ds.X, ds.y, ds.loss)
    theta = flat_parameters(cp.model.parameters()).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(fr.risk(theta), theta)             # autograd, not the finder's gradient
    R = float(fr.risk(theta.detach()))
    assert float(torch.linalg.norm(g)) <= 1e-10 * max(1.0, R)
    assert R == pytest.approx(math.log(2), abs=1e-9)       # balanced classes, constant logit 0
    cert = resland.certify(cp.model, ds.X, ds.y, ds.loss)
    assert cert.verdict not in ("not_critical", "nondifferentiable"), cert.reason


def test_unresolved_runs_keep_their_parameters():
    X, y = xor_data()
    model = init_model("resnet", 2, width=2, depth=1, activation="tanh", seed=1)
    cp = find_critical_point(model, X, y, loss="logistic", kind="any", max_iter=2)
    assert cp.outcome == "unresolved" and cp.parameters is not None
    assert_close(cp.parameters, flat_parameters(cp.model.parameters()), rtol=0, what="kept parameters")


def test_a_non_finite_risk_fails_with_the_reason():
    X = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    model = init_model("resnet", 1, width=1, depth=1, seed=0)
    with torch.no_grad():
        model.V(1).fill_(float("inf"))
    cp = find_critical_point(model, X, y)
    assert cp.outcome == "failed" and cp.status == "nan" and "non-finite" in cp.message
    assert not math.isfinite(cp.risk)


def dead_branch_model(X, y):
    """tanh branches with U = 0, b = 0 (φ ≡ 0) and (w, c) the least-squares fit: f is the best linear predictor."""
    model = ResNet(X.shape[1], 2, 2, "tanh")
    t = torch.linalg.lstsq(torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1), y[:, None]).solution[:, 0]
    with torch.no_grad():
        for l in (1, 2):
            model.U(l).zero_()
            model.b(l).zero_()
        model.out.weight.copy_(t[:-1][None])
        model.out.bias.fill_(float(t[-1]))
    return model


def test_linear_equivalent_flags_a_dead_branch_point_and_not_an_interpolating_minimum(small_data):
    X, y = small_data
    cert = resland.certify(dead_branch_model(X, y), X, y)
    assert cert.verdict == "better_than_linear" and cert.linear_equivalent
    assert abs(cert.risk - cert.linear_risk) <= 1e-14
    teacher, student, Xt, yt = teacher_problem(seed=0, L=2, noise=0.0)
    cp = find_critical_point(student, Xt, yt)
    cert = resland.certify(cp.model, Xt, yt)
    assert cp.outcome == "critical" and cert.verdict == "better_than_linear" and not cert.linear_equivalent
    assert cert.risk < cert.linear_risk - 1e-3


def test_one_finder_gives_one_answer_through_the_api_the_cli_and_the_census(tmp_path, capsys):
    from resland.census import RunStore, load_spec, run_census
    from resland.cli import main

    args = dict(data="diabetes", depth=1, width=2, activation="tanh", seed=3, kind="any", max_iter=60)
    ds = resland.load_dataset("diabetes")
    model = init_model("resnet", 10, width=2, depth=1, activation="tanh", seed=3)
    cp = find_critical_point(model, ds.X, ds.y, kind="any", max_iter=60)
    cert = resland.certify(cp.model, ds.X, ds.y)
    main(["certify", "--json"] + [x for k, v in args.items() for x in (f"--{k.replace('_', '-')}", str(v))])
    out = json.loads(capsys.readouterr().out)
    spec = tmp_path / "one.toml"
    spec.write_text('name = "one"\nseeds = [3]\n[finder]\nkind = "any"\nmax_iter = 60\n[store]\nparameters = "all"\n'
                    '[[grid]]\ndata = "diabetes"\ndepth = 1\nwidth = 2\nactivation = "tanh"\n')
    with RunStore(tmp_path / "runs.db") as store:
        run_census(load_spec(spec), store, workers=1)
        (row,) = list(store.rows())
    theta = flat_parameters(cp.model.parameters())
    assert out["outcome"] == row["outcome"] == cp.outcome
    assert out["certificate"]["verdict"] == row["verdict"] == cert.verdict
    assert out["finder"]["param_norm"] == pytest.approx(float(torch.linalg.norm(theta)), rel=1e-12)
    assert_close(json.loads(row["parameters"]), theta, rtol=0, atol=1e-12, what="census endpoint")
    assert out["finder"]["risk"] == pytest.approx(cp.risk, rel=1e-12)
    assert row["linear_equivalent"] == int(cert.linear_equivalent)


def test_census_stores_parameters_only_for_candidates_by_default(tmp_path):
    from resland.census import RunStore, load_spec, run_census

    spec = tmp_path / "c.toml"
    spec.write_text('name = "c"\nseeds = [0, 1]\n[finder]\nmax_iter = 5\n'
                    '[[grid]]\ndata = "iris"\ndepth = 1\nwidth = 1\nactivation = "tanh"\n')
    from resland.census.report import write_report

    with RunStore(tmp_path / "runs.db") as store:
        run_census(load_spec(spec), store, workers=1)
        rows = list(store.rows())
        write_report(store, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Run outcomes per config" in page and "critical, non-trivial" in page
    assert len(rows) == 2
    for r in rows:
        assert r["outcome"] in resland.OUTCOMES
        keep = r["outcome"] in CANDIDATES["outcomes"] or r["verdict"] in CANDIDATES["verdicts"]
        assert (r["parameters"] is not None) == keep, r["outcome"]


def test_relu_on_diabetes_ends_on_a_kink_that_no_release_descends():
    # The open regime (n = 53 < m = 442). The polish releases a kinked pair when leaving its kink,
    # on either side, lowers the risk; at the end no such side may remain. Checked by one-sided
    # finite differences of the true ReLU risk along d_k = A⁺e_k (A = ∂z_K/∂θ, from U and b directly).
    ds = resland.load_dataset("diabetes")
    X, y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)
    cp = find_critical_point(init_model("resnet", 10, width=2, depth=1, activation="relu", seed=3), X, y)
    assert cp.outcome == "kink" and cp.kink["clarke_stationary"], cp.message
    A1 = np.c_[ds.X, np.ones(len(ds.y))]
    r_lin = float(np.mean((A1 @ np.linalg.lstsq(A1, ds.y, rcond=None)[0] - ds.y) ** 2))
    assert cp.risk < r_lin - 0.01                                           # well below linear, not a trivial point
    fr = FlatRisk(cp.model, X, y)
    theta = fr.theta0
    names = [n for n, _ in cp.model.named_parameters()]
    assert names[:2] == ["blocks.0.branch.0.weight", "blocks.0.branch.0.bias"]   # U (2 × 10), b lead θ
    pairs = [(i, u) for _, i, u in cp.kink["kinked"]]
    z = lambda t: (X @ t[:20].view(2, 10).T + t[20:22])[[i for i, _ in pairs], [u for _, u in pairs]]  # noqa: E731
    assert float(z(theta).abs().max()) <= 1e-12
    D = torch.linalg.pinv(torch.func.jacrev(z)(theta))
    R0, h = float(fr.risk(theta)), 1e-6
    for k in range(len(pairs)):
        d = D[:, k] / torch.linalg.norm(D[:, k])
        for side in (1.0, -1.0):
            slope = (float(fr.risk(theta + side * h * d)) - R0) / h
            assert slope >= -1e-5, (pairs[k], side, slope)


@pytest.mark.parametrize("seed", range(6))
def test_least_norm_point_of_the_gradient_hull_against_a_qp_reference(seed):
    # The Clarke test's polytope: g0 + Σ_groups conv{0, columns of the group}. Reference: SciPy
    # SLSQP on the weights (bounds and group sums) and the optimality gap of the returned point.
    from scipy.optimize import minimize

    from resland.kinks import _least_norm_in_hull

    rng = np.random.default_rng(seed)
    n, sizes = 12, [1, 1, 2, 3, 1]
    groups = np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])
    groups = [g.tolist() for g in groups]
    D = rng.normal(size=(n, sum(sizes)))
    inside = seed % 2 == 0                       # 0 in the hull: the point must be 0 to rounding
    w_in = np.concatenate([rng.dirichlet(np.ones(len(g) + 1))[:-1] for g in groups])
    g0 = -D @ w_in if inside else rng.normal(size=n)
    cols = [torch.as_tensor(c) for c in D.T]
    w, r = _least_norm_in_hull(torch.as_tensor(g0), cols, groups)
    assert (w >= 0).all() and all(w[g].sum() <= 1 + 1e-12 for g in groups)
    assert_close(r.numpy(), g0 + D @ w, rtol=0, atol=1e-14)
    if inside:
        assert float(torch.linalg.norm(r)) <= 1e-12
        return
    cons = [{"type": "ineq", "fun": (lambda x, g=g: 1.0 - x[g].sum())} for g in groups]
    ref = minimize(lambda x: 0.5 * np.sum((D @ x + g0) ** 2), np.zeros(D.shape[1]), jac=lambda x: D.T @ (D @ x + g0),
                   bounds=[(0, 1)] * D.shape[1], constraints=cons, method="SLSQP", options={"ftol": 1e-16})
    x_ref = g0 + D @ ref.x
    assert abs(float(torch.linalg.norm(r)) - np.linalg.norm(x_ref)) <= 1e-9 * np.linalg.norm(x_ref)
    # Optimality gap ‖x‖² − min over the polytope of xᵀv ≥ ‖x − x*‖²: at rounding.
    x = r.numpy()
    gap = x @ x - (x @ g0 + sum(min(0.0, float((D[:, g].T @ x).min())) for g in groups))
    assert 0 <= gap + 1e-13 and gap <= 1e-12


def test_a_deep_relu_descent_below_linear_ends_with_its_path_evidence_without_the_kink_polish():
    """Issue 25's ReLU measure: a depth-3 ReLU ResNet on diabetes (n = 137) stalls on a kink below
    linear after ~40 iterations; the kink polish (830 s for these two runs before) is skipped and the
    run ends below_linear with its path risk, which a fresh forward pass confirms."""
    from resland.ensemble import Ensemble
    from resland.critical import find_critical_points

    ds = resland.load_dataset("diabetes")
    fit = resland.best_linear(ds.X, ds.y)
    ens = Ensemble([init_model("resnet", 10, width=3, depth=3, activation="relu", seed=s) for s in range(2)],
                   ds.X, ds.y)
    for cp in find_critical_points(ens, "minimum", max_iter=200, kink_iter=100):
        assert cp.outcome == "below_linear" and "the kink polish is skipped" in cp.message, cp.message
        assert cp.path_min_risk < fit.risk_lower and cp.kink is None
