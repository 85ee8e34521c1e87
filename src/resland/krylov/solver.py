"""The matrix-free finder: one solver state, a few step strategies, one driver.

:func:`solve` iterates on a :class:`SolverState` (``θ``, ``R``, ``∇R``, the path and its counts).
Each iteration it asks the strategies (:mod:`resland.krylov.steps`) in turn for a step and
takes the first that the merit accepts. ``kind="minimum"``: GGN before trust-region Newton far from a
critical point (``‖∇R‖ > NEWTON_SWITCH·max(1, |R|)``), Newton first near one; ``kind="any"``: Newton-MR,
then trust-region Gauss–Newton on ``∇R = 0``. A critical iterate
(``‖∇R‖ ≤ tol·max(1, |R|)``, the one definition, :mod:`resland.tolerances`) ends the run, except
that ``kind="minimum"`` first looks for negative curvature there (thick-restart Lanczos on Hessian
products) and steps along it when a backtracking step lowers ``R``.

:func:`find_critical_point_krylov` wraps it into a :class:`~resland.outcomes.CriticalPoint` with
the outcomes of :mod:`resland.critical` (``critical``, ``below_linear``, ``diverging``,
``unresolved``, ``failed``; no kink polish at this scale: a ReLU-type run that ends on a kink is
``unresolved`` and says so). Memory: one chunk's activations, the Krylov vectors of one solve
(``O(n)`` for CG and MINRES) and the Lanczos basis (``O(n·k)``); never ``m × n`` or ``n × n``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..kinds import descends, merit
from .. import tolerances as T
from ..curvature import HessianOperator
from ..functional import flat_parameters
from ..linear import LinearFit
from ..outcomes import CriticalPoint, report_progress, divergence, outcome_of, vanishing
from ..regions import kink_margin, kinked_modules
from .products import ChunkedRisk
from .steps import Proposal, Step, default_steps

#: Lanczos products for the negative-curvature check at a critical iterate (``kind="minimum"``).
ESCAPE_PRODUCTS = 300


@dataclass
class SolverState:
    """Where a run stands: ``θ``, ``R(θ)``, ``∇R(θ)``, the path ``(R, ‖∇R‖, ‖θ‖)`` per iteration, the
    accepted steps by strategy, the lowest risk seen (``best_theta``) and the negative-curvature
    vector of the last check (a Lanczos warm start)."""

    theta: torch.Tensor
    risk: float
    grad: torch.Tensor
    iteration: int = 0
    history: list = field(default_factory=list)
    steps: dict = field(default_factory=dict)
    best_risk: float = math.inf
    best_theta: torch.Tensor | None = None
    curvature_vector: torch.Tensor | None = None

    @classmethod
    def start(cls, fr: ChunkedRisk, theta: torch.Tensor) -> "SolverState":
        R, g = fr.risk_and_grad(theta)
        return cls(theta.clone(), R, g)

    @property
    def grad_norm(self) -> float:
        return float(torch.linalg.norm(self.grad))

    def merit(self, kind: str) -> float:
        return merit(kind, self.risk, self.grad_norm)

    def record(self) -> None:
        self.history.append((self.risk, self.grad_norm, float(torch.linalg.norm(self.theta))))
        if self.risk < self.best_risk:
            self.best_risk, self.best_theta = self.risk, self.theta.clone()

    def move(self, theta: torch.Tensor, R: float, g: torch.Tensor, name: str) -> None:
        self.theta, self.risk, self.grad = theta, R, g
        self.steps[name] = self.steps.get(name, 0) + 1


def _accept(fr: ChunkedRisk, state: SolverState, prop: Proposal, kind: str) -> tuple[bool, float, tuple | None]:
    """Judge ``prop``: ``(accepted, rho, (θ', R', ∇R'))``. A predicted change below rounding is judged by
    ``‖∇R‖`` instead (it must fall without the merit rising beyond rounding)."""
    merit0 = state.merit(kind)
    noise = 1e2 * T.EPS64 * T.scale(merit0)
    rho = -math.inf
    for j in range(prop.tries):
        alpha = 0.5**j
        trial = state.theta + alpha * prop.p
        pred = prop.predicted(alpha)
        if descends(kind) and pred > noise:   # a forward pass decides most rejections
            R_t = float(fr.risk(trial))
            if not (math.isfinite(R_t) and merit0 - R_t > prop.min_rho * pred):
                rho = (merit0 - R_t) / pred if math.isfinite(R_t) else -math.inf
                continue
        R_t, g_t = fr.risk_and_grad(trial)
        gn_t = float(torch.linalg.norm(g_t))
        merit_t = merit(kind, R_t, gn_t)
        if not math.isfinite(merit_t):
            continue
        if pred <= noise:
            if merit_t <= merit0 + noise and gn_t < state.grad_norm and (descends(kind) or merit_t < merit0):
                return True, 1.0, (trial, R_t, g_t)
            continue
        rho = (merit0 - merit_t) / pred
        if rho > prop.min_rho:
            return True, rho, (trial, R_t, g_t)
    return False, rho, None


def _escape(fr: ChunkedRisk, state: SolverState, tol: float) -> tuple | None:
    """At a critical iterate: ``λ_min`` by Lanczos (warm-started), and a backtracking step along ``±v`` that
    lowers ``R`` beyond rounding when ``λ_min < −lambda_tol``; ``(θ', R', ∇R')`` or None."""
    H = HessianOperator(fr, state.theta)
    eig = H.extremes(method="lanczos", which="smallest", max_steps=ESCAPE_PRODUCTS, start=state.curvature_vector)
    state.curvature_vector = eig.vec_min
    lam_tol = T.lambda_tol(fr.n, abs(eig.lambda_max), T.grad_tol(state.risk, tol))
    if not eig.lambda_min + eig.residual < -lam_tol:
        return None
    v = eig.vec_min if float(state.grad @ eig.vec_min) <= 0 else -eig.vec_min
    for j in range(60):
        trial = state.theta + 0.5**j * v
        R_t = float(fr.risk(trial))
        if math.isfinite(R_t) and state.risk - R_t > T.decrease_tol(fr.m, state.risk):
            R_t, g_t = fr.risk_and_grad(trial)
            return trial, R_t, g_t
    return None


def solve(fr: ChunkedRisk, theta0: torch.Tensor, *, kind: str = "minimum", tol: float = T.GRAD_TOL,
          max_iter: int = T.MAX_ITER, max_norm: float = T.MAX_NORM, steps: list[Step] | None = None) -> tuple[SolverState, str, str]:
    """Run the matrix-free finder from ``theta0``; ``(state, status, message)``.

    ``status``: ``converged`` (critical), ``diverging`` (``‖θ‖ > max_norm``), ``stalled`` (every strategy
    damped out), ``max_iter`` or ``nan``. ``steps`` replaces :func:`~resland.krylov.steps.default_steps`.
    """
    state = SolverState.start(fr, theta0)
    steps = default_steps(kind) if steps is None else steps
    for it in range(max_iter):
        state.iteration = it
        gn = state.grad_norm
        if not (math.isfinite(state.risk) and math.isfinite(gn)):
            return state, "nan", "the risk or its gradient became non-finite"
        state.record()
        report_progress("search", it + 1, max_iter, gn)
        if T.is_critical(state.risk, gn, tol):
            esc = _escape(fr, state, tol) if descends(kind) else None
            if esc is None:
                return state, "converged", f"‖∇R‖ = {gn:.3e} ≤ {T.grad_tol(state.risk, tol):.3e}"
            state.move(*esc, "escape")
            continue
        tn = float(torch.linalg.norm(state.theta))
        if tn > max_norm:
            return state, "diverging", f"‖θ‖ = {tn:.4g} passed max_norm"
        near = gn <= T.NEWTON_SWITCH * T.scale(state.risk)
        # kind minimum: GGN first far from a critical point, trust-region Newton first near one
        order = sorted(steps, key=lambda s: (s.name == "ggn") == near) if descends(kind) else steps
        for step in order:
            if step.exhausted:
                continue
            prop = step.propose(fr, state)
            if prop is None:
                step.feedback(False, -math.inf)
                continue
            ok, rho, new = _accept(fr, state, prop, kind)
            step.feedback(ok, rho)
            if ok:
                state.move(*new, step.name)
                break
        else:
            if all(s.exhausted for s in steps):
                return state, "stalled", f"the damping passed {T.MU_MAX:.0e}: no step lowers the merit"
    state.iteration = max_iter
    state.record()
    return state, "max_iter", f"stopped after max_iter={max_iter} iterations"


def find_critical_point_krylov(fr: ChunkedRisk, *, kind: str, tol: float, max_iter: int, max_norm: float,
                               fit: LinearFit, steps: list[Step] | None = None) -> CriticalPoint:
    """:func:`solve` from the model's parameters, and the run's :class:`~resland.outcomes.CriticalPoint`."""
    start = time.perf_counter()
    theta0 = flat_parameters(fr.model.parameters()).to(device=fr.device, dtype=fr.dtype)
    state, status, message = solve(fr, theta0, kind=kind, tol=tol, max_iter=max_iter, max_norm=max_norm, steps=steps)
    theta, R, gn = state.theta, state.risk, state.grad_norm   # the state holds R and ∇R at its θ
    model = fr.model_at(theta)
    margin = kink_margin(model, fr.X) if kinked_modules(model) else None
    on_kink = margin is not None and margin <= T.KINK_TOL
    div = divergence(state.history)
    diverging = div is not None and div["diverging"]
    if status in ("stalled", "max_iter") and T.is_critical(R, gn, tol) and not diverging and not on_kink:
        status, message = "converged", message + f"; critical all the same: ‖∇R‖ = {gn:.3e}"
    if status == "converged" and on_kink:
        status, message = "stalled", message + "; but the point lies on a kink (no kink polish above the dense limit)"
    message += f"; {fr.products} Hessian/GGN-vector products"
    path_min = float(fr.risk(state.best_theta)) if descends(kind) and state.best_theta is not None else None
    status, note = vanishing(status, R, fr.loss)
    message += note
    outcome, note = outcome_of(status, path_min, fit, div)
    message += note
    return CriticalPoint(
        model=model, risk=R, grad_norm=gn, converged=outcome == "critical", status=status, outcome=outcome,
        iterations=state.iteration, seconds=time.perf_counter() - start, kind=kind, grad_tol=T.grad_tol(R, tol),
        newton_step=math.nan, param_norm=float(torch.linalg.norm(theta)), method="krylov", message=message,
        kink_margin=margin, linear_risk=fit.risk, path_min_risk=path_min, divergence=div,
        steps=dict(sorted(state.steps.items())),
        parameters=theta.detach().cpu().tolist() if outcome in ("unresolved", "gradient_flat", "failed") else None,
        history=state.history,
    )
