"""Safran & Shamir (2018): spurious local minima of two-layer ReLU student networks, in closed form.

Inputs ``x ~ N(0, I_k)``; the target ``g(x) = Σ_{j≤k} max(0, v_jᵀx)`` with ``v_j = e_j`` (``V = I_k``); the student
``f_W(x) = Σ_{i≤n} max(0, w_iᵀx)``, ``W`` of shape (n, k). The population risk (mean squared error, no 1/2) is

    F(W) = Σ_{i≠i'} κ(w_i, w_i') + ½Σ_i ‖w_i‖² − 2 Σ_{i,j} κ(w_i, v_j) + Σ_{j≠j'} κ(v_j, v_j') + ½Σ_j ‖v_j‖²,
    κ(a, b) = E[max(0, aᵀx) max(0, bᵀx)] = ‖a‖‖b‖(sin φ + (π − φ) cos φ)/(2π),  φ = ∠(a, b),

(docs/theory.md §10 of the paper notes; ``κ(a, a) = ‖a‖²/2``). ``F`` is smooth except where some ``w_i = 0`` or two
of the vectors ``w_i``, ``v_j`` are parallel; its global minimum is 0, at the rows of ``W`` a permutation of ``V``.
Derivatives are exact (``torch.func`` and ``torch.autograd`` on the closed form); at a non-smooth point
(``StudentTeacher.kink_margin`` ≤ 0, or non-finite derivatives) the point is called ``nondifferentiable``, never
certified.

:func:`certify_student` is :func:`~resland.known.problem.certify_problem` on :class:`StudentTeacher`:
``global_minimum`` (``F ≤ RISK_TOL = 1e-9``, the proved global minimum 0 attained), ``spurious_minimum`` (gradient test
passed, the dense Hessian's smallest eigenvalue above ``lambda_tol`` plus its residual, ``F`` above 0),
``saddle`` (an eigenvalue below ``−lambda_tol``), ``degenerate_saddle``, ``degenerate``, ``not_critical``,
``nondifferentiable`` or ``failed`` (a non-finite risk). The student has no continuous symmetry (no second layer to rescale
against), so a positive definite Hessian is a strict local minimum.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import torch

from .. import tolerances as T
from .._checks import check_positive_int
from .problem import Baseline, Problem, certify_problem, dense_hessian, lbfgs_minimise, newton_polish

__all__ = ["NEAR_GLOBAL", "StudentTeacher", "certify_student", "find_student_minimum", "frequency_cell", "frequency_table",
           "kappa", "wilson",
           "population_risk"]

#: In the frequency study a run that ends at ``F ≤ NEAR_GLOBAL`` is converging onto the global minimum (which sits
#: on the non-smooth set for n > k: a split or switched-off unit) and is counted as reaching it, never as spurious.
NEAR_GLOBAL = 1e-6


def kappa(A: torch.Tensor, B: torch.Tensor, same: bool = False) -> torch.Tensor:
    """``κ(a_i, b_j)`` for the rows of ``A`` and ``B``, shape (len(A), len(B)); ``same=True``: ``B`` is ``A`` and
    the diagonal (``κ(a, a) = ‖a‖²/2``, added by the caller) is left at 0 so that no ``arccos(1)`` is
    differentiated."""
    na, nb = A.norm(dim=1), B.norm(dim=1)
    # a zero row contributes κ = 0; the clamp keeps its cosine finite (the risk is not smooth there)
    c = (A @ B.T) / (na[:, None] * nb[None, :]).clamp(min=1e-300)
    diag = torch.eye(len(A), dtype=torch.bool) if same else None
    if same:
        c = torch.where(diag, torch.zeros_like(c), c)
    c = c.clamp(-1.0, 1.0)
    phi = torch.arccos(c)
    K = na[:, None] * nb[None, :] * (torch.sin(phi) + (math.pi - phi) * c) / (2 * math.pi)
    return torch.where(diag, torch.zeros_like(K), K) if same else K


def population_risk(W: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """``F(W)`` for the student rows ``W`` (n × k, or flat n·k with ``k`` given) against ``V = I_k``.

    >>> float(population_risk(torch.eye(3, dtype=torch.float64)))     # the teacher itself
    0.0
    """
    k = W.shape[-1] if k is None else k
    W = W.reshape(-1, k)
    V = torch.eye(k, dtype=W.dtype)
    own = kappa(W, W, same=True).sum() + 0.5 * (W * W).sum()
    target = kappa(V, V, same=True).sum() + 0.5 * k
    return own - 2 * kappa(W, V).sum() + target


def find_student_minimum(k: int, n: int, seed: int, *, polish: int = 10) -> torch.Tensor:
    """A local minimum of ``F`` from the start ``w_i ~ N(0, I_k/k)`` (seeded, :meth:`StudentTeacher.start`):
    :func:`~resland.known.problem.lbfgs_minimise`, then at most ``polish`` Newton steps on the exact Hessian (the
    finder that wrote the fixture). Returns ``W`` (n × k)."""
    f = lambda x: population_risk(x, k)      # noqa: E731
    w = lbfgs_minimise(f, StudentTeacher(k, n).start(seed))
    if float(f(w)) <= 1e-6:                  # at the global minimum the Hessian is not finite (parallel rows)
        return w.reshape(n, k)
    for _ in range(polish):
        g = torch.func.grad(f)(w)
        if not bool(torch.isfinite(g).all()) or float(g.norm()) < 1e-14:
            break
        H = dense_hessian(f, w)
        if not bool(torch.isfinite(H).all()):
            break
        w = w - torch.linalg.solve(H, g)
    return w.reshape(n, k)


def certify_student(W, tol: float = T.GRAD_TOL) -> dict:
    """The verdict at ``W`` (module docstring; :func:`~resland.known.problem.certify_problem` on
    :class:`StudentTeacher`), with its evidence: ``{k, n, risk, grad_norm, grad_tol, lambda_min, lambda_max, residual,
    lambda_tol, kink_margin, baseline, verdict, reason}``."""
    W = torch.as_tensor(W, dtype=torch.float64)
    n, k = W.shape
    cert = certify_problem(StudentTeacher(k, n), W.reshape(-1), tol).to_dict()
    cert.pop("parameters")
    return {"k": k, "n": n, **cert}


class StudentTeacher(Problem):
    """Safran & Shamir's population risk as a :class:`~resland.known.problem.Problem`: ``θ`` the flat student
    ``W`` (n·k), baseline the proved global minimum 0 (the rows of ``W`` a permutation of the teacher's), smooth
    except where a row is 0 or two of the rows ``w_i``, ``v_j`` are parallel (``kink_margin``: the smallest row
    norm or ``sin ∠`` of a pair), symmetric under permutations of the student's units (a finite group: a positive
    definite Hessian is a strict local minimum)."""

    symmetries = ("permutations of the n student units",)
    continuous = False

    def __init__(self, k: int, n: int):
        check_positive_int("k", k)
        check_positive_int("n", n)
        self.k, self.n_units = k, n
        self.name, self.n = "safran-shamir-student", n * k
        self.baseline = Baseline(0.0, "global_minimum", "a student whose rows permute the teacher's (F = 0)")

    def config(self) -> dict:
        return {"problem": self.name, "k": self.k, "n_units": self.n_units}

    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        return population_risk(theta, self.k)

    def start(self, seed: int) -> torch.Tensor:
        """``w_i ~ N(0, I_k/k)``, seeded (``torch.Generator().manual_seed(seed)``), flat."""
        gen = torch.Generator().manual_seed(seed)
        return (torch.randn(self.n_units, self.k, generator=gen, dtype=torch.float64) / math.sqrt(self.k)).reshape(-1)

    def kink_margin(self, theta: torch.Tensor) -> float:
        W = torch.as_tensor(theta, dtype=torch.float64).reshape(self.n_units, self.k)
        U = torch.cat([W, torch.eye(self.k, dtype=W.dtype)])
        norms = U.norm(dim=1)
        if float(norms[: self.n_units].min()) == 0:
            return 0.0
        c = (U @ U.T) / (norms[:, None] * norms[None, :])
        c = c[: self.n_units].clone()
        c[torch.arange(self.n_units), torch.arange(self.n_units)] = 0.0
        sin = torch.sqrt((1 - c * c).clamp(min=0))
        return float(min(norms[: self.n_units].min(), sin.min()))


def frequency_cell(k: int, n: int, seeds, *, steps: int = 2000, polish: int = 6) -> list[dict]:
    """Where random starts end, for one ``(k, n)`` cell: the start ``w_i ~ N(0, I_k/k)`` of each seed, Adam on all
    starts at once (learning rate 2e-2, cosine-annealed to 1e-5 over ``steps``; a start whose derivatives turn
    non-finite, at a kink, keeps its last finite iterate), then at most ``polish`` Newton steps on the exact Hessian
    per start (while it is positive definite), then :func:`certify_student`. Returns one row per seed:
    ``{k, n, seed, verdict, risk, grad_norm, lambda_min}``."""
    seeds = list(seeds)
    problem = StudentTeacher(k, n)
    x = torch.stack([problem.start(s) for s in seeds]).requires_grad_(True)
    batch = torch.func.vmap(problem.risk)
    opt = torch.optim.Adam([x], lr=2e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)
    last = x.detach().clone()
    for _ in range(steps):
        opt.zero_grad()
        batch(x).sum().backward()
        bad = ~torch.isfinite(x.grad).all(dim=1)
        x.grad[bad] = 0.0
        opt.step()
        sched.step()
        with torch.no_grad():
            good = torch.isfinite(x).all(dim=1) & ~bad
            last[good] = x[good]
            x[~good] = last[~good]
    rows = []
    for seed, w in zip(seeds, last):
        w = newton_polish(problem, w, polish, tol=1e-14, near=NEAR_GLOBAL)
        cert = certify_student(w.reshape(n, k))
        end = ("spurious" if cert["verdict"] == "spurious_minimum" else
               "global" if cert["verdict"] == "global_minimum" or cert["risk"] <= NEAR_GLOBAL else "other")
        rows.append({"k": k, "n": n, "seed": seed, "verdict": cert["verdict"], "end": end, "risk": cert["risk"],
                     "grad_norm": cert["grad_norm"], "lambda_min": cert["lambda_min"]})
    return rows


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial share ``hits / total``."""
    if total == 0:
        return (math.nan, math.nan)
    p = hits / total
    den = 1 + z * z / total
    mid = (p + z * z / (2 * total)) / den
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def _cell(args) -> dict:
    k, n, starts, steps = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = frequency_cell(k, n, range(starts), steps=steps)
    ends = Counter(r["end"] for r in rows)
    hits = ends.get("spurious", 0)
    lo, hi = wilson(hits, starts)
    return {"k": k, "n": n, "starts": starts, "ends": dict(ends), "verdicts": dict(Counter(r["verdict"] for r in rows)),
            "spurious_share": hits / starts, "wilson95": [lo, hi], "seconds": round(time.perf_counter() - t0, 1),
            "spurious_risks": sorted({round(r["risk"], 6) for r in rows if r["end"] == "spurious"})}


def frequency_table(ks, extras=(0, 1), starts: int = 200, *, steps: int = 2000, workers: int = 1,
                    progress=lambda *_: None) -> list[dict]:
    """:func:`frequency_cell` for every ``k`` in ``ks`` and ``n = k + e`` for ``e`` in ``extras``, seeds
    ``0…starts−1``, in ``workers`` processes. One row per cell: ``{k, n, starts, ends, verdicts, spurious_share,
    wilson95, seconds, spurious_risks}``; ``ends`` counts ``spurious`` (certified), ``global`` (verdict
    ``global_minimum``, or ``F ≤ NEAR_GLOBAL``: converging onto the global minimum's non-smooth set, where no Hessian
    exists) and ``other`` (neither: not certified, counted against the spurious share)."""
    cells = [(k, k + e, starts, steps) for k in ks for e in extras]
    if workers <= 1:
        out = []
        for c in cells:
            out.append(_cell(c))
            progress(f"SS18 k = {c[0]}, n = {c[1]}")
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_cell, c) for c in cells]
        out = []
        for c, fut in zip(cells, futures):
            out.append(fut.result())
            progress(f"SS18 k = {c[0]}, n = {c[1]}")
    return out


#: The student sizes of Safran & Shamir's claim (n = k), and the committed fixture of certified spurious minima.
FIXTURE_KS = (6, 8, 10, 12, 16, 20)
FIXTURE = "fixtures/safran_shamir_minima.json"


def write_fixture(path: str = FIXTURE, ks=FIXTURE_KS, max_seeds: int = 2000) -> list[dict]:
    """Search seeds ``0, 1, …`` (at most ``max_seeds``) for a certified spurious minimum at ``n = k`` for each ``k``,
    and write them as JSON: ``{"k", "n", "W", "risk", "verdict", "lambda_min", "grad_norm", "seed"}`` per entry
    (``W``: n rows of k numbers, the student's weights with ``d = k`` and ``v_j = e_j``)."""
    import json
    from pathlib import Path

    entries = []
    for k in ks:
        for seed in range(max_seeds):
            W = find_student_minimum(k, k, seed)
            cert = certify_student(W)
            if cert["verdict"] == "spurious_minimum":
                entries.append({"k": k, "n": k, "seed": seed, "W": W.tolist(), "risk": cert["risk"],
                                "verdict": cert["verdict"], "lambda_min": cert["lambda_min"],
                                "grad_norm": cert["grad_norm"]})
                break
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"paper": "safran-shamir-2018", "start": "w_i ~ N(0, I_k/k), seeded",
                                      "finder": "L-BFGS (strong Wolfe) then Newton on the exact Hessian",
                                      "minima": entries}, indent=1))
    return entries


if __name__ == "__main__":   # python -m resland.known.safran_shamir [PATH]
    import sys

    for e in write_fixture(*sys.argv[1:2]):
        print(f"k = n = {e['k']}: seed {e['seed']}, F = {e['risk']:.6g}, λ_min = {e['lambda_min']:.4g}")
