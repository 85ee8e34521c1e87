"""Finding critical points ``∇R(θ) = 0`` of the mean risk to float64 precision.

Two facts make this hard (theory.md §6). The Hessian of a scalar-output ResNet is exactly
singular at critical points (``f`` depends on ``V_L`` only through ``wᵀV_L``), so every
Newton-type step here is a pseudo-inverse / trust-region step that works on singular
systems. And on generic data the infimum is often approached only as ``‖θ‖ → ∞``; the
finder watches the parameter norm and reports ``diverging`` instead of stalling.

Methods:

* ``kind="minimum"``: L-BFGS descent (SciPy) to a moderate gradient, then an exact
  trust-region Newton method. With the dense Hessian (``n ≤ dense_max_params``) the
  trust-region subproblem is solved exactly in the Hessian's eigenbasis (Moré–Sorensen,
  hard case included), so negative curvature is followed and saddles are escaped; while the
  negative curvature is insignificant the step is regularised, ``σ ≥ max(0, −λ_min) + ‖∇R‖``
  (regularised Newton, fast on non-isolated minima). Where the exact model predicts poorly a
  generalised Gauss–Newton / Levenberg–Marquardt step is also tried and the lower risk wins.
  Above ``dense_max_params`` the subproblem is solved by Steihaug–Toint CG on exact HVPs.
* ``kind="any"``: an adaptive Levenberg–Marquardt method on the equations ``∇R = 0``,
  ``p = −(H² + σI)⁻¹ H ∇R`` with ``σ = μ‖∇R‖`` and an Armijo line search on ``‖∇R‖²``; as
  ``σ → 0`` this is the Newton-MR step ``−H⁺∇R``. It converges to saddles as well as to
  minima. Above ``dense_max_params`` the step comes from SciPy's CG on ``H² + σI`` (HVPs).

Convergence (documented scale): with ``scale = max(1, |R(θ_start)|)``, a point is
``converged`` only when ``‖∇R(θ)‖₂ ≤ tol · scale`` **and** the regularised Newton step
(``−(H + (max(0, −λ_min) + ‖∇R‖)I)⁻¹∇R`` for ``minimum``, the LM step for ``any``), an
estimate of the distance to the critical set, is ``≤ xtol · (1 + ‖θ‖)``; for
``kind="minimum"`` also ``λ_min(∇²R) ≥ −1e-8·|λ|_max``. The second test separates a true
critical point from a flat path to infinity, where the gradient is tiny but Newton keeps
proposing steps of constant length. ``converged`` is never reported above tolerance.

Statuses: ``converged``; ``diverging`` (after at least 40 accepted second-order steps, ``‖θ‖``
grew on ≥ 90 % of the accepted steps of the last half and by ≥ 10 % over it, or passed ``max_norm``);
``max_iter``; ``stalled`` (no acceptable step could be found); ``nan`` (non-finite risk).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.sparse.linalg as spla
import torch
from torch import nn

from ._checks import check_choice, check_positive_float, check_positive_int
from .curvature import DENSE_MAX_PARAMS
from .functional import FlatRisk
from .losses import Loss

_EPS = float(np.finfo(np.float64).eps)


@dataclass
class CriticalPoint:
    """Result of :func:`find_critical_point`.

    Attributes:
        model: a copy of the model at the final parameters.
        risk: mean risk ``R`` there; grad_norm: ``‖∇R‖₂``.
        converged: True only if both convergence tests passed (see module docstring).
        status: ``converged``, ``diverging``, ``max_iter``, ``stalled`` or ``nan``.
        iterations: second-order iterations; descent_iterations: L-BFGS iterations.
        seconds: wall time.
        grad_tol: ``tol · scale``, the gradient threshold used; scale: ``max(1, |R(θ_start)|)``.
        newton_step: norm of the last regularised Newton / LM step (distance estimate).
        param_norm: ``‖θ‖`` at the end.
        kind, method: what was asked and how it was solved (``dense`` or ``krylov``).
        message: one line saying why the run stopped.
    """

    model: nn.Module
    risk: float
    grad_norm: float
    converged: bool
    status: str
    iterations: int
    seconds: float
    kind: str
    grad_tol: float
    scale: float
    newton_step: float
    param_norm: float
    descent_iterations: int
    method: str
    message: str
    history: list = field(default_factory=list, repr=False)

    def to_dict(self, *, timing: bool = True) -> dict:
        """The fields as plain values; ``timing=False`` leaves out the wall time ``seconds``."""
        drop = ("model", "history") if timing else ("model", "history", "seconds")
        return {k: v for k, v in self.__dict__.items() if k not in drop}


def find_critical_point(
    model: nn.Module,
    X,
    y,
    loss: str | Loss = "squared",
    kind: str = "minimum",
    tol: float = 1e-10,
    max_iter: int = 200,
    seed: int | None = None,
    *,
    xtol: float = 1e-6,
    descent_iter: int = 1000,
    descent_gtol: float = 1e-5,
    dense_max_params: int = DENSE_MAX_PARAMS,
    max_norm: float = 1e6,
) -> CriticalPoint:
    """Find a critical point of the mean risk, starting from the model's current parameters.

    Args:
        model: any ``nn.Module`` with a scalar output (not modified; see ``.model``).
        X, y: data (NumPy or torch); loss: loss name or instance.
        kind: ``minimum`` (descent + trust-region Newton) or ``any`` (Levenberg–Marquardt on ∇R = 0,
            reaches saddles).
        tol: gradient tolerance relative to ``scale = max(1, |R(θ_start)|)``.
        max_iter: cap on second-order iterations.
        seed: drives internal randomness only (Krylov start vectors); the caller initialises.
        xtol: relative cap on the final Newton step (distance-to-critical-point estimate).
        descent_iter: cap on L-BFGS iterations (``kind="minimum"``).
        descent_gtol: L-BFGS hands over to the trust-region phase at ``‖∇R‖ ≤ descent_gtol · scale``.
        dense_max_params: dense Hessian up to this many parameters, HVP Krylov methods above.
        max_norm: ``‖θ‖`` beyond which the run is declared ``diverging``.
    """
    check_choice("kind", kind, ("minimum", "any"))
    tol = check_positive_float("tol", tol)
    max_iter = check_positive_int("max_iter", max_iter)
    start = time.perf_counter()
    fr = FlatRisk(model, X, y, loss)
    theta = fr.theta0.clone()
    R0 = float(fr.risk(theta))
    scale = max(1.0, abs(R0)) if np.isfinite(R0) else 1.0
    gtol = tol * scale
    rng = np.random.default_rng(seed)
    n_desc = 0
    if kind == "minimum":
        theta, n_desc = _lbfgs(fr, theta, gtol=max(gtol, descent_gtol * scale), maxiter=descent_iter)
    method = "dense" if fr.n <= dense_max_params else "krylov"
    curv_cls = _DenseCurvature if method == "dense" else _KrylovCurvature
    state = _second_order(fr, theta, kind, gtol, xtol, max_iter, max_norm, curv_cls, rng)
    theta = state["theta"]
    return CriticalPoint(
        model=fr.model_at(theta),
        risk=state["risk"],
        grad_norm=state["grad_norm"],
        converged=state["status"] == "converged",
        status=state["status"],
        iterations=state["iterations"],
        seconds=time.perf_counter() - start,
        kind=kind,
        grad_tol=gtol,
        scale=scale,
        newton_step=state["newton_step"],
        param_norm=float(torch.linalg.norm(theta)),
        descent_iterations=n_desc,
        method=method,
        message=state["message"],
        history=state["history"],
    )


def _lbfgs(fr: FlatRisk, theta: torch.Tensor, gtol: float, maxiter: int):
    """L-BFGS descent phase (SciPy ``L-BFGS-B`` without bounds)."""

    def fun(x):
        R, g = fr.risk_and_grad(torch.as_tensor(x, dtype=fr.dtype, device=fr.device))
        if not np.isfinite(R):
            return np.inf, np.zeros_like(x)
        return R, g.cpu().numpy()

    res = scipy.optimize.minimize(
        fun, theta.cpu().numpy(), jac=True, method="L-BFGS-B",
        options={"maxiter": maxiter, "gtol": gtol / np.sqrt(fr.n), "ftol": 1e3 * _EPS, "maxcor": 30},
    )
    return torch.as_tensor(res.x, dtype=fr.dtype, device=fr.device), int(res.nit)


class _DenseCurvature:
    """Dense Hessian at ``θ`` with its eigendecomposition."""

    def __init__(self, fr: FlatRisk, theta: torch.Tensor, rng):
        lam, Q = torch.linalg.eigh(fr.hessian(theta))
        self.lam, self.Q = lam, Q
        self.abs_max = float(lam.abs().max()) if lam.numel() else 0.0
        self.cutoff = 1e-9 * max(self.abs_max, 1e-300)

    @property
    def lambda_min(self) -> float:
        return float(self.lam[0])

    def regularized(self, g: torch.Tensor, sigma: float) -> torch.Tensor:
        """Regularised Newton step ``−(H + σI)⁻¹g`` (components with ``|λ + σ| ≤ cutoff`` read as 0)."""
        gh = self.Q.T @ g
        den = self.lam + sigma
        keep = den.abs() > self.cutoff
        return self.Q @ torch.where(keep, -gh / torch.where(keep, den, 1.0), 0.0)

    def levenberg_marquardt(self, g: torch.Tensor, sigma: float) -> torch.Tensor:
        """Levenberg–Marquardt step on ``∇R = 0``: ``−(H² + σI)⁻¹ H g`` (→ ``−H⁺g`` as ``σ → 0``)."""
        gh = self.Q.T @ g
        den = self.lam**2 + sigma
        keep = den > self.cutoff**2
        return self.Q @ torch.where(keep, -self.lam * gh / torch.where(keep, den, 1.0), 0.0)

    def trust_region(self, g: torch.Tensor, radius: float, reg: float = 0.0) -> tuple[torch.Tensor, float]:
        """Exact minimiser of ``gᵀp + ½pᵀ(H + reg·I)p`` over ``‖p‖ ≤ radius``, and ``gᵀp + ½pᵀHp``.

        ``reg > 0`` is the regularised-Newton floor ``σ ≥ max(0, −λ_min) + reg``; ``reg = 0`` is
        the plain trust-region subproblem, hard case included.
        """
        lam, gh = self.lam, self.Q.T @ g
        # Exactly flat directions with no gradient (the V_L degeneracy): leave them alone.
        gnorm = float(torch.linalg.norm(g))
        flat = (lam.abs() <= self.cutoff) & (gh.abs() <= 1e-10 * gnorm)
        gh = torch.where(flat, 0.0, gh)
        sigma_lo = max(0.0, -float(lam[0])) + reg

        def step(sigma):
            den = lam + sigma
            ok = den > self.cutoff
            return torch.where(ok, -gh / torch.where(ok, den, 1.0), 0.0), ok

        p_lo, ok = step(sigma_lo)
        singular_g = float(torch.linalg.norm(gh[~ok])) if (~ok).any() else 0.0
        if singular_g == 0.0 and float(torch.linalg.norm(p_lo)) <= radius:
            ph = p_lo  # interior (regularised, pseudo-inverse) Newton step
            if reg == 0.0 and sigma_lo > 0.0:  # hard case: fill the ball along the most negative eigenvector
                tau = np.sqrt(max(radius**2 - float(p_lo @ p_lo), 0.0))
                ph = p_lo.clone()
                ph[0] = ph[0] + tau
        else:
            lo, hi = sigma_lo, sigma_lo + gnorm / radius + self.cutoff
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if float(torch.linalg.norm(step(mid)[0])) > radius:
                    lo = mid
                else:
                    hi = mid
                if hi - lo <= 1e-15 * hi:
                    break
            ph = step(hi)[0]
        model = float(gh @ ph + 0.5 * (lam * ph * ph).sum())
        return self.Q @ ph, model


class _KrylovCurvature:
    """Hessian at ``θ`` seen only through exact HVPs (for models too big for a dense Hessian)."""

    def __init__(self, fr: FlatRisk, theta: torch.Tensor, rng):
        self.fr, self.theta, self.rng = fr, theta, rng
        self._hvp = fr.hvp_at(theta)  # one gradient graph for every product at this θ
        self._lmin = None
        self.abs_max = None
        n = fr.n
        self.op = spla.LinearOperator((n, n), dtype=np.float64, matvec=lambda x: self._hv(x))

    def _hv(self, x) -> np.ndarray:
        v = torch.as_tensor(np.ravel(x), dtype=self.fr.dtype, device=self.fr.device)
        return self._hvp(v).cpu().numpy()

    @property
    def lambda_min(self) -> float:
        if self._lmin is None:
            from .curvature import extremes_at

            eig = extremes_at(self.fr, self.theta, method="lanczos", seed=int(self.rng.integers(2**31)))
            self._lmin, self.abs_max = eig.lambda_min, max(abs(eig.lambda_min), abs(eig.lambda_max))
        return self._lmin

    def regularized(self, g: torch.Tensor, sigma: float) -> torch.Tensor:
        """``−(H + σI)⁻¹g`` by SciPy MINRES (minimum residual: fine on singular or indefinite H)."""
        p, _ = spla.minres(self.op, -g.cpu().numpy(), shift=-sigma, rtol=1e-12, maxiter=10 * self.fr.n)
        return torch.as_tensor(p, dtype=g.dtype, device=g.device)

    def levenberg_marquardt(self, g: torch.Tensor, sigma: float) -> torch.Tensor:
        """``−(H² + σI)⁻¹ H g`` by SciPy CG on the normal operator (two HVPs per product)."""
        n = self.fr.n
        normal = spla.LinearOperator(
            (n, n), dtype=np.float64, matvec=lambda x: self._hv(self._hv(x)) + sigma * np.ravel(x)
        )
        p, _ = spla.cg(normal, -self._hv(g.cpu().numpy()), rtol=1e-12, maxiter=10 * n)
        return torch.as_tensor(p, dtype=g.dtype, device=g.device)

    def trust_region(self, g: torch.Tensor, radius: float, reg: float = 0.0) -> tuple[torch.Tensor, float]:
        """Steihaug–Toint truncated CG on ``gᵀp + ½pᵀ(H + reg·I)p``, ``‖p‖ ≤ radius``.

        Hand-written: SciPy's implementation is private (``scipy.optimize._trustregion_ncg``).
        """
        hv = self._hvp
        p = torch.zeros_like(g)
        r, d = g.clone(), -g.clone()
        gn = float(torch.linalg.norm(g))
        tol = min(0.5, gn**0.5) * gn
        for _ in range(2 * self.fr.n):
            Hd = hv(d) + reg * d
            dHd = float(d @ Hd)
            if dHd <= 0:
                p = p + _to_boundary(p, d, radius) * d
                break
            alpha = float(r @ r) / dHd
            if float(torch.linalg.norm(p + alpha * d)) >= radius:
                p = p + _to_boundary(p, d, radius) * d
                break
            p = p + alpha * d
            r_new = r + alpha * Hd
            if float(torch.linalg.norm(r_new)) <= tol:
                break
            d = -r_new + (float(r_new @ r_new) / float(r @ r)) * d
            r = r_new
        return p, float(g @ p + 0.5 * (p @ hv(p)))


def _try_step(fr: FlatRisk, theta, p, model_change: float, R: float, gnorm: float):
    """Evaluate ``θ + p``; accept on the trust-region ratio test, or below rounding on a smaller gradient."""
    trial = theta + p
    R_new, g_new = fr.risk_and_grad(trial)
    noise = 1e2 * _EPS * max(1.0, abs(R))
    if not np.isfinite(R_new):
        return trial, R_new, g_new, False, -np.inf
    if -model_change <= noise:  # predicted decrease below rounding: use the gradient
        return trial, R_new, g_new, float(torch.linalg.norm(g_new)) < gnorm and R_new <= R + noise, 1.0
    rho = (R - R_new) / -model_change
    return trial, R_new, g_new, rho > 0.1, rho


def _gauss_newton_step(fr: FlatRisk, theta, g, mu: float):
    """``p = −(G + μI)⁻¹∇R`` with ``G = Jᵀ diag(ℓ'') J / m`` (J: m × n Jacobian of the predictions).

    Solved in the smaller of the two dimensions: for ``m ≤ n`` by the push-through identity
    ``(JᵀDJ/m + μI)⁻¹Jᵀ = Jᵀ(DJJᵀ/m + μI)⁻¹`` and ``∇R = Jᵀℓ'/m``. Returns ``p`` and
    ``gᵀp + ½pᵀGp``.
    """
    J = torch.func.jacrev(fr.predict)(theta)
    f = fr.predict(theta)
    d1, d2 = fr.loss.d1(f, fr.y), fr.loss.d2(f, fr.y)
    m, n = J.shape
    if m <= n:
        K = d2[:, None] * (J @ J.T) / m + mu * torch.eye(m, dtype=J.dtype, device=J.device)
        p = -(J.T @ torch.linalg.solve(K, d1 / m))
    else:
        G = (J.T * d2) @ J / m + mu * torch.eye(n, dtype=J.dtype, device=J.device)
        p = -torch.linalg.solve(G, g)
    Jp = J @ p
    return p, float(g @ p + 0.5 * (d2 * Jp * Jp).mean())


def _to_boundary(p: torch.Tensor, d: torch.Tensor, radius: float) -> float:
    """``τ ≥ 0`` with ``‖p + τd‖ = radius``."""
    a, b, c = float(d @ d), 2 * float(p @ d), float(p @ p) - radius**2
    return (-b + np.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)


def _is_diverging(norms: list[float]) -> bool:
    if len(norms) < 40:
        return False
    half = norms[len(norms) // 2 :]
    ups = np.diff(half) > 0
    return ups.mean() >= 0.9 and half[-1] >= 1.1 * half[0]


def _second_order(fr, theta, kind, gtol, xtol, max_iter, max_norm, curv_cls, rng) -> dict:
    radius = 1.0
    norms: list[float] = []
    history: list[dict] = []
    status, message = "max_iter", f"stopped after max_iter={max_iter} second-order iterations"
    R, g = fr.risk_and_grad(theta)
    curv = None
    dist = float("inf")
    dense = curv_cls is _DenseCurvature
    mu_lm = 1.0  # adaptive Levenberg–Marquardt weight: σ = mu_lm · ‖∇R‖
    mu_gn = 1.0  # the same for the Gauss–Newton alternative of kind="minimum"
    it = 0
    for it in range(1, max_iter + 1):
        gnorm = float(torch.linalg.norm(g))
        tnorm = float(torch.linalg.norm(theta))
        if not (np.isfinite(R) and np.isfinite(gnorm)):
            status, message = "nan", "the risk or its gradient became non-finite"
            break
        if curv is None:
            curv = curv_cls(fr, theta, rng)
        # Regularised Newton / Levenberg–Marquardt steps with σ ∝ ‖∇R‖ converge fast to
        # non-isolated critical points; their length estimates the distance to the critical set.
        if kind == "minimum":
            shift = max(0.0, -curv.lambda_min) if dense else 0.0
            p_dist = curv.regularized(g, shift + gnorm)
        else:
            p_dist = curv.levenberg_marquardt(g, mu_lm * gnorm)
        dist = float(torch.linalg.norm(p_dist))
        history.append({"risk": R, "grad_norm": gnorm, "param_norm": tnorm, "newton_step": dist})
        if gnorm <= gtol and dist <= xtol * (1.0 + tnorm):
            if kind == "any" or curv.lambda_min >= -1e-8 * max(curv.abs_max, 1e-300):
                status = "converged"
                message = f"‖∇R‖ = {gnorm:.3e} ≤ {gtol:.3e} and Newton step {dist:.3e} ≤ xtol·(1+‖θ‖)"
                break
        if tnorm > max_norm or _is_diverging(norms):
            status = "diverging"
            message = (f"‖θ‖ grew steadily to {tnorm:.4g} while ‖∇R‖ = {gnorm:.3e}: the infimum "
                       "appears to be approached only at infinity")
            break
        if kind == "minimum":
            # Follow negative curvature (plain trust region, hard case) once it is significant.
            significant = dense and curv.lambda_min < -max(gnorm**0.5, 1e-8 * curv.abs_max)
            p, model_change = curv.trust_region(g, radius, reg=0.0 if significant else gnorm)
            trial, R_new, g_new, accept, rho = _try_step(fr, theta, p, model_change, R, gnorm)
            pnorm = float(torch.linalg.norm(p))
            if rho < 0.25:
                radius = 0.25 * pnorm
            elif rho > 0.75 and pnorm >= 0.99 * radius:
                radius = 2.0 * radius
            if dense and not (accept and rho > 0.75):
                # Where the exact quadratic model predicts poorly, also try a generalised
                # Gauss–Newton (Levenberg–Marquardt) step: it converges fast to zero-residual /
                # interpolating minima, where the exact Hessian is dominated by residual-curvature
                # noise. The lower of the two accepted trials wins.
                p_gn, change_gn = _gauss_newton_step(fr, theta, g, mu_gn * gnorm)
                trial2, R2, g2, accept2, rho2 = _try_step(fr, theta, p_gn, change_gn, R, gnorm)
                mu_gn = max(mu_gn / 3, 1e-8) if accept2 and rho2 > 0.75 else mu_gn if accept2 else min(mu_gn * 4, 1e8)
                if accept2 and (not accept or R2 < R_new):
                    trial, R_new, g_new, accept = trial2, R2, g2, True
            if not accept and radius < 1e-14 * (1.0 + tnorm):
                status, message = "stalled", "the trust region collapsed: no step lowers the risk"
                break
        else:
            # d/dα ½‖∇R(θ + αp)‖² at 0 is (Hg)ᵀp.
            slope = float(fr.hvp(theta, g) @ p_dist)
            accept, alpha = False, 1.0
            while dist > 0 and slope < 0 and alpha > 1e-10:
                trial = theta + alpha * p_dist
                R_new, g_new = fr.risk_and_grad(trial)
                if np.isfinite(R_new) and 0.5 * float(g_new @ g_new) <= 0.5 * gnorm**2 + 1e-4 * alpha * slope:
                    accept = True
                    break
                alpha *= 0.5
            if not accept and mu_lm >= 1e8:
                status, message = "stalled", "the Levenberg–Marquardt line search on ‖∇R‖² found no decrease"
                break
            mu_lm = max(mu_lm / 4, 1e-8) if accept and alpha == 1.0 else min(mu_lm * 4, 1e8)
        if accept:
            theta, R, g, curv = trial, R_new, g_new, None
            norms.append(float(torch.linalg.norm(theta)))
    else:
        it = max_iter
        if _is_diverging(norms):
            status = "diverging"
            message = "‖θ‖ grew steadily through the run: the infimum appears to be at infinity"
    return {"theta": theta, "risk": float(R), "grad_norm": float(torch.linalg.norm(g)), "status": status,
            "message": message, "iterations": it, "newton_step": dist, "history": history}
