"""Losses ``ℓ(p; y)`` on a scalar prediction ``p``, convex and twice differentiable in ``p``.

Conventions (theory.md §1): the squared loss is ``(p − y)²`` with **no factor 1/2**;
the risk is the **mean** ``R = (1/m) Σ_i ℓ(f(x_i); y_i)``. Each loss gives its value and
its first and second derivatives in ``p`` (``ℓ'_i``, ``ℓ''_i`` in the theory), elementwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import ValidationError, check_choice, check_positive_float


class Loss:
    """A convex loss of a scalar prediction. Subclasses define ``value``, ``d1``, ``d2``."""

    name: str = ""

    def value(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d1(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∂ℓ/∂p`` elementwise."""
        raise NotImplementedError

    def d2(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∂²ℓ/∂p²`` elementwise (≥ 0)."""
        raise NotImplementedError

    def risk(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean risk ``(1/m) Σ ℓ(p_i; y_i)``."""
        return self.value(p, y).mean()

    def prepare_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Check and convert targets for this loss (identity by default)."""
        return y

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SquaredLoss(Loss):
    """``ℓ(p; y) = (p − y)²`` (no 1/2); ``ℓ' = 2(p − y)``, ``ℓ'' = 2``."""

    name = "squared"

    def value(self, p, y):
        return (p - y) ** 2

    def d1(self, p, y):
        return 2.0 * (p - y)

    def d2(self, p, y):
        return torch.full_like(p, 2.0)


class LogisticLoss(Loss):
    """``ℓ(p; y) = log(1 + exp(−y p))`` with labels ``y ∈ {−1, +1}``.

    Labels in ``{0, 1}`` are accepted and mapped ``0 → −1``, ``1 → +1`` by
    :meth:`prepare_targets`. ``ℓ' = −y σ(−y p)``, ``ℓ'' = σ(y p) σ(−y p)``.
    """

    name = "logistic"

    def value(self, p, y):
        return F.softplus(-y * p)

    def d1(self, p, y):
        return -y * torch.sigmoid(-y * p)

    def d2(self, p, y):
        return torch.sigmoid(y * p) * torch.sigmoid(-y * p)

    def prepare_targets(self, y):
        labels = set(torch.unique(y).tolist())
        if labels <= {-1.0, 1.0}:
            return y
        if labels <= {0.0, 1.0}:
            return 2.0 * y - 1.0
        shown = ", ".join(f"{v:.4g}" for v in sorted(labels)[:3])
        raise ValidationError(
            "The 'y' parameter must hold binary labels in {-1, +1} or {0, 1} for the logistic loss. "
            f"Got {len(labels)} distinct values, e.g. {shown}."
        )


class PseudoHuberLoss(Loss):
    """``ℓ(p; y) = δ² (sqrt(1 + ((p − y)/δ)²) − 1)``, quadratic near 0 and linear far out.

    ``ℓ' = (p − y) / sqrt(1 + ((p − y)/δ)²)``, ``ℓ'' = (1 + ((p − y)/δ)²)^(−3/2)``.
    """

    name = "pseudo_huber"

    def __init__(self, delta: float = 1.0):
        self.delta = check_positive_float("delta", delta)

    def value(self, p, y):
        z = (p - y) / self.delta
        return self.delta**2 * (torch.sqrt(1.0 + z * z) - 1.0)

    def d1(self, p, y):
        z = (p - y) / self.delta
        return (p - y) / torch.sqrt(1.0 + z * z)

    def d2(self, p, y):
        z = (p - y) / self.delta
        return (1.0 + z * z) ** -1.5

    def __repr__(self):
        return f"PseudoHuberLoss(delta={self.delta})"


LOSSES = {"squared": SquaredLoss, "logistic": LogisticLoss, "pseudo_huber": PseudoHuberLoss}


def get_loss(loss: str | Loss) -> Loss:
    """Return a :class:`Loss` from a name (``squared``, ``logistic``, ``pseudo_huber``) or instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        loss = loss.replace("-", "_")
    return LOSSES[check_choice("loss", loss, LOSSES)]()
