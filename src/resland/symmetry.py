"""Exact symmetry directions of a model, and the units that carry no signal (docs/theory.md §8).

A *symmetry direction* at θ is the tangent ``ξ = d/dα g_α(θ)|_{α=1}`` of a one-parameter family of
parameter changes that leaves the predictions on every input unchanged. At a critical point each
is an exact null vector of the Hessian (differentiate ``∇R(g_α θ) = Dg_α^{-ᵀ} ∇R(θ) = 0``), so a
zero eigenvalue along it says nothing about minimality. Each model family declares its own
(:mod:`resland.families`: positive rescalings of ReLU-type units, the last ResNet block's ``V_L``
orthogonal to ``w``); a custom ``nn.Module`` declares none, and its zero eigenvalues are all tested by
the higher-order test (:mod:`resland.higher_order`).

:func:`unit_activity` counts dead and saturated hidden units, the evidence behind
``trivial = "constant"``.
"""

from __future__ import annotations

import torch
from torch import nn

from . import tolerances as T
from .families import HOMOGENEOUS, SymmetryDirection, family_of
from .functional import FlatRisk
from .models import ACTIVATIONS

__all__ = ["SymmetryDirection", "orthonormal_span", "symmetry_directions", "unit_activity"]


def symmetry_directions(fr: FlatRisk, theta: torch.Tensor) -> list[SymmetryDirection]:
    """The exact symmetry directions the family of ``fr.model`` declares at ``theta`` (flat, shape (n,))."""
    return family_of(fr.model).symmetry_directions(fr.model, theta)


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
    *saturated* (tanh at ±1, softplus underflowed to 0, …). A unit whose pre-activation is exactly 0 on
    every sample is also a *zero unit* (with ``σ(0) = 0`` it outputs 0: a unit placed by
    :mod:`resland.embedding`); zero units are counted among the dead or saturated ones as well.

    Returns:
        ``{"units": hidden units, "dead": count, "saturated": count, "zero": count}``.
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
    units = dead = saturated = zero = 0
    for mod, z, a in seen:
        a2, z2 = a.reshape(a.shape[0], -1), z.reshape(z.shape[0], -1)
        spread = a2.max(0).values - a2.min(0).values
        constant = spread <= tol * torch.clamp(a2.abs().max(0).values, min=1.0)
        is_dead = constant & (z2.max(0).values <= 0) if isinstance(mod, HOMOGENEOUS) else torch.zeros_like(constant)
        units += a2.shape[1]
        dead += int(is_dead.sum())
        saturated += int((constant & ~is_dead).sum())
        zero += int((z2 == 0).all(0).sum())
    return {"units": units, "dead": dead, "saturated": saturated, "zero": zero}


#: A hidden unit is *active* when its contribution ``‖out_i‖·rms(σ(z_i))`` (its outgoing weights times its
#: activation's root mean square over the data) exceeds ``ACTIVE_TOL·max(1, rms of the layer's input)``.
ACTIVE_TOL = 1e-6


@torch.no_grad()
def inactive_units(model: nn.Module, X: torch.Tensor, tol: float = ACTIVE_TOL) -> dict:
    """Hidden units that contribute nothing: ``{"units", "inactive", "min_activity"}`` for ResNets (a block's
    unit ``i`` contributes ``V_l[:, i] σ(z_i)``) and FC nets (``W_{l+1}[:, i] σ(z_i)``); ``None`` for other models.

    *Full width* (docs/theory.md §12) means ``inactive == 0``. The certificate's ``zero`` count (exact zeros,
    embedded points) misses units that a path drove to 1e-50 without reaching 0; this measure does not.
    """
    X = torch.as_tensor(X, dtype=torch.float64)
    acts: list[float] = []
    if hasattr(model, "blocks"):
        h = X
        for blk in model.blocks:
            a = blk.branch(h)
            scale = max(1.0, float(h.pow(2).mean().sqrt()))
            acts += (blk.V.weight.norm(dim=0) * a.pow(2).mean(0).sqrt() / scale).tolist()
            h = h + blk.V(a)                   # the block's forward, its branch already computed
    elif hasattr(model, "net") and isinstance(model.net, nn.Sequential):
        layers = list(model.net)
        h = X
        for i in range(0, len(layers) - 1, 2):
            scale = max(1.0, float(h.pow(2).mean().sqrt()))
            a = layers[i + 1](layers[i](h))
            nxt = layers[i + 2]
            acts += (nxt.weight.norm(dim=0) * a.pow(2).mean(0).sqrt() / scale).tolist()
            h = a
    else:
        return None
    return {"units": len(acts), "inactive": sum(1 for v in acts if v <= tol), "min_activity": min(acts, default=0.0)}
