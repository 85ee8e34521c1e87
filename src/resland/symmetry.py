"""Exact symmetry directions of a model, and the units that carry no signal (docs/theory.md §8).

A *symmetry direction* at θ is the tangent ``ξ = d/dα g_α(θ)|_{α=1}`` of a one-parameter family of
parameter changes that leaves the predictions on every input unchanged. At a critical point each
is an exact null vector of the Hessian (differentiate ``∇R(g_α θ) = Dg_α^{-ᵀ} ∇R(θ) = 0``), so a
zero eigenvalue along it says nothing about minimality. Two families are named here:

* **positive rescaling** of a hidden unit of a positively homogeneous activation (``relu``,
  ``leaky_relu``): ``(u, b, v) → (αu, αb, v/α)`` with ``u`` the unit's incoming row, ``b`` its bias
  and ``v`` its outgoing column; tangent ``(u, b, −v)``;
* **the last ResNet block's** ``V_L`` **orthogonal to** ``w``: ``f`` depends on ``V_L`` only through
  ``wᵀV_L``, so every ``N`` with ``wᵀN = 0`` (all of ``V_L`` when ``w = 0``) leaves ``f`` unchanged
  (docs/theory.md §6); with ``k`` outputs ``f`` depends on ``V_L`` through ``W V_L``, and the
  directions are ``N = a e_jᵀ`` with ``a`` in the null space of ``W`` (``k × d``; §10).

:func:`unit_activity` counts dead and saturated hidden units, the evidence behind
``trivial = "constant"``.

Any other model (a user ``nn.Module``) declares no symmetry: its zero eigenvalues are all
tested by the higher-order test (:mod:`resland.higher_order`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import tolerances as T
from .functional import FlatRisk
from .models import ACTIVATIONS, FCNet, ResNet

#: Positively homogeneous activations: ``σ(αz) = ασ(z)`` for ``α > 0``.
HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU)


@dataclass(frozen=True)
class SymmetryDirection:
    """One exact symmetry direction: ``name`` says which, ``vector`` is the flat tangent (n,)."""

    name: str
    vector: torch.Tensor


def _offsets(fr: FlatRisk) -> dict[str, tuple[int, torch.Size]]:
    out, at = {}, 0
    for name, shape, k in zip(fr.names, fr.shapes, fr.numels):
        out[name] = (at, shape)
        at += k
    return out


def _rescalings(fr, theta, where, chain: list[tuple[str, str]], label: str) -> list[SymmetryDirection]:
    """Rescaling tangents of the hidden units between consecutive linear maps ``chain[t] → chain[t+1]``
    (module name prefixes, e.g. ``net.0`` and ``net.2``)."""
    out = []
    for t, (into, nxt) in enumerate(zip(chain[:-1], chain[1:]), start=1):
        (w_at, w_shape), (v_at, v_shape) = where[f"{into}.weight"], where[f"{nxt}.weight"]
        k, fan_in = w_shape
        bias = where.get(f"{into}.bias")
        for j in range(k):
            xi = torch.zeros_like(theta)
            xi[w_at + j * fan_in: w_at + (j + 1) * fan_in] = theta[w_at + j * fan_in: w_at + (j + 1) * fan_in]
            if bias is not None:
                xi[bias[0] + j] = theta[bias[0] + j]
            cols = v_at + j + v_shape[1] * torch.arange(v_shape[0])
            xi[cols] = -theta[cols]
            if torch.any(xi != 0):
                out.append(SymmetryDirection(f"rescaling of unit {j + 1}, {label} layer {t}", xi))
    return out


def symmetry_directions(fr: FlatRisk, theta: torch.Tensor) -> list[SymmetryDirection]:
    """The named exact symmetry directions of ``fr.model`` at ``theta`` (flat, shape (n,)).

    Returns an empty list for a model with no declared symmetries (any model other than
    :class:`~resland.models.ResNet` and :class:`~resland.models.FCNet`).
    """
    model, where = fr.model, _offsets(fr)
    out: list[SymmetryDirection] = []
    homogeneous = any(isinstance(m, HOMOGENEOUS) for m in model.modules())
    if isinstance(model, FCNet) and homogeneous:
        chain = [f"net.{2 * i}" for i in range(model.depth + 1)]
        out += _rescalings(fr, theta, where, chain, "hidden")
    if isinstance(model, ResNet):
        for l in range(1, model.depth + 1):
            if homogeneous:
                chain = [f"blocks.{l - 1}.branch.{2 * i}" for i in range(model.branch_layers)] + [f"blocks.{l - 1}.V"]
                out += _rescalings(fr, theta, where, chain, f"block {l} branch")
        out += _last_block(model, theta, where)
    return out


def _last_block(model: ResNet, theta, where) -> list[SymmetryDirection]:
    """``V_L`` moved by ``a e_jᵀ`` with ``a ⊥ w``: (d − 1)·k directions (d·k when ``w = 0``); with
    several outputs ``a ∈ null(W)`` (rank of ``W`` by ``d·eps`` relative to its largest singular value)."""
    v_at, (d, k) = where[f"blocks.{model.depth - 1}.V.weight"]
    w_at, (k_out, _) = where["out.weight"]
    if k_out > 1:
        W = theta[w_at: w_at + k_out * d].reshape(k_out, d)
        _, s, Vh = torch.linalg.svd(W, full_matrices=True)
        r = int((s > d * T.eps(W.dtype) * s[0]).sum()) if float(s[0]) > 0 else 0
        basis = Vh[r:].T
    else:
        w = theta[w_at: w_at + d]
        basis = _perp(w)
    out = []
    for j in range(k):
        for i in range(basis.shape[1]):
            xi = torch.zeros_like(theta)
            xi[v_at + j + k * torch.arange(d)] = basis[:, i]
            out.append(SymmetryDirection(f"V_L ⊥ w, column {j + 1}, direction {i + 1}", xi))
    return out


def _perp(w: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of ``w⊥`` (all of ``R^d`` when ``w = 0``)."""
    d = w.shape[0]
    if torch.all(w == 0):
        return torch.eye(d, dtype=w.dtype, device=w.device)
    # the last d − 1 left singular vectors of w
    return torch.linalg.svd(w[:, None], full_matrices=True)[0][:, 1:]


def orthonormal_span(vectors: list[torch.Tensor], n: int, *, dtype=torch.float64) -> torch.Tensor:
    """An orthonormal basis (n × r) of the span of ``vectors``, rank by ``n·eps`` relative to the largest singular value."""
    if not vectors:
        return torch.zeros(n, 0, dtype=dtype)
    A = torch.stack([v / torch.linalg.norm(v) for v in vectors], 1)
    U, s, _ = torch.linalg.svd(A, full_matrices=False)
    r = int((s > n * T.eps(A.dtype) * s[0]).sum())
    return U[:, :r]


@torch.no_grad()
def unit_activity(model: nn.Module, X: torch.Tensor, tol: float = T.PRED_TOL) -> dict:
    """Dead and saturated hidden units of ``model`` on the data ``X`` (m × d).

    A unit is *constant* when its activation varies over the data by at most
    ``tol · max(1, max|a|)`` (the same relative scale as ``pred_tol``); a constant unit of a kinked
    activation whose pre-activation is ``≤ 0`` on every sample is *dead*, any other constant unit is
    *saturated* (tanh at ±1, softplus underflowed to 0, …).

    Returns:
        ``{"units": hidden units, "dead": count, "saturated": count}``.
    """
    acts = tuple(ACTIVATIONS.values())
    seen: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0], out)))
             for m in model.modules() if isinstance(m, acts)]
    try:
        model(X)
    finally:
        for h in hooks:
            h.remove()
    units = dead = saturated = 0
    for mod, z, a in seen:
        a2, z2 = a.reshape(a.shape[0], -1), z.reshape(z.shape[0], -1)
        spread = a2.max(0).values - a2.min(0).values
        constant = spread <= tol * torch.clamp(a2.abs().max(0).values, min=1.0)
        is_dead = constant & (z2.max(0).values <= 0) if isinstance(mod, HOMOGENEOUS) else torch.zeros_like(constant)
        units += a2.shape[1]
        dead += int(is_dead.sum())
        saturated += int((constant & ~is_dead).sum())
    return {"units": units, "dead": dead, "saturated": saturated}
