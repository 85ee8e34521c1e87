"""Curvature of the risk: Hessian-vector products, dense Hessians and extreme eigenvalues.

All products are exact Hessian-vector products of the flat parameter vector of
:class:`~resland.functional.FlatRisk` (double backward, or forward-over-reverse where ``vmap``
is needed), in the model's dtype (float64 by default).

:func:`hessian_extremes` returns ``λ_min`` (most negative, first-class) and ``λ_max`` of
``∇²R(θ)``:

* ``dense``: the dense Hessian and ``eigh`` (the whole spectrum); the default when
  ``n ≤ dense_max_params`` (default :data:`DENSE_EIG_MAX`, the measured crossover);
* ``lanczos``: :func:`lanczos`, resland's thick-restart Lanczos in torch, the default above:
  float64, on the model's device, full reorthogonalisation, both ends from one Krylov
  space, memory bounded by the basis size, batched over the members of an ensemble;
* ``arpack``: SciPy's ``eigsh`` (implicitly restarted Lanczos) on a ``LinearOperator`` of HVPs,
  smallest- and largest-algebraic ends (a NumPy round trip per product).

Every reported residual ``‖Hv − λv‖`` is recomputed with a fresh HVP, so it honestly bounds
the distance from ``λ`` to the spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch import nn

from .functional import FlatRisk
from .losses import Loss

#: Largest parameter count for which a dense Hessian is built by default (memory and time guard).
DENSE_MAX_PARAMS = 2000
#: Up to this parameter count the dense Hessian + ``eigh`` is faster than Lanczos for the two
#: extremes (measured by benchmarks/bench_dense_threshold.py, docs/performance.md).
DENSE_EIG_MAX = 100


@dataclass
class EigResult:
    """Extreme eigenpairs of the Hessian ``H = ∇²R(θ)``.

    Attributes:
        lambda_min, lambda_max: smallest and largest eigenvalues.
        vec_min, vec_max: unit eigenvectors (flat, float64 tensors).
        residual: ``‖H v_min − λ_min v_min‖`` (bounds the error of ``λ_min``).
        residual_max: the same for ``λ_max``.
        matvecs: Hessian-vector products used (the dense path counts ``n`` plus residual checks).
        method: ``dense`` or ``lanczos``.
        eigenvalues: full ascending spectrum (dense path only, else None).
        converged: whether the eigensolver met its tolerance.
        hv_min: ``H v_min`` from the residual check, reused by the escape test of ``certify``.
    """

    lambda_min: float
    lambda_max: float
    vec_min: torch.Tensor
    vec_max: torch.Tensor
    residual: float
    residual_max: float
    matvecs: int
    method: str
    eigenvalues: np.ndarray | None = None
    converged: bool = True
    hv_min: torch.Tensor | None = None

    def count_below(self, threshold: float) -> int | None:
        """Number of eigenvalues ``< threshold`` (None without the full spectrum)."""
        return None if self.eigenvalues is None else int(np.sum(self.eigenvalues < threshold))


def hvp(model: nn.Module, X, y, v: torch.Tensor, loss: str | Loss = "squared") -> torch.Tensor:
    """Exact ``∇²R(θ) v`` at the model's parameters, ``v`` flat in ``named_parameters`` order."""
    fr = FlatRisk(model, X, y, loss)
    return fr.hvp(fr.theta0, v.to(fr.theta0))


def dense_hessian(model: nn.Module, X, y, loss: str | Loss = "squared") -> torch.Tensor:
    """Dense ``∇²R(θ)`` (n × n) at the model's parameters."""
    fr = FlatRisk(model, X, y, loss)
    return fr.hessian(fr.theta0)


def hessian_extremes(
    model: nn.Module,
    X,
    y,
    loss: str | Loss = "squared",
    tol: float = 1e-8,
    *,
    method: str = "auto",
    dense_max_params: int = DENSE_EIG_MAX,
    seed: int = 0,
    maxiter: int | None = None,
    ncv: int | None = None,
    max_basis: int = 64,
) -> EigResult:
    """``λ_min`` and ``λ_max`` of the Hessian of the mean risk at the model's parameters.

    Args:
        model: any ``nn.Module`` with a scalar output per sample.
        X, y: data; loss: loss name or instance.
        tol: relative accuracy requested from the iterative solver.
        method: ``auto`` (dense when ``n ≤ dense_max_params``, else ``lanczos``), ``dense``,
            ``lanczos`` (native torch, :func:`lanczos`) or ``arpack`` (SciPy ``eigsh``).
        seed: seeds the Lanczos start vector.
        maxiter: Lanczos products cap (default 1000) or ARPACK restarts cap (``10 n``).
        ncv: ARPACK basis size (default ``min(n, 40)``).
        max_basis: Lanczos basis size before a thick restart (memory ``(max_basis + 1) · n``).
    """
    fr = FlatRisk(model, X, y, loss)
    return extremes_at(fr, fr.theta0, tol=tol, method=method, dense_max_params=dense_max_params,
                       seed=seed, maxiter=maxiter, ncv=ncv, max_basis=max_basis)


def extremes_at(fr: FlatRisk, theta: torch.Tensor, *, tol=1e-8, method="auto",
                dense_max_params=DENSE_EIG_MAX, seed=0, maxiter=None, ncv=None, H=None,
                max_basis=64) -> EigResult:
    """:func:`hessian_extremes` at an explicit ``θ`` of a :class:`FlatRisk` (``H`` reused if given)."""
    from ._checks import check_choice

    check_choice("method", method, ("auto", "dense", "lanczos", "arpack"))
    if method == "auto":
        method = "dense" if fr.n <= dense_max_params else "lanczos"
    spectrum = None
    if method == "dense":
        H = fr.hessian(theta) if H is None else H
        evals, evecs = torch.linalg.eigh(H)
        pairs = [(float(evals[0]), evecs[:, 0]), (float(evals[-1]), evecs[:, -1])]
        matvecs, converged, spectrum = fr.n, True, evals.cpu().numpy()
    elif method == "arpack":
        pairs, matvecs, converged = _lanczos_extremes(fr, theta, tol, seed, maxiter, ncv)
    else:
        hv = fr.hvp_at(theta)  # one gradient graph, reused by every product
        lam, vecs, counts, conv = lanczos(lambda idx, V: hv(V[0])[None], fr.n, seeds=[seed], tol=tol,
                                          max_steps=maxiter or 1000, max_basis=max_basis, dtype=theta.dtype,
                                          device=theta.device)
        pairs = [(float(lam[0, 0]), vecs[0, 0]), (float(lam[0, 1]), vecs[0, 1])]
        matvecs, converged = counts[0], conv[0]
    # Honest residuals: one fresh exact HVP per eigenvector (kept: certify reuses H v_min); the
    # Lanczos path reuses its gradient graph, the others use forward-over-reverse products.
    V = torch.stack([v for _, v in pairs], dim=1)
    HV = torch.stack([hv(v) for _, v in pairs], dim=1) if method == "lanczos" else fr.hvps(theta, V)
    res = [float(torch.linalg.norm(HV[:, j] - lam * V[:, j])) for j, (lam, _) in enumerate(pairs)]
    return EigResult(
        lambda_min=pairs[0][0], lambda_max=pairs[1][0], vec_min=pairs[0][1], vec_max=pairs[1][1],
        residual=res[0], residual_max=res[1], matvecs=matvecs + 2, method=method,
        eigenvalues=spectrum, converged=converged, hv_min=HV[:, 0],
    )


def lanczos(matvec, n: int, *, seeds, which: str = "both", tol: float = 1e-8, max_steps: int = 1000,
            max_basis: int = 64, check_every: int = 10, dtype=torch.float64, device=None):
    """Extreme eigenpairs of ``k`` symmetric operators at once, by thick-restart Lanczos in torch.

    Args:
        matvec: ``matvec(idx, V)`` returns ``A_j v_j`` for the operators ``j ∈ idx`` (a LongTensor)
            and the rows ``v_j`` of ``V`` (``len(idx) × n``): one batched product per step.
        n: dimension; seeds: one seed per operator (its start vector, from ``torch.Generator``).
        which: ``smallest``, ``largest`` or ``both``: the end(s) whose convergence is required
            (both Ritz ends are always returned).
        tol: an operator stops once the Ritz residual estimate ``|β_j s_j|`` of each required
            end is ``≤ tol·max(1, |θ_max|)``, or the Krylov space is invariant.
        max_steps: cap on the products per operator (``converged`` is False when it runs out).
        max_basis: basis size ``p``; when it is full the basis is restarted thick (Wu & Simon,
            TRLan): the Ritz vectors of the wanted end(s), ``p/2`` in all, are kept and the
            Krylov space is extended from the last residual. Memory is ``k · (p + 1) · n`` floats
            whatever ``max_steps`` is.
        check_every: Ritz values are checked at every one of the first 40 products, at every
            restart, then every ``check_every`` products.

    Full reorthogonalisation (classical Gram–Schmidt, twice) keeps the basis orthogonal to
    rounding, so there are no ghost eigenvalues. The projected matrix ``T = Qᵀ A Q`` is built from
    the Gram–Schmidt coefficients, so it is tridiagonal before the first restart and
    arrowhead-plus-tridiagonal after; ``A Q = Q T + β q₊ eₚᵀ`` holds throughout, which makes
    ``|β s_last|`` the residual of the Ritz pair ``(θ, Q s)``.

    Returns:
        ``(lam, vecs, matvecs, converged)``: ``lam`` (k × 2) holds ``(λ_min, λ_max)`` Ritz values,
        ``vecs`` (k × 2 × n) unit Ritz vectors, ``matvecs`` and ``converged`` per operator.
    """
    from ._checks import check_choice, check_positive_int

    check_choice("which", which, ("smallest", "largest", "both"))
    ends = {"smallest": [0], "largest": [1], "both": [0, 1]}[which]
    k = len(seeds)
    max_steps = check_positive_int("max_steps", max_steps)
    p = min(max(4, check_positive_int("max_basis", max_basis)), n)
    keep = {"smallest": (p // 2, 0), "largest": (0, p // 2), "both": (p // 4, p // 4)}[which]
    Q = torch.empty(k, p + 1, n, dtype=dtype, device=device)
    T = torch.zeros(k, p, p, dtype=dtype, device=device)
    for j, s in enumerate(seeds):
        q = torch.randn(n, generator=torch.Generator().manual_seed(int(s)), dtype=dtype).to(device)
        Q[j, 0] = q / torch.linalg.norm(q)
    lam = torch.full((k, 2), float("nan"), dtype=dtype, device=device)
    vecs = torch.zeros(k, 2, n, dtype=dtype, device=device)
    matvecs, converged = [0] * k, [False] * k
    active = torch.ones(k, dtype=torch.bool)
    j = 0  # index of the basis vector being expanded
    for step in range(1, max_steps + 1):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        rows = slice(None) if idx.numel() == k else idx  # a view when every operator is running
        Qa = Q[rows, : j + 1]
        w = matvec(idx, Qa[:, j])
        c = torch.einsum("kjn,kn->kj", Qa, w)
        w = w - torch.einsum("kjn,kj->kn", Qa, c)
        c2 = torch.einsum("kjn,kn->kj", Qa, w)  # second Gram–Schmidt pass
        w = w - torch.einsum("kjn,kj->kn", Qa, c2)
        c = c + c2
        T[rows, : j + 1, j] = c
        T[rows, j, : j + 1] = c
        b = torch.linalg.norm(w, dim=1)
        anorm = torch.clamp(c.abs().amax(1), min=1e-300)
        breakdown = b <= 1e-12 * anorm
        qnext = torch.where(breakdown[:, None], 0.0, w / torch.where(breakdown, 1.0, b)[:, None])
        for a in idx.tolist():
            matvecs[a] += 1
        full = j + 1 == p
        last = step == max_steps or (p == n and full)
        if step <= 40 or step % check_every == 0 or full or last or bool(breakdown.any()):
            ev, S = torch.linalg.eigh(T[rows, : j + 1, : j + 1])
            est = (b[:, None] * S[:, -1, :][:, [0, -1]]).abs()[:, ends]
            scale = torch.clamp(ev.abs().amax(1), min=1.0)
            ok = breakdown | (est.amax(1) <= tol * scale)
            done = ok | last
            for a_loc in torch.nonzero(done).flatten().tolist():
                a = int(idx[a_loc])
                y = torch.einsum("jn,jc->cn", Qa[a_loc], S[a_loc][:, [0, -1]])
                lam[a] = ev[a_loc, [0, -1]]
                vecs[a] = y / torch.linalg.norm(y, dim=1, keepdim=True)
                converged[a] = bool(ok[a_loc])
                active[a] = False
            if full:  # thick restart: keep the wanted Ritz pairs, continue from q₊
                sel = list(range(keep[0])) + list(range(j + 1 - keep[1], j + 1))
                j = len(sel) - 1
                Q[rows, : j + 1] = torch.einsum("kjn,kjc->kcn", Qa, S[:, :, sel])
                restarted = torch.zeros(len(ev), p, p, dtype=dtype, device=device)
                restarted[:, range(j + 1), range(j + 1)] = ev[:, sel]
                T[rows] = restarted
        Q[rows, j + 1] = qnext
        j += 1
    return lam, vecs, matvecs, converged


def _lanczos_extremes(fr: FlatRisk, theta: torch.Tensor, tol: float, seed: int, maxiter, ncv):
    n = fr.n
    count = [0]

    hv = fr.hvp_at(theta)

    def matvec(x):
        count[0] += 1
        v = torch.as_tensor(np.asarray(x).reshape(-1), dtype=fr.dtype, device=theta.device)
        return hv(v).cpu().numpy()

    op = spla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    pairs, converged = [], True
    for which in ("SA", "LA"):
        if n <= 2:  # ARPACK needs k < n; tiny problems go dense via HVPs
            H = fr.hvps(theta, torch.eye(n, dtype=fr.dtype, device=theta.device))
            ev, evec = torch.linalg.eigh(0.5 * (H + H.T))
            j = 0 if which == "SA" else -1
            pairs.append((float(ev[j]), evec[:, j]))
            continue
        try:
            ev, evec = spla.eigsh(op, k=1, which=which, tol=tol, v0=v0, ncv=ncv or min(n, 40),
                                  maxiter=maxiter or 10 * n)
        except spla.ArpackNoConvergence as exc:
            converged = False
            if len(exc.eigenvalues) == 0:
                ev, evec = np.array([np.nan]), v0[:, None] / np.linalg.norm(v0)
            else:
                ev, evec = exc.eigenvalues, exc.eigenvectors
        vec = torch.as_tensor(evec[:, 0], dtype=fr.dtype, device=theta.device)
        pairs.append((float(ev[0]), vec / torch.linalg.norm(vec)))
    return pairs, count[0], converged
