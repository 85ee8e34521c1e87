"""Safran & Shamir (2018) as ground truth (issue 36): the committed spurious minima recertify from a fresh clone,
and the closed-form population risk is checked against a NumPy implementation written apart (arctan2 angles) and
against Monte Carlo sampling of the Gaussian inputs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from resland.known.safran_shamir import FIXTURE, FIXTURE_KS, certify_student, population_risk

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
