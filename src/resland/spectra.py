"""Hessian spectra of any model at any point (docs/theory.md §11 of the paper notes; issue 35): top-k eigenpairs,
the trace, the spectral density and per-block curvature, all on exact Hessian-vector products.

Every function takes a :class:`~resland.curvature.HessianOperator` ``H`` of one model (``H @ V`` for a block ``V``
of shape (n, b) is one batched product) and returns a record:

* :func:`eigenpairs`: block Lanczos with full reorthogonalisation and thick restarts (Rayleigh–Ritz on the whole
  basis after each block; the wanted Ritz vectors are kept). ``Eigenpairs.values`` (ascending), ``.vectors``
  (n × k) and ``.residuals`` ``‖Hv − λv‖`` computed from the products, so each value is within its residual of an
  eigenvalue of ``H`` (Weyl / Bauer–Fike for symmetric matrices).
* :func:`trace`: exact (``tr`` of the dense Hessian) up to ``dense_max`` parameters, else Hutch++ (Meyer, Musco,
  Musco & Woodruff 2021): ``tr(QᵀHQ)`` on a sketch ``Q`` of ``H S`` plus Hutchinson on the deflated rest, with the
  standard error of that rest as ``.error``.
* :func:`density`: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017): per Rademacher probe, ``s`` Lanczos
  steps (full reorthogonalisation) give Gauss nodes (Ritz values) and weights (squared first components); the
  average over probes is a distribution whose weights sum to 1 and whose mean estimates ``tr(H)/n``; ``.grid`` and
  ``.values`` are that quadrature smoothed by a Gaussian of width ``sigma``.
* :func:`block` / :func:`block_table`: the operator restricted to the parameters whose names start with a prefix
  (``blocks.0``, ``out``) and a per-block table (λ_min, λ_max, trace, top eigenvalue's share of the block's trace).

Conventions: mean risk, no 1/2, float64, flat parameters in ``model.parameters()`` order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import ValidationError, check_choice, check_positive_int

__all__ = ["Density", "Eigenpairs", "SpectraMixin", "SubOperator", "Trace", "block", "block_table", "density",
           "eigenpairs", "trace"]


class SpectraMixin:
    """The spectral methods of a Hessian operator of one model (:class:`~resland.curvature.HessianOperator`)."""

    def eigenvalues(self, k: int = 10, which: str = "largest", **kw) -> "Eigenpairs":
        """Top-k eigenpairs by block Lanczos (:func:`eigenpairs`)."""
        return eigenpairs(self, k, which, **kw)

    def trace(self, **kw) -> "Trace":
        """``tr(H)``: exact when dense is cheap, else Hutch++ (:func:`trace`)."""
        return trace(self, **kw)

    def density(self, **kw) -> "Density":
        """The SLQ spectral density (:func:`density`)."""
        return density(self, **kw)

    def block(self, prefix: str) -> "SubOperator":
        """The operator restricted to the parameters whose names start with ``prefix`` (:func:`block`)."""
        return block(_one(self), self.fr.model, prefix)

    def member(self, j: int):
        """Member ``j`` of a stacked operator as the Hessian of one model."""
        return type(self)(self.fr, self.theta[j]) if getattr(self, "stacked", False) else self

    def block_table(self, prefixes: list[str] | None = None, **kw) -> list[dict]:
        """Per-block λ_min, λ_max, trace and top share (:func:`block_table`)."""
        return block_table(self, self.fr.model, prefixes, **kw)


@dataclass
class Eigenpairs:
    """``values`` ascending (k,), ``vectors`` (n × k), ``residuals`` ``‖Hv − λv‖`` (k,), ``products`` used,
    ``converged``: every residual ≤ ``tol·max(1, |λ|_max)``."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    products: int
    converged: bool

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.6g}" for v in self.values.tolist())
        return (f"Eigenpairs(values=[{vals}], max residual={float(self.residuals.max()):.2e}, "
                f"products={self.products}, converged={self.converged})")


@dataclass
class Trace:
    """``value`` of ``tr(H)``, its ``error`` (0 when exact; one standard error for Hutch++), ``method``
    (``exact`` or ``hutch++``) and ``products``."""

    value: float
    error: float
    method: str
    products: int


@dataclass
class Density:
    """SLQ spectral density: ``nodes`` and ``weights`` (the quadrature; weights sum to 1), ``grid`` and ``values``
    (the curve smoothed by a Gaussian of width ``sigma``), ``mean`` (``Σ w·node``, an estimate of ``tr(H)/n``) and
    its standard error ``mean_error`` over the probes."""

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    values: np.ndarray
    sigma: float
    mean: float
    mean_error: float
    probes: int
    steps: int


def _one(H):
    """The Hessian of one model: ``H`` itself, or a stack of one member as a single operator (a stack of several
    is refused: pick one with ``H.member(j)``)."""
    if getattr(H, "stacked", False) and H.k != 1:
        raise ValidationError("Spectra need the Hessian of one model; this operator stacks "
                              f"{H.k} members: use H.member(j).")
    return H.member(0) if getattr(H, "stacked", False) else H


def _matmat(H, V: torch.Tensor) -> torch.Tensor:
    """``H V`` for V of shape (n, b) (one column through the vector product, which has less overhead)."""
    return (H @ V[:, 0])[:, None] if V.shape[1] == 1 else H @ V


def _orth(V: torch.Tensor, Q: torch.Tensor | None) -> torch.Tensor:
    """Orthonormal columns spanning ``V`` minus its projection on ``Q`` (classical Gram–Schmidt twice, then QR);
    directions below ``1e-10`` of ``V``'s largest column norm are dropped (already in the span)."""
    size = float(torch.linalg.norm(V, dim=0).max()) if V.numel() else 0.0
    for _ in range(2):
        if Q is not None and Q.shape[1]:
            V = V - Q @ (Q.T @ V)
    q, r = torch.linalg.qr(V)
    keep = r.diagonal().abs() > 1e-10 * max(size, 1e-300)
    q = q[:, keep]
    if Q is not None and Q.shape[1] and q.shape[1]:
        q = q - Q @ (Q.T @ q)
        q, _ = torch.linalg.qr(q)
    return q


def eigenpairs(H, k: int = 10, which: str = "largest", *, tol: float = 1e-10, block_size: int | None = None,
               max_products: int | None = None, seed: int = 0) -> Eigenpairs:
    """The ``k`` extreme eigenpairs of ``H`` at one end (``largest``, ``smallest``) or ``k`` at each (``both``).

    Raises:
        ValidationError: a bad ``k`` or ``which``.
    """
    check_choice("which", which, ("largest", "smallest", "both"))
    H = _one(H)
    n = H.n
    k = check_positive_int("k", k)
    want = min(n, 2 * k if which == "both" else k)
    b = block_size or 1
    basis_max = min(n, max(4 * want, want + 8 * b))
    max_products = max_products or max(50 * want, 20 * b, 200)
    dtype = torch.float64
    gen = torch.Generator().manual_seed(seed)
    Q = _orth(torch.randn(n, b, generator=gen, dtype=dtype), None)
    HQ = _matmat(H, Q)
    products = Q.shape[1]
    while True:
        T = Q.T @ HQ
        T = 0.5 * (T + T.T)
        theta, S = torch.linalg.eigh(T)
        X, HX = Q @ S, HQ @ S
        res = torch.linalg.norm(HX - X * theta, dim=0)
        if which == "largest":
            idx = torch.arange(len(theta) - min(want, len(theta)), len(theta))
        elif which == "smallest":
            idx = torch.arange(min(want, len(theta)))
        else:
            h = min(k, len(theta) // 2)
            idx = torch.cat([torch.arange(h), torch.arange(len(theta) - h, len(theta))]).unique()
        small = bool((res[idx] <= tol * max(1.0, float(theta.abs().max()))).all())
        order = idx[torch.argsort(theta[idx])]
        if (len(idx) >= want and small) or products >= max_products or Q.shape[1] >= n:
            return Eigenpairs(theta[order], X[:, order], res[order], products, small or Q.shape[1] >= n)
        if Q.shape[1] + b > basis_max:     # thick restart: the wanted Ritz vectors and a few neighbours
            extra = min(b, len(theta) - len(idx))
            if which == "largest":
                keep = torch.arange(len(theta) - len(idx) - extra, len(theta))
            elif which == "smallest":
                keep = torch.arange(len(idx) + extra)
            else:
                keep = idx
            Q, HQ = X[:, keep], HX[:, keep]
            R = (HX - X * theta)[:, idx]
            R = R[:, torch.argsort(torch.linalg.norm(R, dim=0), descending=True)[:b]]   # one Krylov block on
        else:
            R = HQ[:, -b:]
        W = _orth(R, Q)
        if W.shape[1] == 0:                 # an invariant subspace: fill with random directions
            W = _orth(torch.randn(n, b, generator=gen, dtype=dtype), Q)
            if W.shape[1] == 0:
                return Eigenpairs(theta[order], X[:, order], res[order], products, True)
        HW = _matmat(H, W)
        products += W.shape[1]
        Q, HQ = torch.cat([Q, W], 1), torch.cat([HQ, HW], 1)


def trace(H, *, products: int = 99, dense_max: int = 1000, seed: int = 0) -> Trace:
    """``tr(H)``: exact from the dense Hessian up to ``dense_max`` parameters, else Hutch++ with ``products``
    Hessian-vector products (a third for the sketch, a third for its range, a third for the deflated rest)."""
    H = _one(H)
    n = H.n
    if n <= dense_max:
        return Trace(float(torch.diagonal(H.dense()).sum()), 0.0, "exact", n)
    m = max(3, products // 3)
    gen = torch.Generator().manual_seed(seed)
    S = torch.randint(0, 2, (n, m), generator=gen, dtype=torch.float64) * 2 - 1
    G = torch.randint(0, 2, (n, m), generator=gen, dtype=torch.float64) * 2 - 1
    Q, _ = torch.linalg.qr(_matmat(H, S))
    top = float(torch.trace(Q.T @ _matmat(H, Q)))
    G = G - Q @ (Q.T @ G)
    HG = _matmat(H, G)
    HG = HG - Q @ (Q.T @ HG)
    samples = (G * HG).sum(0)
    rest = float(samples.mean())
    err = float(samples.std(unbiased=True) / math.sqrt(m))
    return Trace(top + rest, err, "hutch++", 3 * m)


def _lanczos_tridiagonal(H, v: torch.Tensor, steps: int):
    """``steps`` Lanczos steps from ``v`` (full reorthogonalisation): the tridiagonal's ``(alpha, beta)``."""
    n = v.shape[0]
    Q = torch.zeros(n, steps, dtype=v.dtype)
    q = v / torch.linalg.norm(v)
    alpha, beta = [], []
    for j in range(steps):
        Q[:, j] = q
        w = (H @ q[:, None])[:, 0]
        a = float(q @ w)
        alpha.append(a)
        for _ in range(2):
            w = w - Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        bnorm = float(torch.linalg.norm(w))
        if j == steps - 1 or bnorm <= 1e-12 * max(1.0, abs(a)):
            break
        beta.append(bnorm)
        q = w / bnorm
    return np.array(alpha), np.array(beta)


def density(H, *, probes: int = 8, steps: int = 60, sigma: float | None = None, grid_points: int = 400,
            seed: int = 0) -> Density:
    """The SLQ spectral density of ``H`` (module docstring), ``probes`` Rademacher probes of ``steps`` steps."""
    H = _one(H)
    probes = check_positive_int("probes", probes)
    steps = min(check_positive_int("steps", steps), H.n)
    gen = torch.Generator().manual_seed(seed)
    nodes, weights, means = [], [], []
    for _ in range(probes):
        v = (torch.randint(0, 2, (H.n,), generator=gen, dtype=torch.float64) * 2 - 1)
        alpha, beta = _lanczos_tridiagonal(H, v, steps)
        T = np.diag(alpha) + np.diag(beta[: len(alpha) - 1], 1) + np.diag(beta[: len(alpha) - 1], -1)
        theta, S = np.linalg.eigh(T)
        w = S[0] ** 2
        nodes.append(theta)
        weights.append(w / probes)
        means.append(float(w @ theta))
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    lo, hi = float(nodes.min()), float(nodes.max())
    sigma = sigma if sigma is not None else max(1e-12, (hi - lo) / 100)
    grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, grid_points)
    values = (weights[None, :] * np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2)).sum(1)
    values /= sigma * math.sqrt(2 * math.pi)
    mean_err = float(np.std(means, ddof=1) / math.sqrt(probes)) if probes > 1 else math.inf
    return Density(nodes, weights, grid, values, sigma, float(np.mean(means)), mean_err, probes, steps)


class SubOperator(SpectraMixin):
    """``H`` restricted to the flat indices ``idx`` (the Hessian's principal block): ``P H Pᵀ``."""

    def __init__(self, H, idx: torch.Tensor, name: str = ""):
        self.H, self.idx, self.name, self.n = H, idx, name, int(idx.numel())
        self.shape = (self.n, self.n)

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        one = V.ndim == 1
        V = V[:, None] if one else V
        full = torch.zeros(self.H.n, V.shape[1], dtype=V.dtype)
        full[self.idx] = V
        out = (self.H @ full)[self.idx]
        return out[:, 0] if one else out

    def dense(self) -> torch.Tensor:
        return self @ torch.eye(self.n, dtype=torch.float64)

    @property
    def fr(self):
        return self.H.fr

    def __repr__(self) -> str:
        return f"SubOperator({self.name!r}, n={self.n})"


def block(H, model: torch.nn.Module, prefix: str) -> SubOperator:
    """``H`` restricted to the parameters of ``model`` whose names start with ``prefix``.

    Raises:
        ValidationError: no parameter name starts with ``prefix``.
    """
    H = _one(H)
    idx, start = [], 0
    for name, p in model.named_parameters():
        if name.startswith(prefix):
            idx.append(torch.arange(start, start + p.numel()))
        start += p.numel()
    if not idx:
        names = sorted({n.rsplit(".", 1)[0] for n, _ in model.named_parameters()})
        raise ValidationError(f"The 'prefix' parameter must start some parameter names ({', '.join(names)}). "
                              f"Got {prefix!r}.")
    return SubOperator(H, torch.cat(idx), prefix)


def block_table(H, model: torch.nn.Module, prefixes: list[str] | None = None, *, dense_max: int = 1000) -> list[dict]:
    """Per-block curvature: ``{block, n, lambda_min, lambda_max, trace, top_share}`` for each prefix (default: the
    modules that own parameters, e.g. ``blocks.0``, ``out``); exact (dense ``eigh`` of the sub-Hessian) up to
    ``dense_max`` parameters per block, else :func:`eigenpairs` and :func:`trace`."""
    if prefixes is None:
        prefixes = list(dict.fromkeys(n.rsplit(".", 1)[0] for n, _ in model.named_parameters()))
        if hasattr(model, "blocks"):
            prefixes = [p if not p.startswith("blocks.") else ".".join(p.split(".")[:2]) for p in prefixes]
            prefixes = list(dict.fromkeys(prefixes))
    out = []
    for prefix in prefixes:
        sub = block(H, model, prefix)
        if sub.n <= dense_max:
            lam = torch.linalg.eigvalsh(sub.dense())
            lo, hi, tr = float(lam[0]), float(lam[-1]), float(lam.sum())
        else:
            lo = float(eigenpairs(sub, 1, "smallest").values[0])
            hi = float(eigenpairs(sub, 1, "largest").values[0])
            tr = trace(sub, dense_max=dense_max).value
        out.append({"block": prefix, "n": sub.n, "lambda_min": lo, "lambda_max": hi, "trace": tr,
                    "top_share": hi / tr if tr > 0 else math.nan})
    return out
