import warnings

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import resland
from resland.data import example1, example2, load_dataset


@pytest.mark.parametrize("rho", [0.1, 1.0, 2.0, 4.0, 4.5])
def test_example1_closed_form(rho):
    ds = example1(rho)
    fit = resland.best_linear(ds.X, ds.y)
    assert fit.risk == pytest.approx(8 * rho**2 / 15, rel=1e-12)
    assert fit.attained


def test_example2_closed_form():
    ds = example2()
    assert resland.best_linear(ds.X, ds.y).risk == pytest.approx(25 / 78, rel=1e-12)


@pytest.mark.parametrize("name", ["diabetes"])
def test_squared_matches_sklearn(name):
    ds = load_dataset(name)
    fit = resland.best_linear(ds.X, ds.y)
    ref = LinearRegression().fit(ds.X, ds.y)
    ref_risk = np.mean((ref.predict(ds.X) - ds.y) ** 2)
    assert fit.risk == pytest.approx(ref_risk, rel=1e-10)
    np.testing.assert_allclose(fit.coef, ref.coef_, rtol=1e-8, atol=1e-10)
    assert fit.grad_norm <= 1e-12


def test_squared_rank_deficient_duplicated_columns():
    ds = load_dataset("diabetes")
    X = np.hstack([ds.X, ds.X[:, :3], 2 * ds.X[:, :1]])  # exact duplicates: rank 10 of 14
    fit = resland.best_linear(X, ds.y)
    assert fit.risk == pytest.approx(resland.best_linear(ds.X, ds.y).risk, rel=1e-10)
    # minimum-norm t*: sklearn's lstsq solution also has minimum norm on centred data
    ref = LinearRegression().fit(X, ds.y)
    np.testing.assert_allclose(fit.coef, ref.coef_, rtol=1e-7, atol=1e-9)


def test_no_intercept():
    ds = load_dataset("diabetes")
    fit = resland.best_linear(ds.X, ds.y + 3.0, bias=False)
    ref = LinearRegression(fit_intercept=False).fit(ds.X, ds.y + 3.0)
    assert fit.intercept == 0.0
    assert fit.risk == pytest.approx(np.mean((ref.predict(ds.X) - ds.y - 3.0) ** 2), rel=1e-10)


@pytest.mark.parametrize("name", ["iris", "breast-cancer-subset"])
def test_logistic_matches_sklearn_without_penalty(name):
    if name == "breast-cancer-subset":
        ds = load_dataset("breast-cancer")
        X, y = ds.X[:, :4], ds.y  # the first four features are not separable
    else:
        ds = load_dataset(name)
        X, y = ds.X, ds.y
    fit = resland.best_linear(X, y, loss="logistic")
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100000).fit(X, y)  # C=inf: no penalty
    margin = y * (X @ ref.coef_[0] + ref.intercept_[0])
    ref_risk = np.mean(np.logaddexp(0, -margin))
    assert fit.attained
    assert fit.risk <= ref_risk + 1e-12  # Newton is at least as good as lbfgs …
    assert fit.risk == pytest.approx(ref_risk, rel=1e-7)  # … and agrees with it
    np.testing.assert_allclose(fit.coef, ref.coef_[0], rtol=1e-4, atol=1e-4)


def test_logistic_accepts_zero_one_labels():
    ds = load_dataset("iris")
    a = resland.best_linear(ds.X, ds.y, loss="logistic")
    b = resland.best_linear(ds.X, (ds.y + 1) / 2, loss="logistic")
    assert a.risk == pytest.approx(b.risk, rel=1e-14)


def test_logistic_separable_not_attained():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([-1.0, -1.0, 1.0, 1.0])
    with pytest.warns(resland.NotAttainedWarning, match="separable"):
        fit = resland.best_linear(X, y, loss="logistic")
    assert (fit.risk, fit.attained, fit.coef, fit.intercept) == (0.0, False, None, None)


def test_pseudo_huber_stationary():
    ds = load_dataset("diabetes")
    fit = resland.best_linear(ds.X, ds.y, loss="pseudo_huber")
    assert fit.attained and fit.grad_norm <= 1e-12
    # an independent optimiser cannot do better
    from scipy.optimize import minimize

    A = np.hstack([ds.X, np.ones((len(ds.y), 1))])
    f = lambda z: np.mean(np.sqrt(1 + (A @ z - ds.y) ** 2) - 1)  # noqa: E731
    ref = minimize(f, np.zeros(A.shape[1]), method="BFGS", options={"gtol": 1e-10})
    assert fit.risk <= ref.fun + 1e-12
    assert fit.risk == pytest.approx(ref.fun, rel=1e-9)


def test_bad_input_raises_and_names_argument():
    with pytest.raises(resland.ValidationError) as err:
        resland.best_linear(np.ones((3, 2)), np.ones(4))
    assert str(err.value) == "X and y must have the same number of samples. Got 3 rows in X and 4 in y."
    with pytest.raises(resland.ValidationError) as err:
        resland.best_linear(np.array([[1.0], [np.nan]]), np.ones(2))
    assert str(err.value) == (
        "The 'X' parameter must contain only finite numbers. Got 1 NaN or inf value(s); drop or impute them first."
    )
    with pytest.raises(resland.ValidationError) as err:
        resland.best_linear(np.ones((0, 2)), np.ones(0))
    assert str(err.value) == (
        "The 'X' parameter must hold at least one sample and one feature. Got shape (0, 2) instead."
    )
    with pytest.raises(resland.ValidationError) as err:
        resland.best_linear(np.array([["a"], ["b"]]), np.ones(2))
    assert str(err.value) == "The 'X' parameter must be a real numeric array. Got dtype <U1 instead."


def test_no_warning_on_regular_data():
    ds = load_dataset("iris")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resland.best_linear(ds.X, ds.y, loss="logistic")
