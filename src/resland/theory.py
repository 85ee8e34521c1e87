"""The quantities and bounds of docs/theory.md §3–4 for a :class:`~resland.models.ResNet` at any θ.

Notation (docs/theory.md §3), with ``ℓ'_i = ∂ℓ/∂p`` at ``f(x_i)`` and mean over ``i = 1..m``::

    r_l = (1/m) Σ ℓ'_i h_{l,i}      (l = 0..L)        s_l = (1/m) Σ ℓ'_i φ_{l,i}    (l = 1..L)
    μ   = (1/m) Σ ℓ'_i               ε_l = (1/m) Σ |ℓ'_i| ‖E_{l,i}‖₂ ‖φ_{l,i}‖₂
    J_{l,i} = ∂h_L/∂h_l at x_i,  E_{l,i} = J_{l,i} − I  (E_{L,i} = 0)

Results implemented:

* :func:`convexity_inequality` (§4.1): ``R_lin(t, t0) ≥ R + tᵀr_0 + t0 μ − (wᵀr_L + c μ)``
  at every θ and every linear predictor.
* :func:`gap_bound` (§4.2, Proposition A): ``G = ‖t*‖ Σ_l ‖V_l‖₂ ε_l`` and its rigorous form at
  approximate critical points (all residual gradients kept), plus the direct convexity bound.
* :func:`near_identity_bound` (§4.3): ``δ = Σ ‖V_k‖₂‖U_k‖₂`` and
  ``‖t*‖ (e^δ − 1) e^δ δ (1/m) Σ |ℓ'_i| ‖x_i‖``.
* :func:`linear_probes` (§4.4): ``R_lin^{(l)}`` on the features ``h_l``, ``l = 0..L``.

Blocks are numbered from 1; Python lists hold ``r_0..r_L`` at index ``0..L`` and
``s_1..s_L``, ``ε_1..ε_L`` at index ``0..L−1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import jacrev, vmap

from .families import family_of
from ._checks import ValidationError
from .functional import FlatRisk
from .linear import LinearFit, best_linear, linear_fit_for
from .losses import Loss
from .models import ResNet

#: Activations σ with |σ(z)| ≤ |z| and Lipschitz constant ≤ 1, for which §4.3's bound holds.
NEAR_IDENTITY_ACTIVATIONS = ("relu", "leaky_relu", "tanh")


@dataclass
class Quantities:
    """``r_l, s_l, μ, ε_l`` and the gradients they enter, at one θ (NumPy / floats).

    Attributes:
        risk: mean risk ``R(θ)``.
        r: ``[r_0, …, r_L]`` (each in ``R^d``); s: ``[s_1, …, s_L]`` (each in ``R^k``).
        mu: ``μ``; eps: ``[ε_1, …, ε_L]``.
        V_norms, U_norms: spectral norms ``‖V_l‖₂``, ``‖U_l‖₂``.
        w, c: output weights and bias (``c = 0`` without output bias).
        grad_w: ``∂R/∂w`` (equals ``r_L``); grad_c: ``∂R/∂c`` (equals ``μ``; 0 without bias).
        grad_V: ``‖∂R/∂V_l‖_F`` for ``l = 1..L``.
        dl: ``ℓ'_i``; x_norms: ``‖x_i‖``.
    """

    risk: float
    r: list
    s: list
    mu: float
    eps: list
    V_norms: list
    U_norms: list
    w: np.ndarray
    c: float
    grad_w: np.ndarray
    grad_c: float
    grad_V: list
    dl: np.ndarray
    x_norms: np.ndarray


def _check_resnet(model) -> ResNet:
    if not family_of(model).residual:
        raise ValidationError(
            f"The 'model' parameter must be a resland.ResNet for the theory quantities. Got {type(model).__name__}."
        )
    return model


@torch.no_grad()
def quantities(model: ResNet, X, y, loss: str | Loss = "squared") -> Quantities:
    """Compute ``r_l, s_l, μ, ε_l`` (docs/theory.md §3) at the model's parameters.

    Raises:
        ValidationError: ``model`` is not a :class:`~resland.models.ResNet`.
    """
    model = _check_resnet(model)
    fr = FlatRisk(model, X, y, loss)
    Xt, yt = fr.X, fr.y
    hs, phis = model.trace(Xt)
    f = model.out(hs[-1]).squeeze(-1)
    dl = fr.loss.d1(f, yt)
    m, d = Xt.shape
    mean = lambda t: (dl[:, None] * t).mean(0)  # noqa: E731
    r = [mean(h) for h in hs]
    s = [mean(phi) for phi in phis]
    # J_{l,i} = ∂h_L/∂h_l by the chain rule backwards from J_L = I.
    L = model.depth
    J = torch.eye(d, dtype=Xt.dtype, device=Xt.device).expand(m, d, d)
    E_norms = [None] * L
    for l in range(L, 0, -1):  # J currently holds J_l
        E_norms[l - 1] = torch.linalg.matrix_norm(J - torch.eye(d, dtype=Xt.dtype, device=Xt.device), ord=2)
        D = vmap(jacrev(model.blocks[l - 1]))(hs[l - 1])  # ∂h_l/∂h_{l-1}, (m, d, d)
        J = J @ D
    eps = [float((dl.abs() * E_norms[l] * torch.linalg.norm(phis[l], dim=1)).mean()) for l in range(L)]
    with torch.enable_grad():
        R, g = fr.risk_and_grad(fr.theta0)
    grads = fr.unflatten(g)
    return Quantities(
        risk=R,
        r=[v.cpu().numpy() for v in r],
        s=[v.cpu().numpy() for v in s],
        mu=float(dl.mean()),
        eps=eps,
        V_norms=[float(torch.linalg.matrix_norm(model.V(l), ord=2)) for l in range(1, L + 1)],
        U_norms=[float(torch.linalg.matrix_norm(model.U(l), ord=2)) for l in range(1, L + 1)],
        w=model.w.detach().cpu().numpy().copy(),
        c=0.0 if model.c is None else float(model.c),
        grad_w=grads["out.weight"][0].cpu().numpy(),
        grad_c=float(grads["out.bias"][0]) if model.out_bias else 0.0,
        grad_V=[float(torch.linalg.norm(grads[f"blocks.{l}.V.weight"])) for l in range(L)],
        dl=dl.cpu().numpy(),
        x_norms=torch.linalg.norm(Xt, dim=1).cpu().numpy(),
    )


@dataclass
class ConvexityCheck:
    """Both sides of docs/theory.md §4.1 for one linear predictor ``(t, t0)``: ``lhs ≥ rhs``."""

    lhs: float
    rhs: float

    @property
    def slack(self) -> float:
        """``lhs − rhs`` (≥ 0 up to rounding)."""
        return self.lhs - self.rhs


def convexity_inequality(model: ResNet, X, y, t, t0: float = 0.0, loss: str | Loss = "squared",
                         q: Quantities | None = None) -> ConvexityCheck:
    """Both sides of ``R_lin(t, t0) ≥ R(θ) + tᵀr_0 + t0·μ − (wᵀr_L + c·μ)`` (holds at every θ).

    Raises:
        ValidationError: ``model`` is not a :class:`~resland.models.ResNet`, or bad data.
    """
    fr = FlatRisk(_check_resnet(model), X, y, loss)
    q = quantities(model, X, y, loss) if q is None else q
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    p = fr.X @ torch.as_tensor(t, dtype=fr.dtype, device=fr.device) + float(t0)
    lhs = float(fr.loss.risk(p, fr.y))
    rhs = q.risk + float(t @ q.r[0]) + t0 * q.mu - (float(q.w @ q.r[-1]) + q.c * q.mu)
    return ConvexityCheck(lhs, rhs)


@dataclass
class GapBound:
    """Proposition A's bound on ``R(θ) − R_lin`` (docs/theory.md §4.2).

    Attributes:
        G: ``‖t*‖ Σ_l ‖V_l‖₂ ε_l``, the bound at an exact critical point with ``w ≠ 0``.
        rigorous: the bound with every residual gradient kept, valid at any θ with ``w ≠ 0``::

              ‖t*‖ (‖∂R/∂w‖ + Σ_l ‖V_l‖₂ (‖∂R/∂V_l‖_F / ‖w‖ + ε_l)) + (|t0*| + |c|)|μ| + |wᵀ∂R/∂w|

            (inf when ``w = 0``: then the dichotomy is decided by curvature instead).
        convexity: the direct bound ``−t*ᵀr_0 − t0*μ + wᵀr_L + cμ`` of §4.1 (uses ``r_0`` itself).
        coef_norm: ``‖t*‖``; linear_risk: ``R_lin``.
    """

    G: float
    rigorous: float
    convexity: float
    coef_norm: float
    linear_risk: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def gap_bound(model: ResNet, X, y, loss: str | Loss = "squared", fit: LinearFit | None = None,
              q: Quantities | None = None) -> GapBound:
    """Proposition A's gap bound ``G`` at the model's parameters (see :class:`GapBound`).

    Raises:
        ValidationError: ``model`` is not a :class:`~resland.models.ResNet`.
    """
    model = _check_resnet(model)
    q = quantities(model, X, y, loss) if q is None else q
    fit = linear_fit_for(model, X, y, loss, fit)
    if not fit.attained:
        inf = float("inf")
        return GapBound(inf, inf, inf, inf, fit.risk)
    tn = fit.coef_norm
    sum_Veps = sum(v * e for v, e in zip(q.V_norms, q.eps))
    G = tn * sum_Veps
    wn = float(np.linalg.norm(q.w))
    if wn == 0.0:
        rigorous = float("inf")
    else:
        r0_bound = float(np.linalg.norm(q.grad_w)) + sum(
            v * (gv / wn + e) for v, gv, e in zip(q.V_norms, q.grad_V, q.eps)
        )
        rigorous = tn * r0_bound + (abs(fit.intercept) + abs(q.c)) * abs(q.mu) + abs(float(q.w @ q.grad_w))
    convexity = -float(fit.coef @ q.r[0]) - fit.intercept * q.mu + float(q.w @ q.r[-1]) + q.c * q.mu
    return GapBound(G, rigorous, convexity, tn, fit.risk)


@dataclass
class NearIdentityBound:
    """The a-priori bound of docs/theory.md §4.3.

    Attributes:
        delta: ``δ = Σ_k ‖V_k‖₂ ‖U_k‖₂``.
        bound: ``‖t*‖ (e^δ − 1) e^δ δ (1/m) Σ |ℓ'_i| ‖x_i‖`` (bounds ``G`` at critical points).
        applicable: the bound's hypotheses hold: one-hidden-layer branches, no block biases,
            and σ in ``NEAR_IDENTITY_ACTIVATIONS`` (1-Lipschitz with ``|σ(z)| ≤ |z|``, which is
            all the proof in §4.3 uses of ReLU).
    """

    delta: float
    bound: float
    applicable: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def near_identity_bound(model: ResNet, X, y, loss: str | Loss = "squared", fit: LinearFit | None = None,
                        q: Quantities | None = None) -> NearIdentityBound:
    """``δ`` and the depth-independent a-priori bound on ``G`` (docs/theory.md §4.3).

    Raises:
        ValidationError: ``model`` is not a :class:`~resland.models.ResNet`.
    """
    model = _check_resnet(model)
    q = quantities(model, X, y, loss) if q is None else q
    fit = linear_fit_for(model, X, y, loss, fit)
    delta = sum(v * u for v, u in zip(q.V_norms, q.U_norms))
    scale = float(np.mean(np.abs(q.dl) * q.x_norms))
    bound = fit.coef_norm * math.expm1(delta) * math.exp(delta) * delta * scale if delta < 300 else math.inf
    applicable = (model.branch_layers == 1 and not model.block_bias
                  and model.activation in NEAR_IDENTITY_ACTIVATIONS)
    return NearIdentityBound(delta, bound, applicable)


@torch.no_grad()
def linear_probes(model: ResNet, X, y, loss: str | Loss = "squared") -> list[LinearFit]:
    """Best linear fits ``R_lin^{(l)}`` on the block outputs ``h_0, …, h_L`` (docs/theory.md §4.4).

    Raises:
        ValidationError: ``model`` is not a :class:`~resland.models.ResNet`, or bad data.
    """
    model = _check_resnet(model)
    fr = FlatRisk(model, X, y, loss)
    return [best_linear(h, fr.y, fr.loss, bias=model.out_bias) for h in model.hidden_states(fr.X)]
