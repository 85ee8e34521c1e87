"""Critical points by continuation: a path of exact critical points of a perturbed risk, followed to ``t = 0``.

From a start ``θ₀`` (an initialisation, or an iterate of a descent trajectory; docs/theory.md §9), with
``g₀ = ∇R(θ₀)`` and a shift ``μ > 0``, the *Newton homotopy with a proximal term* is

    F(θ, t) = ∇R(θ) + t·(μ(θ − θ₀) − g₀) = 0,

the critical points of ``R_t(θ) = R(θ) + t·(½μ‖θ − θ₀‖² − g₀ᵀθ)``. At ``t = 1`` the start solves it exactly; at
``t = 0`` a solution is a critical point of ``R``. Along the path the Jacobian is ``∂F/∂θ = H(θ) + tμI``, so the
start is a point of ``R_1`` whose index is the number of eigenvalues of ``H(θ₀)`` below ``−μ``:

* ``kind="minimum"``: ``μ`` above ``−λ_min(H(θ₀))``; the path starts at a minimum of ``R_1`` (a proximal path, the
  continuous limit of proximal-point descent) and, without a fold, ends at a minimum of ``R``;
* ``kind="any"``: a small ``μ``; the start keeps its negative curvature and the path ends, without a fold, at a
  saddle of ``R`` of the start's index (the index is preserved along a path without folds).

The path is followed in ``(θ, τ)`` with ``τ = log t`` by pseudo-arclength continuation (Keller 1977; Allgower &
Georg, *Numerical Continuation Methods*, 1990): a tangent from the bordered system ``[∂F/∂θ, ∂F/∂τ; ż_prevᵀ]``,
an Euler predictor of length ``h`` and Newton correctors on ``F = 0`` and the arclength condition; ``h`` grows
after quick corrections and halves after failed ones. Folds (``∂F/∂θ`` singular, ``t`` turning back) are passed
as the bordered matrix stays regular there. On a Tikhonov path (``tikhonov=λ₀``) the branch followed must be
one of minima of ``R_λ``: where ``H + λI`` gets a negative eigenvalue (past a fold, or at a pitchfork where a unit
turns on) or no corrector converges down to a tiny step (a bifurcation), the run descends to a minimum of ``R_λ``
there (a *jump*, recorded) and follows its branch. Nothing minimises ``½‖∇R‖²``, so the search does not settle in
gradient-flat regions (Frye et al. 2021): each iterate is an exact critical point of ``R_t``. When ``t`` is below
``T_END`` the path is finished by Newton-MR on ``∇R = 0`` (``θ ← θ − H⁺∇R`` with a backtracking test on
``‖∇R‖``), which converges on the singular critical sets of ResNets (the last block's ``V_L ⊥ w`` directions).

Curvature is dense: the closed-form Hessian (:class:`~resland.closed_form.ChainDerivatives`, chunked over
samples) and LAPACK solves of the ``(n+1) × (n+1)`` bordered system, up to ``HOMOTOPY_MAX_PARAMS``.

Conventions: mean risk, squared loss without 1/2, float64, flat parameters in ``model.parameters()`` order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from . import tolerances as T
from .curvature import HessianOperator
from .ensemble import Ensemble
from .second_order import next_radius, pseudo_inverse_step, trust_region_steps

__all__ = ["HOMOTOPY_MAX_PARAMS", "T_END", "PathResult", "follow_path", "start_shift"]

#: Largest n for the dense continuation (an n × n Hessian and an (n+1)-square solve per corrector step).
HOMOTOPY_MAX_PARAMS = 3000
#: ``t`` below which the path is finished by Newton-MR at ``t = 0``.
T_END = 1e-10
#: Corrector tolerance on ``‖F(θ, t)‖`` relative to ``max(1, |R|)``: the iterates stay this close to the path.
CORRECTOR_TOL = 1e-9
#: Corrector iterations per step, and the step's limits (arclength in ``(θ, log t)``).
CORRECTOR_ITER = 6
H_START, H_MIN, H_MAX = 0.25, 1e-6, 8.0
#: Tikhonov paths: a step below ``H_JUMP`` that still fails is a bifurcation; the run moves ``log λ`` down by
#: ``JUMP_DTAU`` and descends to a minimum of ``R_λ`` there (at most ``MAX_JUMPS`` times).
H_JUMP, JUMP_DTAU, MAX_JUMPS = 1e-3, 0.05, 40
#: An eigenvalue of ``H + λI`` below ``−NEG_TOL·(max|H_ii| + λ)`` marks a branch of saddles of ``R_λ``.
NEG_TOL = 1e-9
#: Consecutive tangents must have a cosine above this, else the step is halved (no jumps between branches).
COS_MAX_TURN = 0.8
#: Newton-MR iterations of the finish at ``t = 0``.
FINISH_ITER = 30


@dataclass
class PathResult:
    """The end of one continuation run.

    Attributes:
        theta: the final parameters (n,).
        status: ``converged`` (``‖∇R‖`` passed the gradient test at ``t = 0``), ``diverging`` (``‖θ‖`` passed
            ``max_norm`` on the path), ``stalled`` (the step fell below ``H_MIN``: no corrector converged),
            ``max_iter`` (the step budget), ``nan``.
        message: one line, with the numbers.
        steps: accepted path steps; hessians: dense Hessians formed; folds: turning points of ``t`` passed;
            jumps: re-minimisations of ``R_λ`` after a fold (Tikhonov paths).
        path: ``(t, R, ‖θ‖)`` at each accepted step.
        t_end: the last ``t`` reached on the path (0 after the finish).
    """

    theta: torch.Tensor
    status: str
    message: str
    steps: int = 0
    hessians: int = 0
    folds: int = 0
    jumps: int = 0
    mu: float = math.nan
    t_end: float = 1.0
    path: list = field(default_factory=list, repr=False)


def start_shift(H0: torch.Tensor, kind: str) -> float:
    """The proximal shift ``μ`` at the start: for ``minimum`` twice ``max(−λ_min(H₀), 10⁻³·‖H₀‖)`` (the start is
    a minimum of ``R_1``); for ``any`` ``10⁻³·‖H₀‖₂`` (the start keeps every eigenvalue below that as
    negative curvature)."""
    lam = torch.linalg.eigvalsh(H0)
    top = float(lam.abs().max())
    if kind == "minimum":
        return 2.0 * max(-float(lam[0]), 1e-3 * top, 1e-12)
    return max(1e-3 * top, 1e-12)


def follow_path(ens: Ensemble, theta0: torch.Tensor, *, kind: str = "any", mu: float | None = None,
                tol: float = T.GRAD_TOL, max_steps: int = 400, max_norm: float = T.MAX_NORM,
                time_limit: float | None = None, tikhonov: float | None = None) -> PathResult:
    """Follow ``F(θ, t) = ∇R(θ) + t(μ(θ − θ₀) − g₀) = 0`` from ``(θ₀, 1)`` to ``t = 0`` (module docstring).

    Args:
        ens: an :class:`~resland.ensemble.Ensemble` (its first member's architecture and data are used).
        theta0: the start, shape (n,).
        kind: ``minimum`` or ``any``: picks ``μ`` by :func:`start_shift` unless ``mu`` is given.
        mu: the proximal shift (``> 0``).
        tol: the gradient test of critical at ``t = 0`` (``tolerances.GRAD_TOL``).
        max_steps: accepted plus rejected path steps.
        max_norm: ``‖θ‖`` beyond which the path is called diverging.
        time_limit: seconds after which the run stops with ``max_iter``.
        tikhonov: ``λ₀ > 0`` follows the Tikhonov path ``∇R(θ) + λθ = 0`` instead, ``λ`` from ``λ₀`` down to 0,
            starting at a minimiser of ``R + ½λ₀‖θ‖²`` reached from ``θ₀`` (:func:`tikhonov_start`).

    Returns:
        A :class:`PathResult`.
    """
    start = time.perf_counter()
    n = ens.n
    eye = torch.eye(n, dtype=theta0.dtype)
    theta0 = theta0.detach().clone()
    res = PathResult(theta=theta0, status="max_iter", message="")

    def hessian(th):
        res.hessians += 1
        return HessianOperator(ens, th[None]).dense()[0]

    if tikhonov is not None:   # a(θ) = θ, t = λ
        mu, anchor, shift, tau0 = 1.0, torch.zeros_like(theta0), torch.zeros_like(theta0), math.log(tikhonov)
        theta0 = tikhonov_start(ens, theta0, tikhonov, hessian)
        H = hessian(theta0)
    else:                      # a(θ) = μ(θ − θ₀) − g₀, t from 1
        H = hessian(theta0)
        mu = start_shift(H, kind) if mu is None else mu
        anchor, shift, tau0 = theta0, ens.grad(theta0[None])[0], 0.0
    res.mu = mu

    def residual(th, tau):
        t = math.exp(tau)
        a = mu * (th - anchor) - shift
        return ens.grad(th[None])[0] + t * a, t * a

    def bordered(Hth, tau, Ft, z):
        B = torch.zeros(n + 1, n + 1, dtype=theta0.dtype)
        B[:n, :n] = Hth + math.exp(tau) * mu * eye
        B[:n, n] = Ft
        B[n] = z
        return B

    def solve(B, rhs):
        try:
            return torch.linalg.solve(B, rhs)
        except RuntimeError:   # an exactly singular bordered matrix: least squares
            return torch.linalg.lstsq(B, rhs[:, None]).solution[:, 0]

    th, tau = theta0.clone(), tau0
    z = torch.zeros(n + 1, dtype=theta0.dtype)
    z[n] = -1.0                                     # leave t = 1 downwards
    h, tau_end = H_START, math.log(T_END)
    e_n = torch.zeros(n + 1, dtype=theta0.dtype)
    e_n[n] = 1.0
    attempts = 0

    def tangent(Hth, th_, tau_, z_ref):
        _, Ft_ = residual(th_, tau_)
        zt = solve(bordered(Hth, tau_, Ft_, z_ref), e_n)
        return zt / torch.linalg.norm(zt)

    def jump(th_, tau_):
        """Descend to a minimum of R_λ at ``λ = e^τ`` and restart the path there, downwards in λ."""
        th_ = _trust_region_minimise(ens, th_, math.exp(tau_), hessian)
        H_ = hessian(th_)
        down = torch.zeros(n + 1, dtype=th_.dtype)
        down[n] = -1.0
        res.jumps += 1
        return th_, H_, tangent(H_, th_, tau_, down)

    z = tangent(H, th, tau, z)
    while attempts < max_steps:
        if time_limit is not None and time.perf_counter() - start > time_limit:
            res.message = f"stopped after {time_limit:.0f} s at t = {math.exp(tau):.3e}"
            break
        attempts += 1
        ok, th_c, tau_c, H_c = _correct(ens, hessian, residual, bordered, solve, th, tau, z, h, n)
        z_c = tangent(H_c, th_c, tau_c, z) if ok else None
        if not ok or float(z_c @ z) < COS_MAX_TURN:    # no convergence, or a turn too sharp to trust
            h /= 2
            if tikhonov is not None and h < H_JUMP and res.jumps < MAX_JUMPS:
                # a bifurcation (a unit turning on: the bordered matrix singular): descend to a minimum of R_λ
                # just past it, along the negative curvature the branch acquires there
                tau -= JUMP_DTAU
                th, H, z = jump(th, tau)
                h = H_START
                continue
            if h < H_MIN:
                res.status = "stalled"
                res.message = (f"no corrector converged with arclength step ≥ {H_MIN:g} at t = {math.exp(tau):.3e} "
                               f"(R = {float(ens.risk(th[None])[0]):.6g}, ‖θ‖ = {float(th.norm()):.4g})")
                break
            continue
        th, tau, H = th_c, tau_c, H_c
        fold = float(z_c[n]) * float(z[n]) < 0
        res.folds += int(fold)
        # On a Tikhonov path, leave a branch that is no longer one of minima of R_λ: where an eigenvalue of H + λI
        # turned negative (past a fold, or at a pitchfork: a unit turning on off the zero set).
        # (A sign change of dλ alone is not enough: on a nearly vertical stretch, a flat valley crossed at fixed λ,
        # it flips with rounding.)
        unstable = tikhonov is not None and res.jumps < MAX_JUMPS and float(torch.linalg.eigvalsh(H)[0]) + math.exp(
            tau) < -NEG_TOL * (float(H.diagonal().abs().max()) + math.exp(tau))
        if unstable:                   # descend to a minimum of R_λ at this λ
            th, H, z_c = jump(th, tau)
        z = z_c
        res.steps += 1
        R = float(ens.risk(th[None])[0])
        res.path.append((math.exp(tau), R, float(th.norm())))
        if not math.isfinite(R):
            res.status, res.message = "nan", "the risk became non-finite on the path"
            break
        if float(th.norm()) > max_norm:
            res.status, res.message = "diverging", f"‖θ‖ = {float(th.norm()):.4g} passed max_norm on the path"
            break
        if tau > tau0 + 1.0:
            res.status, res.message = "stalled", "the path turned back past its start (a closed branch)"
            break
        if tau <= tau_end:
            break
        h = min(2 * h, H_MAX) if ok == "quick" else h
    res.t_end = math.exp(tau)
    res.theta = th
    if res.status != "max_iter" or tau > tau_end:
        if not res.message:
            res.message = f"stopped after {attempts} path steps at t = {math.exp(tau):.3e}"
        return res
    th, gn, R, it = _finish(ens, hessian, th, tol)
    res.theta, res.t_end = th, 0.0
    gtol = T.grad_tol(R, tol)
    if gn <= gtol:
        res.status = "converged"
        res.message = (f"path followed to t = {T_END:g} in {res.steps} steps ({res.folds} folds), Newton-MR to t = 0 "
                       f"in {it} iterations: ‖∇R‖ = {gn:.3e} ≤ {gtol:.3e}")
    else:
        res.status = "stalled"
        res.message = f"the Newton-MR finish at t = 0 stopped at ‖∇R‖ = {gn:.3e} > {gtol:.3e}"
    return res


def tikhonov_start(ens, theta0, lam, hessian, iters: int = 2000):
    """A minimiser of ``R + ½λ‖θ‖²`` from ``θ₀``: L-BFGS (strong Wolfe) to a gradient of 1e-9, then Newton on
    ``∇R + λθ = 0`` to ``CORRECTOR_TOL``. Returns θ (on the Tikhonov path at ``λ``, or as close as it got)."""
    p = theta0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([p], lr=1, max_iter=iters, tolerance_grad=1e-9, tolerance_change=0, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ens.risk(p[None])[0] + 0.5 * lam * (p * p).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return _trust_region_minimise(ens, p.detach().clone(), lam, hessian)


def _trust_region_minimise(ens, th, lam, hessian, iters: int = 300):
    """Trust-region Newton on ``R_λ = R + ½λ‖θ‖²`` (dense ``eigh``, :func:`~resland.second_order.trust_region_steps`)
    until ``‖∇R_λ‖ ≤ CORRECTOR_TOL·max(1, |R|)`` with ``∇²R_λ`` positive semidefinite to rounding: a minimum."""

    n = th.shape[0]
    radius = torch.ones(1, dtype=th.dtype)

    def merit(x):
        return float(ens.risk(x[None])[0]) + 0.5 * lam * float(x @ x)

    f = merit(th)
    for _ in range(iters):
        g = ens.grad(th[None])[0] + lam * th
        ev, Q = torch.linalg.eigh(hessian(th) + lam * torch.eye(n, dtype=th.dtype))
        cut = n * T.EPS64 * float(ev.abs().max())
        if float(g.norm()) <= CORRECTOR_TOL * T.scale(f) and float(ev[0]) >= -cut:
            break
        gh = Q.T @ g
        ph = trust_region_steps(ev[None], gh[None], torch.tensor([cut], dtype=th.dtype), radius)[0]
        if float(ev[0]) < -cut and float(ph.norm()) < 0.5 * float(radius[0]):   # hard case: add the eigenvector
            ph = ph.clone()
            ph[0] -= float(radius[0]) * (1.0 if float(gh[0]) >= 0 else -1.0)    # downhill along it
        pred = -float(gh @ ph + 0.5 * (ev * ph * ph).sum())
        cand = th + Q @ ph
        f_c = merit(cand)
        rho = (f - f_c) / pred if pred > 0 else -1.0
        ok = rho > 1e-4 or (pred <= 1e2 * T.EPS64 * T.scale(f) and f_c <= f)
        if ok:
            th, f = cand, f_c
        radius = next_radius(radius, torch.tensor([rho], dtype=th.dtype), torch.tensor([ok]), ph.norm()[None])
        if float(radius[0]) < 1e-14 * (1 + float(th.norm())):
            break
    return th


def _correct(ens, hessian, residual, bordered, solve, th, tau, z, h, n):
    """Predictor ``x + hz`` and Newton corrector on ``[F; zᵀ(x − x_pred)] = 0``.

    Returns ``(ok, θ, τ, H)``: ``ok`` is ``"quick"`` (≤ 2 corrector steps), True, or False."""
    xp = torch.cat([th, torch.tensor([tau], dtype=th.dtype)]) + h * z
    x = xp.clone()
    prev = math.inf
    for k in range(CORRECTOR_ITER):
        th_k, tau_k = x[:n], float(x[n])
        F, Ft = residual(th_k, tau_k)
        R = float(ens.risk(th_k[None])[0])
        fn = float(torch.linalg.norm(F))
        if not math.isfinite(fn):
            return False, th, tau, None
        H = hessian(th_k)
        if fn <= CORRECTOR_TOL * T.scale(R):
            return ("quick" if k <= 2 else True), th_k, tau_k, H
        if fn > 0.5 * prev and k >= 1:
            return False, th, tau, None
        prev = fn
        rhs = torch.cat([-F, -(z @ (x - xp)).reshape(1)])
        x = x + solve(bordered(H, tau_k, Ft, z), rhs)
    return False, th, tau, None


def _finish(ens, hessian, th, tol, iters: int = FINISH_ITER):
    """Newton-MR on ``∇R = 0``: ``θ ← θ − αH⁺∇R`` (eigenvalues below ``n·eps·|λ|_max`` cut), ``α`` halved until
    ``‖∇R‖`` falls. Returns ``(θ, ‖∇R‖, R, iterations)``."""
    n = th.shape[0]
    g = ens.grad(th[None])[0]
    gn = float(g.norm())
    R = float(ens.risk(th[None])[0])
    it = 0
    for it in range(1, iters + 1):
        if gn <= 1e-2 * T.grad_tol(R, tol):
            break
        lam, Q = torch.linalg.eigh(hessian(th))
        step = Q @ pseudo_inverse_step(lam, Q.T @ g, n * T.EPS64 * float(lam.abs().max()))
        alpha, moved = 1.0, False
        while alpha > 1e-4:
            cand = th + alpha * step
            g_c = ens.grad(cand[None])[0]
            if float(g_c.norm()) < gn:
                th, g, gn, moved = cand, g_c, float(g_c.norm()), True
                R = float(ens.risk(th[None])[0])
                break
            alpha /= 2
        if not moved:
            break
    return th, gn, R, it


#: The Tikhonov path's first ``λ`` (``kind="minimum"``), relative to ``max(1, |R(θ₀)|)``.
LAMBDA0 = 1e-2


def find_by_continuation(ens: Ensemble, j: int, fit, *, kind: str, tol: float, max_steps: int, max_norm: float,
                         lambda0: float = LAMBDA0, time_limit: float | None = None):
    """Member ``j``'s run as a :class:`~resland.outcomes.CriticalPoint`: ``kind="minimum"`` follows the Tikhonov
    path from ``λ₀ = lambda0·max(1, |R(θ₀)|)``, ``kind="any"`` the Newton homotopy from ``θ_j`` (module docstring).

    The outcome is ``critical`` when the finish at ``t = 0`` passes the gradient test, ``diverging`` when ``‖θ‖``
    passed ``max_norm``, ``failed`` on a non-finite risk, else ``gradient_flat`` or ``unresolved`` (with the
    parameters). ``below_linear`` is never claimed: path points are critical points of ``R_t``, not descent
    iterates of ``R``.
    """
    from .outcomes import CriticalPoint, gradient_flatness, settle_outcome, vanishing

    start = time.perf_counter()
    theta0 = ens.theta[j]
    lam0 = lambda0 * T.scale(float(ens.risk(theta0[None])[0])) if kind == "minimum" else None
    run = follow_path(ens, theta0, kind=kind, tol=tol, max_steps=max_steps, max_norm=max_norm,
                      time_limit=time_limit, tikhonov=lam0)
    theta = run.theta
    R = float(ens.risk(theta[None])[0])
    g = ens.grad(theta[None])[0]
    gn = float(g.norm())
    status, message = run.status, run.message
    if status != "converged" and T.is_critical(R, gn, tol) and status != "diverging":
        status, message = "converged", message + f"; critical all the same: ‖∇R‖ = {gn:.3e}"
    div = path_divergence(run.path) if status in ("stalled", "max_iter") and lam0 is not None else None
    if div is not None and div["diverging"]:
        message += (f"; on the last decade of λ (from {div['t_from']:.2e} to {div['t_to']:.2e}) ‖θ(λ)‖ grew by "
                    f"{div['growth']:.3f}× on {div['frac_up']:.0%} of the steps while R fell: the branch of minima "
                    "heads to infinity")
    status, note = vanishing(status, R, ens.fr.loss)
    outcome, note2, flat = settle_outcome(status, None, fit, div, lambda: gradient_flatness(
        HessianOperator(ens, theta), g) if math.isfinite(gn) else None)
    message += note + note2
    path = {"steps": run.steps, "hessians": run.hessians, "folds": run.folds, "jumps": run.jumps,
            "t_end": run.t_end, ("lambda0" if lam0 is not None else "mu"): lam0 if lam0 is not None else run.mu}
    return CriticalPoint(
        model=ens.model_at(theta), risk=R, grad_norm=gn, converged=outcome == "critical", status=status,
        outcome=outcome, iterations=run.steps, seconds=time.perf_counter() - start, kind=kind,
        grad_tol=T.grad_tol(R, tol), newton_step=math.nan, param_norm=float(theta.norm()), method="continuation",
        message=message, linear_risk=fit.risk, steps={"path": run.steps, "jump": run.jumps},
        parameters=theta.detach().cpu().tolist() if outcome in ("unresolved", "gradient_flat", "failed") else None,
        history=[(p[1], math.nan, p[2]) for p in run.path], flatness=flat, path=path, divergence=div)


def path_divergence(path: list) -> dict | None:
    """Evidence that a Tikhonov path's minima run to infinity: over its last decade of ``λ`` (path entries
    ``(λ, R, ‖θ‖)`` with ``λ ≤ 10·λ_end``, at least 5), ``‖θ‖`` grew by ``DIVERGENCE_GROWTH`` on at least
    ``DIVERGENCE_FRAC_UP`` of the steps while ``R`` fell (:func:`resland.outcomes.runs_away`, the finders' one test).
    None when the path is too short."""
    from .outcomes import runs_away

    if not path:
        return None
    t_end = path[-1][0]
    tail = [p for p in path if p[0] <= 10 * t_end]
    if len(tail) < 5:
        return None
    norms = [p[2] for p in tail]
    decrease = tail[0][1] - tail[-1][1]
    up = sum(b > a for a, b in zip(norms, norms[1:])) / (len(norms) - 1)
    return {"growth": norms[-1] / norms[0], "frac_up": up, "risk_decrease": decrease, "t_from": tail[0][0],
            "t_to": t_end, "steps": len(tail), "diverging": runs_away(norms, decrease)}
