"""Safran & Shamir (2018): spurious local minima of two-layer ReLU student networks, in closed form.

Inputs ``x ~ N(0, I_k)``; the target ``g(x) = Σ_{j≤k} max(0, v_jᵀx)`` with ``v_j = e_j`` (``V = I_k``); the student
``f_W(x) = Σ_{i≤n} max(0, w_iᵀx)``, ``W`` of shape (n, k). The population risk (mean squared error, no 1/2) is

    F(W) = Σ_{i≠i'} κ(w_i, w_i') + ½Σ_i ‖w_i‖² − 2 Σ_{i,j} κ(w_i, v_j) + Σ_{j≠j'} κ(v_j, v_j') + ½Σ_j ‖v_j‖²,
    κ(a, b) = E[max(0, aᵀx) max(0, bᵀx)] = ‖a‖‖b‖(sin φ + (π − φ) cos φ)/(2π),  φ = ∠(a, b),

(docs/theory.md §10 of the paper notes; ``κ(a, a) = ‖a‖²/2``). ``F`` is smooth except where some ``w_i = 0`` or two
of the vectors ``w_i``, ``v_j`` are parallel; its global minimum is 0, at the rows of ``W`` a permutation of ``V``.
Derivatives are exact (``torch.func`` on the closed form); at a non-smooth point they come out non-finite and the
point is called ``nondifferentiable``, never certified.

:func:`certify_student` decides, at stated tolerances: ``spurious_minimum`` (gradient test passed, the dense
Hessian's smallest eigenvalue above ``lambda_tol`` plus its residual, and ``F > GLOBAL_TOL``: above the known global
minimum 0), ``global_minimum`` (``F ≤ GLOBAL_TOL``), ``saddle`` (an eigenvalue below ``−lambda_tol``), ``degenerate``,
``not_critical``, ``nondifferentiable`` (a row at 0 or two rows parallel: non-finite derivatives) or ``failed``
(a non-finite risk). The student has no continuous symmetry (no second layer to rescale
against), so a positive definite Hessian is a strict local minimum.
"""

from __future__ import annotations

import math

import torch

from .. import tolerances as T

__all__ = ["GLOBAL_TOL", "certify_student", "find_student_minimum", "kappa", "population_risk"]

#: A population risk at or below this is the global minimum 0 (to rounding of the closed form).
GLOBAL_TOL = 1e-10


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
    """A local minimum of ``F`` from the start ``w_i ~ N(0, I_k/k)`` (seeded): L-BFGS with a strong-Wolfe line search
    to a gradient of 1e-12, then at most ``polish`` Newton steps on the exact Hessian. Returns ``W`` (n × k)."""
    gen = torch.Generator().manual_seed(seed)
    W = (torch.randn(n, k, generator=gen, dtype=torch.float64) / math.sqrt(k)).requires_grad_(True)
    opt = torch.optim.LBFGS([W], lr=1, max_iter=3000, tolerance_grad=1e-12, tolerance_change=0, history_size=50,
                            line_search_fn="strong_wolfe")

    best = [math.inf, W.detach().clone()]

    def closure():
        opt.zero_grad()
        loss = population_risk(W)
        loss.backward()
        value = float(loss.detach())
        if math.isfinite(value) and bool(torch.isfinite(W.grad).all()) and value < best[0]:
            best[0], best[1] = value, W.detach().clone()
        return loss

    opt.step(closure)
    # a run that reaches parallel rows (the global minimum's kink) gets a non-finite gradient there: keep its
    # lowest finite iterate
    w = (W.detach() if math.isfinite(float(population_risk(W.detach()))) else best[1]).reshape(-1)
    f = lambda x: population_risk(x, k)      # noqa: E731
    if float(f(w)) <= 1e-6:                  # at the global minimum the Hessian is not finite (parallel rows)
        return w.reshape(n, k)
    for _ in range(polish):
        g = torch.func.grad(f)(w)
        if not bool(torch.isfinite(g).all()) or float(g.norm()) < 1e-14:
            break
        H = torch.func.hessian(f)(w)
        if not bool(torch.isfinite(H).all()):
            break
        w = w - torch.linalg.solve(H, g)
    return w.reshape(n, k)


def certify_student(W, tol: float = T.GRAD_TOL) -> dict:
    """The verdict at ``W`` (module docstring), with its evidence: ``{k, n, risk, grad_norm, grad_tol, lambda_min,
    lambda_max, residual, lambda_tol, verdict}``."""
    W = torch.as_tensor(W, dtype=torch.float64)
    n, k = W.shape
    w = W.reshape(-1)
    f = lambda x: population_risk(x, k)      # noqa: E731
    R = float(f(w))
    out = {"k": k, "n": n, "risk": R}
    if not math.isfinite(R):
        return dict(out, verdict="failed", grad_norm=None, lambda_min=None)
    if R <= GLOBAL_TOL:
        return dict(out, verdict="global_minimum", grad_norm=None, lambda_min=None)
    g = torch.func.grad(f)(w)
    H = torch.func.hessian(f)(w)
    if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(H).all())):
        return dict(out, verdict="nondifferentiable", grad_norm=None, lambda_min=None)
    gn, gtol = float(g.norm()), T.grad_tol(R, tol)
    lam, Q = torch.linalg.eigh(0.5 * (H + H.T))
    residual = float(torch.linalg.norm(H @ Q[:, 0] - lam[0] * Q[:, 0]))
    lam_tol = 1e-8 * max(1.0, float(lam.abs().max()))
    out.update(grad_norm=gn, grad_tol=gtol, lambda_min=float(lam[0]), lambda_max=float(lam[-1]), residual=residual,
               lambda_tol=lam_tol)
    if gn > gtol:
        verdict = "not_critical"
    elif float(lam[0]) - residual > lam_tol:
        verdict = "spurious_minimum"
    elif float(lam[0]) < -lam_tol:
        verdict = "saddle"
    else:
        verdict = "degenerate"
    return dict(out, verdict=verdict)


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
