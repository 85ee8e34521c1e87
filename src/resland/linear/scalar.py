"""One output: the best linear predictor ``R_lin = inf_{t, t0} (1/m) Σ ℓ(tᵀx_i + t0; y_i)`` (docs/theory.md §1), certified.

``R_lin`` is the infimum over *all* real ``(t, t0)`` for the float64 data taken as exact numbers.
On near-degenerate designs (a column equal to the rounded sum of others, singular values near
``1e-16·σ_max``) float64 cannot tell that number from nearby ones, so :class:`LinearFit` carries an
interval that holds it, ``risk_lower ≤ R_lin ≤ risk_upper``:

* ``risk_upper``: the risk of the returned ``(t*, t0*)``, evaluated exactly (the products
  ``Az`` in integer arithmetic, the losses in 50-digit mpmath) and rounded up;
* ``risk_lower``: a Fenchel dual bound ``−(1/m) Σ ℓ*(λ_i; y_i)`` at a dual vector with
  ``Aᵀλ = 0`` *exactly* (``A = [X, 1]``): ``λ = ℓ'(Az)`` projected onto the null space of ``Aᵀ`` in
  rational arithmetic (sympy's fraction-free ``rref_den`` on the integer Gram matrix), evaluated in
  mpmath and rounded down. For the squared loss the projection of ``2(Az − y)`` is ``−2P⊥y``, so
  ``risk_lower`` is the exact infimum. Above ``EXACT_MAX_WORK`` (``m·k²``) the bound is the float
  perturbation bound of least squares, or the trivial 0 (every loss here is ≥ 0).
* ``risk``: the reported value, the risk of ``(t*, t0*)`` rounded to nearest.

Fits:

* Squared loss: least squares by SciPy's SVD-based ``gelsd`` with the LAPACK/NumPy rank
  convention (singular values below ``max(m, k)·eps·σ_max`` are null) and two steps of iterative
  refinement. With an intercept the data are centred first, so ``t*`` is the minimum-norm ``t``.
* Logistic and pseudo-Huber: damped Newton with Armijo backtracking until
  ``‖∇‖ ≤ 1e-12 · max(‖∇ at 0‖, 1e-300)``; singular Hessians are solved in the least-squares sense.
* Logistic on linearly separable data: a linear program (SciPy ``linprog``) finds ``z`` with
  ``y_i a_iᵀz ≥ 1``, checked exactly; then ``R_lin = 0``, not attained (a :class:`NotAttainedWarning`).

Every fit verifies its own optimality: ``attained`` needs ``‖∇R(t*, t0*)‖ ≤ LINEAR_GRAD_TOL ·
(1/m)‖|A|ᵀ(|ℓ'| + ℓ''·|y|)‖`` (the gradient relative to the size of its own terms).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import mpmath
import numpy as np
import scipy.linalg
import scipy.optimize
import torch

from .. import tolerances as T
from .._checks import check_data
from ..losses import Loss, LogisticLoss, SquaredLoss, get_loss

#: mpmath working precision (decimal digits) of the exact bounds.
MP_DPS = 50
#: Rounds of the dual bound that drop entries the exact projection put outside ``dom ℓ*``.
DUAL_ROUNDS = 6


class NotAttainedWarning(UserWarning):
    """The infimum of the linear risk is not attained by any finite ``(t, t0)``."""


@dataclass
class LinearFit:
    """Result of :func:`best_linear`.

    Attributes:
        risk: ``R_lin`` as reported: the risk of ``(t*, t0*)``, rounded to nearest.
        risk_lower, risk_upper: an interval that holds the exact infimum of the float64 data
            (module docstring); ``bound`` names how ``risk_lower`` was obtained: ``exact-dual``,
            ``lstsq-perturbation``, ``separable`` or ``trivial``.
        coef: ``t*`` as a NumPy array of shape (d,), or None when not attained.
        intercept: ``t0*`` (0.0 without intercept; None when not attained).
        attained: ``(t*, t0*)`` is a verified minimiser (gradient test); False when the infimum is
            approached only as ``‖t‖ → ∞`` or the fit could not verify itself.
        grad_norm: norm of the risk gradient at ``(t*, t0*)``; grad_scale: the size of its terms,
            ``(1/m)‖|A|ᵀ(|ℓ'| + ℓ''|y|)‖``.
        iterations: Newton iterations (refinement steps for least squares).
        method: ``lstsq``, ``newton`` or ``separable``.
        rank: numerical rank of ``[X, 1]`` (of ``X`` without intercept) by the LAPACK convention.
        why_wide: why the interval is wider than ``tolerances.WIDE_INTERVAL`` relative ("" if it is not).
    """

    risk: float
    coef: np.ndarray | None
    intercept: float | None
    attained: bool
    grad_norm: float
    iterations: int
    method: str
    risk_lower: float = -math.inf
    risk_upper: float = math.inf
    bound: str = "trivial"
    grad_scale: float = 0.0
    rank: int | None = None
    why_wide: str = ""

    @property
    def coef_norm(self) -> float:
        """``‖t*‖`` (inf when not attained)."""
        return float("inf") if self.coef is None else float(np.linalg.norm(self.coef))

    def to_dict(self) -> dict:
        return {
            "risk": self.risk,
            "risk_lower": self.risk_lower,
            "risk_upper": self.risk_upper,
            "bound": self.bound,
            "coef": None if self.coef is None else self.coef.tolist(),
            "intercept": self.intercept,
            "attained": self.attained,
            "grad_norm": self.grad_norm,
            "grad_scale": self.grad_scale,
            "iterations": self.iterations,
            "method": self.method,
            "rank": self.rank,
            "why_wide": self.why_wide,
        }


def fit_scalar(X, y, loss: str | Loss = "squared", bias: bool = True, *, max_iter: int = 200) -> LinearFit:
    """:func:`resland.linear.best_linear` for one output: ``y`` of shape (m,), ``coef`` of shape (d,) and a
    float ``intercept`` (the arguments, return value, warnings and errors as there; its example is this fit).
    """
    loss = get_loss(loss)
    Xt, yt = check_data(X, y)
    yt = loss.prepare_targets(yt)
    Xn, yn = Xt.numpy(), yt.numpy()
    A = np.hstack([Xn, np.ones((len(yn), 1))]) if bias else Xn
    if isinstance(loss, LogisticLoss):
        z = _separating(A, yn)
        if z is not None:
            warnings.warn(
                "the data are linearly separable: the logistic linear risk has infimum 0, not attained",
                NotAttainedWarning,
                stacklevel=3,
            )
            return LinearFit(risk=0.0, coef=None, intercept=None, attained=False, grad_norm=0.0, iterations=0,
                             method="separable", risk_lower=0.0, risk_upper=0.0, bound="separable", rank=numeric_rank(A))
    if isinstance(loss, SquaredLoss):
        z, iterations, method = _least_squares(Xn, yn, bias, A), 2, "lstsq"
    else:
        (iterations, z), method = _newton(A, yn, loss, max_iter), "newton"
    recedes = isinstance(loss, LogisticLoss) and _recession(A, yn)
    return _certify_fit(A, yn, loss, z, bias, iterations, method, recedes)


def numeric_rank(A: np.ndarray, s: np.ndarray | None = None) -> int:
    """Numerical rank by the LAPACK convention; ``s`` the singular values of ``A`` if already known."""
    s = (scipy.linalg.svdvals(A) if A.size else np.zeros(0)) if s is None else s
    return int(np.sum(s > max(A.shape) * T.EPS64 * s.max())) if s.size and s.max() > 0 else 0


def _least_squares(X: np.ndarray, y: np.ndarray, bias: bool, A: np.ndarray) -> np.ndarray:
    """The minimum-norm solution, unless the one on unit-norm columns has a lower risk.

    Equilibrating the columns keeps a feature on a scale of 1e-8 next to one of 1e8 from falling
    under the rank cutoff (column scaling does not change the infimum), but it changes which
    minimiser is the minimum-norm one, so it is used only when it fits better.
    """
    z = _lstsq(X, y, bias, equilibrate=False)
    z_eq = _lstsq(X, y, bias, equilibrate=True)
    r, r_eq = np.mean((A @ z - y) ** 2), np.mean((A @ z_eq - y) ** 2)
    return z_eq if r_eq < r * (1 - 1e-12) else z


def _lstsq(X: np.ndarray, y: np.ndarray, bias: bool, equilibrate: bool) -> np.ndarray:
    """Least squares (centred when ``bias``), LAPACK rank cutoff, refined twice."""
    m, d = X.shape
    cond = max(m, d + bias) * T.EPS64
    xm = X.mean(axis=0) if bias else np.zeros(d)
    Xc = X - xm
    D = np.linalg.norm(Xc, axis=0) if equilibrate else np.ones(d)
    D[D == 0] = 1.0
    Xs = Xc / D
    t = np.zeros(d)
    t0 = 0.0
    for _ in range(3):          # the solve, then two refinement steps on the residual
        r = y - (X @ t + t0)
        rm = r.mean() if bias else 0.0
        dt, *_ = scipy.linalg.lstsq(Xs, r - rm, cond=cond, lapack_driver="gelsd")
        dt = dt / D
        t = t + dt
        t0 = t0 + (rm - xm @ dt if bias else 0.0)
    return np.concatenate([t, [t0]]) if bias else t


def _separating(A: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """A ``z`` with ``y_i a_iᵀz > 0`` for every i (checked exactly), or None: separable data."""
    res = scipy.optimize.linprog(
        np.zeros(A.shape[1]), A_ub=-(A * y[:, None]), b_ub=-np.ones(len(y)), bounds=(None, None), method="highs"
    )
    if res.status != 0:
        return None
    z = np.asarray(res.x, dtype=np.float64)
    return z if all(v > 0 for v in _exact_margins(A, y, z)) else None


def _recession(A: np.ndarray, y: np.ndarray) -> bool:
    """Is there ``d ≠ 0`` with ``y_i a_iᵀd ≥ 0`` for all i, > 0 for some (checked exactly)?

    Then the logistic risk keeps falling along ``d`` and its infimum is not attained
    (quasi-separable data). A linear program: maximise ``Σ y_i a_iᵀd`` on ``|d_j| ≤ 1``.
    """
    B = A * y[:, None]
    res = scipy.optimize.linprog(-B.sum(axis=0), A_ub=-B, b_ub=np.zeros(len(y)), bounds=(-1, 1), method="highs")
    if res.status != 0 or -res.fun <= 1e-9 * max(1.0, np.abs(B).sum()):
        return False
    s = _exact_margins(A, y, np.asarray(res.x, dtype=np.float64))
    return all(v >= 0 for v in s) and any(v > 0 for v in s)


def _exact_margins(A: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``y_i a_iᵀz`` in exact integer arithmetic, up to one positive power of 2 (only signs are read)."""
    Ai, _ = dyadic(A)
    zi, _ = dyadic(z)
    return Ai.dot(zi) * np.sign(y).astype(np.int64).astype(object)


def _newton(A: np.ndarray, y: np.ndarray, loss: Loss, max_iter: int) -> tuple[int, np.ndarray]:
    """Damped Newton on unit-norm columns (``z = z_s / D``)."""
    D = np.linalg.norm(A, axis=0)
    D[D == 0] = 1.0
    it, z = _newton_scaled(A / D, y, loss, max_iter)
    return it, z / D


def _newton_scaled(A: np.ndarray, y: np.ndarray, loss: Loss, max_iter: int) -> tuple[int, np.ndarray]:
    yt = torch.as_tensor(y)
    m = len(y)

    def evaluate(z):
        p = torch.as_tensor(A @ z)
        return float(loss.risk(p, yt)), A.T @ loss.d1(p, yt).numpy() / m, loss.d2(p, yt).numpy()

    return damped_newton(evaluate, lambda d2: (A * d2[:, None]).T @ A / m, np.zeros(A.shape[1]), max_iter)


def damped_newton(evaluate, hessian, z: np.ndarray, max_iter: int) -> tuple[int, np.ndarray]:
    """Newton on a convex fit with Armijo backtracking, until ``‖∇‖ ≤ 1e-12·‖∇ at the start‖``.

    ``evaluate(z)`` gives ``(R, ∇R, aux)`` and ``hessian(aux)`` the Hessian at that ``z``; singular Hessians are
    solved in the least-squares sense (gelsd). A step whose risk change is at rounding level is taken when it
    lowers ``‖∇R‖``. Returns ``(iterations, z)``. The one-output and the multinomial fits share it.
    """
    R, g, aux = evaluate(z)
    gtol = 1e-12 * max(np.linalg.norm(g), 1e-300)
    it = 0
    for it in range(1, max_iter + 1):
        if np.linalg.norm(g) <= gtol:
            it -= 1
            break
        step, *_ = scipy.linalg.lstsq(hessian(aux), -g, lapack_driver="gelsd")
        slope = g @ step
        alpha = 1.0
        while alpha > 1e-12:
            R_new, g_new, aux_new = evaluate(z + alpha * step)
            if R_new <= R + 1e-4 * alpha * slope or (
                abs(R_new - R) <= 1e-15 * max(1.0, abs(R)) and np.linalg.norm(g_new) < np.linalg.norm(g)
            ):
                break
            alpha *= 0.5
        else:
            break
        z, R, g, aux = z + alpha * step, R_new, g_new, aux_new
    return it, z


def _certify_fit(A, y, loss: Loss, z, bias: bool, iterations: int, method: str, recedes: bool = False) -> LinearFit:
    """The interval, the reported risk and the optimality test at ``z = (t, t0)``."""
    m, k = A.shape
    sv = scipy.linalg.svdvals(A) if A.size else np.zeros(0)
    p = A @ z
    pt, yt = torch.as_tensor(p), torch.as_tensor(y)
    d1, d2 = loss.d1(pt, yt).numpy(), loss.d2(pt, yt).numpy()
    g = A.T @ d1 / m
    gnorm = float(np.linalg.norm(g))
    gscale = float(np.linalg.norm(np.abs(A).T @ (np.abs(d1) + d2 * np.abs(y)))) / m
    attained = not recedes and (gnorm <= T.LINEAR_GRAD_TOL * gscale or gnorm == 0.0)
    if m * k * k <= T.EXACT_MAX_WORK:
        Ai, eA = dyadic(A)
        zi, ez = dyadic(z)
        p_exact = (Ai.dot(zi), eA + ez)            # Az = p_int · 2^e exactly
        R_exact = _mp_risk(loss, p_exact, y)
        lower, bound = _dual_bound(loss, Ai, eA, p_exact, y)
        with mpmath.workdps(MP_DPS):
            risk, upper = float(R_exact), round_up(R_exact)
    else:
        risk = float(loss.risk(pt, yt))
        terms = loss.value(pt, yt).numpy()
        # rounding of Az (γ_k |A||z|) through a loss of slope |ℓ'| + ℓ''·err, plus the mean's rounding
        err = (k + 2) * T.EPS64 * (np.abs(A) @ np.abs(z) + np.abs(y))
        upper = float(np.mean(terms + (np.abs(d1) + d2 * err) * err)) * (1 + 4 * m * T.EPS64) + 1e-300
        lower, bound = _float_lower(A, y, loss, p, err, sv)
    if recedes:
        warnings.warn("the data are quasi-separable: the logistic linear risk keeps falling along a direction "
                      "that separates all but the points on its boundary; the infimum is not attained",
                      NotAttainedWarning, stacklevel=4)
    elif not attained:
        warnings.warn(
            f"the linear fit did not verify its optimality (‖∇‖ = {gnorm:.3e} > {T.LINEAR_GRAD_TOL:g} × "
            f"{gscale:.3e}); the infimum may not be attained (e.g. quasi-separable data): the reported risk is an "
            "upper bound",
            NotAttainedWarning,
            stacklevel=4,
        )
    lower, upper = min(lower, risk), max(upper, risk)
    t, t0 = (z[:-1], float(z[-1])) if bias else (z, 0.0)
    rank = numeric_rank(A, sv)
    return LinearFit(risk, t if attained else None, t0 if attained else None, attained, gnorm, iterations, method,
                     lower, upper, bound, gscale, rank, _why_wide(A, sv, rank, lower, upper, bound, recedes))


def _why_wide(A, sv, rank: int, lower: float, upper: float, bound: str, recedes: bool) -> str:
    """One line on why the interval is wider than ``WIDE_INTERVAL`` relative (empty when it is not)."""
    if upper - lower <= T.WIDE_INTERVAL * max(1.0, abs(upper)):
        return ""
    if bound == "trivial":
        return ("no dual bound could be certified (exact projection out of the conjugate's domain, or the design "
                f"exceeds EXACT_MAX_WORK = {T.EXACT_MAX_WORK:g}): the lower end is the trivial 0")
    if recedes:
        return "quasi-separable data: the infimum is approached only as ‖t‖ → ∞"
    if rank < A.shape[1]:
        return (f"[X, 1] has numerical rank {rank} of {A.shape[1]} by the LAPACK cutoff, but its smallest singular "
                f"value is {sv.min() / sv.max():.1e}·σ_max, not 0: that direction, unresolvable in float64, can still "
                f"lower the exact infimum by up to {upper - lower:.3e}")
    return "the returned (t, t0) is not optimal to rounding (ill-conditioned design)"


def dyadic(a) -> tuple[np.ndarray, int]:
    """Exact integers: ``a = ints · 2**e`` (one exponent for the whole float64 array)."""
    a = np.asarray(a, dtype=np.float64)
    mant, ex = np.frexp(a.ravel())
    mi = (mant * 2.0**53).astype(np.int64)             # exact: a float64 significand has 53 bits
    sh = ex.astype(np.int64) - 53
    nz = mi != 0
    e = int(sh[nz].min()) if nz.any() else 0
    ints = np.empty(mi.size, dtype=object)
    ints[:] = [v << s if v else 0 for v, s in zip(mi.tolist(), (sh - e).tolist())]
    return ints.reshape(a.shape), e


def mp_dyadic(v: int, e: int, den: int = 1) -> mpmath.mpf:
    return mpmath.ldexp(mpmath.mpf(v), e) / den


def _mp_risk(loss: Loss, p_exact, y) -> mpmath.mpf:
    pi, e = p_exact
    with mpmath.workdps(MP_DPS):
        return mpmath.fsum(loss.mp_value(mp_dyadic(int(v), e), mpmath.mpf(float(yi))) for v, yi in zip(pi, y)) / len(y)


def _dual_bound(loss: Loss, Ai, eA: int, p_exact, y) -> tuple[float, str]:
    """``−(1/m) Σ ℓ*(λ_i)`` at ``λ = ℓ'(Az)`` projected exactly onto ``null(Aᵀ)``, rounded down.

    When the projection leaves the conjugate's domain (a logistic weight ``a_i = −λ_i y_i`` of a
    far-separated point is ~1e-15 and the correction flips its sign), those entries are set to 0
    and the others projected again (``λ'_i = 0`` is feasible), up to ``DUAL_ROUNDS`` times.
    """
    m, k = Ai.shape
    if isinstance(loss, SquaredLoss):      # λ = 2(Az − y), exactly
        yi, ey = dyadic(y)
        pi, ep = p_exact
        e = min(ep, ey)
        lam = np.array([2 * ((int(a) << (ep - e)) - (int(b) << (ey - e))) for a, b in zip(pi, yi)], dtype=object)
        elam = e
    else:
        pi, ep = p_exact
        p = np.array([float(mp_dyadic(int(v), ep)) for v in pi])
        lam, elam = dyadic(loss.d1(torch.as_tensor(p), torch.as_tensor(y)).numpy())
    ys = [mpmath.mpf(float(v)) for v in y]
    support = np.ones(m, dtype=bool)
    for _ in range(DUAL_ROUNDS):
        lam_p, den = project_rational(Ai[support], lam[support])
        if lam_p is None:
            break
        with mpmath.workdps(MP_DPS):
            idx = np.flatnonzero(support)
            s = [mp_dyadic(int(v), elam, den) for v in lam_p]
            conj = [loss.mp_conjugate(si, ys[i]) for si, i in zip(s, idx)]
            bad = [i for c, i in zip(conj, idx) if c == mpmath.inf]
            if not bad:
                # entries off the support are λ_i = 0, where ℓ*(0; y) = −min_p ℓ(p; y) = 0 for these losses
                return max(0.0, round_down(-mpmath.fsum(conj) / m)), "exact-dual"
        support[bad] = False                # leave the infeasible entries at λ_i = 0 and project again
    return 0.0, "trivial"


def project_rational(Ai, lam) -> tuple[np.ndarray | None, int]:
    """``λ − A w`` with ``AᵀA w = Aᵀλ`` solved exactly (sympy ``rref_den``), as ``(numerators, den)``."""
    k = Ai.shape[1]
    if len(lam) == 0:
        return lam, 1
    G = Ai.T.dot(Ai)
    c = Ai.T.dot(lam)
    from sympy import ZZ                              # imported here: sympy costs 0.3 s at import time
    from sympy.polys.matrices import DomainMatrix

    aug = DomainMatrix([[ZZ(int(v)) for v in row] + [ZZ(int(ci))] for row, ci in zip(G, c)], (k, k + 1), ZZ)
    rref, den, pivots = aug.rref_den()
    if k in pivots:                        # cannot happen: Aᵀλ lies in range(AᵀA)
        return None, 1
    den = int(den)
    w = np.zeros(k, dtype=object)
    for i, col in enumerate(pivots):
        w[col] = int(rref[i, k].element)
    return lam * den - Ai.dot(w), den      # Aᵀ(λ·den − A w) = 0 exactly


def round_up(v: mpmath.mpf) -> float:
    f = float(v)
    return f if mpmath.mpf(f) >= v else float(np.nextafter(f, math.inf))


def round_down(v: mpmath.mpf) -> float:
    f = float(v)
    return f if mpmath.mpf(f) <= v else float(np.nextafter(f, -math.inf))


def _float_lower(A, y, loss: Loss, p, err, s) -> tuple[float, str]:
    """Above ``EXACT_MAX_WORK``: the least-squares perturbation bound, else the trivial 0.

    For squared loss ``R(z) − R_lin = ‖P_A r‖²/m ≤ ‖Aᵀr‖²/(m σ_min²)`` with ``σ_min`` lowered by
    Weyl's bound on the SVD's backward error; it needs full column rank by a clear margin.
    """
    if not isinstance(loss, SquaredLoss):
        return 0.0, "trivial"
    m, k = A.shape
    smin = s.min() - 10 * max(m, k) * T.EPS64 * s.max()
    if k > m or smin <= 0:
        return 0.0, "trivial"
    r = p - y
    gr = np.linalg.norm(A.T @ r) + k * T.EPS64 * np.linalg.norm(np.abs(A).T @ (np.abs(r) + err))
    below = np.mean(np.maximum(np.abs(r) - err, 0.0) ** 2) * (1 - 4 * m * T.EPS64)
    return max(0.0, float(below - gr**2 / (m * smin**2))), "lstsq-perturbation"
