"""Ensembles: M models of one architecture as one stacked computation.

:class:`Ensemble` holds the flat parameters of ``M`` members as rows of ``Θ`` (``M × n``)
and serves every quantity of :class:`~resland.functional.FlatRisk` for all rows at once
with :func:`torch.vmap`: risks, gradients, HVPs, per-sample Jacobians ``J`` (``M × m × n``)
and dense Hessians. Work is always asked for a subset ``idx`` of rows, so members that
have finished stop costing anything.

The one finder (:func:`resland.critical.find_critical_points`) iterates on ensembles;
:func:`batched_extremes` and :func:`certify_ensemble` certify their rows with batched
Hessian work.

Conventions: mean risk, squared loss ``(p − y)²`` without 1/2, float64.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.func import grad, jacrev, jvp

from . import tolerances as T
from ._checks import ValidationError, check_choice, check_positive_int
from .certificate import Certificate, certify
from .curvature import EigResult, lanczos
from .functional import FlatRisk, flat_parameters
from .linear import LinearFit, NotAttainedWarning, best_linear
from .losses import Loss

class Ensemble:
    """``M`` models of one architecture on one data set, parameters stacked as ``Θ`` (M × n).

    Args:
        models: the members (same architecture: same parameter names and shapes).
        X, y: data; loss: loss name or instance.

    Attributes:
        fr: the :class:`FlatRisk` of the first member (the shared functional view).
        theta: ``Θ``, the members' flat parameters as rows (float64).
        M, n, m: members, parameters per member, samples.
    """

    def __init__(self, models: list[nn.Module], X, y, loss: str | Loss = "squared"):
        if not models:
            raise ValidationError("The 'models' parameter must hold at least one model. Got an empty list.")
        self.fr = FlatRisk(models[0], X, y, loss)
        rows = []
        for i, model in enumerate(models):
            shapes = [p.shape for p in model.parameters()]
            if shapes != self.fr.shapes:
                raise ValidationError(
                    f"The 'models' parameter must hold models of one architecture. Model {i} has parameter "
                    f"shapes {[tuple(s) for s in shapes]}, model 0 has {[tuple(s) for s in self.fr.shapes]}."
                )
            rows.append(flat_parameters(model.parameters()).to(self.fr.dtype))
        self.theta = torch.stack(rows)
        self.M, self.n, self.m = len(models), self.fr.n, self.fr.m
        fr = self.fr

        def predict_one(theta, x):
            return fr.predict(theta, x[None])[0]

        # Per-sample gradients of the prediction: the Jacobian J (m × n) of one member.
        self._jac = torch.vmap(jacrev(predict_one), in_dims=(None, 0))
        self._risk = torch.vmap(fr.risk)
        self._predict = torch.vmap(fr.predict)
        self._grad = torch.vmap(grad(fr.risk))
        self._hvp = torch.vmap(lambda t, v: jvp(grad(fr.risk), (t,), (v,))[1])
        self._hessian = torch.vmap(fr.hessian)

    # All methods take Θ rows (k × n) and return one result per row.
    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        """``R(θ_j)`` for each row, shape (k,)."""
        return self._risk(theta)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """``∇R(θ_j)`` for each row, shape (k, n)."""
        return self._grad(theta)

    def predict(self, theta: torch.Tensor) -> torch.Tensor:
        """Predictions ``f_{θ_j}(x_i)``, shape (k, m)."""
        return self._predict(theta)

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        """``J_j = ∂f_{θ_j}(x_i)/∂θ``, shape (k, m, n)."""
        return torch.vmap(lambda t: self._jac(t, self.fr.X))(theta)

    def hvp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``∇²R(θ_j) v_j`` for each row, shape (k, n)."""
        return self._hvp(theta, v)

    def hvp_at(self, theta: torch.Tensor):
        """``V ↦ (∇²R(θ_j) v_j)_j`` at fixed rows ``theta``, by one reused gradient graph.

        The Hessian of ``Σ_j R(θ_j)`` in ``Θ`` is block diagonal, so one double backward through
        the vmapped risk gives every member's product at once; the graph of ``∇R`` is built once
        and every further product is one backward pass. Every row costs a product, zero or not:
        a caller whose members finish rebuilds the graph for the rest (:func:`_batched_lanczos`).
        """
        with torch.enable_grad():
            t = theta.detach().requires_grad_(True)
            G = torch.autograd.grad(self._risk(t).sum(), t, create_graph=True)[0]

        def product(V: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                return torch.autograd.grad(G, t, grad_outputs=V.detach().to(G), retain_graph=True)[0]
        return product

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """Dense ``∇²R(θ_j)``, shape (k, n, n), symmetrised."""
        return self._hessian(theta)

    def model_at(self, theta: torch.Tensor) -> nn.Module:
        """A copy of the architecture with parameters ``θ`` (one row)."""
        return self.fr.model_at(theta)


#: Batched extremes use dense Hessians up to this many parameters, batched Lanczos above: the
#: dense path costs ≤ 1.2× Lanczos up to here and gives the whole spectrum; at n = 95 batched
#: Lanczos is already 10× faster (benchmarks/bench_dense_threshold.py, docs/performance.md).
BATCHED_DENSE_MAX = 32


def batched_extremes(
    ens: Ensemble,
    theta: torch.Tensor,
    seeds: list[int],
    *,
    tol: float = 1e-8,
    method: str = "auto",
    max_steps: int = 1000,
    max_basis: int = 64,
    check_every: int = 10,
    chunk_size: int = 32,
) -> list[EigResult]:
    """``λ_min`` and ``λ_max`` of ``∇²R(θ_j)`` for every row ``θ_j``, as one batched computation.

    ``dense``: vmapped Hessians and a batched ``eigh``. ``lanczos``: thick-restart Lanczos
    (:func:`~resland.curvature.lanczos`, basis ``max_basis``) on ``chunk_size`` members at a
    time, every step one double backward through a gradient graph shared by the members still
    running; a member stops once both Ritz residual estimates ``|β_j s_j|`` are
    ``≤ tol·max(1, |θ_max|)`` (or the Krylov space is invariant). Start vectors come from
    ``torch.Generator`` seeded with ``seeds[j]``, so a member's result does not depend on the
    batch or the chunking. Every reported residual is recomputed with a fresh HVP;
    ``converged`` is False when ``max_steps`` ran out. Chunks of 32 were measured fastest on
    2 CPU cores (benchmarks/bench_batched_extremes.py).
    """
    check_choice("method", method, ("auto", "dense", "lanczos"))
    chunk_size = check_positive_int("chunk_size", chunk_size)
    k, n = theta.shape
    if len(seeds) != k:
        raise ValidationError(f"The 'seeds' parameter must have one seed per row of theta ({k}). Got {len(seeds)}.")
    if method == "auto":
        method = "dense" if n <= BATCHED_DENSE_MAX else "lanczos"
    if method == "dense":
        evals, evecs = torch.linalg.eigh(ens.hessian(theta))
        lam = torch.stack([evals[:, 0], evals[:, -1]], 1)
        vecs = torch.stack([evecs[:, :, 0], evecs[:, :, -1]], 1)
        matvecs = [n] * k
        converged = [True] * k
        spectra = [e.cpu().numpy() for e in evals]
    else:
        chunks = [_batched_lanczos(ens, theta[s : s + chunk_size], seeds[s : s + chunk_size], tol=tol,
                                   max_steps=max_steps, max_basis=max_basis, check_every=check_every)
                  for s in range(0, k, chunk_size)]  # chunks keep the activations in cache
        lam, vecs = torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])
        matvecs, converged = [m for c in chunks for m in c[2]], [v for c in chunks for v in c[3]]
        spectra = [None] * k
    # Honest residuals: a fresh exact HVP for each of the two vectors of every member.
    Hv = torch.empty_like(vecs)
    for start in range(0, k, chunk_size):
        rows = slice(start, start + chunk_size)
        prod = ens.hvp_at(theta[rows])
        Hv[rows, 0], Hv[rows, 1] = prod(vecs[rows, 0]), prod(vecs[rows, 1])
    res = torch.linalg.norm(Hv - lam[..., None] * vecs, dim=2)
    return [
        EigResult(lambda_min=float(lam[j, 0]), lambda_max=float(lam[j, 1]), vec_min=vecs[j, 0].clone(),
                  vec_max=vecs[j, 1].clone(), residual=float(res[j, 0]), residual_max=float(res[j, 1]),
                  matvecs=matvecs[j] + 2, method=f"{method}-batched", eigenvalues=spectra[j], converged=converged[j],
                  hv_min=Hv[j, 0].clone())
        for j in range(k)
    ]


def _batched_lanczos(ens: Ensemble, theta: torch.Tensor, seeds: list[int], **options):
    """:func:`~resland.curvature.lanczos` on the members ``theta`` with one gradient graph for all.

    Every step is one backward pass through the graph; once half of the members it covers have
    finished, the graph is rebuilt for the ones still running (a finished member would
    otherwise cost a full product per step as a row of zeros).
    """
    graph = {"rows": torch.arange(theta.shape[0]), "hv": ens.hvp_at(theta)}

    def matvec(idx, V):
        if 2 * idx.numel() <= graph["rows"].numel():
            graph["rows"], graph["hv"] = idx, ens.hvp_at(theta[idx])
        pos = torch.searchsorted(graph["rows"], idx)
        full = torch.zeros(graph["rows"].numel(), theta.shape[1], dtype=theta.dtype, device=theta.device)
        full[pos] = V
        return graph["hv"](full)[pos]

    return lanczos(matvec, theta.shape[1], seeds=seeds, dtype=theta.dtype, device=theta.device, **options)


def certify_ensemble(
    ens: Ensemble,
    theta: torch.Tensor,
    seeds: list[int],
    *,
    fit: LinearFit | None = None,
    keep_parameters: bool = False,
    tol: float = T.GRAD_TOL,
) -> list[Certificate]:
    """:func:`~resland.certificate.certify` every row of ``theta``, the Hessian work batched.

    ``R``, ``∇R`` and, for the rows that pass certify's gradient test, the extremes
    (:func:`batched_extremes`) are computed for all rows at once; ``R_lin`` once. Each
    verdict is then decided by :func:`certify` itself, so the rules are the same.
    """
    if fit is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotAttainedWarning)
            fit = best_linear(ens.fr.X, ens.fr.y, ens.fr.loss, bias=getattr(ens.fr.model, "out_bias", True))
    R = ens.risk(theta)
    gnorm = torch.linalg.norm(ens.grad(theta), dim=1)
    critical = torch.tensor([j for j in range(len(R)) if T.is_critical(float(R[j]), float(gnorm[j]), tol)], dtype=torch.long)
    eigs: dict[int, EigResult] = {}
    if critical.numel():
        found = batched_extremes(ens, theta[critical], [seeds[j] for j in critical.tolist()])
        eigs = dict(zip(critical.tolist(), found))
    return [
        certify(ens.model_at(theta[j]), ens.fr.X, ens.fr.y, ens.fr.loss, tol, fit=fit, eig=eigs.get(j), seed=seeds[j],
                keep_parameters=keep_parameters)
        for j in range(theta.shape[0])
    ]
