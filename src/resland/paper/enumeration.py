"""Exact global minima of one-hinge models on 1-D data by enumerating hinge positions.

For scalar inputs ``x_1 < … < x_m`` and the squared loss (mean, no 1/2):

* one-hidden-unit ReLU net ``a·relu(u x + b) + c``: on the data it is a constant ``c`` on one
  side of the hinge and an affine function on the other, continuous at the hinge;
* one-block, one-hidden-unit ResNet ``w(x + v·relu(u x + b)) + c = c + w x + s·relu(u x + b)``
  with ``s = w v``: an affine function plus one hinge.

For a hinge ``h`` strictly inside a gap ``(x_j, x_{j+1})`` both models are linear in
reparametrised coefficients whose least-squares solution fixes ``h``; it is feasible only if
``h`` lands in that gap. Otherwise the constrained optimum puts the hinge on a data point,
where the model is again linear in its coefficients. Enumerating every gap, every data point,
both orientations, and the hinge-free (affine / constant) limits gives the exact global minimum.
Written here because no library solves this tiny combinatorial problem; every candidate is a
NumPy least-squares solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class HingeFit:
    """A candidate optimum: risk, hinge position (None for hinge-free fits) and how it arose."""

    risk: float
    hinge: float | None
    kind: str


def _lstsq_risk(F: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    coef, *_ = np.linalg.lstsq(F, y, rcond=None)
    return float(np.mean((F @ coef - y) ** 2)), coef


def _candidates(x: np.ndarray, y: np.ndarray, affine_base: bool) -> list[HingeFit]:
    order = np.argsort(x)
    x, y = x[order], y[order]
    m = len(x)
    one = np.ones(m)
    base = [one, x] if affine_base else [one]
    out = [HingeFit(_lstsq_risk(np.column_stack(base), y)[0], None, "no hinge"),
           HingeFit(_lstsq_risk(np.column_stack([one, x]), y)[0], None, "affine (hinge outside the data)")]
    # Orientation +: active where x > h; orientation −: active where x < h.
    for sign in (1.0, -1.0):
        for j in range(m - 1):  # hinge strictly inside (x_j, x_{j+1})
            active = (x > x[j]) if sign > 0 else (x < x[j + 1])
            # s·relu(sign(x − h)) on the data = α·(x·1_A) + β·1_A with h = −β/α·(1) (sign absorbed)
            F = np.column_stack(base + [x * active, active.astype(float)])
            risk, coef = _lstsq_risk(F, y)
            alpha, beta = coef[-2], coef[-1]
            if alpha != 0.0:
                h = -beta / alpha
                if x[j] < h < x[j + 1]:
                    out.append(HingeFit(risk, float(h), "hinge in a gap"))
        for h in x:  # hinge on a data point
            F = np.column_stack(base + [np.maximum(sign * (x - h), 0.0)])
            out.append(HingeFit(_lstsq_risk(F, y)[0], float(h), "hinge on a data point"))
    return out


def fc_one_unit_global_min(x, y) -> HingeFit:
    """Exact global minimum of ``a·relu(u x + b) + c`` (squared loss, mean) on 1-D data."""
    cands = _candidates(np.asarray(x, float).ravel(), np.asarray(y, float), affine_base=False)
    return min(cands, key=lambda c: c.risk)


def resnet_one_unit_global_min(x, y) -> HingeFit:
    """Exact global minimum of ``w(x + v·relu(u x + b)) + c`` (squared loss, mean) on 1-D data."""
    cands = _candidates(np.asarray(x, float).ravel(), np.asarray(y, float), affine_base=True)
    return min(cands, key=lambda c: c.risk)
