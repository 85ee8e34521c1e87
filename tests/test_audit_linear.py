"""Adversarial audit of the certified linear baseline and the verdicts that rest on it.

Every case checks ``risk_lower ≤ R_lin ≤ risk_upper`` against an extended-precision reference that
shares no code with resland (tests/mp_reference.py: mpmath SVD at 90 digits, mpmath Newton at 50
digits, or a closed form), and that the interval is as tight as rounding allows where the data
are well conditioned. Verdict cases check that a verdict never contradicts the reference gap: a
``local_minimum_worse`` needs the true gap above ``risk_tol``; ``better_than_linear`` needs it at most
``risk_tol``; anything undecidable must be ``inconclusive`` (counted, never wrong).
"""

import warnings

import mpmath
import numpy as np
import pytest
import torch
from torch import nn

import resland
from resland.linear import NotAttainedWarning

from mp_reference import lstsq_infimum, newton_infimum

EPS = np.finfo(float).eps


def fit_quiet(X, y, loss="squared", bias=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAttainedWarning)
        return resland.best_linear(X, y, loss, bias=bias)


def assert_holds(fit, ref, tight=None):
    """``lower ≤ ref ≤ upper`` (ref an mpmath number), and ``upper − lower ≤ tight`` if given."""
    assert mpmath.mpf(fit.risk_lower) <= ref <= mpmath.mpf(fit.risk_upper), (fit.risk_lower, ref, fit.risk_upper)
    assert fit.risk_lower <= fit.risk <= fit.risk_upper
    if tight is not None:
        assert fit.risk_upper - fit.risk_lower <= tight, fit.risk_upper - fit.risk_lower


def near_combination(rel: float, seed=0, m=60):
    """4 Gaussian columns and a fifth = x0 + x1 + η·u, η set so that σ_min/σ_max ≈ rel."""
    g = np.random.default_rng(seed)
    B = g.standard_normal((m, 4))
    u = g.standard_normal(m)
    X = np.c_[B, B[:, 0] + B[:, 1] + rel * np.sqrt(m) * u / np.linalg.norm(u) * 3]
    y = B @ np.array([1.0, -0.5, 0.25, 2.0]) + 0.3 * g.standard_normal(m) + 0.05 * u
    return X, y


@pytest.mark.parametrize("rel", [1e-4, 1e-8, 1e-12, 1e-15, 1e-16, 1e-17])
def test_near_linear_combinations_hold_the_exact_infimum(rel):
    X, y = near_combination(rel)
    fit = fit_quiet(X, y)
    ref = lstsq_infimum(X, y)
    assert_holds(fit, ref)
    # squared loss: risk_lower is the exact infimum, rounded down
    assert float(ref) - fit.risk_lower <= 4 * EPS * float(ref)
    if rel >= 1e-8:   # resolved by float64: the returned (t, t0) attains it to rounding
        assert fit.risk_upper - fit.risk_lower <= 1e-12 * fit.risk and fit.attained and not fit.why_wide
    elif fit.risk_upper - fit.risk_lower > 1e-10 * max(1.0, fit.risk):
        assert fit.why_wide                                      # a wide interval says why


def test_the_issue_case_rounded_sum_column_60x5():
    """A column equal to the rounded sum of two others: the exact infimum is 0.2 % below lstsq's value."""
    g = np.random.default_rng(0)
    X = g.standard_normal((60, 4))
    X = np.c_[X, X[:, 0] + X[:, 1]]
    y = g.standard_normal(60)
    fit = fit_quiet(X, y)
    ref = lstsq_infimum(X, y)
    assert_holds(fit, ref)
    assert fit.risk - float(ref) > 1e-3 * fit.risk          # the gap is real …
    assert fit.attained and fit.coef_norm < 10              # … and the fit stays at moderate coefficients
    assert "numerical rank 5 of 6" in fit.why_wide


def test_unscaled_diabetes_with_a_sum_column_never_claims_a_large_gradient():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = np.c_[X, X[:, 0] + X[:, 1]]
    fit = fit_quiet(X, y)
    assert fit.attained and fit.grad_norm <= 1e-8 * fit.grad_scale
    assert fit.coef_norm < 1e4                               # not 3.6e16
    base = fit_quiet(X[:, :-1], y)
    assert fit.risk_lower <= base.risk_lower and abs(fit.risk - base.risk) <= 1e-12 * base.risk


@pytest.mark.parametrize("degree", [5, 9, 13])
def test_vandermonde_features(degree):
    g = np.random.default_rng(1)
    x = np.sort(g.uniform(0, 1, 50))
    X = np.vander(x, degree + 1, increasing=True)[:, 1:]
    y = np.sin(6 * x) + 0.1 * g.standard_normal(50)
    fit = fit_quiet(X, y)
    assert_holds(fit, lstsq_infimum(X, y), tight=1e-10 * fit.risk)   # σ_min/σ_max down to 1e-10: still tight
    assert fit.attained


def test_features_scaled_from_1e_minus_8_to_1e8_in_one_design():
    g = np.random.default_rng(2)
    Z = g.standard_normal((40, 5))
    X = Z * np.array([1e-8, 1e-4, 1.0, 1e4, 1e8])
    y = Z @ np.array([1.0, 2.0, -1.0, 0.5, 0.0]) + 0.2 * g.standard_normal(40)
    fit = fit_quiet(X, y)
    ref = lstsq_infimum(X, y)
    assert_holds(fit, ref, tight=1e-13 * float(ref))


def test_duplicated_rows_and_m_below_d_and_constant_targets():
    g = np.random.default_rng(3)
    X = g.standard_normal((20, 3))
    y = X[:, 0] + 0.5 * g.standard_normal(20)
    Xd, yd = np.r_[X, X[:5]], np.r_[y, y[:5]]                  # duplicated rows
    assert_holds(fit_quiet(Xd, yd), lstsq_infimum(Xd, yd), tight=1e-14)
    Xw, yw = g.standard_normal((6, 10)), g.standard_normal(6)    # m < d: interpolation, infimum 0
    fit = fit_quiet(Xw, yw)
    assert fit.risk_lower == 0.0 and fit.risk_upper <= 1e-28
    fit = fit_quiet(X, np.full(20, 2.5))                         # constant targets: the intercept fits them
    assert fit.risk_lower == 0.0 and fit.risk_upper == 0.0


def test_logistic_separable_single_class_and_quasi_separable():
    x = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]])
    y = np.array([-1.0, -1, -1, 1, 1, 1])
    fit = fit_quiet(x, y, "logistic")                            # separable: infimum 0, not attained
    assert (fit.risk_lower, fit.risk_upper, fit.attained) == (0.0, 0.0, False)
    fit = fit_quiet(x, np.ones(6), "logistic")                   # one class: t0 → ∞
    assert (fit.risk_lower, fit.risk_upper, fit.attained) == (0.0, 0.0, False)
    # quasi-separable: a +1 and a −1 at x = 0 sit on every separating line; infimum 2·log 2 / 8, not attained
    xq, yq = np.r_[x, [[0.0], [0.0]]], np.r_[y, [1.0, -1.0]]
    fit = fit_quiet(xq, yq, "logistic")
    assert_holds(fit, 2 * mpmath.log(2) / 8)
    assert not fit.attained


@pytest.mark.parametrize("name", ["iris", "breast-cancer"])
def test_logistic_on_real_data_is_tight(name):
    ds = resland.load_dataset(name)
    X, y = (ds.X[:, :4], ds.y) if name == "breast-cancer" else (ds.X, ds.y)
    fit = fit_quiet(X, y, "logistic")
    assert fit.attained and fit.bound == "exact-dual"
    ref = newton_infimum(X, np.where(y > 0, 1.0, -1.0), "logistic", np.r_[fit.coef, fit.intercept])
    assert_holds(fit, ref, tight=1e-14 * max(1.0, fit.risk))


def test_pseudo_huber_with_gross_outliers():
    g = np.random.default_rng(4)
    X = g.standard_normal((50, 3))
    y = X @ np.array([1.0, -1.0, 0.5]) + 0.1 * g.standard_normal(50)
    y[[3, 17, 40]] += np.array([1e6, -3e5, 1e4])
    fit = fit_quiet(X, y, "pseudo_huber")
    ref = newton_infimum(X, y, "pseudo_huber", np.r_[fit.coef, fit.intercept])
    assert_holds(fit, ref, tight=1e-9 * float(ref))


class Restricted(nn.Module):
    """``f = w·x₀ + c``: linear in the first feature only, so its global minimum is ≥ R_lin."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.c = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x):
        return self.w * x[:, 0] + self.c


@pytest.mark.parametrize("k", [0.3, 1.0, 1.5, 3.0, 10.0, 100.0])
def test_critical_points_whose_gap_is_a_small_multiple_of_risk_tol(k):
    """The restricted model at its global minimum, with R − R_lin = k · risk_tol by construction."""
    g = np.random.default_rng(6)
    x0 = g.standard_normal(80)
    u = g.standard_normal(80)
    u -= u.mean() + (u - u.mean()) @ (x0 - x0.mean()) / np.sum((x0 - x0.mean()) ** 2) * (x0 - x0.mean())
    u /= np.sqrt(np.mean(u**2))                                   # centred, ⟂ x0, mean square 1
    eps = np.sqrt(k * 1e-10)                                     # R − R_lin ≈ eps² · mean(u²)
    X = np.c_[x0, u]
    noise = 0.2 * g.standard_normal(80)
    noise -= (noise @ u) / (u @ u) * u                            # so that the gap is eps²·mean(u²) exactly
    y = 1.5 * x0 + eps * u + noise
    fit1 = fit_quiet(X[:, :1], y)
    model = Restricted()
    with torch.no_grad():
        model.w.fill_(float(fit1.coef[0]))
        model.c.fill_(fit1.intercept)
    cert = resland.certify(model, X, y)
    R = mpmath.mpf(cert.risk)
    true_gap = float(lstsq_infimum(X[:, :1], y) - lstsq_infimum(X, y))
    assert true_gap == pytest.approx(k * 1e-10, rel=0.2)
    tol = cert.tolerances["risk_tol"]
    if cert.verdict == "local_minimum_worse":
        assert true_gap > tol and "polish standard" in cert.reason
        assert cert.polish is not None and cert.polish["grad_norm"] <= 1e-12
    elif cert.verdict == "better_than_linear":
        assert float(R - lstsq_infimum(X, y)) <= tol * (1 + 1e-6)
    else:
        assert cert.verdict == "inconclusive"
    if k >= 3:
        assert cert.verdict == "local_minimum_worse"   # decisive once the gap clears risk_tol + err
    if k <= 0.3:
        assert cert.verdict == "better_than_linear"
