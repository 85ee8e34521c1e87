"""The active-set Newton polish onto a kink manifold (docs/theory.md §7), used by :func:`resland.kinks.analyse_kink`.

Newton on the KKT system of ``min R_P(θ) s.t. z_K(θ) = 0`` (``R_P`` the smooth piece of the current
activation pattern, ``z_K`` the kinked pre-activations), with the pairs ``K`` updated as the iterates
go: a step that would flip a pre-activation's sign stops on the new kink or, when several lie along it,
takes the longest step that still lowers the merit (:data:`LONG_STEP_MAX`); a pair is released when its
multiplier says the risk falls off the kink (:data:`RELEASE_KKT`); a run to infinity stops the polish
(:data:`DRIFT_WINDOW`, :data:`DRIFT_FACTOR`). ``pieces`` is a :class:`resland.regions.Pieces`.

Conventions: mean risk, flat parameters in ``model.parameters()`` order.
"""

from __future__ import annotations

import math

import torch

from .kinds import descends
from . import tolerances as T
from .outcomes import runs_away

#: A kinked pair may be released once the KKT residual is below this fraction of ‖∇R_P‖
#: (its one-sided slopes are then known to ±‖KKT residual‖, which the release test allows for).
RELEASE_KKT = 0.1

#: A run to infinity stops the polish: ‖θ‖ past DRIFT_FACTOR × its start and still growing
#: steadily over the last DRIFT_WINDOW iterations.
DRIFT_WINDOW = 50

DRIFT_FACTOR = 10.0

#: Kinks along one step that the long step considers crossing.
LONG_STEP_MAX = 16


def active_set_newton(pieces, theta, W, mask0, max_iter, kind="minimum"):
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
            Z = null_basis(A, n)
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
            flipped = outside & wrong_side(z_new, mask0)
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
    return runs_away([t for _, t in trace], trace[0][0] - trace[-1][0])


def _long_step(pieces, theta, p, ratios, mask0, outside, W, rho, below):
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
        wrong = outside & wrong_side(z.detach(), mask)
        if f is not None:
            wrong[f] = False
        val = float(R) + (rho * float(z[W].abs().sum()) if W.numel() else 0.0)
        if not bool(wrong.any()) and val < best_val:
            best, best_val = (i, a, f, crossed, t), val
    if best is None or best[0] == 0:
        return None
    return best[1:]


def _release(pieces, theta, W, mask0, g, A, gtol, kind, frozen=()):
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
        if not descends(kind):
            t = -float(gd[j]) / c if c != 0 else math.nan
            if not (t < -1e-6 or t > 1 + 1e-6):
                continue
        for side, slope, u in ((1.0, d_on, d), (0.0, d_off, -d)):
            if slope < -gtol and (best is None or slope < best[3]):
                best = (j, side, u, slope)
    return None if best is None else best[:3]


def null_basis(A: torch.Tensor, n: int) -> torch.Tensor:
    """Orthonormal basis (n × (n − rank)) of the null space of ``A``."""
    if A.shape[0] == 0:
        return torch.eye(n, dtype=A.dtype)
    _, s, Vh = torch.linalg.svd(A)
    rank = int((s > max(A.shape) * T.EPS64 * float(s[0])).sum()) if s.numel() else 0
    return Vh[rank:].T


def wrong_side(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pairs whose pre-activation is on the other side of 0 from their pattern (beyond rounding)."""
    tiny = 1e2 * T.EPS64 * max(1.0, float(z.abs().max()))
    return ((mask == 1) & (z < -tiny)) | ((mask == 0) & (z > tiny))


def _pinv_solve(J: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Least-norm least-squares solution of ``J x = b`` (SVD, relative cutoff ``n·eps``)."""
    U, s, Vh = torch.linalg.svd(J)
    keep = s > J.shape[0] * T.EPS64 * float(s[0]) if s.numel() else s > 0
    coef = torch.where(keep, (U.T @ b) / torch.where(keep, s, 1.0), 0.0)
    return Vh.T @ coef
