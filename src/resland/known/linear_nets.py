"""Linear networks whose landscapes are proved: deep linear nets (Kawaguchi 2016) and linear residual nets (Hardt &
Ma 2017), as :class:`~resland.known.problem.Problem` s on real data.

* :class:`DeepLinear`: ``f(x) = W_L ⋯ W_1 x`` with ``W_1 ∈ R^{h_1×d}``, …, ``W_L ∈ R^{1×h_{L−1}}``, no biases, on
  centred data; risk ``R = (1/m) Σ_i (f(x_i) − y_i)²``. Its global minimum is the least-squares risk
  ``min_t (1/m)‖Xt − y‖²``, attained whenever ``W_L ⋯ W_1 = tᵀ`` (every width ≥ 1 allows it). Kawaguchi (2016):
  every local minimum is global, and for ``L ≥ 3`` the point ``θ = 0`` is a saddle with no negative eigenvalue.
* :class:`LinearResNet`: ``f(x) = (I + A_L) ⋯ (I + A_1) x`` with ``A_l ∈ R^{d×d}``, targets ``y_i ∈ R^d``; risk
  ``R = (1/m) Σ_i ‖f(x_i) − y_i‖²``. Its global minimum is ``min_M (1/m)‖XMᵀ − Y‖²_F``, attained at
  ``A_1 = M − I`` and the other ``A_l = 0``. Hardt & Ma (2017): every critical point with all ``‖A_l‖₂ < 1`` is a
  global minimum (every factor is then invertible, so ``∇R = 0`` forces the normal equations).

Both have continuous symmetries (``W_{l+1} G⁻¹, G W_l`` for invertible ``G``), so every Hessian is singular and a
minimum is never called ``spurious_minimum`` from the Hessian alone (``continuous = True``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import ValidationError, check_positive_int
from .problem import Baseline, Problem

__all__ = ["DeepLinear", "LinearResNet", "centred", "iris_sepal_to_petal", "linnerud"]


def centred(A: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit standard deviation (float64)."""
    A = np.asarray(A, dtype=np.float64)
    return (A - A.mean(0)) / A.std(0)


def linnerud() -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's Linnerud set (20 men): 3 exercises → 3 physiological measurements, standardised."""
    from sklearn.datasets import load_linnerud

    b = load_linnerud()
    return centred(b.data), centred(b.target), "linnerud"


def iris_sepal_to_petal() -> tuple[np.ndarray, np.ndarray, str]:
    """Iris (150 flowers): sepal length and width → petal length and width, standardised."""
    from sklearn.datasets import load_iris

    b = load_iris()
    return centred(b.data[:, :2]), centred(b.data[:, 2:]), "iris-sepal-petal"


def _lstsq_risk(X: np.ndarray, Y: np.ndarray) -> float:
    M, *_ = np.linalg.lstsq(X, Y, rcond=None)
    return float(np.mean(np.sum((X @ M - Y).reshape(len(X), -1) ** 2, axis=1)))


class DeepLinear(Problem):
    """Kawaguchi's deep linear net with widths ``h_1 … h_{L−1}`` (``len(widths) = L − 1``) on ``(X, y)`` (module
    docstring). ``X`` (m, d) and ``y`` (m,) are used as given (centre them: there is no bias)."""

    symmetries = ("W_{l+1} G⁻¹, G W_l for invertible G (every hidden layer)",)
    continuous = True

    def __init__(self, X, y, widths, data: str = "data"):
        self.X = torch.as_tensor(np.asarray(X, dtype=np.float64))
        self.y = torch.as_tensor(np.asarray(y, dtype=np.float64)).reshape(-1)
        if self.X.ndim != 2 or len(self.y) != len(self.X):
            raise ValidationError(f"The 'X' and 'y' parameters must have shapes (m, d) and (m,). Got "
                                  f"{tuple(self.X.shape)} and {tuple(self.y.shape)}.")
        for h in widths:
            check_positive_int("widths", h)
        self.data, self.widths = data, tuple(int(h) for h in widths)
        d = self.X.shape[1]
        self.shapes = list(zip(self.widths + (1,), (d,) + self.widths))
        self.depth = len(self.shapes)
        self.name, self.n = "deep-linear", sum(a * b for a, b in self.shapes)
        self.baseline = Baseline(_lstsq_risk(self.X.numpy(), self.y.numpy()), "global_minimum",
                                 "least squares without intercept (numpy.linalg.lstsq), attained by W_L⋯W_1 = t*ᵀ")

    def config(self) -> dict:
        return {"problem": self.name, "data": self.data, "depth": self.depth, "widths": list(self.widths)}

    def layers(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """``[W_1, …, W_L]`` from the flat ``θ`` (``W_1`` first, row-major)."""
        out, i = [], 0
        for a, b in self.shapes:
            out.append(theta[i:i + a * b].reshape(a, b))
            i += a * b
        return out

    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        h = self.X.T
        for W in self.layers(theta):
            h = W @ h
        return ((h[0] - self.y) ** 2).mean()

    def start(self, seed: int) -> torch.Tensor:
        """Every entry ``N(0, 1/fan_in)``, seeded."""
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([torch.randn(a * b, generator=gen, dtype=torch.float64) / math.sqrt(b)
                          for a, b in self.shapes])


class LinearResNet(Problem):
    """Hardt & Ma's linear residual net of depth ``L`` on ``(X, Y)`` with ``Y`` of shape (m, d) (module
    docstring)."""

    symmetries = ("(I + A_{l+1}) G⁻¹, G (I + A_l) for invertible G",)
    continuous = True

    def __init__(self, X, Y, depth: int, data: str = "data", start_scale: float = 0.1):
        self.X = torch.as_tensor(np.asarray(X, dtype=np.float64))
        self.Y = torch.as_tensor(np.asarray(Y, dtype=np.float64))
        if self.X.ndim != 2 or self.Y.shape != self.X.shape:
            raise ValidationError(f"The 'X' and 'Y' parameters must both have shape (m, d). Got {tuple(self.X.shape)} "
                                  f"and {tuple(self.Y.shape)}.")
        check_positive_int("depth", depth)
        self.data, self.depth, self.d = data, depth, self.X.shape[1]
        self.start_scale = float(start_scale)
        self.name, self.n = "linear-resnet", depth * self.d * self.d
        self.baseline = Baseline(_lstsq_risk(self.X.numpy(), self.Y.numpy()), "global_minimum",
                                 "least squares min_M ‖XMᵀ − Y‖²/m (numpy.linalg.lstsq), attained at A_1 = M − I")

    def config(self) -> dict:
        return {"problem": self.name, "data": self.data, "depth": self.depth, "d": self.d}

    def blocks(self, theta: torch.Tensor) -> torch.Tensor:
        """``A_1 … A_L`` as one (L, d, d) tensor."""
        return theta.reshape(self.depth, self.d, self.d)

    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        h = self.X.T
        for A in self.blocks(theta):
            h = h + A @ h
        return ((h.T - self.Y) ** 2).sum(dim=1).mean()

    def start(self, seed: int) -> torch.Tensor:
        """Every entry ``N(0, (start_scale)²/d)``, seeded (``start_scale = 0.1``: inside the region ``‖A_l‖₂ < 1``)."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(self.n, generator=gen, dtype=torch.float64) * self.start_scale / math.sqrt(self.d)

    def max_block_norm(self, theta) -> float:
        """``max_l ‖A_l‖₂``: below 1 is Hardt & Ma's region."""
        A = self.blocks(torch.as_tensor(theta, dtype=torch.float64))
        return float(torch.linalg.matrix_norm(A, ord=2).max())
