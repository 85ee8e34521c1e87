"""The best linear predictor ``R_lin = inf_{t, t0} (1/m) Σ ℓ(tᵀx_i + t0; y_i)`` (theory.md §1).

* Squared loss: least squares by SciPy's SVD-based, rank-revealing ``gelsd``. With an
  intercept the data are centred first, so ``t*`` is the minimum-norm ``t`` among all
  minimisers (the one that makes ``‖t*‖`` in the gap bounds smallest).
* Logistic and pseudo-Huber: damped Newton with Armijo backtracking until
  ``‖∇‖ ≤ 1e-12 · max(‖∇ at 0‖, 1e-300)``; singular Hessians are solved in the
  least-squares (pseudo-inverse) sense.
* Logistic on linearly separable data: the infimum 0 is not attained. A linear
  program (SciPy ``linprog``) decides separability; then ``risk = 0``,
  ``attained = False``, no ``t*``, and a :class:`NotAttainedWarning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import torch

from ._checks import check_data
from .losses import Loss, LogisticLoss, SquaredLoss, get_loss


class NotAttainedWarning(UserWarning):
    """The infimum of the linear risk is not attained by any finite ``(t, t0)``."""


@dataclass
class LinearFit:
    """Result of :func:`best_linear`.

    Attributes:
        risk: ``R_lin`` (mean risk of the best linear predictor).
        coef: ``t*`` as a NumPy array of shape (d,), or None when not attained.
        intercept: ``t0*`` (0.0 without intercept; None when not attained).
        attained: False when the infimum is approached only as ``‖t‖ → ∞``.
        grad_norm: norm of the risk gradient at ``(t*, t0*)``.
        iterations: Newton iterations (0 for least squares).
        method: ``lstsq``, ``newton`` or ``separable``.
    """

    risk: float
    coef: np.ndarray | None
    intercept: float | None
    attained: bool
    grad_norm: float
    iterations: int
    method: str

    @property
    def coef_norm(self) -> float:
        """``‖t*‖`` (inf when not attained)."""
        return float("inf") if self.coef is None else float(np.linalg.norm(self.coef))

    def to_dict(self) -> dict:
        return {
            "risk": self.risk,
            "coef": None if self.coef is None else self.coef.tolist(),
            "intercept": self.intercept,
            "attained": self.attained,
            "grad_norm": self.grad_norm,
            "iterations": self.iterations,
            "method": self.method,
        }


def best_linear(X, y, loss: str | Loss = "squared", bias: bool = True, *, max_iter: int = 200) -> LinearFit:
    """Best linear predictor of ``y`` from ``X`` under ``loss`` (mean risk, squared without 1/2).

    Args:
        X: features, shape (m, d), NumPy or torch.
        y: targets, shape (m,). For the logistic loss, labels in {-1, +1} or {0, 1}.
        loss: ``squared``, ``logistic``, ``pseudo_huber`` or a :class:`~resland.losses.Loss`.
        bias: fit the intercept ``t0``.

    Example:
        >>> import numpy as np
        >>> x = np.arange(6.0); y = x + 1.0 * np.array([-1, -1, 1, -1, 1, 1])
        >>> round(best_linear(x[:, None], y).risk * 15 / 8, 12)   # 8ρ²/15 at ρ = 1
        1.0
    """
    loss = get_loss(loss)
    Xt, yt = check_data(X, y)
    yt = loss.prepare_targets(yt)
    Xn, yn = Xt.numpy(), yt.numpy()
    if isinstance(loss, SquaredLoss):
        return _least_squares(Xn, yn, bias)
    if isinstance(loss, LogisticLoss) and _separable(Xn, yn, bias):
        warnings.warn(
            "the data are linearly separable: the logistic linear risk has infimum 0, not attained",
            NotAttainedWarning,
            stacklevel=2,
        )
        return LinearFit(0.0, None, None, False, 0.0, 0, "separable")
    return _newton(Xn, yn, loss, bias, max_iter)


def _least_squares(X: np.ndarray, y: np.ndarray, bias: bool) -> LinearFit:
    if bias:
        xm, ym = X.mean(axis=0), y.mean()
        t, *_ = scipy.linalg.lstsq(X - xm, y - ym, lapack_driver="gelsd")
        t0 = float(ym - xm @ t)
    else:
        t, *_ = scipy.linalg.lstsq(X, y, lapack_driver="gelsd")
        t0 = 0.0
    resid = X @ t + t0 - y
    g = 2.0 * np.concatenate([X.T @ resid, [resid.sum()] if bias else []]) / len(y)
    return LinearFit(float(np.mean(resid**2)), t, t0, True, float(np.linalg.norm(g)), 0, "lstsq")


def _separable(X: np.ndarray, y: np.ndarray, bias: bool) -> bool:
    """Is there ``(t, t0)`` with ``y_i (tᵀx_i + t0) ≥ 1`` for all i? (an LP feasibility problem)."""
    A = X * y[:, None]
    if bias:
        A = np.hstack([A, y[:, None]])
    res = scipy.optimize.linprog(
        np.zeros(A.shape[1]), A_ub=-A, b_ub=-np.ones(len(y)), bounds=(None, None), method="highs"
    )
    return res.status == 0


def _newton(X: np.ndarray, y: np.ndarray, loss: Loss, bias: bool, max_iter: int) -> LinearFit:
    A = np.hstack([X, np.ones((len(y), 1))]) if bias else X
    yt = torch.as_tensor(y)
    m = len(y)

    def evaluate(z):
        p = torch.as_tensor(A @ z)
        return (
            float(loss.risk(p, yt)),
            A.T @ loss.d1(p, yt).numpy() / m,
            loss.d2(p, yt).numpy(),
        )

    z = np.zeros(A.shape[1])
    R, g, d2 = evaluate(z)
    gtol = 1e-12 * max(np.linalg.norm(g), 1e-300)
    it = 0
    for it in range(1, max_iter + 1):
        if np.linalg.norm(g) <= gtol:
            it -= 1
            break
        H = (A * d2[:, None]).T @ A / m
        step, *_ = scipy.linalg.lstsq(H, -g, lapack_driver="gelsd")
        slope = g @ step
        alpha = 1.0
        while alpha > 1e-12:
            R_new, g_new, d2_new = evaluate(z + alpha * step)
            if R_new <= R + 1e-4 * alpha * slope or (
                abs(R_new - R) <= 1e-15 * max(1.0, abs(R)) and np.linalg.norm(g_new) < np.linalg.norm(g)
            ):
                break
            alpha *= 0.5
        else:
            break
        z, R, g, d2 = z + alpha * step, R_new, g_new, d2_new
    gnorm = float(np.linalg.norm(g))
    attained = gnorm <= gtol
    if not attained:
        warnings.warn(
            f"Newton on the linear risk stopped at gradient norm {gnorm:.3e} > {gtol:.3e}; the infimum may "
            "not be attained (e.g. quasi-separable data). The reported risk is an upper bound.",
            NotAttainedWarning,
            stacklevel=3,
        )
    t, t0 = (z[:-1], float(z[-1])) if bias else (z, 0.0)
    return LinearFit(R, t if attained else None, t0 if attained else None, attained, gnorm, it, "newton")
