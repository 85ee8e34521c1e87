"""Safran & Shamir (2018) as ground truth (issue 36): the committed spurious minima recertify from a fresh clone,
and the closed-form population risk is checked against a NumPy implementation written apart (arctan2 angles) and
against Monte Carlo sampling of the Gaussian inputs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import resland
from resland.known.safran_shamir import FIXTURE, FIXTURE_KS, certify_student, population_risk
from resland.linear import linear_fit_for

ROOT = Path(__file__).resolve().parents[1]


def _entries():
    return json.loads((ROOT / FIXTURE).read_text())["minima"]


def _risk_numpy(W: np.ndarray) -> float:
    """``Σ_{a,b} s_a s_b κ(a, b)`` over the student rows (``s = +1``) and the teacher rows ``e_j`` (``s = −1``), with
    angles from arctan2 (not arccos) and ``κ(a, a) = ‖a‖²/2`` written out."""
    k = W.shape[1]
    U = np.vstack([W, np.eye(k)])
    sign = np.r_[np.ones(len(W)), -np.ones(k)]
    total = 0.0
    for i, a in enumerate(U):
        for j, b in enumerate(U):
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            if i == j:
                kab = na * na / 2
            else:
                phi = math.atan2(math.sqrt(max(na * na * nb * nb - (a @ b) ** 2, 0.0)), a @ b)
                kab = na * nb * (math.sin(phi) + (math.pi - phi) * math.cos(phi)) / (2 * math.pi)
            total += sign[i] * sign[j] * kab
    return total


def test_the_fixture_holds_a_certified_spurious_minimum_for_every_k_of_the_claim():
    entries = _entries()
    assert [e["k"] for e in entries] == list(FIXTURE_KS) and all(e["n"] == e["k"] for e in entries)
    for e in entries:
        W = np.array(e["W"])
        assert W.shape == (e["n"], e["k"])
        cert = certify_student(W)
        assert cert["verdict"] == "spurious_minimum" == e["verdict"]
        assert cert["risk"] == pytest.approx(e["risk"], rel=1e-12) and cert["risk"] > 1e-3
        assert cert["grad_norm"] <= 1e-10 and cert["lambda_min"] - cert["residual"] > cert["lambda_tol"]


@pytest.mark.parametrize("index", range(len(FIXTURE_KS)))
def test_an_independent_numpy_risk_its_finite_difference_gradient_and_hessian_agree(index):
    e = _entries()[index]
    W = np.array(e["W"])
    R = _risk_numpy(W)
    assert R == pytest.approx(e["risk"], rel=1e-10)
    if e["k"] > 8:
        return                                  # the O((nk)²) finite-difference Hessian: the small k suffice
    w, h = W.reshape(-1), 1e-4
    f = lambda x: _risk_numpy(x.reshape(W.shape))          # noqa: E731
    E = np.eye(len(w)) * h
    grad = np.array([(f(w + E[i]) - f(w - E[i])) / (2 * h) for i in range(len(w))])
    assert np.abs(grad).max() < 1e-6                        # FD error O(h²)
    H = np.array([[(f(w + E[i] + E[j]) - f(w + E[i] - E[j]) - f(w - E[i] + E[j]) + f(w - E[i] - E[j])) / (4 * h * h)
                   for j in range(len(w))] for i in range(len(w))])
    lam = np.linalg.eigvalsh(0.5 * (H + H.T))
    assert lam[0] == pytest.approx(e["lambda_min"], abs=1e-4) and lam[0] > 0


def test_the_closed_form_matches_monte_carlo_sampling_and_the_teacher_has_risk_zero():
    import torch

    e = _entries()[0]
    W = np.array(e["W"])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400_000, e["k"]))
    err = (np.maximum(X @ W.T, 0).sum(1) - np.maximum(X, 0).sum(1)) ** 2
    assert abs(err.mean() - e["risk"]) <= 5 * err.std() / math.sqrt(len(err))
    assert float(population_risk(torch.eye(5, dtype=torch.float64))) == 0.0
    assert certify_student(np.eye(6)[[2, 0, 1, 5, 4, 3]])["verdict"] == "global_minimum"


# --- the problem protocol and the neighbouring papers (issue 36) ----------------------------------------------------

import subprocess  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402

from resland.known.claims_linear import deep_linear_saddles  # noqa: E402
from resland.known.claims_networks import leaky_construction  # noqa: E402
from resland.known.linear_nets import DeepLinear, LinearResNet, centred, iris_sepal_to_petal  # noqa: E402
from resland.known.papers import PAPERS  # noqa: E402
from resland.known.problem import (Baseline, Problem, certify_problem, find_critical, find_minimum,  # noqa: E402
                                   taylor_coefficient)
from resland.known.safran_shamir import StudentTeacher, frequency_cell, wilson  # noqa: E402


def _diabetes():
    from sklearn.datasets import load_diabetes

    b = load_diabetes()
    return centred(b.data), centred(b.target[:, None])[:, 0]


def test_deep_linear_baseline_is_sklearn_least_squares_and_descent_attains_it():
    from sklearn.linear_model import LinearRegression

    X, y = _diabetes()
    lr = LinearRegression(fit_intercept=False).fit(X, y)
    ref = float(np.mean((lr.predict(X) - y) ** 2))
    p = DeepLinear(X, y, (3, 2), "diabetes")
    assert p.baseline.value == pytest.approx(ref, rel=1e-12) and p.baseline.kind == "global_minimum"
    th = find_minimum(p, seed=0)
    cert = certify_problem(p, th)
    assert cert.verdict == "global_minimum" and abs(cert.risk - ref) <= 1e-9


@pytest.mark.parametrize("widths", [(3,), (3, 3), (4, 2, 3)])
def test_kawaguchi_zero_is_a_saddle_strict_only_at_depth_two(widths):
    X, y = _diabetes()
    p = DeepLinear(X, y, widths)
    cert = certify_problem(p, torch.zeros(p.n, dtype=torch.float64))
    L = len(widths) + 1
    if L == 2:
        # independent: the Hessian's off-diagonal block at 0 is −2/m Xᵀy ⊗ (W_2 row): its norm is 2‖Xᵀy‖/m
        assert cert.verdict == "saddle"
        assert cert.lambda_min == pytest.approx(-2 * np.linalg.norm(X.T @ y) / len(y), rel=1e-10)
        return
    assert cert.verdict == "degenerate_saddle" and cert.lambda_min == 0.0 and cert.descent_order == L
    # independently: with every layer a rank-one outer product s·(ones), R(t·u) − R(0) = −2 t^L s E[y·xᵀa] + O(t^{2L})
    a = X.T @ y
    a = a / np.linalg.norm(a)
    W = [a[None, :]] + [np.ones((1, 1))] * 0
    d = X.shape[1]
    shapes = list(zip(list(widths) + [1], [d] + list(widths)))
    parts = []
    for i, (r, c) in enumerate(shapes):
        M = np.zeros((r, c))
        if i == 0:
            M[0] = a
        else:
            M[0, 0] = 1.0
        parts.append(M.reshape(-1))
    u = np.concatenate(parts)
    R0 = float(np.mean(y ** 2))
    for sign in (1.0, -1.0):
        t = sign * 0.05
        f = (X @ a) * t ** L
        drop = float(np.mean((f - y) ** 2)) - R0
        if sign > 0:
            assert drop < 0            # E[y·aᵀx] > 0: the risk falls on the positive side
    assert float(p.risk(torch.as_tensor(0.05 * u))) < R0
    del W


def test_taylor_coefficient_matches_a_closed_form():
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    f = lambda t: (t @ a) ** 3 - (t @ t) ** 2 + t[0]  # noqa: E731
    th = torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64)
    u = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    # f(θ + s u) is a polynomial in s: its coefficients from numpy.polyfit of exact samples
    s = np.linspace(-1, 1, 9)
    vals = [float(f(th + si * u)) for si in s]
    coef = np.polyfit(s, vals, 4)[::-1]
    for p in (1, 2, 3, 4):
        assert taylor_coefficient(f, th, u, p) == pytest.approx(coef[p], abs=1e-10)


def test_hardt_ma_inside_the_region_global_outside_a_constructed_saddle():
    X, Y, name = iris_sepal_to_petal()
    M, *_ = np.linalg.lstsq(X, Y, rcond=None)
    p = LinearResNet(X, Y, 4, name)
    assert p.baseline.value == pytest.approx(float(np.mean(np.sum((X @ M - Y) ** 2, 1))), rel=1e-12)
    th = find_minimum(p, seed=0)
    assert p.max_block_norm(th) < 1 and certify_problem(p, th).verdict == "global_minimum"
    A = np.zeros((4, 2, 2))
    A[0] = A[1] = -np.eye(2)
    cert = certify_problem(p, A.reshape(-1))
    # the numpy gradient at A_1 = A_2 = −I: every block's gradient has the zero factor I + A_1 or I + A_2
    assert cert.grad_norm == 0.0 and cert.verdict == "saddle"
    assert cert.risk == pytest.approx(float(np.mean(np.sum(Y ** 2, 1))), rel=1e-12)


def test_a_wrong_baseline_is_reported_never_hidden():
    class Shifted(Problem):
        name, n = "shifted", 2
        baseline = Baseline(1.0, "global_minimum", "deliberately wrong")

        def risk(self, t):
            return (t * t).sum()

    assert certify_problem(Shifted(), [0.0, 0.0]).verdict == "below_baseline"
    with pytest.raises(resland.ValidationError):
        certify_problem(Shifted(), [0.0, 0.0, 0.0])
    with pytest.raises(resland.ValidationError):
        Baseline(0.0, "best", "no such kind")


def test_the_frequency_study_counts_only_certified_spurious_minima():
    rows = frequency_cell(8, 8, range(6), steps=600)
    assert [r["seed"] for r in rows] == list(range(6))
    for r in rows:
        assert r["end"] in ("spurious", "global", "other")
        assert (r["end"] == "spurious") == (r["verdict"] == "spurious_minimum")
    lo, hi = wilson(5, 20)
    assert lo == pytest.approx(0.1119, abs=1e-4) and hi == pytest.approx(0.4687, abs=1e-4)


def test_student_kinks_are_nondifferentiable_not_certified():
    p = StudentTeacher(3, 3)
    W = torch.eye(3, dtype=torch.float64) * 0.5
    W[2] = W[1] * 2                                      # two parallel rows
    assert p.kink_margin(W.reshape(-1)) == pytest.approx(0.0, abs=1e-7)
    assert certify_problem(p, W.reshape(-1)).verdict == "nondifferentiable"


def test_the_leaky_construction_is_the_least_squares_predictor_inside_one_region():
    from sklearn.linear_model import LinearRegression

    ds = resland.load_dataset("grunfeld")
    fit = linear_fit_for(resland.init_model("fc", ds.X.shape[1], width=2, depth=1,
                                                           activation="leaky_relu"), ds.X, ds.y, ds.loss)
    net = leaky_construction(ds.X, fit, 3)
    with torch.no_grad():
        pred = net(torch.as_tensor(ds.X)).numpy()
    ref = LinearRegression().fit(ds.X, ds.y).predict(ds.X)
    np.testing.assert_allclose(pred, ref, rtol=0, atol=1e-10)
    z = net.net[0](torch.as_tensor(ds.X)).detach()
    assert float(z.min()) >= 1.0 - 1e-12                 # every pre-activation positive: one region
    loss = ((net(torch.as_tensor(ds.X)) - torch.as_tensor(ds.y)) ** 2).mean()
    g = torch.autograd.grad(loss, list(net.parameters()))
    assert max(float(t.abs().max()) for t in g) < 1e-10


def test_fixture_deep_linear_saddles_recertify():
    fx = json.loads((ROOT / "fixtures" / "deep_linear_saddles.json").read_text())
    X, y = _diabetes()
    for e in fx["saddles"]:
        p = DeepLinear(X, y, e["widths"], "diabetes")
        cert = certify_problem(p, e["parameters"])
        assert cert.verdict == e["verdict"] and cert.descent_order == e["descent_order"]
    assert [e["verdict"] for e in fx["saddles"]] == ["saddle"] + ["degenerate_saddle"] * (len(fx["saddles"]) - 1)


def test_every_neighbouring_claim_of_the_quick_run_is_reproduced(quick_run):
    claims = json.loads((quick_run / "claims.json").read_text())
    for paper in PAPERS.values():
        mine = [c for c in claims if c["paper"] == paper.id]
        assert [c["id"] for c in mine] == list(paper.claims)
        if paper.id != "yun-sra-jadbabaie-2019":
            for c in mine:
                assert c["status"] == "reproduced", (c["id"], c["reason"])
    page = (quick_run / "report.html").read_text()
    assert all(f"id='paper-{p}'" in page for p in PAPERS)


def test_cli_rejects_an_unknown_paper_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "resland.cli", "reproduce", "--paper", "nobody-2020", "--out",
                          str(tmp_path / "r")], capture_output=True, text=True)
    assert out.returncode == 2 and "nobody-2020" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
