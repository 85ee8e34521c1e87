"""Ensembles: M models of one architecture as one stacked computation.

:class:`Ensemble` holds the flat parameters of ``M`` members as rows of ``Θ`` (``M × n``)
and serves every quantity of :class:`~resland.functional.FlatRisk` for all rows at once
with :func:`torch.vmap`: risks, gradients, HVPs, per-sample Jacobians ``J`` (``M × m × n``)
and dense Hessians. Work is always asked for a subset ``idx`` of rows, so members that
have finished stop costing anything.

:func:`find_critical_points` runs one of two Levenberg–Marquardt methods on every member:

* ``kind="minimum"``: generalised Gauss–Newton LM on the risk. With ``e_i = ℓ'_i/m`` and
  ``D_i = ℓ''_i/m`` (so ``∇R = Jᵀe`` and the GGN matrix is ``G = JᵀDJ``), the step is
  ``s = −(G + μI)⁻¹∇R``, solved in the smaller of the two dimensions (``m × m`` through
  ``Ĵ = D^{1/2}J`` when ``m ≤ n``) by Cholesky. Fast to zero-residual (interpolating)
  minima, where ``H = G``; linear elsewhere, so models with at most ``newton_max_params``
  parameters switch to the exact Hessian (``s = −(H + μI)⁻¹∇R``) once ``‖∇R‖`` is small.
* ``kind="any"``: LM on ``∇R = 0`` with the dense Hessian, ``s = −(H² + μI)⁻¹H∇R``; it
  reaches saddles as well as minima (dense, so ``n ≤ DENSE_MAX_PARAMS``).

``μ`` adapts per member from the ratio ``ρ`` of actual to predicted decrease (of ``R``, or
of ``½‖∇R‖²`` for ``any``). A member is ``converged`` when ``‖∇R‖ ≤ tol·max(1, |R₀|)`` and
the step with ``μ = ‖∇R‖`` (a distance estimate) is ``≤ xtol·(1 + ‖θ‖)``; it stops as
``diverging`` past ``max_norm``, ``nan`` on a non-finite risk, ``stalled`` when ``μ`` exceeds
1e16, else ``max_iter``. ``batched=False`` runs the identical iteration one member at a time:
the reference the batched path is tested against.

Conventions: mean risk, squared loss ``(p − y)²`` without 1/2, float64.
"""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn
from torch.func import grad, jacrev, jvp

from ._checks import ValidationError, check_choice, check_positive_float, check_positive_int
from .certificate import Certificate, certify
from .critical import CriticalPoint
from .curvature import DENSE_MAX_PARAMS, EigResult, lanczos
from .functional import FlatRisk, flat_parameters
from .linear import LinearFit, NotAttainedWarning, best_linear
from .losses import Loss

#: μ beyond which a member is declared ``stalled``.
MU_MAX = 1e16
#: ``kind="minimum"`` switches from the GGN to the exact Hessian once ``‖∇R‖ ≤ newton_switch·scale``,
#: for models with at most ``newton_max_params`` parameters (the Hessian is then cheap).
newton_switch = 1e-3
newton_max_params = 500


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


def find_critical_points(
    ens: Ensemble,
    kind: str = "minimum",
    tol: float = 1e-10,
    max_iter: int = 200,
    *,
    xtol: float = 1e-6,
    max_norm: float = 1e6,
    batched: bool = True,
) -> list[CriticalPoint]:
    """Run the LM method of ``kind`` on every member (see the module docstring).

    Args:
        ens: the ensemble; its rows are the starting points (left unchanged).
        kind: ``minimum`` (GGN-LM on R) or ``any`` (LM on ∇R = 0, dense Hessian).
        tol: gradient tolerance relative to ``max(1, |R(θ_start)|)``.
        max_iter: iterations per member.
        xtol: relative cap on the distance estimate (the step with ``μ = ‖∇R‖``).
        max_norm: ``‖θ‖`` beyond which a member is ``diverging``.
        batched: all active members in one vmapped computation (True) or one at a time (False).

    Returns:
        One :class:`~resland.critical.CriticalPoint` per member, in order; ``method`` is
        ``ggn-lm`` or ``lm``, ``seconds`` the wall time of the whole ensemble (batched) or of
        the member (sequential).
    """
    check_choice("kind", kind, ("minimum", "any"))
    tol = check_positive_float("tol", tol)
    max_iter = check_positive_int("max_iter", max_iter)
    if kind == "any" and ens.n > DENSE_MAX_PARAMS:
        raise ValidationError(
            f"The 'kind' parameter 'any' needs a dense Hessian: at most {DENSE_MAX_PARAMS} parameters. "
            f"Got {ens.n}; use kind='minimum'."
        )
    if batched:
        return _run(ens, torch.arange(ens.M), kind, tol, max_iter, xtol, max_norm)
    out = []
    for j in range(ens.M):
        out += _run(ens, torch.tensor([j]), kind, tol, max_iter, xtol, max_norm)
    return out


def _run(ens: Ensemble, members: torch.Tensor, kind, tol, max_iter, xtol, max_norm) -> list[CriticalPoint]:
    start = time.perf_counter()
    k = len(members)
    theta = ens.theta[members].clone()
    R = ens.risk(theta)
    scale = torch.clamp(torch.where(torch.isfinite(R), R.abs(), 1.0), min=1.0)
    gtol = tol * scale
    mu = torch.full((k,), float("nan"), dtype=theta.dtype)
    status = ["max_iter"] * k
    message = [f"stopped after max_iter={max_iter} iterations"] * k
    iters = torch.zeros(k, dtype=torch.long)
    dist = torch.full((k,), float("inf"), dtype=theta.dtype)
    gnorm = torch.full((k,), float("inf"), dtype=theta.dtype)
    active = torch.ones(k, dtype=torch.bool)
    step = _ggn_step if kind == "minimum" else _lm_any_step
    for _ in range(max_iter):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        th = theta[idx]
        out = step(ens, th, mu[idx], scale[idx], gtol[idx])
        R[idx], gnorm[idx], dist[idx] = out["risk"], out["grad_norm"], out["dist"]
        tnorm = torch.linalg.norm(th, dim=1)
        for a, j in enumerate(idx.tolist()):
            if not (torch.isfinite(out["risk"][a]) and torch.isfinite(out["grad_norm"][a])):
                status[j], message[j] = "nan", "the risk or its gradient became non-finite"
            elif out["grad_norm"][a] <= gtol[j] and out["dist"][a] <= xtol * (1 + tnorm[a]):
                status[j] = "converged"
                message[j] = (f"‖∇R‖ = {float(out['grad_norm'][a]):.3e} ≤ {float(gtol[j]):.3e} and LM step "
                              f"{float(out['dist'][a]):.3e} ≤ xtol·(1+‖θ‖)")
            elif tnorm[a] > max_norm:
                status[j], message[j] = "diverging", f"‖θ‖ = {float(tnorm[a]):.4g} passed max_norm = {max_norm:g}"
            elif out["mu"][a] > MU_MAX:
                status[j], message[j] = "stalled", "μ passed 1e16: no step lowers the merit function"
            else:
                continue
            active[j] = False
        live = active[idx]
        if not live.any():
            break
        # Trial steps for the members still running.
        sub, th_l = idx[live], th[live]
        trial = th_l + out["step"][live]
        actual = out["merit"][live] - out["merit_at"](trial)
        rho = actual / out["predicted"][live]
        accept = torch.isfinite(rho) & (rho > 1e-4)
        theta[sub] = torch.where(accept[:, None], trial, th_l)
        m_l = out["mu"][live]
        mu[sub] = torch.where(accept & (rho > 0.75), m_l / 3, torch.where(accept & (rho > 0.25), m_l, m_l * 4))
        iters[sub] += 1
    seconds = time.perf_counter() - start
    tnorms = torch.linalg.norm(theta, dim=1)
    return [
        CriticalPoint(
            model=ens.model_at(theta[a]), risk=float(R[a]), grad_norm=float(gnorm[a]),
            converged=status[a] == "converged", status=status[a], iterations=int(iters[a]), seconds=seconds,
            kind=kind, grad_tol=float(gtol[a]), scale=float(scale[a]), newton_step=float(dist[a]),
            param_norm=float(tnorms[a]), descent_iterations=0, method="ggn-lm" if kind == "minimum" else "lm",
            message=message[a],
        )
        for a in range(k)
    ]


def _cholesky_solve(A: torch.Tensor, b: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Solve ``(A + μI) x = b`` for SPD-after-shift ``A`` (batched); raise μ where Cholesky fails."""
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    floor = 1e-14 * torch.clamp(torch.diagonal(A, dim1=-2, dim2=-1).abs().amax(-1), min=1e-300)
    mu = torch.maximum(mu, floor)
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(A + mu[:, None, None] * eye)
        if not bool((info > 0).any()):
            break
        mu = torch.where(info > 0, mu * 100, mu)
    # Batched LU solves misbehave in some MKL builds; Cholesky is what we need anyway.
    return torch.cholesky_solve(b[..., None], L)[..., 0]


def _ggn_step(ens: Ensemble, th: torch.Tensor, mu: torch.Tensor, scale: torch.Tensor, gtol: torch.Tensor) -> dict:
    """GGN-LM quantities at rows ``th``: gradient, step, predicted decrease of R."""
    fr = ens.fr
    J = ens.jacobian(th)                                  # (k, m, n)
    p = ens.predict(th)
    e = fr.loss.d1(p, fr.y) / ens.m                       # ∇R = Jᵀe
    D = fr.loss.d2(p, fr.y) / ens.m                       # G = JᵀDJ
    R = fr.loss.value(p, fr.y).mean(-1)
    g = torch.einsum("kmn,km->kn", J, e)
    gnorm = torch.linalg.norm(g, dim=1)
    sqD = torch.sqrt(torch.clamp(D, min=1e-300))
    Jh = sqD[..., None] * J                               # Ĵ = D^{1/2} J
    mu = torch.where(torch.isnan(mu), 1e-3 * (Jh**2).sum((1, 2)) / ens.n + 1e-12, mu)
    if ens.m <= ens.n:
        K = Jh @ Jh.transpose(1, 2)                       # ĴĴᵀ (k, m, m)
        ehat = e / sqD

        def solve(shift, rows=slice(None)):
            return -torch.einsum("kmn,km->kn", Jh[rows], _cholesky_solve(K[rows], ehat[rows], shift))
    else:
        K = Jh.transpose(1, 2) @ Jh                       # ĴᵀĴ (k, n, n)

        def solve(shift, rows=slice(None)):
            return -_cholesky_solve(K[rows], g[rows], shift)
    s = solve(mu)
    # The distance estimate (step with μ = ‖∇R‖) matters only where the gradient test passes.
    test = gnorm <= gtol
    dist = torch.full_like(gnorm, float("inf"))
    if bool(test.any()):
        dist[test] = torch.linalg.norm(solve(gnorm[test], test), dim=1)
    Js = torch.einsum("kmn,kn->km", Jh, s)
    predicted = -((g * s).sum(1) + 0.5 * (Js**2).sum(1))
    # Exact-Hessian LM near the end for small models: GGN alone is only linear at minima
    # with non-zero residuals. (H + μI must be PD: Cholesky raises μ where it is not.)
    near = gnorm <= newton_switch * scale
    if ens.n <= newton_max_params and bool(near.any()):
        H = ens.hessian(th[near])
        s[near] = -_cholesky_solve(H, g[near], mu[near])
        dist[near] = torch.where(test[near], torch.linalg.norm(_cholesky_solve(H, g[near], gnorm[near]), dim=1),
                                 float("inf"))
        predicted[near] = -((g[near] * s[near]).sum(1) + 0.5 * torch.einsum("ki,kij,kj->k", s[near], H, s[near]))
    return {"risk": R, "grad_norm": gnorm, "dist": dist, "step": s, "mu": mu, "merit": R,
            "predicted": predicted, "merit_at": ens.risk}


def _lm_any_step(ens: Ensemble, th: torch.Tensor, mu: torch.Tensor, scale: torch.Tensor, gtol: torch.Tensor) -> dict:
    """LM on ∇R = 0 at rows ``th``: merit ½‖∇R‖², step ``−(H² + μI)⁻¹H∇R``."""
    R = ens.risk(th)
    g = ens.grad(th)
    H = ens.hessian(th)
    gnorm = torch.linalg.norm(g, dim=1)
    H2 = H @ H
    Hg = torch.einsum("kij,kj->ki", H, g)
    mu = torch.where(torch.isnan(mu), 1e-3 * torch.diagonal(H2, dim1=1, dim2=2).amax(1) + 1e-12, mu)
    s = -_cholesky_solve(H2, Hg, mu)
    test = gnorm <= gtol
    dist = torch.full_like(gnorm, float("inf"))
    if bool(test.any()):
        dist[test] = torch.linalg.norm(_cholesky_solve(H2[test], Hg[test], gnorm[test]), dim=1)
    r_lin = g + torch.einsum("kij,kj->ki", H, s)
    merit = 0.5 * gnorm**2
    predicted = merit - 0.5 * (r_lin**2).sum(1)
    return {"risk": R, "grad_norm": gnorm, "dist": dist, "step": s, "mu": mu, "merit": merit,
            "predicted": predicted, "merit_at": lambda t: 0.5 * (ens.grad(t) ** 2).sum(1)}


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
    critical = torch.nonzero(torch.isfinite(R) & (gnorm <= 1e-8 * torch.clamp(R.abs(), min=1.0))).flatten()
    eigs: dict[int, EigResult] = {}
    if critical.numel():
        found = batched_extremes(ens, theta[critical], [seeds[j] for j in critical.tolist()])
        eigs = dict(zip(critical.tolist(), found))
    return [
        certify(ens.model_at(theta[j]), ens.fr.X, ens.fr.y, ens.fr.loss, fit=fit, eig=eigs.get(j), seed=seeds[j],
                keep_parameters=keep_parameters)
        for j in range(theta.shape[0])
    ]
