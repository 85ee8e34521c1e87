"""Step strategies of the matrix-free finder: each is one class that proposes a step from the state.

A strategy solves its linear system with a Krylov method on exact :class:`ChunkedRisk` products
(SciPy ``cg`` on a :class:`scipy.sparse.linalg.LinearOperator`, or :func:`minres` and :func:`steihaug`
here) and returns a :class:`Proposal`: the step ``p`` and the quadratic model of the merit
along it, ``merit(θ + αp) ≈ merit(θ) + α·slope + ½α²·curvature``. The driver
(:func:`resland.krylov.solve`) evaluates the merit, accepts or rejects, and reports back through
:meth:`Step.feedback` so the strategy can adapt its damping. A new step is one more class.

Merits: ``R`` for ``kind="minimum"``, ``½‖∇R‖²`` for ``kind="any"`` (whose slope along ``p`` is
``(Hg)ᵀp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla
import torch

from ..kinds import descends
from .. import tolerances as T
from .products import ChunkedRisk


#: A Newton-MR step on ``½‖∇R‖²`` is taken only at α ≥ ¼ and when it realises at least this share of its
#: predicted decrease: near a singular Hessian MINRES returns long steps along near-null directions whose
#: short multiples barely lower ``‖∇R‖`` (then LM on ``∇R`` takes over for that iteration).
MR_MIN_RHO = 0.5


@dataclass
class Proposal:
    """A step ``p`` with its merit model: ``slope`` (derivative at α = 0) and ``curvature`` (``pᵀBp``
    of the model matrix ``B``); ``tries``: the step lengths ``α = 1, ½, ¼, …`` to try (1: α = 1 only);
    ``min_rho``: the share of the predicted decrease the merit must realise."""

    p: torch.Tensor
    slope: float
    curvature: float
    tries: int = 1
    min_rho: float = 1e-4

    def predicted(self, alpha: float) -> float:
        """Predicted merit decrease at ``θ + αp``."""
        return -(alpha * self.slope + 0.5 * alpha**2 * self.curvature)


class Step:
    """A step strategy. ``name`` labels the accepted steps (``CriticalPoint.steps``)."""

    name = ""

    def propose(self, fr: ChunkedRisk, state) -> Proposal | None:
        """A step from ``state`` (a :class:`~resland.krylov.SolverState`), or None when there is none."""
        raise NotImplementedError

    def feedback(self, accepted: bool, rho: float) -> None:
        """The driver's verdict on the last proposal (``rho``: actual over predicted decrease)."""

    @property
    def exhausted(self) -> bool:
        """True when the strategy has damped itself out (``MU_MAX``)."""
        return False


def operator(n: int, matvec, like: torch.Tensor) -> spla.LinearOperator:
    """A SciPy operator whose products are ``matvec`` on torch tensors of ``like``'s dtype and device."""

    def mv(x):
        v = torch.as_tensor(np.ascontiguousarray(x).reshape(-1), dtype=like.dtype).to(like.device)
        return matvec(v).detach().cpu().numpy()

    return spla.LinearOperator((n, n), matvec=mv, dtype=np.float64)


def forcing(state) -> float:
    """Relative residual of an inexact Newton solve: ``min(½, √(‖∇R‖ / max(1, |R|)))`` (superlinear)."""
    return min(0.5, math.sqrt(state.grad_norm / T.scale(state.risk)))


class _Damped(Step):
    """A damped step: its damping factor ``μ`` shrinks after good steps and grows after poor ones."""

    def __init__(self, mu: float = 1.0):
        self.mu = mu

    def feedback(self, accepted: bool, rho: float) -> None:
        if accepted and rho > 0.75:
            self.mu = max(self.mu / 3.0, 1e-10)
        elif not (accepted and rho > 0.25):
            self.mu *= 4.0

    @property
    def exhausted(self) -> bool:
        return self.mu > T.MU_MAX


class GaussNewton(_Damped):
    """``kind="minimum"``: ``p = −(G + λI)⁻¹∇R`` by CG on GGN products (fast far from a critical point).

    ``λ = μ·c`` with ``c = ∇Rᵀ G ∇R / ‖∇R‖²`` (the GGN's curvature along the first gradient), so the
    damping follows the problem's scale, not ``‖∇R‖`` (which would undamp the step as ``∇R → 0``).
    """

    name = "ggn"

    def __init__(self, mu: float = 1e-3):
        super().__init__(mu)
        self.scale = None

    def propose(self, fr, state):
        g, n = state.grad, fr.n
        if self.scale is None:
            self.scale = max(float(g @ fr.ggn(state.theta, g)) / max(float(g @ g), 1e-300), 1e-300)
        lam = self.mu * self.scale
        A = operator(n, lambda v: fr.ggn(state.theta, v) + lam * v, g)
        x, _ = spla.cg(A, -g.cpu().numpy(), rtol=forcing(state), maxiter=T.KRYLOV_SOLVE_MAX)
        p = torch.as_tensor(x, dtype=g.dtype).to(g.device)
        slope = float(g @ p)
        if not slope < 0:
            return None
        # pᵀGp from the solved system: (G + λI)p ≈ −g.
        return Proposal(p, slope, max(0.0, -slope - lam * float(p @ p)))


class NewtonMR(Step):
    """``p = −H⁺∇R`` by MINRES on Hessian products: Newton-MR, for singular critical sets (docs/theory.md §6).

    ``merit="risk"`` (``kind="minimum"``) keeps only descent directions of ``R`` and backtracks on ``R``;
    ``merit="gradient"`` (``kind="any"``) backtracks on ``½‖∇R‖²`` and reaches saddles too.
    """

    name = "newton_mr"

    def __init__(self, merit: str = "risk"):
        self.merit = merit

    def propose(self, fr, state):
        g = state.grad
        p, _ = minres(lambda v: fr.hvp(state.theta, v), -g, forcing(state), T.KRYLOV_SOLVE_MAX)
        if not bool(torch.isfinite(p).all()) or float(p @ p) == 0.0:
            return None
        Hp = fr.hvp(state.theta, p)
        if self.merit == "risk":
            slope = float(g @ p)
            return Proposal(p, slope, float(p @ Hp), tries=12) if slope < 0 else None
        return Proposal(p, float(g @ Hp), float(Hp @ Hp), tries=3, min_rho=MR_MIN_RHO)


def minres(matvec, b: torch.Tensor, rtol: float, max_products: int) -> tuple[torch.Tensor, int]:
    """MINRES (Paige & Saunders 1975) for a symmetric, possibly indefinite or singular ``A x = b`` from
    ``x = 0``: ``(x, products)``, stopped at ``‖b − Ax‖ ≤ rtol·‖b‖`` (the residual itself).

    Hand-written on torch tensors: SciPy's ``minres`` stops on ``‖r‖ ≤ rtol·(‖A‖‖x‖ + ‖b‖)``, which
    for an inexact Newton step ends after one or two products.
    """
    x = torch.zeros_like(b)
    beta1 = float(torch.linalg.norm(b))
    if beta1 == 0.0:
        return x, 0
    v_prev, v, beta = torch.zeros_like(b), b / beta1, 0.0
    w1, w2 = torch.zeros_like(b), torch.zeros_like(b)
    cs, sn, dbar, epsln, phibar = -1.0, 0.0, 0.0, 0.0, beta1
    for k in range(1, max_products + 1):
        p = matvec(v)
        alpha = float(v @ p)
        p = p - alpha * v - beta * v_prev
        beta_next = float(torch.linalg.norm(p))
        oldeps = epsln                         # the previous rotation, applied to the new column
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsln, dbar = sn * beta_next, -cs * beta_next
        gamma = max(math.hypot(gbar, beta_next), T.EPS64)   # the new rotation
        cs, sn = gbar / gamma, beta_next / gamma
        phi, phibar = cs * phibar, sn * phibar
        w1, w2 = w2, (v - oldeps * w1 - delta * w2) / gamma
        x = x + phi * w2
        if abs(phibar) <= rtol * beta1 or beta_next <= T.EPS64 * beta1:
            return x, k
        v_prev, v, beta = v, p / beta_next, beta_next
    return x, max_products


def steihaug(hvp, g: torch.Tensor, radius: float, rtol: float, max_products: int) -> tuple[torch.Tensor, int]:
    """Steihaug–Toint truncated CG for ``min gᵀp + ½pᵀHp`` over ``‖p‖ ≤ radius``: ``(p, products)``.

    Stops at the boundary on negative curvature or when a CG iterate leaves the region, and at
    ``‖Hp + g‖ ≤ rtol·‖g‖``. Hand-written (SciPy's Steihaug solver is private to
    ``scipy.optimize``), on torch tensors so it runs on the model's device.
    """
    p = torch.zeros_like(g)
    r, d = g.clone(), -g
    rr = float(r @ r)
    stop = (rtol**2) * rr
    for k in range(1, max_products + 1):
        Hd = hvp(d)
        dHd = float(d @ Hd)
        if dHd <= 0:   # negative curvature: to the boundary along d
            return p + _to_boundary(p, d, radius) * d, k
        alpha = rr / dHd
        p_next = p + alpha * d
        if float(torch.linalg.norm(p_next)) >= radius:
            return p + _to_boundary(p, d, radius) * d, k
        p, r = p_next, r + alpha * Hd
        rr_next = float(r @ r)
        if rr_next <= stop:
            return p, k
        d = -r + (rr_next / rr) * d
        rr = rr_next
    return p, max_products


def _to_boundary(p: torch.Tensor, d: torch.Tensor, radius: float) -> float:
    """The τ ≥ 0 with ``‖p + τd‖ = radius``."""
    a, b, c = float(d @ d), 2 * float(p @ d), float(p @ p) - radius**2
    return (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)


class NewtonCG(Step):
    """``kind="minimum"`` near a critical point: trust-region Newton, the model solved by Steihaug CG on
    Hessian products (negative curvature is followed to the boundary). The radius doubles after a
    good step at the boundary and shrinks to a quarter of the step after a poor one."""

    name = "newton"

    def __init__(self, radius: float = 1.0):
        self.radius, self._last = radius, 0.0

    def propose(self, fr, state):
        th, g = state.theta, state.grad
        p, _ = steihaug(lambda v: fr.hvp(th, v), g, self.radius, forcing(state), T.KRYLOV_SOLVE_MAX)
        self._last = float(torch.linalg.norm(p))
        if self._last == 0.0:
            return None
        Hp = fr.hvp(th, p)
        return Proposal(p, float(g @ p), float(p @ Hp))

    def feedback(self, accepted: bool, rho: float) -> None:
        if accepted and rho > 0.75 and self._last >= 0.99 * self.radius:
            self.radius *= 2.0
        elif not (accepted and rho > 0.25):
            self.radius = 0.25 * max(self._last, 1e-300)

    @property
    def exhausted(self) -> bool:
        return self.radius < 1e-14


class GradientLM(NewtonCG):
    """``kind="any"``: trust-region Gauss–Newton on ``∇R = 0`` (Levenberg–Marquardt in its trust-region
    form): ``min ‖∇R + Hp‖²`` over ``‖p‖ ≤ Δ``, by Steihaug CG on ``H²`` (two Hessian products per CG step);
    the merit ``½‖∇R‖²``, the radius as :class:`NewtonCG`'s."""

    name = "lm"

    def propose(self, fr, state):
        g, th = state.grad, state.theta
        Hg = fr.hvp(th, g)
        p, _ = steihaug(lambda v: fr.hvp(th, fr.hvp(th, v)), Hg, self.radius, forcing(state), T.KRYLOV_SOLVE_MAX // 2)
        self._last = float(torch.linalg.norm(p))
        if self._last == 0.0:
            return None
        Hp = fr.hvp(th, p)
        slope = float(g @ Hp)
        return Proposal(p, slope, float(Hp @ Hp)) if slope < 0 else None


def default_steps(kind: str) -> list[Step]:
    """The strategies of a run: GGN and trust-region Newton-CG for ``minimum``; Newton-MR and LM on ``∇R`` for ``any``."""
    if descends(kind):
        return [GaussNewton(), NewtonCG()]
    return [NewtonMR("gradient"), GradientLM()]

