"""The large real data sets (resland.rdata): offline, fast, standardised, and an R_lin that matches
scikit-learn's own fit."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

import resland
from resland.rdata import RDATASETS

SIZES = {"diamonds": (53920, 9), "flights": (327346, 7), "movies": (58788, 10), "cps1988": (28155, 9),
         "default": (10000, 3), "fertility": (254654, 7)}


@pytest.mark.parametrize("name", RDATASETS)
def test_each_large_set_loads_offline_in_under_5_s_standardised(name):
    start = time.perf_counter()
    ds = resland.load_dataset(name)
    assert time.perf_counter() - start < 5.0
    assert ds.X.shape == SIZES[name] and ds.y.shape == (SIZES[name][0],) and ds.X.shape[0] >= 10_000
    assert np.isfinite(ds.X).all() and np.isfinite(ds.y).all()
    assert np.allclose(ds.X.mean(0), 0, atol=1e-9) and np.allclose(ds.X.std(0), 1, atol=1e-9)
    if ds.loss == "squared":
        assert abs(ds.y.mean()) <= 1e-9 and abs(ds.y.std() - 1) <= 1e-9
    else:
        assert set(np.unique(ds.y)) == {-1.0, 1.0}


def test_r_lin_of_a_large_regression_and_classification_set_matches_scikit_learn():
    """diamonds (least squares) and default (logistic, unpenalised): scikit-learn's fit lies in resland's
    certified interval up to its own optimisation error."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    ds = resland.load_dataset("diamonds")
    fit = resland.best_linear(ds.X, ds.y)
    ref = float(np.mean((LinearRegression().fit(ds.X, ds.y).predict(ds.X) - ds.y) ** 2))
    assert fit.risk_lower <= ref + 1e-12 and fit.risk_upper - fit.risk_lower <= 1e-10
    assert abs(ref - fit.risk) <= 1e-12
    ds = resland.load_dataset("default")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = resland.best_linear(ds.X, ds.y, "logistic")
        lr = LogisticRegression(penalty=None, tol=1e-12, max_iter=10_000).fit(ds.X, ds.y)
    z = ds.X @ lr.coef_[0] + lr.intercept_[0]
    ref = float(np.mean(np.logaddexp(0.0, -ds.y * z)))
    assert fit.attained and fit.risk_lower <= ref + 1e-12 and ref - fit.risk_upper <= 1e-8


def test_a_census_spec_accepts_the_large_sets_by_name():
    from resland.census import parse_spec

    spec = parse_spec({"grid": {"data": ["diamonds", "default"], "depth": 8, "width": 8, "regime": "below_samples"}})
    assert [c["data"] for c in spec.configs] == ["diamonds", "default"]
