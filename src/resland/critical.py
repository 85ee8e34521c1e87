"""Finding critical points ``∇R(θ) = 0``: one masked, batched driver, and an outcome for every run.

There is one iteration. :func:`find_critical_points` runs it on every member of an
:class:`~resland.ensemble.Ensemble` at once (members that stop drop out of the batch);
:func:`find_critical_point` is the same driver on an ensemble of one.

**Steps.** At each iterate ``θ`` with gradient ``g`` and Hessian ``H = ∇²R(θ)``, a few
candidate steps are formed and evaluated in one batched risk/gradient call; the best one that
passes the ratio test wins, second-order steps before GGN on the dense backend (so the step is
chosen per member and per iteration):

* ``kind="minimum"`` (merit ``R``):
  * *trust-region Newton* ``p = −(H + σI)⁻¹g`` with ``‖p‖ ≤ Δ``, ``σ ≥ max(0, −λ_min)`` found by
    bisection in the eigenbasis (dense backend; the radius ``Δ`` adapts on the ratio of actual
    to predicted decrease), or ``σ = μ‖g‖`` by MINRES (Krylov backend);
  * *Newton-MR* ``p = −H⁺g`` (least-norm, pseudo-inverse with cutoff ``n·eps·|λ|_max``), built
    for singular critical sets: at every critical point with ``w ≠ 0`` the Hessian is exactly
    singular (docs/theory.md §6), where Newton-MR converges superlinearly and plain Newton
    does not exist;
  * *generalised Gauss–Newton* ``p = −(JᵀDJ + μ_G I)⁻¹g`` (``J`` the m × n Jacobian of the
    predictions, ``D = diag(ℓ'')/m``), fast far out and at interpolating minima.
* ``kind="any"`` (merit ``½‖∇R‖²``): Levenberg–Marquardt on ``∇R = 0``,
  ``p = −(H² + μ‖g‖I)⁻¹Hg``, and Newton-MR ``−H⁺g``; these reach saddles as well as minima.

Backends by size: the dense Hessian and a batched ``eigh`` up to ``dense_max_params``
(:data:`~resland.tolerances.FINDER_DENSE_MAX`) and an m × n Jacobian of at most
:data:`~resland.tolerances.JACOBIAN_MAX_FLOATS`; above either, member by member, the matrix-free finder of
:mod:`resland.krylov` (one solver state and step classes on Hessian- and GGN-vector products summed over
chunks of samples; docs/theory.md §9), except saddle search (``kind="any"``) on fewer than
``CHUNKED_MIN_ROWS`` samples, which keeps this driver's Krylov backend (SciPy MINRES for ``Hp = −g``, CG for
LM on ``(H² + σI)p = −Hg``, at most :data:`~resland.second_order.KRYLOV_MAX_PRODUCTS` products, through one full-batch gradient
graph). Members with more than :data:`~resland.tolerances.NEWTON_ALWAYS_MAX` parameters take GGN steps
alone until they are near a critical point.

**Critical** has one definition, shared with :func:`~resland.certificate.certify`
(:mod:`resland.tolerances`): ``‖∇R‖ ≤ tol·max(1, |R|)``. A run is ``converged`` when its
iterate is critical and the regularised step ``(|H| + ‖g‖I)⁻¹g`` (a distance to the critical
set, over the eigendirections with ``|λ| > n·eps·|λ|_max``: in numerically null directions the
gradient is rounding) is ``≤ xtol·(1 + ‖θ‖)``; the second test separates a critical point from a flat path to
infinity, and only decides when to stop: a run that stalls or reaches ``max_iter`` at a critical
iterate, without the evidence of :func:`divergence`, is ``converged`` too (a flat critical region,
e.g. a deep net's vanishing-gradient plateau).
With ``kind="minimum"`` a critical point with ``λ_min < −lambda_tol`` is escaped along
its eigenvector when a backtracking step lowers the risk.

**ReLU-type networks.** The risk is smooth inside each activation region and the driver's
derivatives are those of the current region's piece. A converged point with a positive kink
margin is an interior critical point. A run that ends near a kink is polished onto its kink
manifold by :func:`resland.kinks.analyse_kink` and described there (Clarke stationarity,
one-sided derivatives, piece minimality).

**Outcomes** (:data:`OUTCOMES`, first match wins):

* ``critical``: converged to a critical point (positive kink margin for ReLU-type networks);
  the certificate holds the verdict;
* ``kink``: converged onto a kink, Clarke-stationary (``CriticalPoint.kink`` has the evidence);
* ``below_linear``: not converged, ``kind="minimum"``, and a descent iterate has
  ``R < R_lin − risk_tol`` (``path_min_risk``, recomputed by a fresh forward pass). The driver
  only accepts risk decreases, so every limit of the run is better than linear;
* ``diverging``: not converged, ``‖θ‖`` grows (by ≥ 5 % over the second half of the accepted
  steps, on ≥ 75 % of them) while the risk decreases; the evidence is in ``divergence``;
* ``gradient_flat``: stopped short of critical with ``‖H∇R‖ ≤ GRADIENT_FLAT_TOL·‖H‖₂‖∇R‖`` (docs/theory.md §9,
  Frye et al. 2021): the gradient lies in the Hessian's near-null space; the numbers are in ``flatness``;
  evidence of why the run stopped, never of a critical point;
* ``unresolved``: none of these; the parameters are kept for a human to look at;
* ``failed``: a non-finite risk or gradient, or an error.

Conventions: mean risk, squared loss ``(p − y)²`` without 1/2, float64, flat parameters in
``model.parameters()`` order.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from .kinds import KINDS, descends, merit
from . import tolerances as T
from ._checks import ValidationError, check_choice, check_positive_float, check_positive_int, check_scalar
from .ensemble import Ensemble
from .functional import FlatRisk
from .krylov import ChunkedRisk, find_critical_point_krylov
from .linear import LinearFit, linear_fit_for
from .losses import Loss
from .curvature import HessianOperator
from .outcomes import (OUTCOMES, CriticalPoint, report_progress, divergence, gradient_flatness, reporting,
                       settle_outcome, vanishing)
from .kinks import analyse_kink
from .regions import kink_margin, kinked_modules
from .second_order import DenseCurvature, KrylovCurvature, MixedCurvature, next_radius

__all__ = ["OUTCOMES", "CriticalPoint", "divergence", "find_critical_point", "find_critical_points", "reporting"]

#: The finder's methods: the stepping driver, or continuation along a homotopy path (resland.homotopy).
METHODS = ("steps", "continuation")
#: Newton iterations of the kink polish (an active-set SQP that crosses one kink or a few per
#: iteration; diabetes, n = 53: 150–500 iterations).
KINK_POLISH_ITER = 1000
#: ... with ``kind="any"``: the polish descends, so it only settles a kink next to the endpoint.
KINK_POLISH_ITER_ANY = 50


def find_critical_point(
    model: nn.Module,
    X,
    y,
    loss: str | Loss = "squared",
    kind: str = "minimum",
    tol: float = T.GRAD_TOL,
    max_iter: int = T.MAX_ITER,
    *,
    xtol: float = T.XTOL,
    dense_max_params: int = T.FINDER_DENSE_MAX,
    max_norm: float = T.MAX_NORM,
    fit: LinearFit | None = None,
    kink_iter: int | None = None,
    newton_always_max: int = T.NEWTON_ALWAYS_MAX,
    method: str = "steps",
    seed: int | None = None,
) -> CriticalPoint:
    """Find a critical point from the model's current parameters: the driver on an ensemble of one.

    Args:
        model: any ``nn.Module`` with a scalar output (not modified; see ``.model``).
        X: inputs, shape (m, d); y: targets, shape (m,); loss: loss name or instance.
        kind: ``minimum`` or ``any`` (module docstring).
        tol: relative gradient tolerance of "critical" (``tolerances.GRAD_TOL``).
        max_iter: driver iterations.
        xtol: relative cap on the distance estimate.
        dense_max_params: dense Hessian steps up to this many parameters, Krylov above.
        max_norm: ``‖θ‖`` beyond which the run stops.
        fit: the best linear predictor of the data, if already computed.
        kink_iter: Newton iterations of the kink polish of ReLU-type networks (default
            ``KINK_POLISH_ITER`` for ``minimum``, ``KINK_POLISH_ITER_ANY`` for ``any``), at most the
            work budget :func:`~resland.tolerances.kink_polish_iter` (``KINK_POLISH_WORK / (n²·m)``
            iterations); a cap trades deep-network kinks for time in large censuses.
        newton_always_max: up to this many parameters a second-order step is tried at every
            iteration; above it only near a critical point (GGN steps elsewhere). Lower values trade
            convergence of mid-sized models for time (``tolerances.NEWTON_ALWAYS_MAX``).
        method: ``steps`` (this driver) or ``continuation`` (:mod:`resland.homotopy`: a path of exact critical
            points of a perturbed risk followed to the risk itself; Tikhonov for ``minimum``, the Newton homotopy
            for ``any``; smooth activations, at most ``HOMOTOPY_MAX_PARAMS`` parameters; ``max_iter`` counts path
            steps). The route to critical points of full-width deep nets (docs/theory.md §9).
        seed: deprecated and ignored (the finder is deterministic; seed the start with ``init_model(seed=…)`` or
            ``torch.manual_seed``); a ``FutureWarning`` says so. Removed in resland 0.3.

    Returns:
        The :class:`CriticalPoint`.

    Raises:
        ValidationError: on a bad ``kind``, ``tol`` or ``max_iter``, or bad data.
    """
    if seed is not None:
        import warnings

        warnings.warn("find_critical_point(seed=...) is deprecated and ignored: the finder is deterministic; seed the "
                      "start with init_model(seed=...) or torch.manual_seed. It will be removed in resland 0.3.",
                      FutureWarning, stacklevel=2)
    ens = Ensemble([model], X, y, loss)
    return find_critical_points(ens, kind, tol, max_iter, xtol=xtol, dense_max_params=dense_max_params,
                                max_norm=max_norm, fit=fit, kink_iter=kink_iter,
                                newton_always_max=newton_always_max, method=method)[0]


def find_critical_points(
    ens: Ensemble,
    kind: str = "minimum",
    tol: float = T.GRAD_TOL,
    max_iter: int = T.MAX_ITER,
    *,
    xtol: float = T.XTOL,
    max_norm: float = T.MAX_NORM,
    dense_max_params: int = T.FINDER_DENSE_MAX,
    fit: LinearFit | None = None,
    batched: bool = True,
    kink_iter: int | None = None,
    newton_always_max: int = T.NEWTON_ALWAYS_MAX,
    method: str = "steps",
) -> list[CriticalPoint]:
    """Run the driver on every member of ``ens`` (see the module docstring).

    Args:
        ens: the ensemble; its rows ``Θ`` (M × n) are the starts (left unchanged).
        kind, tol, max_iter, xtol, max_norm, dense_max_params, kink_iter, newton_always_max, method: as
            :func:`find_critical_point`.
        fit: the best linear predictor (computed here when None).
        batched: all members in one vmapped computation (True) or one at a time (False); the same
            iteration, rounded by different kernels.

    Returns:
        One :class:`CriticalPoint` per member, in order.

    Raises:
        ValidationError: on a bad ``kind``, ``tol`` or ``max_iter``.
    """
    check_choice("kind", kind, KINDS)
    tol = check_positive_float("tol", tol)
    max_iter = check_positive_int("max_iter", max_iter)
    fit = linear_fit_for(ens.fr.model, ens.fr.X, ens.fr.y, ens.fr.loss, fit)
    if kink_iter is None:
        kink_iter = KINK_POLISH_ITER if descends(kind) else KINK_POLISH_ITER_ANY
    kink_iter = check_positive_int("kink_iter", kink_iter)
    newton_always_max = check_scalar(newton_always_max, "newton_always_max", int, min_val=0)
    check_choice("method", method, METHODS)
    if method == "continuation":
        return _by_continuation(ens, kind, tol, max_iter, max_norm, fit)
    large = ens.n > dense_max_params or ens.m * ens.n > T.JACOBIAN_MAX_FLOATS
    # Saddle search on small data keeps the batched driver's Krylov backend (LM by CG on H² to 1e-12 through
    # one full-batch gradient graph, no Jacobian): it converges where the matrix-free saddle search stalls.
    if large and not (not descends(kind) and ens.m < T.CHUNKED_MIN_ROWS):   # the matrix-free finder
        return [find_critical_point_krylov(ChunkedRisk(ens.model_at(ens.theta[j]), ens.fr.X, ens.fr.y, ens.fr.loss),
                                           kind=kind, tol=tol, max_iter=max_iter, max_norm=max_norm, fit=fit)
                for j in range(ens.M)]
    opts = dict(kind=kind, tol=tol, max_iter=max_iter, xtol=xtol, max_norm=max_norm,
                dense=ens.n <= dense_max_params, kink_iter=kink_iter, newton_always=ens.n <= newton_always_max)
    groups = [torch.arange(ens.M)] if batched else [torch.tensor([j]) for j in range(ens.M)]
    out = []
    for members in groups:
        start = time.perf_counter()
        runs = _drive(ens, members, **{k: v for k, v in opts.items() if k != "kink_iter"})
        out += [_finish(ens, r, fit, opts, start) for r in runs]
    return out


def _by_continuation(ens, kind, tol, max_iter, max_norm, fit) -> list[CriticalPoint]:
    from .homotopy import HOMOTOPY_MAX_PARAMS, find_by_continuation

    if kinked_modules(ens.fr.model):
        raise ValidationError("The 'continuation' method follows smooth paths: it needs a smooth activation (tanh, "
                              "softplus, gelu). Got a ReLU-type network; use method='steps'.")
    if ens.n > HOMOTOPY_MAX_PARAMS:
        raise ValidationError(f"The 'continuation' method is dense: at most {HOMOTOPY_MAX_PARAMS} parameters. Got "
                              f"{ens.n}; use method='steps'.")
    return [find_by_continuation(ens, j, fit, kind=kind, tol=tol, max_steps=max_iter, max_norm=max_norm)
            for j in range(ens.M)]


# ----------------------------------------------------------------------------- the driver
def _drive(ens: Ensemble, members: torch.Tensor, *, kind, tol, max_iter, xtol, max_norm, dense,
           newton_always) -> list[dict]:
    theta = ens.theta[members].clone()
    k, n = theta.shape
    runs = [{"status": "max_iter", "message": f"stopped after max_iter={max_iter} iterations", "iterations": 0,
             "history": [], "best_risk": math.inf, "best_theta": theta[a].clone(), "dist": math.inf,
             "risk": math.nan, "grad_norm": math.nan, "steps": {}} for a in range(k)]
    names = ("newton", "newton_mr", "ggn") if descends(kind) else ("lm", "newton_mr", "-")
    mu_h = torch.ones(k, dtype=theta.dtype)
    radius = torch.ones(k, dtype=theta.dtype)       # trust radius of the dense minimum step
    mu_g = torch.full((k,), 1e-3, dtype=theta.dtype)  # GGN damping relative to trace(JᵀDJ)/n
    active = torch.ones(k, dtype=torch.bool)
    kinked = bool(kinked_modules(ens.fr.model))
    for it in range(max_iter):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        th = theta[idx]
        R, g = ens.risk(th), ens.grad(th)
        gn = torch.linalg.norm(g, dim=1)
        finite = torch.isfinite(R) & torch.isfinite(gn)
        for j in idx[~finite].tolist():
            runs[j].update(status="nan", message="the risk or its gradient became non-finite", iterations=it)
            active[j] = False
        if not bool(finite.all()):
            idx, th, R, g, gn = idx[finite], th[finite], R[finite], g[finite], gn[finite]
            if idx.numel() == 0:
                break
        tn = torch.linalg.norm(th, dim=1)
        report_progress("search", it + 1, max_iter, float(gn.min()))
        # Second-order curvature only where it pays: near a critical point, for saddle search, or
        # where the Gauss–Newton damping shows GGN steps failing; elsewhere GGN alone.
        near = gn <= T.NEWTON_SWITCH * torch.clamp(R.abs(), min=1.0)
        need = (mu_g[idx] > 1e4) | (not descends(kind)) | newton_always | (near & dense)
        curv = MixedCurvature(ens, th, R, g, gn, need, DenseCurvature if dense else KrylovCurvature)
        dist = curv.distance()
        for a, j in enumerate(idx.tolist()):
            run = runs[j]
            run.update(risk=float(R[a]), grad_norm=float(gn[a]), dist=float(dist[a]), iterations=it)
            run["history"].append((float(R[a]), float(gn[a]), float(tn[a])))
            if descends(kind) and float(R[a]) < run["best_risk"]:
                run["best_risk"], run["best_theta"] = float(R[a]), th[a].clone()
        stop, escaped = _stopping(runs, idx, R, gn, tn, dist, curv, kind, tol, xtol, max_norm, ens, th, kinked, it)
        for a, j in enumerate(idx.tolist()):
            if stop[a] is not None:
                runs[j]["status"], runs[j]["message"] = stop[a]
                active[j] = False
        live = torch.tensor([stop[a] is None for a in range(len(idx))])
        if not live.any():
            continue
        sub = idx[live]
        steps, preds, which = curv.candidates(kind, mu_h[sub], mu_g[sub], live, radius[sub])
        trial = th[live][:, None, :] + steps                                # (k', c, n)
        kk, c = trial.shape[0], trial.shape[1]
        R0, gn0 = R[live], gn[live]
        merit0 = merit(kind, R0, gn0)
        noise = 1e2 * T.EPS64 * torch.clamp(merit0.abs(), min=1.0)
        # Evaluate only the candidates that exist; gradients only where the merit needs them.
        valid = torch.isfinite(preds)
        tiny = preds.abs() <= noise[:, None]      # predicted change below rounding: judge by ‖∇R‖
        need_g = valid & (tiny | (not descends(kind)))
        R_t = torch.full((kk, c), math.nan, dtype=theta.dtype)
        gn_t = torch.full((kk, c), math.inf, dtype=theta.dtype)
        R_t[valid] = ens.risk(trial[valid])
        if bool(need_g.any()):
            gn_t[need_g] = torch.linalg.norm(ens.grad(trial[need_g]), dim=1)
        merit_t = merit(kind, R_t, gn_t)
        actual = merit0[:, None] - merit_t
        rho = actual / preds
        ok = torch.isfinite(merit_t) & valid & torch.where(
            tiny, (merit_t <= merit0[:, None] + noise[:, None]) & (gn_t < gn0[:, None]), (preds > 0) & (rho > 1e-4))
        # Second-order steps first (they keep the trust region's memory); GGN when none is accepted.
        second = ok.clone()
        if "ggn" in which:
            second[:, which["ggn"]] = False
        pick = torch.where(second.any(1, keepdim=True), second, ok) if dense else ok
        best = torch.where(pick, merit_t, torch.inf).argmin(1)
        accepted = ok[torch.arange(kk), best]
        for a, j in enumerate(sub.tolist()):
            if escaped.get(j) is not None:
                theta[j] = escaped[j]
                _count(runs[j], "escape")
                continue
            if bool(accepted[a]):
                theta[j] = trial[a, best[a]]
                _count(runs[j], names[int(best[a])])
        # Damping: shrink after a good step of its own kind, grow after a poor or rejected one.
        for name, mu in (("newton", mu_h), ("ggn", mu_g)):
            col = which.get(name)
            if col is None:
                continue
            if name == "newton" and descends(kind) and dense:   # trust-region radius update
                r, o = rho[:, col], ok[:, col]
                pn = torch.linalg.norm(steps[:, col], dim=1)
                radius[sub] = next_radius(radius[sub], r, o, pn)
                continue
            r, o = rho[:, col], ok[:, col]
            good = o & ((r > 0.75) | tiny[:, col])
            mu[sub] = torch.where(good, torch.clamp(mu[sub] / 3, min=1e-10),
                                  torch.where(o & (r > 0.25), mu[sub], mu[sub] * 4))
        # Stalled: the second-order step is exhausted (trust radius collapsed, or damping past T.MU_MAX)
        # and so is GGN where it is offered.
        if descends(kind) and dense:
            exhausted = radius[sub] < 1e-14 * (1 + torch.linalg.norm(theta[sub], dim=1))
        else:
            exhausted = mu_h[sub] > T.MU_MAX
        for a, j in enumerate(sub.tolist()):
            if not bool(accepted[a]) and escaped.get(j) is None and bool(exhausted[a]) and (
                    "ggn" not in which or float(mu_g[j]) > T.MU_MAX):
                runs[j]["status"], runs[j]["message"] = "stalled", "the damping passed 1e12: no step lowers the merit"
                active[j] = False
    else:
        for j in torch.nonzero(active).flatten().tolist():
            runs[j]["iterations"] = max_iter
    for a in range(k):
        runs[a]["theta"] = theta[a]
    return runs


def _count(run: dict, name: str) -> None:
    run["steps"][name] = run["steps"].get(name, 0) + 1


def _stopping(runs, idx, R, gn, tn, dist, curv, kind, tol, xtol, max_norm, ens, th, kinked, it):
    """Per active (finite) member: ``None`` to go on, or ``(status, message)``; and the saddle
    escapes (``{member: θ_new}``) that replace a critical point's step with ``kind="minimum"``."""
    out, escapes = [], {}
    for a, j in enumerate(idx.tolist()):
        Ra, ga, ta, da = float(R[a]), float(gn[a]), float(tn[a]), float(dist[a])
        gtol = T.grad_tol(Ra, tol)
        if ga <= gtol and da <= xtol * (1.0 + ta):
            msg = f"‖∇R‖ = {ga:.3e} ≤ {gtol:.3e} and the distance estimate {da:.3e} ≤ xtol·(1+‖θ‖)"
            if descends(kind):
                esc = curv.escape(a, Ra)
                if esc is not None:
                    escapes[j] = esc
                    out.append(None)
                    continue
            out.append(("converged", msg))
            continue
        if ta > max_norm:
            out.append(("diverging", f"‖θ‖ = {ta:.4g} passed max_norm"))
            continue
        if kinked and it >= 30 and it % 10 == 0 and _stuck_on_kink(runs[j]["history"], ens, th[a]):
            out.append(("stalled", "the iterates approach a kink while ‖∇R‖ stays large"))
            continue
        out.append(None)
    return out, escapes


def _stuck_on_kink(history, ens, theta) -> bool:
    """The kink margin is below ``KINK_CAPTURE`` and ‖∇R‖ fell less than 10× over 20 iterations."""
    g = [h[1] for h in history[-21:]]
    if len(g) < 21 or g[-1] < 0.1 * g[0]:
        return False
    margin = kink_margin(ens.model_at(theta), ens.fr.X)
    return margin is not None and margin <= T.KINK_CAPTURE


# ----------------------------------------------------------------------------- outcomes
def _finish(ens: Ensemble, run: dict, fit: LinearFit, opts: dict, start: float) -> CriticalPoint:
    kind, tol = opts["kind"], opts["tol"]
    theta = run["theta"]
    status, message = run["status"], run["message"]
    model = ens.model_at(theta)
    margin = kink_margin(model, ens.fr.X)
    kink = None
    R = float(ens.risk(theta[None])[0])
    gn = float(torch.linalg.norm(ens.grad(theta[None])[0]))
    near_kink = margin is not None and margin <= T.KINK_CAPTURE
    path_min = None
    if descends(kind) and math.isfinite(run["best_risk"]):
        path_min = float(ens.risk(run["best_theta"][None])[0])               # a fresh forward pass
    # A descent run that is already below linear has its evidence (every limit is better than linear);
    # beyond one layer the kink polish (dense Lagrangian Hessians, minutes at n ~ 10²) is not worth it.
    evidenced = (path_min is not None and path_min < fit.risk_lower - T.risk_tol(fit.risk) and status != "converged"
                 and getattr(model, "depth", 1) > 1)
    if near_kink and evidenced and status != "nan":
        message += "; below linear on its path and deeper than one layer: the kink polish is skipped"
    elif margin is not None and status != "nan" and near_kink and ens.n <= T.KINK_POLISH_MAX_PARAMS:
        fr = FlatRisk(model, ens.fr.X, ens.fr.y, ens.fr.loss)
        try:
            budget = T.kink_polish_iter(opts["kink_iter"], ens.n, ens.m)
            report_progress("kink polish", 0, budget, gn)
            polished, an = analyse_kink(fr, theta, grad_tol=T.grad_tol(R, tol), kind=kind, max_iter=budget)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:  # a failed polish is reported
            an, polished = None, None
            message += f"; the kink polish failed ({type(exc).__name__}: {exc})"
        if an is not None:
            kink = an.to_dict()
            if an.clarke_stationary and (not descends(kind) or an.risk <= R + 1e2 * T.EPS64 * T.scale(R)):
                theta = polished
                if an.kinked:
                    status = "kink"
                    message = (f"on a kink of {len(an.kinked)} (sample, unit) pairs, Clarke-stationary: the least-norm "
                               f"element of the adjacent pieces' gradient hull is {an.clarke_residual:.3e} ≤ "
                               f"{an.grad_tol:.3e}")
                else:   # the polish left every kink: a critical point inside its region
                    status = "converged"
                    message = (f"the kink polish left every kink: ‖∇R‖ = {an.clarke_residual:.3e} ≤ {an.grad_tol:.3e} "
                               f"inside an activation region (kink margin {an.outside_margin:.3e})")
                model = ens.model_at(theta)
                R = float(ens.risk(theta[None])[0])
                gn = float(torch.linalg.norm(ens.grad(theta[None])[0]))
                margin = kink_margin(model, ens.fr.X)
            else:
                message += (f"; kink polish: not Clarke-stationary (least-norm element {an.clarke_residual:.3e} > "
                            f"{an.grad_tol:.3e}; {an.message})")
                if status == "converged":
                    status = "stalled"
    elif status == "converged" and near_kink and margin is not None and margin <= T.KINK_TOL:
        status, message = "stalled", message + "; but the point lies on a kink too large for the kink polish"
    div = divergence(run["history"])
    if (status in ("stalled", "max_iter") and T.is_critical(R, gn, tol) and not (div is not None and div["diverging"])
            and not (margin is not None and margin <= T.KINK_TOL)):
        # One definition of critical (the gradient test, as in certify): a run that ends at a point
        # that passes it, and is not on its way to infinity, is critical; xtol only decides when to stop.
        status = "converged"
        message += (f"; critical all the same: ‖∇R‖ = {gn:.3e} ≤ {T.grad_tol(R, tol):.3e} (the one test of "
                    f"critical), though the distance estimate {run['dist']:.3e} > xtol·(1+‖θ‖): a flat region")
    status, note = vanishing(status, R, ens.fr.loss)
    message += note
    outcome, note, flat = settle_outcome(status, path_min, fit, div, lambda: gradient_flatness(
        HessianOperator(ens, theta), ens.grad(theta[None])[0]) if math.isfinite(gn) else None)
    message += note
    return CriticalPoint(
        model=model, risk=R, grad_norm=gn, converged=outcome in ("critical", "kink"), status=status, outcome=outcome,
        iterations=run["iterations"], seconds=time.perf_counter() - start, kind=kind, grad_tol=T.grad_tol(R, tol),
        newton_step=run["dist"], param_norm=float(torch.linalg.norm(theta)),
        method="dense" if opts["dense"] else "krylov", message=message, kink_margin=margin, kink=kink,
        linear_risk=fit.risk, path_min_risk=path_min, divergence=div, steps=dict(sorted(run["steps"].items())),
        parameters=theta.detach().cpu().tolist() if outcome in ("unresolved", "gradient_flat", "failed") else None,
        history=run["history"], flatness=flat,
    )
