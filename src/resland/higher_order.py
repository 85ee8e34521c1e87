"""The higher-order test at a degenerate critical point (docs/theory.md §8).

At a critical point θ whose Hessian ``H`` has no eigenvalue below ``−lambda_tol``, let ``N`` (n × k)
be an orthonormal basis of its numerical null space (``|λ| ≤ lambda_tol``) with the exact symmetry
directions (:mod:`resland.symmetry`) projected out. The test looks for descent along the curve

    θ(z) = θ + N z + h(z),      h(z) = −H⁺ ∇R(θ + N z)

where ``H⁺`` is the pseudo-inverse on the range of ``H`` (eigenvalues ``> lambda_tol``): ``h`` is one
Newton correction in the range, which removes the coupling between null and range directions
to leading order (the reduced risk on a centre manifold). The risk along it has no quadratic term,
so descent shows up at order 3 (cubic, either sign of ``z``) or 4 and beyond.

Directions: the ``±`` null basis vectors, ``±`` their normalised sum, and ``random`` Gaussian ``z``
(seeded), all at the radii ``r_j = r_0 2^{-j}`` (``r_0 = HO_RADIUS · max(1, ‖θ‖)``, ``j < HO_RADII``),
every path evaluated in one batched (``vmap``) gradient and risk per radius.

**Verified descent** along one direction: a run of at least ``HO_MIN_RUN`` consecutive radii
``r_a > … > r_b`` at each of which ``R(θ) − R(θ(r z)) > decrease_tol``, with decreases falling as
the radius shrinks; and the run ends either at the smallest radius tried, or where the decrease
extrapolated from the last two radii (order ``p = log₂(d_{b−1}/d_b)``, at most ``HO_MAX_ORDER`` and
at most twice the previous radius pair's order plus 1) is below ``HO_ROUNDING · decrease_tol``:
the descent persists down to where float64 can no longer see it. A run that
stops while its extrapolated decrease is still large is the edge of a basin (a local minimum
with lower risk farther out), not a saddle, and does not count. The escape point is the verified
point at the smallest radius, recomputed: ``R(θ + step · direction)`` with ``direction`` the unit
vector of ``θ(r_b z) − θ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.func import grad

from .functional import FlatRisk
from .tolerances import HO_BASIS, HO_MAX_ORDER, HO_MIN_RUN, HO_RADII, HO_RADIUS, HO_RANDOM, HO_ROUNDING


@dataclass
class HigherOrder:
    """The result of :func:`higher_order_test`.

    Attributes:
        found: a verified descent (see the module docstring).
        null_dim: ``k``, the null space dimension after the symmetry directions are projected out.
        radii: the radii tried (first, last, count); best_risk: the lowest risk seen on any path
            (it may lie outside the verified run: then it shows only that θ is not a global minimum).
        direction, step, decrease: the escape point ``θ + step · direction`` and ``R(θ)`` minus its
            risk, recomputed (found only); order: the fitted order ``p`` of the decrease there;
            run: the radii ``[r_a, r_b]`` of the verified run; paths: how many directions were tried.
    """

    found: bool
    null_dim: int
    radii: list[float]
    best_risk: float
    paths: int
    direction: torch.Tensor | None = field(default=None, repr=False)
    step: float | None = None
    decrease: float | None = None
    order: float | None = None
    run: list[float] | None = None

    def to_dict(self) -> dict:
        return {"found": self.found, "null_dim": self.null_dim, "radii": self.radii, "best_risk": self.best_risk,
                "paths": self.paths, "step": self.step, "decrease": self.decrease, "order": self.order,
                "run": self.run}


def _directions(k: int, seed: int, dtype) -> torch.Tensor:
    """Unit ``z`` in ``R^k`` (P × k): ``± e_i`` (first HO_BASIS), ``±`` the normalised sum, random Gaussians."""
    eye = torch.eye(k, dtype=dtype)[: min(k, HO_BASIS)]
    ones = torch.ones(1, k, dtype=dtype) / math.sqrt(k)
    gen = torch.Generator().manual_seed(seed)
    rnd = torch.randn(HO_RANDOM, k, generator=gen, dtype=dtype)
    rnd = rnd / torch.linalg.norm(rnd, dim=1, keepdim=True)
    Z = torch.cat([eye, ones, rnd])
    return torch.cat([Z, -Z])


def _verified_run(dec: list[float], tol: float) -> tuple[int, int, float] | None:
    """``(a, b, p)`` of the verified run in the decreases ``dec`` (one per radius, largest radius first)."""
    J, b = len(dec), len(dec) - 1
    while b >= 0:
        if dec[b] > tol:
            a = b
            while a > 0 and dec[a - 1] > tol and dec[a - 1] > dec[a]:
                a -= 1
            if b - a + 1 >= HO_MIN_RUN:
                p, p_prev = math.log2(dec[b - 1] / dec[b]), math.log2(dec[b - 2] / dec[b - 1])
                steady = p <= HO_MAX_ORDER and p <= 2 * p_prev + 1
                if steady and (b == J - 1 or dec[b] / 2.0 ** p <= HO_ROUNDING * tol):
                    return a, b, p
            return None  # the last descent run is the one that decides (closest to θ)
        b -= 1
    return None


def higher_order_test(fr: FlatRisk, theta: torch.Tensor, evals: torch.Tensor, evecs: torch.Tensor,
                      N: torch.Tensor, *, lambda_tol: float, decrease_tol: float, risk: float,
                      seed: int = 0) -> HigherOrder:
    """Look for a verified descent from the degenerate critical point ``theta`` (module docstring).

    Args:
        fr: the flat risk; theta: the point (n,).
        evals, evecs: the full spectrum of the dense Hessian at ``theta`` (``eigh``: (n,), (n, n)).
        N: orthonormal null basis (n × k, k ≥ 1) with the symmetry directions projected out.
        lambda_tol, decrease_tol: the certificate's tolerances; risk: ``R(θ)``.
        seed: seeds the random directions.
    """
    keep = evals.abs() > lambda_tol
    Vr, lr = evecs[:, keep], evals[keep]

    def corrected(P, g):  # θ + N z  ↦  θ + N z + h(z),  h(z) = −H⁺ ∇R(θ + N z); rows of P and g
        return P - ((g @ Vr) / lr) @ Vr.T

    Z = _directions(N.shape[1], seed, theta.dtype).to(theta.device)
    steps = Z @ N.T                                   # (P, n): unit vectors N z
    grad_many = torch.vmap(grad(fr.risk))
    risk_many = torch.vmap(fr.risk)
    r0 = HO_RADIUS * max(1.0, float(torch.linalg.norm(theta)))
    radii = [r0 * 2.0 ** -j for j in range(HO_RADII)]
    dec = torch.empty(steps.shape[0], HO_RADII, dtype=theta.dtype, device=theta.device)
    best = risk
    with torch.no_grad():
        for j, r in enumerate(radii):
            P = theta + r * steps
            P = corrected(P, grad_many(P))
            Rj = risk_many(P)
            Rj = torch.where(torch.isfinite(Rj), Rj, torch.full_like(Rj, math.inf))
            dec[:, j] = risk - Rj
            best = min(best, float(Rj.min()))
    out = HigherOrder(False, N.shape[1], [radii[0], radii[-1], len(radii)], best, steps.shape[0])
    found = []
    for i in range(steps.shape[0]):
        hit = _verified_run(dec[i].tolist(), decrease_tol)
        if hit is not None:
            found.append((radii[hit[1]], i, hit))
    for r_b, i, (a, b, p) in sorted(found):               # the smallest verified radius first
        P = theta + r_b * steps[i]
        delta = corrected(P, fr.grad(P)) - theta
        step = float(torch.linalg.norm(delta))
        direction = delta / step
        R_new = float(fr.risk(theta + step * direction))  # recomputed at the escape point itself
        if math.isfinite(R_new) and risk - R_new > decrease_tol:
            out.found, out.direction, out.step, out.decrease = True, direction, step, risk - R_new
            out.order, out.run = p, [radii[a], radii[b]]
            return out
    return out


@dataclass
class NullAnalysis:
    """The §8 evidence at a critical point worse than linear without negative curvature.

    Attributes:
        symmetries: ``{"count": exact symmetry directions projected out (their span's rank),
            "names": the first few names, "max_residual": max ‖H ξ̂‖ over them (a fresh product of
            the dense Hessian, ξ̂ unit), "rejected": named directions whose ‖H ξ̂‖ > lambda_tol}``.
        restricted_lambda_min: the smallest eigenvalue of ``H`` on the complement of the symmetries.
        null_dim: its numerical null dimension (``|λ| ≤ lambda_tol``).
        test: the higher-order test (None when ``null_dim = 0``).
    """

    symmetries: dict
    restricted_lambda_min: float
    null_dim: int
    test: HigherOrder | None = None

    def to_dict(self) -> dict:
        return {"symmetries": self.symmetries, "restricted_lambda_min": self.restricted_lambda_min,
                "null_dim": self.null_dim, "test": None if self.test is None else self.test.to_dict()}


def analyse_null_space(fr: FlatRisk, theta: torch.Tensor, H: torch.Tensor, *, lambda_tol: float,
                       decrease_tol: float, risk: float, seed: int = 0) -> NullAnalysis:
    """Project the exact symmetry directions out of the dense Hessian ``H`` (n × n) and, where a
    null space remains, run :func:`higher_order_test` on it (docs/theory.md §8)."""
    from .symmetry import orthonormal_span, symmetry_directions

    n = H.shape[0]
    named = symmetry_directions(fr, theta)
    exact, rejected, residual = [], [], 0.0
    for s in named:
        xi = s.vector / torch.linalg.norm(s.vector)
        res = float(torch.linalg.norm(H @ xi))
        (exact if res <= lambda_tol else rejected).append(s)
        if res <= lambda_tol:
            residual = max(residual, res)
    S = orthonormal_span([s.vector for s in exact], n, dtype=H.dtype).to(H.device)
    Q = (torch.linalg.svd(S, full_matrices=True)[0][:, S.shape[1]:] if S.shape[1]
         else torch.eye(n, dtype=H.dtype, device=H.device))
    evals_c, evecs_c = torch.linalg.eigh(Q.T @ H @ Q)
    null = evals_c.abs() <= lambda_tol
    out = NullAnalysis({"count": S.shape[1], "names": [s.name for s in exact[:6]] + (["…"] if len(exact) > 6 else []),
                        "max_residual": residual, "rejected": [s.name for s in rejected]},
                       float(evals_c[0]) if evals_c.numel() else math.inf, int(null.sum()))
    if out.null_dim:
        evals, evecs = torch.linalg.eigh(H)
        out.test = higher_order_test(fr, theta, evals, evecs, Q @ evecs_c[:, null], lambda_tol=lambda_tol,
                                     decrease_tol=decrease_tol, risk=risk, seed=seed)
    return out
