"""Saddle search by eigenvector following: Newton steps that keep the sign of every Hessian eigenvalue.

From ``θ`` with gradient ``g`` and dense Hessian ``H = QΛQᵀ`` (``ĝ = Qᵀg``), the step is

    p = −Q diag(1/(λ_i + σ·sign λ_i)) ĝ,    σ ≥ 0,    ‖p‖ ≤ Δ,

over the eigendirections with ``|λ_i|`` above the null cut (``n·eps·|λ|_max``; the model's continuous
symmetries, such as the last block's ``V_L ⊥ w``, are exactly null there). It descends along positive curvature
and ascends along negative curvature, so it heads for the critical point whose index is the current number of
negative eigenvalues: a partitioned rational-function / eigenvector-following step (Cerjan & Miller 1981;
Baker 1986) with the index free to change as eigenvalues cross zero. ``σ = 0`` inside the trust region (the
Newton step), else bisection on ``‖p(σ)‖ = Δ``. There is no merit function to descend: a step is accepted when
the quadratic model predicted the risk change well (``ρ = ΔR/ΔR_model`` within ``[1/4, 4]``) or when ``‖∇R‖``
falls; ``Δ`` grows after good steps and shrinks after rejected ones. Unlike Newton-MR on ``½‖∇R‖²`` the step
does not vanish where ``∇R`` lies in the Hessian's near-null space, because it is not the gradient of that
merit: the null components are left out and the rest is a full Newton step (docs/theory.md §9).

Conventions: mean risk, float64, flat parameters in ``model.parameters()`` order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import tolerances as T
from .curvature import HessianOperator

__all__ = ["SaddleRun", "follow_eigenvectors"]


@dataclass
class SaddleRun:
    """The end of an eigenvector-following run: ``theta``; ``status`` (``converged``, ``stalled``,
    ``diverging``, ``max_iter``, ``nan``); ``message``; ``iterations``; ``history`` of ``(R, ‖∇R‖, ‖θ‖, index)``."""

    theta: torch.Tensor
    status: str
    message: str
    iterations: int = 0
    history: list = field(default_factory=list, repr=False)


def _step(lam, gh, keep, radius):
    def p_of(sig):
        den = lam + sig * torch.sign(lam)
        return torch.where(keep, -gh / torch.where(keep, den, 1.0), 0.0)

    p = p_of(0.0)
    if float(p.norm()) <= radius:
        return p
    lo, hi = 0.0, float(gh.norm()) / radius + float(lam.abs().max())
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(p_of(mid).norm()) > radius:
            lo = mid
        else:
            hi = mid
    return p_of(hi)


def follow_eigenvectors(ens, theta0: torch.Tensor, *, tol: float = T.GRAD_TOL, max_iter: int = 300,
                        max_norm: float = T.MAX_NORM, radius: float = 0.5) -> SaddleRun:
    """Eigenvector following from ``θ₀`` on member 0's architecture and data (module docstring)."""
    th = theta0.detach().clone()
    n = th.shape[0]
    R = float(ens.risk(th[None])[0])
    g = ens.grad(th[None])[0]
    run = SaddleRun(theta=th, status="max_iter", message=f"stopped after max_iter={max_iter} iterations")
    for it in range(max_iter):
        gn = float(g.norm())
        run.iterations = it
        if not (math.isfinite(R) and math.isfinite(gn)):
            run.status, run.message = "nan", "the risk or its gradient became non-finite"
            break
        if gn <= T.grad_tol(R, tol):
            run.status, run.message = "converged", f"‖∇R‖ = {gn:.3e} ≤ {T.grad_tol(R, tol):.3e}"
            break
        if float(th.norm()) > max_norm:
            run.status, run.message = "diverging", f"‖θ‖ = {float(th.norm()):.4g} passed max_norm"
            break
        lam, Q = torch.linalg.eigh(HessianOperator(ens, th[None]).dense()[0])
        cut = n * T.EPS64 * float(lam.abs().max())
        keep = lam.abs() > cut
        gh = Q.T @ g
        run.history.append((R, gn, float(th.norm()), int((lam < -cut).sum())))
        while radius > 1e-14 * (1 + float(th.norm())):
            p = _step(lam, gh, keep, radius)
            model = float(gh @ p + 0.5 * (lam * p * p).sum())
            cand = th + Q @ p
            R_c = float(ens.risk(cand[None])[0])
            g_c = ens.grad(cand[None])[0]
            rho = (R_c - R) / model if model != 0 else 1.0
            good = math.isfinite(R_c) and 0.25 <= rho <= 4.0
            if good or (math.isfinite(R_c) and float(g_c.norm()) < gn):
                full = float(p.norm()) >= 0.99 * radius
                radius = 2 * radius if good and full and 0.75 <= rho <= 1.33 else radius
                th, R, g = cand, R_c, g_c
                break
            radius /= 4
        else:
            run.status, run.message = "stalled", f"the trust radius collapsed at ‖∇R‖ = {gn:.3e}"
            break
    run.theta = th
    return run
