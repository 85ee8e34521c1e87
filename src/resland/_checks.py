"""Validation helpers, one per invariant (scikit-learn style ``check_*``).

Every helper returns the cleaned value or raises :class:`ValidationError`
with a message naming the parameter, what was expected and what was got.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch


class ValidationError(ValueError):
    """Bad input to resland: the message names the argument, the expected
    value and the value received. The CLI prints it as one line and exits 2."""


def check_scalar(value, name: str, target_type: type, *, min_val=None, max_val=None,
                 include_boundaries: str = "both", kind: str = "parameter"):
    """Return ``value`` as ``target_type`` (``int`` or ``float``) if it lies in the given range.

    The one scalar validator (scikit-learn's ``check_scalar``), used by the API, the spec parser
    (``kind="key"``) and the CLI. Booleans are never numbers; a float must be finite; an int
    must be integral (a NumPy integer is accepted, a float is not).

    Args:
        value: the value to check; name: its name in the message.
        target_type: ``int`` or ``float``.
        min_val, max_val: bounds (None: unbounded).
        include_boundaries: ``both``, ``left``, ``right`` or ``neither``.
        kind: ``parameter`` (API, CLI) or ``key`` (spec files), for the message.

    Raises:
        ValidationError: the value has the wrong type or lies outside the range.
    """
    closed_left = include_boundaries in ("both", "left") and min_val is not None
    closed_right = include_boundaries in ("both", "right") and max_val is not None
    lo = "-inf" if min_val is None else min_val
    hi = "inf" if max_val is None else max_val
    what = "an int" if target_type is int else "a float"
    where = f"{'[' if closed_left else '('}{lo}, {hi}{']' if closed_right else ')'}"
    ok = not isinstance(value, bool)
    if target_type is int:
        ok = ok and isinstance(value, (int, np.integer))
    else:
        ok = ok and isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value))
    if ok:
        v = target_type(value)
        ok = not (min_val is not None and (v < min_val or (v == min_val and not closed_left))) and \
            not (max_val is not None and (v > max_val or (v == max_val and not closed_right)))
    if not ok:
        raise ValidationError(f"The '{name}' {kind} must be {what} in the range {where}. Got {value!r} instead.")
    return v


def check_choice(name: str, value, choices: Iterable[str], kind: str = "parameter") -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValidationError: it is not.
    """
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValidationError(f"The '{name}' {kind} must be one of {allowed}. Got {value!r} instead.")
    return value


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an int >= 1 (:func:`check_scalar`).

    Raises:
        ValidationError: ``value`` is not an int ≥ 1.
    """
    return check_scalar(value, name, int, min_val=1)


def check_positive_float(name: str, value) -> float:
    """Return ``value`` as a finite float > 0 (:func:`check_scalar`).

    Raises:
        ValidationError: ``value`` is not a finite float > 0.
    """
    return check_scalar(value, name, float, min_val=0, include_boundaries="neither")


def check_data(X, y, *, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, y)`` as tensors of shape (m, d) and (m,), or (m, k) for ``k ≥ 2`` targets per sample.

    Accepts NumPy arrays or torch tensors. A 1-D ``X`` is read as one feature; ``y`` of shape
    (m, 1) becomes (m,).
    Raises on empty data, non-numeric values, NaN/inf, or a length mismatch.
    """
    X = _as_tensor("X", X, dtype)
    y = _as_tensor("y", y, dtype)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValidationError(
            f"The 'X' parameter must be a 2-D array of shape (m, d). Got shape {tuple(X.shape)} instead."
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
        raise ValidationError(
            f"The 'y' parameter must be an array of shape (m,) or (m, k). Got shape {tuple(y.shape)} instead."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValidationError(
            f"The 'X' parameter must hold at least one sample and one feature. Got shape {tuple(X.shape)} instead."
        )
    if X.shape[0] != y.shape[0]:
        raise ValidationError(
            f"X and y must have the same number of samples. Got {X.shape[0]} rows in X and {y.shape[0]} in y."
        )
    for name, t in (("X", X), ("y", y)):
        bad = (~torch.isfinite(t)).sum().item()
        if bad:
            raise ValidationError(
                f"The '{name}' parameter must contain only finite numbers. Got {bad} NaN or inf value(s); drop or impute them first."
            )
    return X, y


def _as_tensor(name: str, value, dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise ValidationError(
                f"The '{name}' parameter must be a real numeric array. Got dtype {value.dtype} instead."
            )
        return value.detach().to(dtype)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists etc.
        raise ValidationError(
            f"The '{name}' parameter must be a numeric array. Got {type(value).__name__} ({exc})."
        ) from None
    if arr.dtype.kind not in "iuf":
        raise ValidationError(
            f"The '{name}' parameter must be a real numeric array. Got dtype {arr.dtype} instead."
        )
    return torch.as_tensor(arr.astype(np.float64)).to(dtype)
