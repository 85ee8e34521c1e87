"""The best linear predictor ``R_lin`` (docs/theory.md §1, §10), certified by an interval.

* One output (:mod:`resland.linear.scalar`): ``R_lin = inf_{t, t0} (1/m) Σ ℓ(tᵀx_i + t0; y_i)``.
* ``k`` outputs (:mod:`resland.linear.matrix`): ``R_lin = inf_{W, w0} (1/m) Σ ℓ(W x_i + w0; y_i)``
  with ``W ∈ R^{k×d}``: multivariate least squares or pseudo-Huber (separable: one fit per
  output, the intervals summed with outward rounding) and multinomial logistic regression for the
  cross-entropy (``k`` classes; on separable classes ``R_lin = 0``, not attained).

:func:`best_linear` picks the one the targets and the loss need.
"""

from __future__ import annotations

import warnings

from ..losses import Loss, get_loss
from .matrix import fit_matrix
from .scalar import LinearFit, NotAttainedWarning, fit_scalar

__all__ = ["LinearFit", "NotAttainedWarning", "best_linear", "fit_matrix", "fit_scalar", "linear_fit_for"]


def best_linear(X, y, loss: str | Loss = "squared", bias: bool = True, *, max_iter: int = 200) -> LinearFit:
    """Best linear predictor of ``y`` from ``X`` under ``loss`` (mean risk, squared without 1/2).

    Args:
        X: features, shape (m, d), NumPy or torch.
        y: targets, shape (m,) or (m, k) (``k`` outputs); for the logistic loss labels in {-1, +1}
            or {0, 1}; for the cross-entropy class labels ``0..k−1``, shape (m,).
        loss: ``squared``, ``logistic``, ``pseudo_huber``, ``cross_entropy`` or a :class:`~resland.losses.Loss`.
        bias: fit the intercept.

    Returns:
        A :class:`LinearFit`: ``coef`` ((d,), or (k, d) for ``k`` outputs), ``intercept`` (a float, or (k,)),
        ``risk`` and the certified interval ``risk_lower ≤ R_lin ≤ risk_upper``. Warns
        :class:`NotAttainedWarning` where the infimum is not attained (separable data).

    Raises:
        ValidationError: bad data (shapes, non-finite values, labels) or an unknown loss.

    Example:
        >>> import numpy as np
        >>> x = np.arange(6.0); y = x + 1.0 * np.array([-1, -1, 1, -1, 1, 1])
        >>> fit = best_linear(x[:, None], y)
        >>> round(fit.risk * 15 / 8, 12), fit.risk_lower <= 8 / 15 <= fit.risk_upper   # 8ρ²/15 at ρ = 1
        (1.0, True)
    """
    loss = get_loss(loss)
    if loss.coupled or getattr(y, "ndim", 1) == 2 and y.shape[1] > 1:
        return fit_matrix(X, y, loss, bias, max_iter=max_iter)
    return fit_scalar(X, y, loss, bias, max_iter=max_iter)


def linear_fit_for(model, X, y, loss: str | Loss, fit: LinearFit | None = None) -> LinearFit:
    """``fit`` when given, else :func:`best_linear` of ``(X, y, loss)`` with an intercept exactly when
    ``model`` has an output bias (``out_bias``, default True), its :class:`NotAttainedWarning` silenced
    (the fit records it): the one step every computation that compares with ``R_lin`` takes."""
    if fit is not None:
        return fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAttainedWarning)
        return best_linear(X, y, loss, bias=getattr(model, "out_bias", True))
