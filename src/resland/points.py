"""Distinct critical points (docs/theory.md §9): a census row is a run, not a point.

Two critical points are the *same point* when they have the same data and family (model, depth, width,
activation, loss, outputs) and their risks and predictions on the data agree to ``POINT_TOL`` relative to
``max(1, max|f|)``. Predictions are invariant under every named symmetry of the family (unit permutations,
sign flips of odd activations, ReLU rescalings, the last block's ``V_L ⊥ w``), so the rule is modulo those
symmetries without enumerating them: :func:`same_point` is the rule itself.

:func:`point_id` is the stable name of a point that the census stores in the ``point`` column: a hash of the
family, the data's SHA-256 and three numbers of the point rounded to ``POINT_DIGITS`` significant digits (the
risk, the mean and the root mean square of the predictions). Repeats of one point (finder tolerance ``1e-10``)
get one id unless a number straddles a rounding boundary (about ``1e-9/1e-6`` per number); two different points
get one id only if all three numbers agree to six digits. Counting distinct ids is the headline count; the
tests check it against :func:`same_point`.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["POINT_DIGITS", "POINT_TOL", "count_distinct", "family_key", "point_id", "same_point"]

#: The agreement of risks and predictions that makes two critical points one (docs/theory.md §9).
POINT_TOL = 1e-9
#: Significant digits of the numbers hashed into :func:`point_id`.
POINT_DIGITS = 6


def family_key(config: dict) -> dict:
    """The part of a model config that defines the family a point lives in (not the seed, not the finder).

    >>> family_key({"model": "resnet", "depth": 8, "width": 2, "activation": "tanh", "seed": 3, "kind": "any"})
    {'model': 'resnet', 'depth': 8, 'width': 2, 'activation': 'tanh', 'loss': None, 'd_out': 1}
    """
    return {"model": config.get("model"), "depth": config.get("depth"), "width": config.get("width"),
            "activation": config.get("activation"), "loss": config.get("loss"), "d_out": config.get("d_out", 1)}


def point_id(family: dict, data_sha256: str, risk: float, predictions) -> str:
    """The stable id of a critical point (module docstring): 16 hex digits.

    >>> f = {"model": "resnet", "depth": 8}
    >>> point_id(f, "ab", 0.5, [1.0, 2.0]) == point_id(f, "ab", 0.5 + 1e-12, [1.0, 2.0 + 1e-12])
    True
    >>> point_id(f, "ab", 0.5, [1.0, 2.0]) == point_id(f, "ab", 0.51, [1.0, 2.1])
    False
    """
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    nums = [float(risk), float(p.mean()), float(np.sqrt(np.mean(p * p)))]
    text = json.dumps([family, data_sha256, [f"{x:.{POINT_DIGITS - 1}e}" for x in nums]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def same_point(risk_a: float, pred_a, risk_b: float, pred_b, tol: float = POINT_TOL) -> bool:
    """The rule of docs/theory.md §9 (same data and family assumed): risks and predictions agree to ``tol``
    relative to ``max(1, max|f|)``.

    >>> same_point(0.5, [1.0, -2.0], 0.5 + 1e-12, [1.0, -2.0 + 1e-12])
    True
    >>> same_point(0.5, [1.0, -2.0], 0.5, [1.0, -2.0 + 1e-6])
    False
    """
    a, b = np.asarray(pred_a, dtype=np.float64), np.asarray(pred_b, dtype=np.float64)
    scale = max(1.0, float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    return (abs(risk_a - risk_b) <= tol * max(1.0, abs(risk_a)) and a.shape == b.shape
            and float(np.abs(a - b).max(initial=0.0)) <= tol * scale)


def count_distinct(rows, key: str = "point") -> int:
    """The number of distinct non-empty ``key`` values among ``rows`` (dicts).

    >>> count_distinct([{"point": "a"}, {"point": "a"}, {"point": "b"}, {"point": None}])
    2
    """
    return len({r.get(key) for r in rows if r.get(key)})
