"""``k`` outputs: ``R_lin = inf_{W, w0} (1/m) Σ ℓ(W x_i + w0; y_i)``, ``W ∈ R^{k×d}`` (docs/theory.md §10), certified.

* Squared and pseudo-Huber losses sum over the outputs, so the infimum splits into one scalar
  problem per output (:func:`~resland.linear.scalar.fit_scalar`, each certified); the interval is
  the sum of theirs, its ends summed exactly and rounded outward.
* Cross-entropy (multinomial logistic regression, ``k`` classes, labels ``0..k−1``):
  * separable classes (the Newton fit below, or else a linear program, gives ``Z`` with every
    margin ``a_iᵀ(z_{y_i} − z_j) > 0``, ``j ≠ y_i``, checked in exact integer arithmetic):
    ``R_lin = 0``, not attained;
  * otherwise damped Newton on the logits of classes ``0..k−2`` (class ``k−1``'s column fixed at
    0: softmax is shift-invariant) on unit-norm columns;
  * ``risk_upper``: the risk of the fit with ``AZ`` computed exactly (integers) and the losses in
    50-digit mpmath, rounded up; ``risk_lower``: the Fenchel dual bound ``−(1/m) Σ_i ℓ*(Λ_i; y_i)``
    with ``ℓ*(σ; y) = Σ_j q_j log q_j`` on ``q = σ + e_y`` in the simplex, at ``Λ = softmax(AZ) −
    onehot(y)`` whose first ``k−1`` columns are projected exactly onto ``null(Aᵀ)`` (sympy, as
    for one output) and whose last column is minus their sum (so ``AᵀΛ = 0`` and each row sums
    to 0, exactly); rows whose ``q`` leaves the simplex are set to ``Λ_i = 0`` and the rest
    projected again. Above ``EXACT_MAX_WORK`` the lower end is the trivial 0.

The fit's ``coef`` is ``W`` (k, d) and ``intercept`` ``w0`` (k,); for the cross-entropy in the gauge
whose logits sum to 0 over the classes (any shift gives the same risk).
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse
import torch

from .. import tolerances as T
from .._checks import ValidationError, check_data
from ..losses import Loss, get_loss
from .scalar import (MP_DPS, DUAL_ROUNDS, LinearFit, NotAttainedWarning, dyadic, mp_dyadic, project_rational, numeric_rank,
                     round_down, round_up, damped_newton, fit_scalar)


def fit_matrix(X, y, loss: str | Loss = "squared", bias: bool = True, *, max_iter: int = 200) -> LinearFit:
    """Best linear predictor with ``k`` outputs (module docstring); see :func:`resland.linear.best_linear`."""
    loss = get_loss(loss)
    Xt, yt = check_data(X, y)
    yt = loss.prepare_targets(yt)
    if not loss.coupled:
        if yt.ndim != 2:
            raise ValidationError(f"The 'y' parameter must have shape (m, k) for k outputs. Got {tuple(yt.shape)}.")
        return _separable_sum([fit_scalar(Xt, yt[:, j], loss, bias, max_iter=max_iter) for j in range(yt.shape[1])])
    return _multinomial(Xt.numpy(), yt.numpy().astype(np.int64), bias, max_iter)


def _separable_sum(fits: list[LinearFit]) -> LinearFit:
    """The fits of the ``k`` outputs as one: risks and interval ends summed (ends rounded outward)."""
    with mpmath.workdps(MP_DPS):
        lower = round_down(mpmath.fsum(mpmath.mpf(f.risk_lower) for f in fits))
        upper = round_up(mpmath.fsum(mpmath.mpf(f.risk_upper) for f in fits))
    attained = all(f.attained for f in fits)
    bounds = {f.bound for f in fits}
    bound = next(b for b in ("trivial", "lstsq-perturbation", "separable", "exact-dual") if b in bounds | {"exact-dual"})
    why = "; ".join(f"output {j}: {f.why_wide}" for j, f in enumerate(fits) if f.why_wide)
    return LinearFit(
        risk=math.fsum(f.risk for f in fits),
        coef=np.stack([f.coef for f in fits]) if attained else None,
        intercept=np.array([f.intercept for f in fits]) if attained else None,
        attained=attained, grad_norm=math.hypot(*(f.grad_norm for f in fits)),
        iterations=max(f.iterations for f in fits), method=fits[0].method, risk_lower=lower, risk_upper=upper,
        bound=bound, grad_scale=math.hypot(*(f.grad_scale for f in fits)), rank=fits[0].rank, why_wide=why)


# ----------------------------------------------------------------------------- cross-entropy
def _multinomial(X: np.ndarray, y: np.ndarray, bias: bool, max_iter: int) -> LinearFit:
    m = len(y)
    A = np.hstack([X, np.ones((m, 1))]) if bias else X
    k = int(y.max()) + 1
    missing = sorted(set(range(k)) - set(y.tolist()))
    rank = numeric_rank(A)
    if missing:
        warnings.warn(f"classes {missing} have no sample: their logits fall without bound and the infimum is not "
                      "attained", NotAttainedWarning, stacklevel=3)
    iterations, Z = _newton(A, y, k, max_iter)
    if _separates(A, y, Z) or _separating(A, y, k) is not None:     # the fit itself, else a linear program
        warnings.warn("the classes are linearly separable: the cross-entropy linear risk has infimum 0, not attained",
                      NotAttainedWarning, stacklevel=3)
        return LinearFit(0.0, None, None, False, 0.0, 0, "separable", 0.0, 0.0, "separable", rank=rank)
    recedes = _recession(A, y, k)
    if recedes:
        warnings.warn("the classes are quasi-separable: the cross-entropy linear risk keeps falling along a direction "
                      "that separates all but the points on its boundary; the infimum is not attained",
                      NotAttainedWarning, stacklevel=3)
    return _certify(A, y, k, Z, bias, iterations, rank, attained_possible=not (missing or recedes))


def _margins(A: np.ndarray, y: np.ndarray, k: int) -> scipy.sparse.csr_matrix:
    """The sparse map ``vec(Z) ↦ (a_iᵀ(z_{y_i} − z_j))`` over the pairs ``i``, ``j ≠ y_i``."""
    m, q = A.shape
    pairs = [(i, j) for j in range(k) for i in np.flatnonzero(y != j)]
    i, j = (np.array(v, dtype=np.int64) for v in zip(*pairs)) if pairs else (np.zeros(0, np.int64),) * 2
    r = np.repeat(np.arange(len(pairs)), 2 * q)
    c = np.concatenate([y[i][:, None] * q + np.arange(q), j[:, None] * q + np.arange(q)], axis=1).reshape(-1)
    v = np.concatenate([A[i], -A[i]], axis=1).reshape(-1)
    return scipy.sparse.csr_matrix((v, (r, c)), shape=(len(pairs), k * q))


def _exact_signs(A: np.ndarray, y: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``sign(a_iᵀ(z_{y_i} − z_j))`` for every ``j`` (m × k; the column ``y_i`` is 0), in exact integers."""
    P, _ = _exact_logits(A, Z)
    own = P[np.arange(len(y)), y]
    return np.sign((own[:, None] - P).astype(float))


def _separating(A: np.ndarray, y: np.ndarray, k: int) -> np.ndarray | None:
    """``Z`` ((d+1) × k) with ``a_iᵀ(z_{y_i} − z_j) > 0`` for every ``i`` and ``j ≠ y_i`` (checked
    exactly), or None."""
    B = _margins(A, y, k)
    if B.shape[0] == 0:
        return None
    res = scipy.optimize.linprog(np.zeros(B.shape[1]), A_ub=-B, b_ub=-np.ones(B.shape[0]), bounds=(None, None),
                                 method="highs")
    if res.status != 0:
        return None
    Z = np.asarray(res.x, dtype=np.float64).reshape(k, -1).T
    return Z if _separates(A, y, Z) else None


def _separates(A: np.ndarray, y: np.ndarray, Z: np.ndarray) -> bool:
    """Every margin ``a_iᵀ(z_{y_i} − z_j)``, ``j ≠ y_i``, is > 0 (exact integer arithmetic)."""
    sg = _exact_signs(A, y, Z)
    sg[np.arange(len(y)), y] = 1
    return bool((sg > 0).all())


def _recession(A: np.ndarray, y: np.ndarray, k: int) -> bool:
    """Is there ``D`` with every margin ``a_iᵀ(d_{y_i} − d_j) ≥ 0`` and one > 0 (checked exactly)? Then
    the risk keeps falling along ``D`` and its infimum is not attained (quasi-separable classes)."""
    B = _margins(A, y, k)
    if B.shape[0] == 0:
        return False
    res = scipy.optimize.linprog(-np.asarray(B.sum(axis=0)).ravel(), A_ub=-B, b_ub=np.zeros(B.shape[0]),
                                 bounds=(-1, 1), method="highs")
    if res.status != 0 or -res.fun <= 1e-9 * max(1.0, abs(B).sum()):
        return False
    sg = _exact_signs(A, y, np.asarray(res.x, dtype=np.float64).reshape(k, -1).T)
    sg[np.arange(len(y)), y] = 0
    return bool((sg >= 0).all() and (sg > 0).any())


def _exact_logits(A: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, int]:
    """``AZ`` exactly: integers ``P`` and one exponent ``e`` with ``AZ = P·2^e``."""
    Ai, eA = dyadic(A)
    Zi, eZ = dyadic(Z)
    return Ai.dot(Zi), eA + eZ


def _softmax_risk(P: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(R, S, G)``: the mean cross-entropy of logits ``P`` (m × k), the softmax and ``S − onehot``."""
    Pt = torch.as_tensor(P)
    R = float((torch.logsumexp(Pt, 1) - Pt[torch.arange(len(y)), torch.as_tensor(y)]).mean())
    S = torch.softmax(Pt, 1).numpy()
    G = S.copy()
    G[np.arange(len(y)), y] -= 1.0
    return R, S, G


def _newton(A: np.ndarray, y: np.ndarray, k: int, max_iter: int) -> tuple[int, np.ndarray]:
    """Damped Newton on the logits of classes ``0..k−2`` (unit-norm columns), Armijo backtracking."""
    m, q = A.shape
    D = np.linalg.norm(A, axis=0)
    D[D == 0] = 1.0
    As = A / D

    def evaluate(Zf):
        R, S, G = _softmax_risk(As @ _full(Zf, q, k), y)
        return R, (As.T @ G[:, :-1] / m).T.reshape(-1), S

    def hessian(S):
        H = np.zeros(((k - 1) * q, (k - 1) * q))
        for a in range(k - 1):
            for b in range(a, k - 1):
                w = S[:, a] * ((a == b) - S[:, b])
                blk = (As * w[:, None]).T @ As / m
                H[a * q:(a + 1) * q, b * q:(b + 1) * q] = blk
                H[b * q:(b + 1) * q, a * q:(a + 1) * q] = blk.T
        return H

    it, Zf = damped_newton(evaluate, hessian, np.zeros((k - 1) * q), max_iter)
    Z = _full(Zf, q, k) / D[:, None]
    return it, Z - Z.mean(axis=1, keepdims=True)       # the gauge whose logits sum to 0


def _full(Zf: np.ndarray, q: int, k: int) -> np.ndarray:
    """The (q × k) logit matrix from the free columns ``0..k−2`` (class ``k−1``'s column is 0)."""
    return np.hstack([Zf.reshape(k - 1, q).T, np.zeros((q, 1))])


def _certify(A, y, k: int, Z, bias: bool, iterations: int, rank: int, attained_possible: bool) -> LinearFit:
    m, q = A.shape
    R, S, G = _softmax_risk(A @ Z, y)
    grad = A.T @ G / m
    gnorm = float(np.linalg.norm(grad))
    gscale = float(np.linalg.norm(np.abs(A).T @ (np.abs(G) + S))) / m
    attained = attained_possible and (gnorm <= T.LINEAR_GRAD_TOL * gscale or gnorm == 0.0)
    if m * q * q <= T.EXACT_MAX_WORK:
        P, e = _exact_logits(A, Z)
        with mpmath.workdps(MP_DPS):
            R_exact = mpmath.fsum(_mp_ce(row, e, yi) for row, yi in zip(P, y)) / m
            risk, upper = float(R_exact), round_up(R_exact)
        Ai, _ = dyadic(A)
        lower, bound, dropped = _dual_bound(Ai, G, y, k)
    else:
        # |Δℓ| ≤ 2 max_j |Δp_j| (log-sum-exp and p_y are 1-Lipschitz in the max norm); rounding of AZ: γ_q |A||Z|
        err = (q + 2) * T.EPS64 * (np.abs(A) @ np.abs(Z)).max(axis=1)
        risk = R
        upper = (R + 2.0 * float(err.mean())) * (1 + 4 * m * T.EPS64) + 1e-300
        lower, bound, dropped = 0.0, "trivial", 0
    if not attained and attained_possible:
        warnings.warn(f"the multinomial fit did not verify its optimality (‖∇‖ = {gnorm:.3e} > {T.LINEAR_GRAD_TOL:g} "
                      f"× {gscale:.3e}); the infimum may not be attained: the reported risk is an upper bound",
                      NotAttainedWarning, stacklevel=4)
    lower, upper = min(lower, risk), max(upper, risk)
    W, w0 = (Z[:-1].T, Z[-1].copy()) if bias else (Z.T, np.zeros(k))
    why = ""
    if upper - lower > T.WIDE_INTERVAL * max(1.0, abs(upper)):
        if bound == "trivial":
            why = ("no dual bound could be certified (the exact projection left the simplex, or the design exceeds "
                   f"EXACT_MAX_WORK = {T.EXACT_MAX_WORK:g}): the lower end is the trivial 0")
        elif dropped:
            why = (f"{dropped} of {m} samples are classified with probabilities within the fit's rounding of 1 (well-"
                   "separated classes): the exact projection pushed them out of the simplex, and the dual bound holds "
                   "them at Λ_i = 0")
        else:
            why = "the returned (W, w0) is not optimal to rounding (ill-conditioned design)"
        if not attained_possible:
            why += "; the infimum is not attained (quasi-separable classes or an empty class)"
    return LinearFit(risk, W if attained else None, w0 if attained else None, attained, gnorm, iterations, "newton",
                     lower, upper, bound, gscale, rank, why)


def _mp_ce(row, e: int, label: int) -> mpmath.mpf:
    """``log Σ_j exp(p_j) − p_y`` in mpmath for the exact logits ``row·2^e``."""
    p = [mp_dyadic(int(v), e) for v in row]
    top = max(p)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in p)) - p[label]


def _dual_bound(Ai, G: np.ndarray, y: np.ndarray, k: int) -> tuple[float, str, int]:
    """``−(1/m) Σ_i Σ_j q_ij log q_ij`` at an exactly dual-feasible ``Λ`` (module docstring), rounded down;
    ``(bound, how, rows held at Λ_i = 0)``."""
    m = len(y)
    lam, e = dyadic(G[:, :-1])
    support = np.ones(m, dtype=bool)
    for _ in range(DUAL_ROUNDS):
        idx = np.flatnonzero(support)
        cols = [project_rational(Ai[support], lam[support, j]) for j in range(k - 1)]
        if any(c is None for c, _ in cols):
            break
        with mpmath.workdps(MP_DPS):
            bad, total = [], mpmath.mpf(0)
            for r, i in enumerate(idx):
                s = [mp_dyadic(int(c[r]), e, den) for c, den in cols]
                s.append(-mpmath.fsum(s))                 # the last column: rows sum to 0 exactly
                qrow = [sj + (1 if j == y[i] else 0) for j, sj in enumerate(s)]
                if any(v < 0 for v in qrow):
                    bad.append(i)
                    continue
                total += mpmath.fsum(v * mpmath.log(v) for v in qrow if v > 0)
            if not bad:
                # rows off the support are Λ_i = 0: q = e_{y_i}, whose Σ q log q is 0
                return max(0.0, round_down(-total / m)), "exact-dual", int(m - support.sum())
        support[bad] = False
    return 0.0, "trivial", int(m - support.sum())
