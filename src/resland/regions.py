"""Activation regions of ReLU-type networks, kinks, and Clarke stationarity (docs/theory.md §7).

A ReLU-type network (``nn.ReLU``, ``nn.LeakyReLU`` units) is smooth inside each *activation
region*: the set of ``θ`` where every pre-activation ``z_{iu}`` (data point ``i``, unit ``u``)
keeps its sign. Inside a region the risk equals the smooth *piece* ``R_P`` obtained by fixing
the pattern ``P`` (each unit's output is ``z·P`` for ReLU). Local minima of these networks
typically lie on a *kink*: some pairs have ``z_{iu} = 0`` and the risk is not differentiable.

Here:

* :func:`preactivations` and :func:`kink_margin`: the pre-activations at the data and the
  smallest ``|z|`` relative to ``max(1, max|z|)``;
* :func:`fixed_pattern`: a context in which the model computes the piece ``R_P``;
* :func:`analyse_kink`: polish a point onto its kink manifold ``{z_K(θ) = 0}`` (Newton on the
  KKT system of ``min R_P s.t. z_K = 0``), then describe it: the kinked pairs, the one-sided
  directional derivatives of the adjacent pieces, Clarke stationarity (``0`` in the convex
  hull of the adjacent pieces' gradients) and whether each adjacent piece is minimal in its
  own region.

Conventions: mean risk, flat parameters in ``model.parameters()`` order, pairs indexed as
``(activation module j, sample i, unit u)`` with modules in ``model.modules()`` order.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.optimize
import torch
from torch import nn

from .functional import FlatRisk
from .families import family_of
from . import tolerances as T

#: Largest number of kinked pairs whose adjacent pieces are enumerated one by one
#: (2^|K| pieces) for the local-minimality check.
MAX_ENUMERATED_KINKS = 10
#: A kinked pair may be released once the KKT residual is below this fraction of ‖∇R_P‖
#: (its one-sided slopes are then known to ±‖KKT residual‖, which the release test allows for).
RELEASE_KKT = 0.1
#: A run to infinity stops the polish: ‖θ‖ past DRIFT_FACTOR × its start and still growing
#: steadily over the last DRIFT_WINDOW iterations.
DRIFT_WINDOW = 50
DRIFT_FACTOR = 10.0
#: Kinks along one step that the long step considers crossing.
LONG_STEP_MAX = 16
#: ``kind="minimum"``: the polish runs in rounds of CLARKE_ROUND_ITER Newton iterations; between
#: rounds a point that is not Clarke-stationary takes a step along minus the least-norm element of
#: the adjacent pieces' gradient hull (a descent direction, slope ≤ −‖least-norm‖²). Single-pair
#: releases alone cycle on deep networks, where descent needs several pairs to move together.
CLARKE_ROUND_ITER = 50
#: The first round is longer: most kinks on shallow networks settle in it without a Clarke step.
CLARKE_FIRST_ROUND_ITER = 200


def kinked_modules(model: nn.Module) -> list[nn.Module]:
    """The ReLU-type activation modules of ``model`` (its family's activation regions), in ``model.modules()``
    order."""
    return family_of(model).kinked_modules(model)


def _slope(mod: nn.Module) -> float:
    return float(getattr(mod, "negative_slope", 0.0))


@contextmanager
def recording(model: nn.Module):
    """Record the input ``z`` of every ReLU-type module during the forward passes in the block."""
    seen: list[torch.Tensor] = []
    hooks = [mod.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0])) for mod in kinked_modules(model)]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def fixed_pattern(model: nn.Module, masks: list[torch.Tensor]):
    """Compute the smooth piece ``R_P``: each ReLU-type module outputs ``z·(P + (1 − P)·slope)``.

    Args:
        masks: one float tensor per module of :func:`kinked_modules`, shape (m, k) like the
            module's input on the full data (1 = the unit is "on").

    Only valid for forward passes on the full data ``X`` the masks were made for.
    """
    mods = kinked_modules(model)
    if len(masks) != len(mods):
        raise ValueError(f"expected {len(mods)} masks, got {len(masks)}")

    def hook_for(mask, slope):
        return lambda _m, inp, _o: inp[0] * (mask + (1.0 - mask) * slope)

    hooks = [mod.register_forward_hook(hook_for(mask, _slope(mod))) for mod, mask in zip(mods, masks)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def preactivations(model: nn.Module, X: torch.Tensor) -> list[torch.Tensor]:
    """The inputs ``z`` (each (m, k)) of the ReLU-type modules on data ``X``, detached."""
    with torch.no_grad(), recording(model) as seen:
        model(X)
    return [z.detach() for z in seen]


def preactivation_extent(model: nn.Module, X: torch.Tensor) -> tuple[float, float] | None:
    """``(min |z_{iu}|, max |z_{iu}|)`` over data points and ReLU-type units (None if there are none)."""
    zs = preactivations(model, X)
    if not zs:
        return None
    return min(float(z.abs().min()) for z in zs), max(float(z.abs().max()) for z in zs)


def kink_margin(model: nn.Module, X: torch.Tensor) -> float | None:
    """``min |z_{iu}| / max(1, max |z_{iu}|)`` over data points and ReLU-type units (None if none).

    Positive at an interior point of an activation region; 0 (to rounding) on a kink.
    """
    ext = preactivation_extent(model, X)
    return None if ext is None else ext[0] / max(1.0, ext[1])


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


class _Pieces:
    """The pieces ``R_P`` of one model near ``θ``, their pre-activations and gradients."""

    def __init__(self, fr: FlatRisk):
        self.fr = fr
        self.mods = kinked_modules(fr.model)
        self.shapes = [z.shape for z in self._z_list(fr.theta0)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]

    def _z_list(self, theta):
        with recording(self.fr.model) as seen:
            self.fr.predict(theta)
        return list(seen)

    def z(self, theta, masks=None) -> torch.Tensor:
        """All pre-activations as one flat vector, shape (m·Σ_l k_l,) (one entry per sample and
        unit), under the pattern ``masks`` if given."""
        if masks is None:
            return torch.cat([z.reshape(-1) for z in self._z_list(theta)])
        with fixed_pattern(self.fr.model, masks):
            return torch.cat([z.reshape(-1) for z in self._z_list(theta)])

    def masks(self, flat_mask: torch.Tensor) -> list[torch.Tensor]:
        """The flat activation pattern (one 0/1 per sample and unit) split into per-layer (m, k) masks."""
        return [p.reshape(s) for p, s in zip(torch.split(flat_mask, self.sizes), self.shapes)]

    def risk(self, theta, flat_mask):
        with fixed_pattern(self.fr.model, self.masks(flat_mask)):
            return self.fr.risk(theta)

    def risk_and_z(self, theta, flat_mask):
        """``R_P(θ)`` and all pre-activations under the pattern, from one forward pass."""
        with fixed_pattern(self.fr.model, self.masks(flat_mask)), recording(self.fr.model) as seen:
            R = self.fr.risk(theta)
        return R, torch.cat([z.reshape(-1) for z in seen])

    def grad(self, theta, flat_mask):
        return torch.func.grad(lambda t: self.risk(t, flat_mask))(theta)

    def pair(self, flat_index: int) -> tuple[int, int, int]:
        j = 0
        while flat_index >= self.sizes[j]:
            flat_index -= self.sizes[j]
            j += 1
        k = self.shapes[j][1]
        return j, flat_index // k, flat_index % k


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
    pieces = _Pieces(fr)
    start_norm, total, trace, msg_extra = float(theta.norm()), 0, [], ""
    while True:
        z = pieces.z(theta).detach()
        zscale = max(1.0, float(z.abs().max()))
        W = torch.nonzero(z.abs() <= capture * zscale).flatten()
        mask0 = (z > 0).to(theta.dtype)
        mask0[W] = 0.0                                   # the kinked units are "off" in the piece P0
        first = CLARKE_FIRST_ROUND_ITER if not trace else CLARKE_ROUND_ITER
        budget = max_iter - total if kind != "minimum" else min(first, max_iter - total)
        theta, mask0, W, lam, it, kkt, msg = _active_set_newton(pieces, theta, W, mask0, budget, kind)
        total += it
        R = float(pieces.risk(theta, mask0))
        gtol = T.grad_tol(R) if grad_tol is None else grad_tol
        g0 = pieces.grad(theta, mask0)
        cols, groups = _hull_columns(pieces, theta, W, mask0, g0)
        w, r = _least_norm_in_hull(g0, cols, groups)
        clarke = float(torch.linalg.norm(r))
        trace.append((R, float(theta.norm())))
        if kind != "minimum" or clarke <= gtol or total >= max_iter:
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
    sign_kept = not bool((outside & _wrong_side(z, mask0)).any())
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


def _active_set_newton(pieces: _Pieces, theta, W, mask0, max_iter, kind="minimum"):
    """Regularised SQP on ``min R_P s.t. z_W = 0`` with working-set changes (see :func:`analyse_kink`).

    Each step solves the equality-constrained quadratic model with ``H_L + σI``,
    ``σ = max(0, −λ_min(ZᵀH_L Z)) + μ‖r‖`` (``Z`` a basis of the tangent space, ``r`` the KKT
    residual, ``μ`` adapted), and is accepted on the exact-penalty merit
    ``φ = R_P + ρ Σ_W |z|``, so the polish descends; a step may not flip a pair outside ``W``.
    At a KKT point a pair of ``W`` is released (:func:`_release`) and the next step leaves its
    kink along the released side.
    """
    n = theta.numel()
    mask0 = mask0.clone()

    def state(t, W):
        masks = pieces.masks(mask0)
        g = pieces.grad(t, mask0)
        if W.numel() == 0:
            return g, t.new_zeros(0, n), t.new_zeros(0)
        c = lambda u: pieces.z(u, masks)[W]  # noqa: E731
        return g, torch.func.jacrev(c)(t), c(t)

    def multipliers(g, A):
        # gelsd (SVD): torch's default CPU driver gelsy returned different last bits on identical
        # inputs from call to call, which made ReLU runs unrepeatable.
        return (torch.linalg.lstsq(A.T, g[:, None], driver="gelsd").solution[:, 0] if A.shape[0]
                else g.new_zeros(0))

    def kkt_norm(t, W):
        g, A, c = state(t, W)
        return float(torch.linalg.norm(g - A.T @ multipliers(g, A))) + float(c.abs().sum())

    g, A, cW = state(theta, W)
    lam = multipliers(g, A)
    changes, msg, it, mu, releases = 0, f"stopped after {max_iter} Newton iterations", 0, 1.0, 0
    stuck, frozen, trace = False, set(), []     # frozen: pairs whose release failed, until the next step
    for it in range(1, max_iter + 1):
        r1 = g - A.T @ lam
        R = float(pieces.risk(theta, mask0))
        gtol = T.grad_tol(R)
        trace.append((R, float(theta.norm())))
        if it >= 2 * DRIFT_WINDOW and it % 25 == 0 and trace[-1][1] >= DRIFT_FACTOR * max(1.0, trace[0][1]) \
                and _drifting(trace[-DRIFT_WINDOW:]):
            msg = (f"the polish runs to infinity along the kinks (‖θ‖ {trace[-DRIFT_WINDOW][1]:.4g} → "
                   f"{trace[-1][1]:.4g} over {DRIFT_WINDOW} iterations while R decreases)")
            break
        feasible = W.numel() == 0 or float(cW.abs().max()) <= 1e2 * T.EPS64
        # Done: the KKT residual is well below grad_tol, or below it and no step improves it.
        done = feasible and (float(r1.norm()) <= 0.1 * gtol or (stuck and float(r1.norm()) <= gtol))
        masks = pieces.masks(mask0)
        released, r1n = None, float(r1.norm())
        terminal = done or it == max_iter or mu > 1e12
        # Inexact active set: a pair may be released once the multipliers are accurate to r1n
        # (a one-sided slope is then known to ±r1n).
        early = feasible and r1n <= RELEASE_KKT * float(g.norm())
        rel = _release(pieces, theta, W, mask0, g, A, gtol + 2.0 * r1n, kind, frozen) if (
            (terminal or early) and W.numel() and changes < 4 * max_iter and it < max_iter) else None
        if rel is None and terminal:
            msg = ("the KKT residual reached rounding" if done else
                   "no step lowers the merit function" if mu > 1e12 else msg)
            break
        if rel is not None:
            j, side, p = rel
            released = int(W[j])
            mask0[released] = side
            W = torch.cat([W[:j], W[j + 1:]])
            changes, releases, mu = changes + 1, releases + 1, 1.0
            g, A, cW = state(theta, W)
            lam = multipliers(g, A)
            masks = pieces.masks(mask0)
            k = W.numel()
            dlam = lam.new_zeros(k)
            # Step length from the quadratic model along p (the risk decreases along p).
            lag = lambda t, lam=lam, W=W, masks=masks: (  # noqa: E731
                pieces.risk(t, mask0) - (lam @ pieces.z(t, masks)[W] if W.numel() else 0.0))
            curv = float(p @ torch.func.jvp(torch.func.grad(lag), (theta,), (p,))[1])
            slope = float(g @ p)
            p = p * (-slope / curv if curv > 0 else 1.0)
        else:
            def lagrangian(t, lam=lam, W=W, masks=masks):
                val = pieces.risk(t, mask0)
                return val - lam @ pieces.z(t, masks)[W] if W.numel() else val

            HL = torch.func.hessian(lagrangian)(theta)
            k = W.numel()
            Z = _null_basis(A, n)
            hmin = float(torch.linalg.eigvalsh(Z.T @ HL @ Z)[0]) if Z.shape[1] else 0.0
            sigma = max(0.0, -hmin) * 1.01 + mu * float(r1.norm())
            J = torch.zeros(n + k, n + k, dtype=theta.dtype)
            J[:n, :n] = HL + sigma * torch.eye(n, dtype=theta.dtype)
            J[:n, n:], J[n:, :n] = -A.T, A
            step = _pinv_solve(J, -torch.cat([r1, cW]))
            p, dlam = step[:n], step[n:]
        rho = 2.0 * float((lam + dlam).abs().max()) + 1.0 if k else 0.0

        def merit(t):
            R_t, z_t = pieces.risk_and_z(t, mask0)
            return float(R_t) + (rho * float(z_t[W].abs().sum()) if k else 0.0), z_t.detach()

        phi, z = merit(theta)
        outside = torch.ones_like(z, dtype=torch.bool)
        outside[W] = False
        # Classical active set: stop the step where the first pair outside W reaches its kink
        # (not the pair just released: it leaves its kink).
        dz = torch.func.jvp(lambda t: pieces.z(t, masks), (theta,), (p,))[1].detach()
        toward = outside & (z * dz < 0)
        if released is not None:
            toward[released] = False
        ratios = torch.where(toward, -z / torch.where(dz == 0, 1.0, dz), torch.inf)
        alpha0, block = 1.0, None
        if bool(toward.any()) and float(ratios.min()) < 1.0:
            block = int(torch.argmin(ratios))
            alpha0 = float(ratios[block])
        alpha, accepted = alpha0, False
        noise = 1e2 * T.EPS64 * T.scale(phi)
        kkt0 = float(torch.linalg.norm(g - A.T @ multipliers(g, A))) + float(cW.abs().sum())
        # Long step: past the first kink when the risk keeps falling across the next ones.
        long = _long_step(pieces, theta, p, ratios, mask0, outside, W, rho, phi - noise) if block is not None else None
        if long is not None:
            alpha, block, crossed, trial = long
            alpha0, accepted = alpha, True
            mask0[crossed] = 1.0 - mask0[crossed]
        soc, reblocks = k > 0, 0
        while not accepted and alpha > 1e-12:
            trial = theta + alpha * p
            m_new, z_new = merit(trial)
            if soc and alpha == alpha0 and m_new > phi - noise:
                # Second-order correction (against the Maratos effect of curved kinks): back onto z_W = 0.
                t2 = trial - torch.linalg.pinv(A) @ z_new[W]
                m2, z2 = merit(t2)
                if m2 < m_new:
                    trial, m_new, z_new = t2, m2, z2
            flipped = outside & _wrong_side(z_new, mask0)
            if block is not None:
                flipped[block] = False
            if released is not None:
                flipped[released] = False if bool(flipped.sum() > 1) else flipped[released]
            if bool(flipped.any()) and reblocks < 20 and (released is None or not bool(flipped[released])):
                # A curved kink (deep networks: z is not linear in θ) crossed before the linearised
                # ratio test said: stop on the first one crossed, by interpolating z along the step.
                fl = torch.nonzero(flipped).flatten()
                cross = alpha * z[fl] / (z[fl] - z_new[fl])
                j = int(torch.argmin(cross))
                if 0.0 < float(cross[j]) < alpha:
                    block, alpha = int(fl[j]), float(cross[j])
                    alpha0, reblocks = alpha, reblocks + 1
                    continue
            # Below rounding of the merit, a step must lower the KKT residual instead.
            if not bool(flipped.any()) and m_new <= phi + noise and (
                    m_new < phi - noise or kkt_norm(trial, W) < kkt0):
                accepted = True
                break
            alpha *= 0.5
        if not accepted and block is None:
            if released is not None:       # the released side does not descend after all: undo
                mask0[released] = 0.0
                W = torch.cat([W, torch.tensor([released])])
                frozen.add(released)
                g, A, cW = state(theta, W)
                lam = multipliers(g, A)
                continue
            stuck = True
            mu *= 10.0
            continue
        stuck = False
        if released is None:
            frozen.clear()
        if not accepted:   # the blocking pair is reached by a zero step: it joins W where it is
            alpha, trial = 0.0, theta
        # Damping: relax after a full step, stiffen when the line search cut the step short.
        mu = max(mu / 3.0, 1e-8) if alpha == 1.0 else (mu * 4.0 if alpha < 0.1 * alpha0 else mu)
        theta, lam = trial, lam + alpha * dlam
        near = torch.tensor([block]) if block is not None and alpha == alpha0 or not accepted else torch.tensor([], dtype=torch.long)
        if near.numel() and changes < 4 * max_iter:
            mask0[near] = 0.0
            W = torch.cat([W, near])
            changes += 1
        else:
            near = near[:0]
        g, A, cW = state(theta, W)
        if near.numel() or alpha < 1.0 or released is not None:
            lam = multipliers(g, A)
    r1 = g - A.T @ lam
    if releases:
        msg += f" ({releases} pairs released)"
    return theta, mask0, W, lam, it, float(r1.norm()), msg


def _drifting(trace) -> bool:
    """``(R, ‖θ‖)`` per iteration: ‖θ‖ grew by ≥ 5 %, in ≥ 75 % of the steps, and R decreased."""
    tn = np.array([t for _, t in trace])
    return bool(tn[-1] >= 1.05 * tn[0] and np.mean(np.diff(tn) > 0) >= 0.75 and trace[-1][0] < trace[0][0])


def _long_step(pieces: _Pieces, theta, p, ratios, mask0, outside, W, rho, below):
    """The best of the first ``LONG_STEP_MAX`` kinks along ``θ + αp`` (and ``α = 1`` past all of them).

    Candidate ``j`` stops on the j-th kink (the pair joins ``W``) with the pairs crossed before
    it switched to their new side; it is scored on the merit ``R_P + ρ Σ_W |z|`` of its own
    pattern. Returns ``(α, stopping pair or None, crossed pairs, θ_new)`` when a candidate past
    the first kink scores best and below ``below``, else None (the step stops on the first kink).
    """
    order = torch.argsort(ratios)
    nb = int((ratios < 1.0).sum())
    if nb < 2:
        return None
    first = order[:min(nb, LONG_STEP_MAX)].tolist()
    ends = [(float(ratios[f]), f, first[:i]) for i, f in enumerate(first)]
    if nb <= LONG_STEP_MAX:
        ends.append((1.0, None, first))
    best, best_val = None, below
    for i, (a, f, crossed) in enumerate(ends):
        t = theta + a * p
        mask = mask0.clone()
        mask[crossed] = 1.0 - mask[crossed]
        R, z = pieces.risk_and_z(t, mask)
        wrong = outside & _wrong_side(z.detach(), mask)
        if f is not None:
            wrong[f] = False
        val = float(R) + (rho * float(z[W].abs().sum()) if W.numel() else 0.0)
        if not bool(wrong.any()) and val < best_val:
            best, best_val = (i, a, f, crossed, t), val
    if best is None or best[0] == 0:
        return None
    return best[1:]


def _release(pieces: _Pieces, theta, W, mask0, g, A, gtol, kind, frozen=()):
    """The pair of ``W`` to release at a KKT point, its side and the direction that leaves its kink.

    With ``d_k`` the least-norm solution of ``A d = e_k`` (it keeps the other kinks of ``W`` to
    first order), the one-sided derivatives of leaving kink ``k`` are ``∇R_{P+k}·d_k`` (into
    ``z_k > 0``, the piece with ``k`` on) and ``−∇R_P·d_k`` (into ``z_k < 0``), per unit length.
    ``kind="minimum"``: release the steepest side whose derivative is below ``−grad_tol``.
    ``kind="any"``: only a pair whose Clarke weight leaves ``[0, 1]``, towards its descending side.
    Pairs in ``frozen`` (a release that did not lower the merit) are skipped.
    Returns ``(index in W, side (1.0 on, 0.0 off), direction)`` or None.
    """
    if W.numel() == 0:
        return None
    D = torch.linalg.pinv(A)                       # (n, |W|)
    exact = torch.linalg.norm(A @ D - torch.eye(W.numel(), dtype=A.dtype), dim=0) <= 1e-8
    # c_k = (∇R_{P+k} − ∇R_P)·d_k (the switch adds c_k ∇z_k to sample i's gradient only).
    # Pairs of one sample do interact, so they go in separate rounds: round r switches on the
    # r-th pair of every sample, one gradient per round.
    rounds: dict[int, list[int]] = {}
    seen: dict[int, int] = {}
    for j, f in enumerate(W.tolist()):
        i = pieces.pair(f)[1]
        rounds.setdefault(seen.get(i, 0), []).append(j)
        seen[i] = seen.get(i, 0) + 1
    c_all = g.new_zeros(W.numel())
    for js in rounds.values():
        on = mask0.clone()
        on[W[js]] = 1.0
        c_all[js] = ((pieces.grad(theta, on) - g) @ D[:, js])
    gd = g @ D
    best = None
    for j in range(W.numel()):
        if not bool(exact[j]) or int(W[j]) in frozen:
            continue                               # dependent kinks: not released one by one
        d = D[:, j]
        nd = float(torch.linalg.norm(d))
        c = float(c_all[j])
        d_on, d_off = (float(gd[j]) + c) / nd, -float(gd[j]) / nd
        if kind != "minimum":
            t = -float(gd[j]) / c if c != 0 else math.nan
            if not (t < -1e-6 or t > 1 + 1e-6):
                continue
        for side, slope, u in ((1.0, d_on, d), (0.0, d_off, -d)):
            if slope < -gtol and (best is None or slope < best[3]):
                best = (j, side, u, slope)
    return None if best is None else best[:3]


def _null_basis(A: torch.Tensor, n: int) -> torch.Tensor:
    """Orthonormal basis (n × (n − rank)) of the null space of ``A``."""
    if A.shape[0] == 0:
        return torch.eye(n, dtype=A.dtype)
    _, s, Vh = torch.linalg.svd(A)
    rank = int((s > max(A.shape) * T.EPS64 * float(s[0])).sum()) if s.numel() else 0
    return Vh[rank:].T


def _wrong_side(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pairs whose pre-activation is on the other side of 0 from their pattern (beyond rounding)."""
    tiny = 1e2 * T.EPS64 * max(1.0, float(z.abs().max()))
    return ((mask == 1) & (z < -tiny)) | ((mask == 0) & (z > tiny))


def _on(mask: torch.Tensor, f: int) -> torch.Tensor:
    out = mask.clone()
    out[f] = 1.0
    return out


def _pinv_solve(J: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Least-norm least-squares solution of ``J x = b`` (SVD, relative cutoff ``n·eps``)."""
    U, s, Vh = torch.linalg.svd(J)
    keep = s > J.shape[0] * T.EPS64 * float(s[0]) if s.numel() else s > 0
    coef = torch.where(keep, (U.T @ b) / torch.where(keep, s, 1.0), 0.0)
    return Vh.T @ coef


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
    Z = _null_basis(A, theta.numel())
    ev = torch.linalg.eigvalsh(Z.T @ HL @ Z) if Z.shape[1] else torch.zeros(1, dtype=theta.dtype)
    lmax = float(torch.linalg.eigvalsh(HL).abs().max())
    an.lambda_tol = T.lambda_tol(theta.numel(), lmax, gtol)
    an.reduced_hessian_min = float(ev[0])
    an.local_minimum = (bool(an.pieces_minimal and an.reduced_hessian_min >= -an.lambda_tol)
                        if an.pieces_minimal is not None else None)
