"""Losses ``ℓ(p; y)`` on a prediction ``p``, convex and twice differentiable in ``p``.

Conventions (docs/theory.md §1, §10): the squared loss is ``(p − y)²`` with **no factor 1/2**;
the risk is the **mean** ``R = (1/m) Σ_i ℓ(f(x_i); y_i)``. Each loss gives its value and
its first and second derivatives in ``p`` (``ℓ'_i``, ``ℓ''_i`` in the theory), elementwise.

Vector outputs (``p`` of shape (m, k)): the squared and pseudo-Huber losses are summed over the
``k`` outputs (``‖p − y‖²``, mean over samples, no 1/2), so their ``d1`` and ``d2`` stay elementwise
(``d2`` is the diagonal of each sample's output Hessian). :class:`CrossEntropyLoss` takes logits
``p`` (m, k) and labels ``0..k−1`` (m,); its output Hessian ``diag(s) − ssᵀ`` (``s`` the softmax) is
not diagonal, so products with it go through :meth:`Loss.d2v`, which every loss has.

For the certified linear baseline (:mod:`resland.linear`) each loss also evaluates itself and its
Fenchel conjugate ``ℓ*(s; y) = sup_p (s p − ℓ(p; y))`` on one scalar in mpmath, at the working
precision the caller sets (``mp_value``, ``mp_conjugate``; ``+inf`` outside the conjugate's domain).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import mpmath

from ._checks import ValidationError, check_choice, check_positive_float


class Loss:
    """A convex loss. Subclasses define ``value``, ``d1``, ``d2`` (or ``d2v``)."""

    name: str = ""
    #: the loss couples a sample's outputs (its output Hessian is not diagonal): only ``d2v`` serves.
    coupled: bool = False
    #: ``ℓ > 0`` at every finite prediction and ``inf ℓ = 0`` only as margins grow without bound (logistic,
    #: cross-entropy): a risk near 0 is the loss vanishing along a path to infinity, not a critical point.
    vanishes_at_infinity: bool = False

    def value(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``ℓ(p_i; y_i)`` elementwise: predictions ``p`` and targets ``y`` of shape (m,), result (m,)."""
        raise NotImplementedError

    def d1(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∂ℓ/∂p`` elementwise, shape (m,)."""
        raise NotImplementedError

    def d2(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``∂²ℓ/∂p²`` elementwise (≥ 0), shape (m,)."""
        raise NotImplementedError

    def mp_value(self, p: mpmath.mpf, y: mpmath.mpf) -> mpmath.mpf:
        """``ℓ(p; y)`` in mpmath (at the caller's precision)."""
        raise NotImplementedError

    def mp_conjugate(self, s: mpmath.mpf, y: mpmath.mpf) -> mpmath.mpf:
        """``ℓ*(s; y)`` in mpmath; ``+inf`` outside its domain."""
        raise NotImplementedError

    def d2v(self, p: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Each sample's output Hessian times ``v`` (the shape of ``p``): ``ℓ''_i v_i``."""
        return self.d2(p, y) * v

    def per_sample(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``ℓ(p_i; y_i)`` per sample, shape (m,): summed over outputs when ``p`` is (m, k)."""
        v = self.value(p, y)
        return v.sum(-1) if v.ndim == 2 else v

    def risk(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean risk ``(1/m) Σ ℓ(p_i; y_i)`` of predictions ``p`` (m,) or (m, k): a 0-d tensor."""
        return self.per_sample(p, y).mean()

    def check_outputs(self, k: int, y: torch.Tensor) -> None:
        """Check that targets ``y`` (prepared) fit a model with ``k`` outputs per sample.

        Raises:
            ValidationError: ``y`` of shape (m,) for ``k > 1`` outputs, or (m, k') with ``k' ≠ k``.
        """
        k_y = 1 if y.ndim == 1 else y.shape[1]
        if k_y != k:
            raise ValidationError(
                f"The model has {k} output(s) per sample but 'y' has {k_y} target(s) per sample (shape "
                f"{tuple(y.shape)}); the {self.name} loss needs one target per output."
            )

    def prepare_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Check and convert targets ``y`` (m,) for this loss (identity by default).

        Raises:
            ValidationError: targets this loss cannot take (the logistic loss: labels outside
                {−1, +1} and {0, 1}).
        """
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

    def mp_value(self, p, y):
        return (p - y) ** 2

    def mp_conjugate(self, s, y):
        """``ℓ*(s) = s y + s²/4``."""
        return s * y + s * s / 4


class LogisticLoss(Loss):
    """``ℓ(p; y) = log(1 + exp(−y p))`` with labels ``y ∈ {−1, +1}``.

    Labels in ``{0, 1}`` are accepted and mapped ``0 → −1``, ``1 → +1`` by
    :meth:`prepare_targets`. ``ℓ' = −y σ(−y p)``, ``ℓ'' = σ(y p) σ(−y p)``.
    """

    name = "logistic"
    vanishes_at_infinity = True

    def value(self, p, y):
        return F.softplus(-y * p)

    def d1(self, p, y):
        return -y * torch.sigmoid(-y * p)

    def d2(self, p, y):
        return torch.sigmoid(y * p) * torch.sigmoid(-y * p)

    def mp_value(self, p, y):
        u = -y * p
        return u + mpmath.log1p(mpmath.exp(-u)) if u > 0 else mpmath.log1p(mpmath.exp(u))

    def mp_conjugate(self, s, y):
        """With ``a = −s y``: ``a log a + (1 − a) log(1 − a)`` on ``0 ≤ a ≤ 1`` (``0 log 0 = 0``)."""
        a = -s * y
        if a < 0 or a > 1:
            return mpmath.inf
        return (a * mpmath.log(a) if a > 0 else 0) + ((1 - a) * mpmath.log(1 - a) if a < 1 else 0)

    def prepare_targets(self, y):
        """Labels in {−1, +1} as they are, {0, 1} mapped to {−1, +1}.

        Raises:
            ValidationError: labels outside {−1, +1} and {0, 1} (logistic loss).
        """
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

    def mp_value(self, p, y):
        d = mpmath.mpf(self.delta)
        z = (p - y) / d
        return d * d * z * z / (mpmath.sqrt(1 + z * z) + 1)      # δ²(√(1+z²) − 1), without cancellation

    def mp_conjugate(self, s, y):
        """``ℓ*(s) = s y + δ²(1 − √(1 − (s/δ)²))`` on ``|s| ≤ δ``."""
        d = mpmath.mpf(self.delta)
        if abs(s) > d:
            return mpmath.inf
        u = (s / d) ** 2
        return s * y + d * d * u / (1 + mpmath.sqrt(1 - u))

    def __repr__(self):
        return f"PseudoHuberLoss(delta={self.delta})"


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy ``ℓ(p; y) = log Σ_j exp(p_j) − p_y`` on logits ``p ∈ R^k`` (k ≥ 2) with a
    label ``y ∈ {0, …, k−1}``.

    ``ℓ' = s − e_y`` with ``s = softmax(p)``; the output Hessian ``diag(s) − ssᵀ`` (positive
    semidefinite, with ``1`` in its null space: adding a constant to every logit changes nothing).
    Its Fenchel conjugate is ``ℓ*(σ; y) = Σ_j q_j log q_j`` for ``q = σ + e_y`` in the simplex, else
    ``+inf`` (:mod:`resland.linear_matrix` uses it for the exact lower end of ``R_lin``).
    """

    name = "cross_entropy"
    coupled = True
    vanishes_at_infinity = True

    def value(self, p, y):
        return torch.logsumexp(p, -1) - p.gather(-1, y.long()[:, None])[:, 0]

    def d1(self, p, y):
        return torch.softmax(p, -1) - F.one_hot(y.long(), p.shape[-1]).to(p.dtype)

    def d2(self, p, y):
        raise NotImplementedError("the cross-entropy's output Hessian is not diagonal: use d2v")

    def d2v(self, p, y, v):
        s = torch.softmax(p, -1)
        return s * v - s * (s * v).sum(-1, keepdim=True)

    def prepare_targets(self, y):
        """Labels ``0..k−1`` as a float tensor of integers.

        Raises:
            ValidationError: labels that are not integers ≥ 0, or ``y`` not of shape (m,).
        """
        if y.ndim != 1:
            raise ValidationError(f"The 'y' parameter must hold class labels of shape (m,) for the cross-entropy loss. "
                                  f"Got shape {tuple(y.shape)}.")
        if bool(((y != torch.round(y)) | (y < 0)).any()):
            raise ValidationError("The 'y' parameter must hold integer class labels 0..k-1 for the cross-entropy "
                                  f"loss. Got values such as {float(y[(y != torch.round(y)) | (y < 0)][0]):.4g}.")
        return y

    def check_outputs(self, k, y):
        """Raises:
            ValidationError: fewer than 2 outputs, or a label ``≥ k``."""
        top = int(y.max()) if len(y) else 0
        if k < 2 or top >= k:
            raise ValidationError(f"The cross-entropy loss needs a model with one logit per class (≥ 2): labels go up "
                                  f"to {top}, the model has {k} output(s) per sample.")


LOSSES = {"squared": SquaredLoss, "logistic": LogisticLoss, "pseudo_huber": PseudoHuberLoss,
          "cross_entropy": CrossEntropyLoss}


def get_loss(loss: str | Loss) -> Loss:
    """Return a :class:`Loss` from a name (``squared``, ``logistic``, ``pseudo_huber``, ``cross_entropy``)
    or instance.

    Raises:
        ValidationError: an unknown loss name.
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        loss = loss.replace("-", "_")
    return LOSSES[check_choice("loss", loss, LOSSES)]()
