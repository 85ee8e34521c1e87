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


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValidationError(
            f"The '{name}' parameter must be one of {allowed}. Got {value!r} instead."
        )
    return value


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValidationError(
            f"The '{name}' parameter must be an int in the range [1, inf). Got {value!r} instead."
        )
    return int(value)


def check_positive_float(name: str, value) -> float:
    """Return ``value`` as a finite float > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise ValidationError(
            f"The '{name}' parameter must be a float in the range (0, inf). Got {value!r} instead."
        )
    return v


def check_data(X, y, *, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(X, y)`` as tensors of shape (m, d) and (m,).

    Accepts NumPy arrays or torch tensors. A 1-D ``X`` is read as one feature.
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
    if y.ndim != 1:
        raise ValidationError(
            f"The 'y' parameter must be a 1-D array of shape (m,). Got shape {tuple(y.shape)} instead."
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
