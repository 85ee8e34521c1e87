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
every path evaluated in one batched (``vmap``) gradient and risk per radius (on chunked samples, a few
paths per batch: ``HO_VMAP_BYTES`` over ``CHUNK_BYTES``).

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

**Matrix-free, above dense_max_params** (:func:`analyse_null_space_krylov`). No n × n matrix is formed:

* the exact symmetry directions are checked by one Hessian-vector product each;
* approximate null directions are the LOBPCG Ritz vectors (SciPy, a block of ``HO_KRYLOV_BLOCK`` on
  Hessian-vector products, constrained orthogonal to the symmetries, warm-started from the eigensolver's
  ``v_min``) whose Ritz values are at most ``lambda_tol``;
* each path is the second-order centre-manifold curve ``θ(r) = θ + r u + r² h₂(u)`` with
  ``h₂(u) = −½ H⁺ ∇³R[u, u, ·]``: the expansion of ``h(r u)`` above to order r², with
  ``∇³R[u, u, ·]`` by :meth:`~resland.functional.FlatRisk.tvp` and ``H⁺`` by MINRES on the complement of
  the null directions and symmetries (at most ``HO_KRYLOV_PRODUCTS`` products). Its quartic term equals
  the dense curve's, so descent of order 3 and 4 is seen the same way;
* ``h₂`` is kept only where MINRES lowers the residual below ``HO_KRYLOV_ACCEPT`` of ``‖∇³R[u, u, ·]‖`` (else
  the system reaches null directions LOBPCG did not find, and the path is the straight line ``θ + r u``),
  and is scaled down to ``‖r² h₂‖ ≤ r/2`` at the first radius, so every point stays within ``[r/2, 3r/2]``
  of θ and a descent at small radii is a descent near θ;
* the radii start ``HO_KRYLOV_EXTRA_RADII`` halvings above the dense test's first (``8 r_0``) and end at its
  last: a random direction in a large null space carries a small share of each block, so its descent is
  small, and the larger radii let a run of order 4 rise clear of ``decrease_tol`` before it falls to
  rounding (the criterion is unchanged: the run must still reach rounding, steadily);
* a path stops once ``HO_KRYLOV_QUIET`` consecutive radii change the risk by at most ``decrease_tol``
  (a power law that float64 no longer sees does not reappear at smaller radii): each point costs a
  full-batch risk, and this halves their number in practice;
* the verified-run criterion and the recomputed escape point are the dense test's.

Every descent it reports is a verified descent along actual points, whatever errors the Ritz vectors or
the corrections carry, so ``degenerate_saddle`` stays defensible. The converse is out of reach: without the
whole spectrum neither the null dimension nor a lower bound on ``λ_min`` is known, so a point with no
verified descent cannot be certified a local minimum (``local_minimum_worse``) or a flat point
(``degenerate``); the certificate says ``inconclusive`` and why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch.func import grad

from . import tolerances as T
from .curvature import HessianOperator
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
        evaluations: full-batch risks computed along the paths (matrix-free test only; the dense test
            evaluates every path at every radius).
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
    evaluations: int | None = None

    def to_dict(self) -> dict:
        return {"found": self.found, "null_dim": self.null_dim, "radii": self.radii, "best_risk": self.best_risk,
                "paths": self.paths, "step": self.step, "decrease": self.decrease, "order": self.order,
                "run": self.run, "evaluations": self.evaluations}


def _directions(k: int, seed: int, dtype, n_random: int = HO_RANDOM) -> torch.Tensor:
    """Unit ``z`` in ``R^k`` (P × k): ``± e_i`` (first HO_BASIS), ``±`` the normalised sum, ``n_random``
    random Gaussians; the first half of the rows are the ``+`` ones, the second half their negatives."""
    eye = torch.eye(k, dtype=dtype)[: min(k, HO_BASIS)]
    ones = torch.ones(1, k, dtype=dtype) / math.sqrt(k)
    gen = torch.Generator().manual_seed(seed)
    rnd = torch.randn(n_random, k, generator=gen, dtype=dtype)
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
    radii = _radii(theta)
    dec = torch.empty(steps.shape[0], HO_RADII, dtype=theta.dtype, device=theta.device)
    # one batch: every path at once; chunked samples: a chunk's activations fill CHUNK_BYTES, so a few at a time
    block = steps.shape[0] if not hasattr(fr, "slices") else max(1, T.HO_VMAP_BYTES // T.CHUNK_BYTES)
    best = risk
    with torch.no_grad():
        for j, r in enumerate(radii):
            for a in range(0, steps.shape[0], block):
                P = theta + r * steps[a : a + block]
                P = corrected(P, grad_many(P))
                Rj = risk_many(P)
                Rj = torch.where(torch.isfinite(Rj), Rj, torch.full_like(Rj, math.inf))
                dec[a : a + block, j] = risk - Rj
                best = min(best, float(Rj.min()))
    out = HigherOrder(False, N.shape[1], [radii[0], radii[-1], len(radii)], best, steps.shape[0])

    def point(i, r):
        P = theta + r * steps[i]
        return corrected(P, fr.grad(P))
    return _escape(fr, theta, dec, radii, point, risk=risk, decrease_tol=decrease_tol, out=out)


def _escape(fr: FlatRisk, theta, dec: torch.Tensor, radii: list[float], point, *, risk: float, decrease_tol: float,
            out: HigherOrder) -> HigherOrder:
    """Fill ``out`` with the verified descent of the smallest radius, if any: ``dec`` (paths × radii) holds
    the decreases, ``point(i, r)`` recomputes path ``i``'s point at radius ``r``; the escape point's risk is
    recomputed from ``θ + step · direction`` itself."""
    found = []
    for i in range(dec.shape[0]):
        hit = _verified_run(dec[i].tolist(), decrease_tol)
        if hit is not None:
            found.append((radii[hit[1]], i, hit))
    for r_b, i, (a, b, p) in sorted(found):               # the smallest verified radius first
        delta = point(i, r_b) - theta
        step = float(torch.linalg.norm(delta))
        direction = delta / step
        R_new = float(fr.risk(theta + step * direction))  # recomputed at the escape point itself
        if math.isfinite(R_new) and risk - R_new > decrease_tol:
            out.found, out.direction, out.step, out.decrease = True, direction, step, risk - R_new
            out.order, out.run = p, [radii[a], radii[b]]
            return out
    return out


def _radii(theta: torch.Tensor, extra: int = 0) -> list[float]:
    """``r_j = HO_RADIUS · max(1, ‖θ‖) · 2^{-j}`` for ``−extra ≤ j < HO_RADII``, largest first."""
    r0 = HO_RADIUS * max(1.0, float(torch.linalg.norm(theta)))
    return [r0 * 2.0 ** -j for j in range(-extra, HO_RADII)]


def higher_order_test_krylov(fr: FlatRisk, theta: torch.Tensor, H: HessianOperator, N: torch.Tensor,
                             S: torch.Tensor, *, decrease_tol: float, risk: float, seed: int = 0) -> HigherOrder:
    """The matrix-free test (module docstring) along the curves ``θ + r u + r² h₂(u)``, ``u = N z``.

    Args:
        fr, theta: the flat risk and the point (n,); H: its Hessian operator at ``theta``.
        N: orthonormal approximate null directions (n × k, k ≥ 1); S: orthonormal symmetry directions
            (n × s, s ≥ 0). ``H⁺`` is taken on the complement of both.
        decrease_tol, risk, seed: as :func:`higher_order_test`.
    """
    from .krylov.steps import minres

    Q = torch.cat([N, S], 1)

    def proj(v):  # onto the complement of span(N, S)
        return v - Q @ (Q.T @ v)

    Z = _directions(N.shape[1], seed, theta.dtype, T.HO_KRYLOV_RANDOM).to(theta.device)
    U = Z @ N.T                                       # (P, n) unit directions; rows P/2… are −(rows …P/2)
    half = U.shape[0] // 2
    C = torch.empty_like(U)
    radii = _radii(theta, T.HO_KRYLOV_EXTRA_RADII)
    kappa = 0.5 / radii[0]                            # r²‖h₂‖ ≤ r/2 on every radius: points stay near θ + r u
    for i in range(half):                             # ∇³R[u, u, ·] is even in u: one correction per ± pair
        b = -0.5 * proj(fr.tvp(theta, U[i]))
        h, _ = minres(lambda v: proj(H @ proj(v)), b, T.HO_KRYLOV_RTOL, T.HO_KRYLOV_PRODUCTS)
        h = proj(h)
        resid = float(torch.linalg.norm(b - proj(H @ h)))
        if not resid <= T.HO_KRYLOV_ACCEPT * float(torch.linalg.norm(b)):
            h = torch.zeros_like(h)                   # b reaches null directions LOBPCG did not find: a straight line
        size = float(torch.linalg.norm(h))
        C[i] = C[i + half] = h * min(1.0, kappa / size) if size > 0 else h
    dec = torch.empty(U.shape[0], len(radii), dtype=theta.dtype, device=theta.device)
    best = risk

    def point(i, r):
        return theta + r * U[i] + r * r * C[i]
    evaluations = 0
    with torch.no_grad():
        for i in range(U.shape[0]):
            quiet = 0
            for j, r in enumerate(radii):
                if quiet >= T.HO_KRYLOV_QUIET:        # invisible from here on: the rest are left at 0
                    dec[i, j:] = 0.0
                    break
                Rj = float(fr.risk(point(i, r)))
                Rj = Rj if math.isfinite(Rj) else math.inf
                dec[i, j] = risk - Rj
                best = min(best, Rj)
                evaluations += 1
                quiet = quiet + 1 if abs(risk - Rj) <= decrease_tol else 0
    out = HigherOrder(False, N.shape[1], [radii[0], radii[-1], len(radii)], best, U.shape[0], evaluations=evaluations)
    return _escape(fr, theta, dec, radii, point, risk=risk, decrease_tol=decrease_tol, out=out)


@dataclass
class NullAnalysis:
    """The §8 evidence at a critical point worse than linear without negative curvature.

    Attributes:
        symmetries: ``{"count": exact symmetry directions projected out (their span's rank),
            "names": the first few names, "max_residual": max ‖H ξ̂‖ over them (a fresh Hessian product,
            ξ̂ unit), "rejected": named directions whose ‖H ξ̂‖ > lambda_tol}``.
        restricted_lambda_min: the smallest eigenvalue of ``H`` on the complement of the symmetries
            (``lobpcg``: the smallest Ritz value, an upper bound on it).
        null_dim: its numerical null dimension (``|λ| ≤ lambda_tol``; ``lobpcg``: the Ritz values that
            are, at most ``HO_KRYLOV_BLOCK``, a count of directions found, not the dimension).
        test: the higher-order test (None when ``null_dim = 0``).
        method: ``dense`` (the full spectrum: :func:`analyse_null_space`) or ``lobpcg`` (matrix-free:
            :func:`analyse_null_space_krylov`).
        ritz: ``lobpcg`` only: the Ritz pairs' ``"values"`` and ``"residuals"`` (‖H x − λ x‖ by fresh
            products), LOBPCG's Hessian-vector ``"products"`` and the analysis's ``"total_products"``.
    """

    symmetries: dict
    restricted_lambda_min: float
    null_dim: int
    test: HigherOrder | None = None
    method: str = "dense"
    ritz: dict | None = None

    @property
    def complete(self) -> bool:
        """The whole null space was resolved (dense), so no verified descent can mean a minimum or a flat point."""
        return self.method == "dense"

    def to_dict(self) -> dict:
        return {"symmetries": self.symmetries, "restricted_lambda_min": self.restricted_lambda_min,
                "null_dim": self.null_dim, "test": None if self.test is None else self.test.to_dict(),
                "method": self.method, "ritz": self.ritz}


def null_dimension(record: dict | None) -> int | None:
    """The null dimension of a stored analysis (:meth:`NullAnalysis.to_dict`), or None where there is none or
    it was matrix-free (``lobpcg`` counts the directions it found, not the dimension)."""
    return None if record is None or record.get("method", "dense") != "dense" else record["null_dim"]


def _exact_symmetries(fr: FlatRisk, theta: torch.Tensor, apply, lambda_tol: float) -> tuple[torch.Tensor, dict]:
    """The family's named symmetry directions at ``theta`` checked by ``apply(ξ̂) = H ξ̂``: an orthonormal
    basis (n × s) of those with ``‖H ξ̂‖ ≤ lambda_tol``, and :attr:`NullAnalysis.symmetries`."""
    from .symmetry import orthonormal_span, symmetry_directions

    exact, rejected, residual = [], [], 0.0
    for s in symmetry_directions(fr, theta):
        res = float(torch.linalg.norm(apply(s.vector / torch.linalg.norm(s.vector))))
        (exact if res <= lambda_tol else rejected).append(s)
        if res <= lambda_tol:
            residual = max(residual, res)
    S = orthonormal_span([s.vector for s in exact], fr.n, dtype=theta.dtype).to(theta.device)
    return S, {"count": S.shape[1], "names": [s.name for s in exact[:6]] + (["…"] if len(exact) > 6 else []),
               "max_residual": residual, "rejected": [s.name for s in rejected]}


def analyse_null_space(fr: FlatRisk, theta: torch.Tensor, H: torch.Tensor, *, lambda_tol: float,
                       decrease_tol: float, risk: float, seed: int = 0) -> NullAnalysis:
    """Project the exact symmetry directions out of the dense Hessian ``H`` (n × n) and, where a
    null space remains, run :func:`higher_order_test` on it (docs/theory.md §8)."""
    n = H.shape[0]
    S, sym = _exact_symmetries(fr, theta, lambda xi: H @ xi, lambda_tol)
    Q = (torch.linalg.svd(S, full_matrices=True)[0][:, S.shape[1]:] if S.shape[1]
         else torch.eye(n, dtype=H.dtype, device=H.device))
    evals_c, evecs_c = torch.linalg.eigh(Q.T @ H @ Q)
    null = evals_c.abs() <= lambda_tol
    out = NullAnalysis(sym, float(evals_c[0]) if evals_c.numel() else math.inf, int(null.sum()))
    if out.null_dim:
        evals, evecs = torch.linalg.eigh(H)
        out.test = higher_order_test(fr, theta, evals, evecs, Q @ evecs_c[:, null], lambda_tol=lambda_tol,
                                     decrease_tol=decrease_tol, risk=risk, seed=seed)
    return out


def krylov_null_directions(H: HessianOperator, S: torch.Tensor, *, tol: float, seed: int = 0,
                           start: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The ``HO_KRYLOV_BLOCK`` smallest eigenpairs of ``P H P``, ``P = I − S Sᵀ`` the projector onto the
    complement of ``S`` (n × s, orthonormal), by SciPy's LOBPCG on Hessian-vector products (constrained
    orthogonal to ``S``), then one Rayleigh–Ritz step on the block: ``(values (b,), vectors (n × b,
    orthonormal), residuals (b,), products)``. ``start`` (n,), e.g. the eigensolver's ``v_min``, is the
    block's first column. The residuals ``‖P H x − λ x‖`` are recomputed by fresh products (LOBPCG's own
    convergence flag is not trusted). A complement of fewer than ``5 b`` dimensions, where LOBPCG itself
    would switch to a dense solver that takes no constraints, is spanned whole (its ``n − s`` products)."""
    n, dtype, device = H.n, H.dtype, H.device
    c = n - S.shape[1]
    b = max(1, min(T.HO_KRYLOV_BLOCK, c))
    gen = torch.Generator().manual_seed(seed)
    before = H.products

    def PHP(V):  # columns of V (n × b)
        V = V - S @ (S.T @ V)
        HV = torch.stack([H @ V[:, j] for j in range(V.shape[1])], 1)
        return HV - S @ (S.T @ HV)

    if c < 5 * b:
        X = torch.randn(n, c, generator=gen, dtype=dtype).to(device)
    else:
        X0 = torch.randn(n, b, generator=gen, dtype=dtype)
        if start is not None:
            X0[:, 0] = start.detach().cpu().to(dtype)

        def matmat(V):
            V = torch.as_tensor(np.asarray(V, dtype=np.float64), dtype=dtype, device=device).reshape(n, -1)
            return PHP(V).cpu().numpy()
        op = spla.LinearOperator((n, n), matvec=matmat, matmat=matmat, dtype=np.float64)
        with warnings.catch_warnings():    # "not reaching the requested tolerance": judged by the residuals below
            warnings.simplefilter("ignore", UserWarning)
            _, vecs = spla.lobpcg(op, X0.numpy(), Y=S.cpu().numpy() if S.shape[1] else None, largest=False,
                                  tol=tol, maxiter=T.HO_KRYLOV_ITER)
        X = torch.as_tensor(vecs, dtype=dtype, device=device)
    X = torch.linalg.qr(X - S @ (S.T @ X))[0]
    HX = PHP(X)
    lam, W = torch.linalg.eigh(0.5 * (X.T @ HX + HX.T @ X))     # Rayleigh–Ritz on span(X)
    X, HX, lam = X @ W[:, :b], HX @ W[:, :b], lam[:b]
    res = torch.linalg.norm(HX - X * lam, dim=0)
    return lam, X, res, H.products - before


def analyse_null_space_krylov(fr: FlatRisk, theta: torch.Tensor, *, lambda_tol: float, decrease_tol: float,
                              risk: float, seed: int = 0, start: torch.Tensor | None = None) -> NullAnalysis:
    """The matrix-free §8 analysis (module docstring): exact symmetries by Hessian-vector products, approximate
    null directions by :func:`krylov_null_directions` (Ritz values ``≤ lambda_tol``), then
    :func:`higher_order_test_krylov` on them. ``method = "lobpcg"``: no n × n matrix is formed."""
    H = HessianOperator(fr, theta)
    S, sym = _exact_symmetries(fr, theta, lambda xi: H @ xi, lambda_tol)
    lam, X, res, products = krylov_null_directions(H, S, tol=lambda_tol, seed=seed, start=start)
    null = lam.abs() <= lambda_tol
    out = NullAnalysis(sym, float(lam[0]), int(null.sum()), method="lobpcg",
                       ritz={"values": lam.tolist(), "residuals": res.tolist(), "products": products})
    if out.null_dim:
        out.test = higher_order_test_krylov(fr, theta, H, X[:, null], S, decrease_tol=decrease_tol, risk=risk,
                                            seed=seed)
    out.ritz["total_products"] = H.products        # symmetry checks, LOBPCG, MINRES corrections
    return out
