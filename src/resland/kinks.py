"""Kinks of ReLU-type networks: polish a point onto its kink, and Clarke stationarity (docs/theory.md §7).

:func:`analyse_kink` polishes a point onto its kink manifold ``{z_K(θ) = 0}`` (the active-set
Newton of :mod:`resland.kink_polish`), then describes it: the kinked pairs, the one-sided directional
derivatives of the adjacent pieces, Clarke stationarity (``0`` in the convex hull of the adjacent
pieces' gradients: the least-norm element of the hull by Wolfe's method) and whether each adjacent
piece is minimal in its own region.

Conventions: mean risk, flat parameters in ``model.parameters()`` order, pairs indexed as
``(activation module j, sample i, unit u)`` with modules in ``model.modules()`` order.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.optimize
import torch

from .kinds import descends
from . import tolerances as T
from .functional import FlatRisk
from .kink_polish import DRIFT_FACTOR, active_set_newton, null_basis, wrong_side
from .regions import Pieces

#: Largest number of kinked pairs whose adjacent pieces are enumerated one by one
#: (2^|K| pieces) for the local-minimality check.
MAX_ENUMERATED_KINKS = 10

#: ``kind="minimum"``: the polish runs in rounds of CLARKE_ROUND_ITER Newton iterations; between
#: rounds a point that is not Clarke-stationary takes a step along minus the least-norm element of
#: the adjacent pieces' gradient hull (a descent direction, slope ≤ −‖least-norm‖²). Single-pair
#: releases alone cycle on deep networks, where descent needs several pairs to move together.
CLARKE_ROUND_ITER = 50

#: The first round is longer: most kinks on shallow networks settle in it without a Clarke step.
CLARKE_FIRST_ROUND_ITER = 200


@dataclass
class KinkAnalysis:
    """A point on a kink, described (see the module docstring).

    Attributes:
        kinked: the kinked pairs ``(module j, sample i, unit u)``.
        constraint_residual: ``max_K |z|`` after the polish, relative to ``max(1, max|z|)``.
        outside_margin: the kink margin over the pairs not in ``K`` (must stay positive).
        kkt_residual: ``‖∇R_P − Aᵀλ‖`` of the polish (``A = ∂z_K/∂θ``).
        clarke_residual: norm of the least-norm element of the convex hull of the adjacent
            pieces' gradients; ``clarke_stationary`` when it is ``≤ grad_tol``.
        clarke_weights: the weights on each kinked pair's "on" side at that element.
        grad_tol: the threshold (``tolerances.grad_tol`` at this risk).
        one_sided: per kinked pair, ``R'(θ; +n)`` and ``R'(θ; −n)`` along ``n = ∇z/‖∇z‖``.
        pieces_checked: number of adjacent pieces checked for first-order minimality in their
            own region (0 when there are more than ``2^MAX_ENUMERATED_KINKS``).
        pieces_minimal: every checked piece has no first-order descent direction in its region
            (None when not checked).
        reduced_hessian_min: smallest eigenvalue of the Lagrangian's Hessian on the tangent
            space of the kink manifold.
        local_minimum: ``pieces_minimal`` and ``reduced_hessian_min ≥ −lambda_tol``: a
            nonsmooth local minimum (first order on every piece, second order along the kink).
        iterations: Newton iterations of the polish; message: why it stopped.
    """

    kinked: list[tuple[int, int, int]]
    constraint_residual: float
    outside_margin: float
    kkt_residual: float
    clarke_residual: float
    clarke_stationary: bool
    clarke_weights: list[float]
    grad_tol: float
    risk: float
    one_sided: list[dict] = field(default_factory=list)
    pieces_checked: int = 0
    pieces_minimal: bool | None = None
    reduced_hessian_min: float | None = None
    lambda_tol: float | None = None
    local_minimum: bool | None = None
    iterations: int = 0
    message: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["kinked"] = [list(p) for p in self.kinked]
        return out


def analyse_kink(fr: FlatRisk, theta: torch.Tensor, *, capture: float = T.KINK_CAPTURE,
                 max_iter: int = 100, grad_tol: float | None = None, kind: str = "minimum") -> tuple[torch.Tensor, KinkAnalysis]:
    """Polish ``θ`` onto its kink manifold and describe the point (see the module docstring).

    The polish is an active-set Newton method on the piece ``R_P``: Newton steps on the KKT
    system of ``min R_P s.t. z_W = 0`` for a working set ``W`` of kinked pairs (least-norm
    steps, since the system is singular), a pair outside ``W`` that a step would carry across
    0 is stopped on its kink and joins ``W``, and at a KKT point a pair of ``W`` is released to
    a side where the risk decreases (``kind="minimum"``: any one-sided derivative below
    ``−grad_tol``; ``kind="any"``: a Clarke weight outside ``[0, 1]``), see :func:`_release`.

    Args:
        fr: the flat risk of a model with ReLU-type units (``fr.n ≤ T.KINK_POLISH_MAX_PARAMS``).
        theta: flat parameters (n,) near a kink.
        capture: pairs with ``|z| ≤ capture · max(1, max|z|)`` start in ``W``.
        max_iter: Newton iterations.
        grad_tol: Clarke-stationarity threshold (default :func:`resland.tolerances.grad_tol`).
        kind: ``"minimum"`` leaves every kink that has a descending side; ``"any"`` stops at
            Clarke-stationary kinks.

    Returns:
        The polished parameters (n,) and the :class:`KinkAnalysis`.
    """
    pieces = Pieces(fr)
    start_norm, total, trace, msg_extra = float(theta.norm()), 0, [], ""
    while True:
        z = pieces.z(theta).detach()
        zscale = max(1.0, float(z.abs().max()))
        W = torch.nonzero(z.abs() <= capture * zscale).flatten()
        mask0 = (z > 0).to(theta.dtype)
        mask0[W] = 0.0                                   # the kinked units are "off" in the piece P0
        first = CLARKE_FIRST_ROUND_ITER if not trace else CLARKE_ROUND_ITER
        budget = max_iter - total if not descends(kind) else min(first, max_iter - total)
        theta, mask0, W, lam, it, kkt, msg = active_set_newton(pieces, theta, W, mask0, budget, kind)
        total += it
        R = float(pieces.risk(theta, mask0))
        gtol = T.grad_tol(R) if grad_tol is None else grad_tol
        g0 = pieces.grad(theta, mask0)
        cols, groups = _hull_columns(pieces, theta, W, mask0, g0)
        w, r = _least_norm_in_hull(g0, cols, groups)
        clarke = float(torch.linalg.norm(r))
        trace.append((R, float(theta.norm())))
        if not descends(kind) or clarke <= gtol or total >= max_iter:
            break
        if len(trace) >= 4 and trace[-1][1] >= DRIFT_FACTOR * max(1.0, start_norm) and all(
                b[1] > a[1] and b[0] < a[0] for a, b in zip(trace[-4:], trace[-3:])):
            msg_extra = f"; the polish runs to infinity along the kinks (‖θ‖ {trace[-4][1]:.4g} → {trace[-1][1]:.4g})"
            break
        step = _clarke_step(fr, theta, r, R)
        if step is None:
            msg_extra = "; no step along the least-norm element of the gradient hull lowers the risk"
            break
        theta = step
    msg = msg + msg_extra + (f" ({len(trace)} rounds with Clarke steps, {total} iterations)" if len(trace) > 1 else "")
    it = total
    K = W
    z = pieces.z(theta).detach()
    outside = torch.ones_like(z, dtype=torch.bool)
    outside[K] = False
    sign_kept = not bool((outside & wrong_side(z, mask0)).any())
    zscale = max(1.0, float(z.abs().max()))
    cres = float(z[K].abs().max()) / zscale if K.numel() else 0.0
    out_margin = float(z[outside].abs().min()) / zscale if bool(outside.any()) else math.inf
    if not sign_kept:
        out_margin = 0.0
        msg += "; a pair outside K changed sign"
    A = torch.func.jacrev(lambda t: pieces.z(t, pieces.masks(mask0))[K])(theta) if K.numel() else None
    analysis = KinkAnalysis(
        kinked=[pieces.pair(f) for f in K.tolist()], constraint_residual=cres, outside_margin=out_margin,
        kkt_residual=kkt, clarke_residual=clarke,
        clarke_stationary=bool(clarke <= gtol and sign_kept and cres <= 1e4 * T.EPS64),
        clarke_weights=[float(x) for x in w], grad_tol=gtol, risk=R, iterations=it, message=msg,
    )
    if A is not None:
        analysis.one_sided = _one_sided(pieces, theta, K, mask0, A)
        _local_minimality(analysis, pieces, theta, K, mask0, A, lam, gtol)
    return theta, analysis


def _clarke_step(fr: FlatRisk, theta: torch.Tensor, r: torch.Tensor, R: float) -> torch.Tensor | None:
    """Armijo backtracking on the true risk along ``−r`` (``r`` the least-norm hull element), or None."""
    s2 = float(r @ r)
    alpha = 1.0 / max(1.0, math.sqrt(s2))
    noise = 1e2 * T.EPS64 * T.scale(R)
    while alpha > 1e-14:
        trial = theta - alpha * r
        R_new = float(fr.risk(trial))
        if math.isfinite(R_new) and R_new <= R - 1e-4 * alpha * s2 and R_new < R - noise:
            return trial
        alpha *= 0.5
    return None


def _hull_columns(pieces, theta, K, mask0, g0):
    """Gradients of the adjacent pieces minus ``g0``, grouped by sample.

    Per sample ``i``, every non-empty subset of its kinked pairs switched on: only sample
    ``i``'s term of the risk changes, so the hull of the adjacent pieces' gradients is
    ``g0`` plus the sum over samples of the hulls of these columns (and 0).
    """
    by_sample: dict[int, list[int]] = {}
    for f in K.tolist():
        by_sample.setdefault(pieces.pair(f)[1], []).append(f)
    cols, groups = [], []
    for _, fl in sorted(by_sample.items()):
        group = []
        for s in (s for r in range(1, len(fl) + 1) for s in itertools.combinations(fl, r)):
            mask = mask0.clone()
            mask[list(s)] = 1.0
            cols.append(pieces.grad(theta, mask) - g0)
            group.append(len(cols) - 1)
        groups.append(group)
    return cols, groups


def _least_norm_in_hull(g0, cols, groups):
    """Least-norm point ``g0 + Σ w_c col_c`` with, per sample group, ``w ≥ 0`` and ``Σ w ≤ 1``.

    The feasible set is a polytope: ``g0`` plus the Minkowski sum over groups of the simplices
    ``conv{0, cols of the group}``. Wolfe's minimum-norm-point algorithm solves it exactly (finite
    active-set steps on vertex sets) with a separable linear oracle (per group, the column most
    opposed to ``x``, or 0). Its Frank–Wolfe gap ``‖x‖² − min_v xᵀv`` bounds ``‖x − x*‖²``, so the
    point is accurate to rounding when the gap is. Written here because SciPy has no QP solver
    for these constraints (SLSQP stopped at its iteration cap and left errors near 1e-8).
    """
    if not cols:
        return np.zeros(0), g0
    D = torch.stack(cols, 1).cpu().numpy()
    x0 = g0.cpu().numpy()
    w = _wolfe_min_norm(x0, D, groups)
    r = g0 + torch.as_tensor(D @ w, dtype=g0.dtype)
    return w, r


def _wolfe_min_norm(g0: np.ndarray, D: np.ndarray, groups, max_iter: int = 2000) -> np.ndarray:
    """Weights ``w`` of the least-norm point of ``g0 + Σ_groups conv{0, D[:, group]}`` (Wolfe 1976)."""
    def oracle(x):
        sel = []
        for gr in groups:
            vals = D[:, gr].T @ x
            j = int(np.argmin(vals))
            if vals[j] < 0.0:
                sel.append(gr[j])
        return tuple(sel)

    def vertex(sel):
        return g0 + D[:, list(sel)].sum(1) if sel else g0.copy()

    sels, lam = [()], np.ones(1)
    V = vertex(())[:, None]
    x = V[:, 0]
    best, since = math.inf, 0
    for _ in range(max_iter):
        sel = oracle(x)
        v = vertex(sel)
        # Stop when the gap is at the rounding of the products xᵀv, or ‖x‖ stopped falling
        # (degenerate faces can cycle).
        vmax = max(float(np.linalg.norm(v)), float(np.linalg.norm(V, axis=0).max()))
        nx = float(np.linalg.norm(x))
        since = 0 if nx < best * (1 - 1e-12) else since + 1
        best = min(best, nx)
        if float(x @ x - x @ v) <= 1e2 * len(x) * T.EPS64 * nx * vmax or sel in sels or since >= 20:
            break
        sels.append(sel)
        V = np.column_stack([V, v])
        lam = np.append(lam, 0.0)
        while True:                    # minor cycle: the affine minimum-norm point of the vertex set
            # min ‖Vμ‖ s.t. Σμ = 1 as least squares in μ_2.. (μ_1 = 1 − Σ): no Gram matrix.
            nu = np.linalg.lstsq(V[:, 1:] - V[:, :1], -V[:, 0], rcond=None)[0]
            mu = np.concatenate([[1.0 - nu.sum()], nu])
            if bool((mu > 1e-14).all()):
                lam = mu
                break
            neg = mu <= 1e-14
            t = float(np.min(lam[neg] / (lam[neg] - mu[neg])))
            lam = lam + t * (mu - lam)
            keep = lam > 1e-14
            keep[np.argmax(lam)] = True
            V, lam = V[:, keep], lam[keep] / lam[keep].sum()
            sels = [s_ for s_, kp in zip(sels, keep) if kp]
        x = V @ lam
    w = np.zeros(D.shape[1])
    for s_, l_ in zip(sels, lam):
        w[list(s_)] += l_
    return w


def _one_sided(pieces, theta, K, mask0, A) -> list[dict]:
    """``R'(θ; ±n_k)`` along ``n_k = ∇z_k/‖∇z_k‖``: the gradient of the piece the direction enters."""
    out = []
    for row, f in enumerate(K.tolist()[:64]):
        n_k = A[row] / torch.linalg.norm(A[row])
        d = {}
        for sign, name in ((1.0, "plus"), (-1.0, "minus")):
            u = sign * n_k
            mask = mask0.clone()
            mask[K] = (A @ u > 0).to(mask.dtype)
            d[name] = float(pieces.grad(theta, mask) @ u)
        out.append({"pair": list(pieces.pair(f)), "d_plus": d["plus"], "d_minus": d["minus"]})
    return out


def _local_minimality(an: KinkAnalysis, pieces, theta, K, mask0, A, lam, gtol) -> None:
    """First-order minimality of every adjacent piece in its own region, and second order along the kink."""
    k = K.numel()
    if k <= MAX_ENUMERATED_KINKS:
        ok = True
        for on in itertools.product((0.0, 1.0), repeat=k):
            mask = mask0.clone()
            mask[K] = torch.tensor(on, dtype=mask.dtype)
            sigma = torch.tensor([1.0 if s else -1.0 for s in on], dtype=theta.dtype)
            # Region of the piece: σ_j z_j ≥ 0. No descent direction ⇔ ∇R_P = Σ ν_j σ_j ∇z_j, ν ≥ 0.
            B = (sigma[:, None] * A).T.cpu().numpy()
            _, res = scipy.optimize.nnls(B, pieces.grad(theta, mask).cpu().numpy())
            ok &= res <= gtol
        an.pieces_checked, an.pieces_minimal = 2**k, bool(ok)
    masks = pieces.masks(mask0)
    HL = torch.func.hessian(lambda t: pieces.risk(t, mask0) - lam @ pieces.z(t, masks)[K])(theta)
    Z = null_basis(A, theta.numel())
    ev = torch.linalg.eigvalsh(Z.T @ HL @ Z) if Z.shape[1] else torch.zeros(1, dtype=theta.dtype)
    lmax = float(torch.linalg.eigvalsh(HL).abs().max())
    an.lambda_tol = T.lambda_tol(theta.numel(), lmax, gtol)
    an.reduced_hessian_min = float(ev[0])
    an.local_minimum = (bool(an.pieces_minimal and an.reduced_hessian_min >= -an.lambda_tol)
                        if an.pieces_minimal is not None else None)
