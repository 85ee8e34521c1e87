"""Curvature of the risk: the Hessian as an operator, and its extreme eigenvalues.

:class:`HessianOperator` is the one way resland touches ``H = ∇²R(θ)`` (in the style of
curvlinops' ``HessianLinearOperator``): exact Hessian-vector products of the flat parameter
vector of :class:`~resland.functional.FlatRisk`, for one model or for a stack of members of
one architecture (then ``H`` is block diagonal, one block per member), with ``@`` on vectors
and blocks, :meth:`~HessianOperator.to_scipy`, :meth:`~HessianOperator.dense` and
:meth:`~HessianOperator.extremes`. Products are in the model's dtype (float64 by default).

:meth:`HessianOperator.extremes` returns ``λ_min`` (most negative, first-class) and ``λ_max``:

* ``dense``: the dense Hessian and ``eigh`` (the whole spectrum); the default when
  ``n ≤ dense_max_params`` (:data:`~resland.tolerances.DENSE_EIG_MAX` for one model,
  :data:`~resland.tolerances.BATCHED_DENSE_MAX` for a stack: the measured crossovers);
* ``lanczos``: :func:`lanczos`, resland's thick-restart Lanczos in torch, the default above:
  float64, on the model's device, full reorthogonalisation, both ends from one Krylov
  space, memory bounded by the basis size, batched over the members;
* ``arpack``: SciPy's ``eigsh`` (implicitly restarted Lanczos) on :meth:`~HessianOperator.to_scipy`,
  smallest- and largest-algebraic ends (a NumPy round trip per product).

Every reported residual ``‖Hv − λv‖`` is recomputed with a fresh product, so it honestly
bounds the distance from ``λ`` to the spectrum. Conventions: mean risk, squared loss
``(p − y)²`` without 1/2 (docs/theory.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch import nn
from torch.func import grad, jvp

from ._checks import ValidationError, check_choice, check_positive_int
from .functional import FlatRisk
from .losses import Loss
from .spectra import SpectraMixin
from .tolerances import BATCHED_DENSE_MAX, DENSE_EIG_MAX, lanczos_basis


@dataclass
class EigResult:
    """Extreme eigenpairs of the Hessian ``H = ∇²R(θ)`` of one model (``n`` parameters).

    Attributes:
        lambda_min, lambda_max: smallest and largest eigenvalues.
        vec_min, vec_max: unit eigenvectors, shape (n,).
        residual: ``‖H v_min − λ_min v_min‖`` (bounds the error of ``λ_min``).
        residual_max: the same for ``λ_max``.
        matvecs: Hessian-vector products used (the dense path counts ``n`` plus residual checks).
        method: ``dense``, ``lanczos`` or ``arpack`` (``-batched`` when computed for a stack).
        eigenvalues: full ascending spectrum, shape (n,) (dense path only, else None).
        converged: whether the eigensolver met its tolerance.
        hv_min: ``H v_min``, shape (n,), from the residual check (reused by the escape test of ``certify``).
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
        """Number of eigenvalues ``< threshold`` (None without the full spectrum: a Lanczos λ_min is an upper
        bound of the true one, so it cannot count them, not even as 0)."""
        return None if self.eigenvalues is None else int(np.sum(self.eigenvalues < threshold))

    def __repr__(self) -> str:
        n = self.vec_min.shape[-1] if hasattr(self.vec_min, "shape") else "?"
        return (f"EigResult(lambda_min={self.lambda_min:.6g}, lambda_max={self.lambda_max:.6g}, "
                f"residual={self.residual:.2e}, residual_max={self.residual_max:.2e}, method={self.method!r}, "
                f"converged={self.converged}, matvecs={self.matvecs}, n={n})")


class HessianOperator(SpectraMixin):
    """``H = ∇²R(θ)`` of the mean risk as a linear operator, for one model or a stack of members.

    Args:
        risk: a :class:`~resland.functional.FlatRisk` or an :class:`~resland.ensemble.Ensemble`
            (its shared ``FlatRisk``).
        theta: shape (n,) for one model, or (k, n) for k members (rows); in the risk's dtype.

    Shapes: one model, ``H`` is (n, n) and ``H @ v`` takes ``v`` of shape (n,) or a block (n, b).
    A stack, ``H`` is block diagonal with blocks ``H_j = ∇²R(θ_j)`` (``shape = (k, n, n)``) and
    ``H @ V`` takes one vector per member, (k, n) → (k, n), or blocks, (k, n, b) → (k, n, b).

    Single vectors go through one gradient graph of ``Σ_j R(θ_j)``, built on the first product
    and kept (the Hessian of the sum is block diagonal, so one double backward gives every
    member's product; each further product is one backward pass: docs/performance.md).
    Blocks use forward-over-reverse ``jvp(grad)`` under ``vmap``. ``products`` counts the
    Hessian-vector products applied, per member.

    Raises:
        ValidationError: ``theta`` is not (n,) or (k, n) for the risk's n, or a product's
            argument has the wrong shape.

    Example:
        >>> import torch, resland
        >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
        >>> H = resland.HessianOperator.from_model(resland.ResNet(3, 2, 1), X, y)
        >>> v = torch.ones(H.n, dtype=torch.float64)
        >>> H.shape, (H @ v).shape
        ((18, 18), torch.Size([18]))
        >>> bool(torch.allclose(H.dense() @ v, H @ v))
        True
    """

    def __init__(self, risk, theta: torch.Tensor):
        fr = getattr(risk, "fr", risk)
        if not isinstance(fr, FlatRisk):
            raise ValidationError(f"The 'risk' parameter must be a FlatRisk or an Ensemble. Got {type(risk).__name__}.")
        theta = torch.as_tensor(theta)
        if theta.ndim not in (1, 2) or theta.shape[-1] != fr.n:
            raise ValidationError(f"The 'theta' parameter must have shape ({fr.n},) or (k, {fr.n}). "
                                  f"Got {tuple(theta.shape)}.")
        self.fr = fr
        self.stacked = theta.ndim == 2
        self.theta = theta.detach().to(device=fr.device, dtype=fr.dtype)
        self._rows = self.theta if self.stacked else self.theta[None]
        self.k, self.n = self._rows.shape
        self.shape = (self.k, self.n, self.n) if self.stacked else (self.n, self.n)
        self.dtype, self.device = fr.dtype, fr.device
        self.products = 0
        self._graph = None
        # A risk summed over chunks (resland.krylov.ChunkedRisk) serves its own products: one model only.
        self._chunked = hasattr(fr, "hvp") and not self.stacked

    @classmethod
    def from_model(cls, model: nn.Module, X, y, loss: str | Loss = "squared") -> "HessianOperator":
        """The Hessian at ``model``'s current parameters on data ``X`` (m, d), ``y`` (m,)."""
        fr = FlatRisk(model, X, y, loss)
        return cls(fr, fr.theta0)

    def restrict(self, idx) -> "HessianOperator":
        """The stacked operator of the members ``idx`` (a fresh graph: finished members cost nothing)."""
        return HessianOperator(self.fr, self._rows[torch.as_tensor(idx, dtype=torch.long)])

    # Products.
    def _vector(self, V: torch.Tensor) -> torch.Tensor:
        """``(H_j v_j)_j`` for ``V`` of shape (k, n), through the cached gradient graph (or, for a risk
        summed over chunks of samples, :meth:`~resland.krylov.ChunkedRisk.hvp` chunk by chunk)."""
        if self._chunked:
            self.products += 1
            return self.fr.hvp(self.theta, V[0].to(self.dtype))[None]   # one tensor: its graphs are kept
        if self._graph is None:
            with torch.enable_grad():
                t = self._rows.detach().requires_grad_(True)
                total = torch.vmap(self.fr.risk)(t).sum() if self.stacked else self.fr.risk(t[0])
                self._graph = (t, torch.autograd.grad(total, t, create_graph=True)[0])
        t, G = self._graph
        self.products += 1
        with torch.enable_grad():
            return torch.autograd.grad(G, t, grad_outputs=V.detach().to(G), retain_graph=True)[0]

    def _block_one(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        return torch.vmap(lambda v: jvp(grad(self.fr.risk), (theta,), (v,))[1], in_dims=1, out_dims=1)(V)

    def _block(self, V: torch.Tensor) -> torch.Tensor:
        """``H_j V_j`` for blocks ``V`` of shape (k, n, b), forward-over-reverse under ``vmap``."""
        self.products += V.shape[-1]
        if self._chunked:
            return self.fr.hvp(self.theta, V[0].to(self.dtype))[None]
        return torch.vmap(self._block_one)(self._rows, V.to(self.dtype))

    def __repr__(self) -> str:
        members = f"{self.k} members, " if self.stacked else ""
        return (f"HessianOperator(shape={tuple(self.shape)}, {members}m={self.fr.m}, dtype={self.fr.dtype}, "
                f"products={self.products})")

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        V = torch.as_tensor(V)
        lead = (self.k,) if self.stacked else ()
        if V.shape[: len(lead) + 1] != lead + (self.n,) or V.ndim - len(lead) not in (1, 2):
            raise ValidationError(f"H @ V needs V of shape {lead + (self.n,)} or {lead + (self.n,)} + (b,). "
                                  f"Got {tuple(V.shape)}.")
        if V.ndim == len(lead) + 1:
            out = self._vector(V if self.stacked else V[None])
        else:
            out = self._block(V if self.stacked else V[None])
        return out if self.stacked else out[0]

    def dense(self, chunk_size: int = 128, *, method: str = "auto") -> torch.Tensor:
        """The dense Hessian, symmetrised: (n, n), or (k, n, n) for a stack.

        Args:
            chunk_size: unit vectors per block product (``autodiff``).
            method: ``closed_form`` (:mod:`resland.closed_form`: the chain ResNet and the FC
                net, batched matrix products), ``autodiff`` (products against blocks of unit
                vectors; faster than ``torch.func.hessian`` for large n, same values:
                docs/performance.md) or ``auto`` (the closed form where the model has one).

        Raises:
            ValidationError: an unknown ``method``, or ``closed_form`` for a model without one.
        """
        check_choice("method", method, ("auto", "closed_form", "autodiff"))
        chain = self.fr.chain_derivatives
        chain = chain if chain is not None and chain.k == 1 else None     # the closed-form Hessian: one output
        if method == "closed_form" and chain is None:
            raise ValidationError(f"The 'method' closed_form needs a ResNet (one-layer branches) or an FCNet. "
                                  f"Got {type(self.fr.model).__name__}.")
        self.products += self.n
        if method != "autodiff" and chain is not None:
            H = chain.hessian(self._rows)
            return H if self.stacked else H[0]
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)

        def one(theta):
            H = torch.cat([self._block_one(theta, eye[:, i : i + chunk_size]) for i in range(0, self.n, chunk_size)], 1)
            return 0.5 * (H + H.T)
        H = torch.vmap(one)(self._rows)
        return H if self.stacked else H[0]

    def to_scipy(self) -> spla.LinearOperator:
        """A SciPy ``LinearOperator`` (n × n, float64 NumPy in and out) of a single model's ``H``.

        Raises:
            ValidationError: the operator holds more than one member.
        """
        if self.k != 1:
            raise ValidationError(f"to_scipy() needs one member. Got {self.k}; use restrict([j]).")

        def matvec(x):
            v = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1), dtype=self.dtype, device=self.device)
            return self._vector(v[None])[0].cpu().numpy()
        return spla.LinearOperator((self.n, self.n), matvec=matvec, dtype=np.float64)

    # Extreme eigenpairs.
    def extremes(self, *, which: str = "both", method: str = "auto", tol: float = 1e-8, seed=0,
                 dense_max_params: int | None = None, max_steps: int | None = None, max_basis: int | None = None,
                 check_every: int = 10, chunk_size: int = 32, ncv: int | None = None, start=None):
        """``λ_min`` and ``λ_max`` of every member's ``H_j``, with honest residuals.

        Args:
            which: ``smallest``, ``largest`` or ``both``: the end(s) Lanczos must converge (both
                ends are always reported).
            method: ``auto`` (dense when ``n ≤ dense_max_params``, else ``lanczos``), ``dense``,
                ``lanczos`` or ``arpack``.
            tol: Lanczos stops once each required Ritz residual estimate ``|β s|`` is
                ``≤ tol·max(1, |θ_max|)``; ARPACK's relative accuracy.
            seed: the start vector's seed: one int, or one per member (a member's result does
                not depend on the stack or the chunking).
            dense_max_params: the ``auto`` crossover (default ``DENSE_EIG_MAX`` for one model,
                ``BATCHED_DENSE_MAX`` for a stack).
            max_steps: products per member (Lanczos, default 1000), or ARPACK restarts (default ``10 n``).
            max_basis: Lanczos basis size (default :func:`~resland.tolerances.lanczos_basis`).
            chunk_size: members per batched Lanczos (benchmarks/bench_batched_extremes.py); ncv: ARPACK basis (default ``min(n, 40)``).
            start: Lanczos start vector(s), (n,) or (k, n), e.g. the finder's last curvature vector (a warm
                start); the seeds serve members without one.

        Returns:
            An :class:`EigResult` for one model; a list of them (one per row) for a stack.

        Raises:
            ValidationError: an unknown ``method`` or ``which``, or a seed list of the wrong length.
        """
        check_choice("method", method, ("auto", "dense", "lanczos", "arpack"))
        check_choice("which", which, ("smallest", "largest", "both"))
        chunk_size = check_positive_int("chunk_size", chunk_size)
        k, n = self.k, self.n
        seeds = [int(seed)] * k if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
        if len(seeds) != k:
            raise ValidationError(f"The 'seed' parameter must be one int or one seed per member ({k}). Got {len(seeds)}.")
        if dense_max_params is None:
            dense_max_params = BATCHED_DENSE_MAX if self.stacked else DENSE_EIG_MAX
        if method == "auto":
            method = "dense" if n <= dense_max_params else "lanczos"
        spectra = [None] * k
        starts = range(0, k, chunk_size)
        # One operator per chunk, its gradient graph shared by the solver and the residual check.
        chunks = [self if k <= chunk_size else self.restrict(range(s, min(k, s + chunk_size))) for s in starts]
        if method == "dense":
            evals, evecs = torch.linalg.eigh(self.dense() if self.stacked else self.dense()[None])
            lam = torch.stack([evals[:, 0], evals[:, -1]], 1)
            vecs = torch.stack([evecs[:, :, 0], evecs[:, :, -1]], 1)
            matvecs, converged = [n] * k, [True] * k
            spectra = [e.cpu().numpy() for e in evals]
        elif method == "arpack":
            found = [(self if k == 1 else self.restrict([a]))._arpack(tol, seeds[a], max_steps, ncv)
                     for a in range(k)]
            lam = torch.tensor([[f[0][0], f[0][1]] for f in found], dtype=self.dtype, device=self.device)
            vecs = torch.stack([f[1] for f in found])
            matvecs, converged = [f[2] for f in found], [f[3] for f in found]
        else:
            if start is not None:
                start = torch.as_tensor(start, dtype=self.dtype, device=self.device).reshape(k, n)
            runs = [op._lanczos(seeds[s : s + chunk_size], which=which, tol=tol, max_steps=max_steps or 1000,
                                max_basis=max_basis, check_every=check_every,
                                start=None if start is None else start[s : s + chunk_size])
                    for s, op in zip(starts, chunks)]
            lam, vecs = torch.cat([r[0] for r in runs]), torch.cat([r[1] for r in runs])
            matvecs, converged = [m for r in runs for m in r[2]], [v for r in runs for v in r[3]]
        # Honest residuals: a fresh exact product for each of the two vectors of every member.
        Hv = torch.empty_like(vecs)
        for s, op in zip(starts, chunks):
            rows = slice(s, s + chunk_size)
            Hv[rows, 0], Hv[rows, 1] = op._vector(vecs[rows, 0]), op._vector(vecs[rows, 1])
        res = torch.linalg.norm(Hv - lam[..., None] * vecs, dim=2)
        label = f"{method}-batched" if self.stacked else method
        out = [EigResult(lambda_min=float(lam[j, 0]), lambda_max=float(lam[j, 1]), vec_min=vecs[j, 0].clone(),
                         vec_max=vecs[j, 1].clone(), residual=float(res[j, 0]), residual_max=float(res[j, 1]),
                         matvecs=matvecs[j] + 2, method=label, eigenvalues=spectra[j], converged=converged[j],
                         hv_min=Hv[j, 0].clone())
               for j in range(k)]
        return out if self.stacked else out[0]

    def _lanczos(self, seeds, **options):
        """:func:`lanczos` on these members; once half of them have finished, the graph is rebuilt
        for the ones still running (a finished member would otherwise cost a product per step)."""
        live = {"rows": torch.arange(self.k), "op": self}

        def matvec(idx, V):
            if 2 * idx.numel() <= live["rows"].numel():
                live["rows"], live["op"] = idx, self.restrict(idx)
            pos = torch.searchsorted(live["rows"], idx)
            full = torch.zeros(live["rows"].numel(), self.n, dtype=self.dtype, device=self.device)
            full[pos] = V
            return live["op"]._vector(full)[pos]

        return lanczos(matvec, self.n, seeds=seeds, dtype=self.dtype, device=self.device, **options)

    def _arpack(self, tol, seed, maxiter, ncv):
        """ARPACK ``eigsh`` at both ends of a single member: ``((λ_min, λ_max), (2, n) vectors, products, converged)``."""
        n = self.n
        if n <= 2:  # ARPACK needs k < n; tiny problems go dense
            ev, evec = torch.linalg.eigh(self.dense())
            return (float(ev[0]), float(ev[-1])), torch.stack([evec[:, 0], evec[:, -1]]), n, True
        op, start = self.to_scipy(), self.products
        v0 = np.random.default_rng(seed).standard_normal(n)
        lams, vecs, converged = [], [], True
        for which in ("SA", "LA"):
            try:
                ev, evec = spla.eigsh(op, k=1, which=which, tol=tol, v0=v0, ncv=ncv or min(n, 40),
                                      maxiter=maxiter or 10 * n)
            except spla.ArpackNoConvergence as exc:
                converged = False
                if len(exc.eigenvalues) == 0:
                    ev, evec = np.array([np.nan]), v0[:, None] / np.linalg.norm(v0)
                else:
                    ev, evec = exc.eigenvalues, exc.eigenvectors
            vec = torch.as_tensor(evec[:, 0], dtype=self.dtype, device=self.device)
            lams.append(float(ev[0]))
            vecs.append(vec / torch.linalg.norm(vec))
        return tuple(lams), torch.stack(vecs), self.products - start, converged


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
    max_basis: int | None = None,
) -> EigResult:
    """``λ_min`` and ``λ_max`` of the Hessian of the mean risk at ``model``'s parameters.

    Shorthand for ``HessianOperator.from_model(model, X, y, loss).extremes(...)``.

    Args:
        model: any ``nn.Module`` with a scalar output per sample.
        X, y: data, shapes (m, d) and (m,); loss: loss name or instance.
        tol: relative accuracy requested from the iterative solver.
        method: ``auto``, ``dense``, ``lanczos`` or ``arpack`` (:meth:`HessianOperator.extremes`).
        seed: seeds the Lanczos start vector.
        maxiter: Lanczos products cap (default 1000) or ARPACK restarts cap (``10 n``).
        ncv: ARPACK basis size (default ``min(n, 40)``); max_basis: Lanczos basis size.

    Raises:
        ValidationError: bad data, model output or ``method``.
    """
    op = HessianOperator.from_model(model, X, y, loss)
    return op.extremes(method=method, tol=tol, seed=seed, dense_max_params=dense_max_params, max_steps=maxiter,
                       max_basis=max_basis, ncv=ncv)


def lanczos(matvec, n: int, *, seeds, which: str = "both", tol: float = 1e-8, max_steps: int = 1000,
            max_basis: int | None = None, check_every: int = 10, dtype=torch.float64, device=None, start=None):
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
        max_basis: basis size ``p`` (default :func:`~resland.tolerances.lanczos_basis`); when it is full the basis is restarted thick (Wu & Simon,
            TRLan): the Ritz vectors of the wanted end(s), ``p/2`` in all, are kept and the
            Krylov space is extended from the last residual. Memory is ``k · (p + 1) · n`` floats
            whatever ``max_steps`` is.
        check_every: Ritz values are checked at every one of the first 40 products, at every
            restart, then every ``check_every`` products.
        start: start vectors (k × n), e.g. a warm start; a row that is zero or not finite falls back
            to its seed.

    Full reorthogonalisation (classical Gram–Schmidt, twice) keeps the basis orthogonal to
    rounding, so there are no ghost eigenvalues. The projected matrix ``T = Qᵀ A Q`` is built from
    the Gram–Schmidt coefficients, so it is tridiagonal before the first restart and
    arrowhead-plus-tridiagonal after; ``A Q = Q T + β q₊ eₚᵀ`` holds throughout, which makes
    ``|β s_last|`` the residual of the Ritz pair ``(θ, Q s)``.

    Returns:
        ``(lam, vecs, matvecs, converged)``: ``lam`` (k × 2) holds ``(λ_min, λ_max)`` Ritz values,
        ``vecs`` (k × 2 × n) unit Ritz vectors, ``matvecs`` and ``converged`` per operator.

    Raises:
        ValidationError: an unknown ``which``, or ``max_steps`` or ``max_basis`` below 1.
    """
    check_choice("which", which, ("smallest", "largest", "both"))
    ends = {"smallest": [0], "largest": [1], "both": [0, 1]}[which]
    k = len(seeds)
    max_steps = check_positive_int("max_steps", max_steps)
    if max_basis is None:
        max_basis = lanczos_basis(k, n, torch.finfo(dtype).bits // 8)
    p = min(max(4, check_positive_int("max_basis", max_basis)), n)
    keep = {"smallest": (p // 2, 0), "largest": (0, p // 2), "both": (p // 4, p // 4)}[which]
    Q = torch.empty(k, p + 1, n, dtype=dtype, device=device)
    T = torch.zeros(k, p, p, dtype=dtype, device=device)
    for j, s in enumerate(seeds):
        q = torch.randn(n, generator=torch.Generator().manual_seed(int(s)), dtype=dtype).to(device)
        if start is not None and bool(torch.isfinite(start[j]).all()) and float(torch.linalg.norm(start[j])) > 0:
            q = start[j].to(dtype)
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
