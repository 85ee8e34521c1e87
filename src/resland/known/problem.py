"""The problem protocol: any twice-differentiable risk ``θ ↦ R(θ)`` with its own baseline, under one finder and one
certificate.

A :class:`Problem` is a flat parameter vector's risk written in torch (so ``torch.func`` gives its exact gradient,
Hessian and third derivatives), a :class:`Baseline` (the value a verdict compares against, and where it comes
from), a seeded start, the distance to the set where the risk is not smooth (``kink_margin``; ``inf`` for smooth
risks) and the names of its symmetries. Data-set problems (resland's networks on ``(X, y)``) keep their own finder
and certificate (:func:`resland.find_critical_point`, :func:`resland.certify`); this protocol serves the known
landscapes of the neighbouring papers (docs/theory.md §10 of the paper notes), whose baselines are proved global
minimum values: ``0`` for a realisable teacher, the least-squares risk for deep linear and linear residual nets.

Verdicts (:data:`PROBLEM_VERDICTS`, :func:`certify_problem`), first match wins, at ``R`` the risk, ``b`` the
baseline value, ``g`` the gradient, ``λ`` the dense Hessian's eigenvalues with ``λ_tol = 1e-8·max(1, |λ|_max)``:

* ``failed``: ``R`` not finite; ``nondifferentiable``: ``kink_margin ≤ 0`` or non-finite derivatives;
* ``global_minimum``: ``|R − b| ≤ risk_tol`` with ``b`` a proved global minimum value (``R`` attains it, so no
  curvature is needed); ``below_baseline``: ``R < b − risk_tol`` (the baseline was wrong: an error, never hidden);
* ``not_critical``: ``‖g‖ > tol·max(1, |R|)``;
* above the baseline: ``spurious_minimum`` (``λ_min − r > λ_tol``, ``r`` the eigen-residual ``‖Hq − λ_min q‖``, and no
  continuous symmetry: a strict local minimum worse than the global one), ``saddle`` (``λ_min < −λ_tol``: a strict
  saddle), ``degenerate_saddle`` (no eigenvalue below ``−λ_tol``, and a unit Hessian null direction ``u`` whose
  first Taylor coefficient ``c_p`` of ``R(θ + tu)`` beyond the second order with ``|c_p| > λ_tol`` has ``p`` odd,
  or ``p`` even and ``c_p < 0``: ``R`` falls for small ``t`` of one sign, so ``θ`` is not a local minimum; orders
  3 … :data:`TAYLOR_ORDER`), ``degenerate`` (none of these: the expansion up to that order does not decide).

Conventions: mean risk, squared loss without 1/2, float64, flat parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .. import tolerances as T
from .._checks import ValidationError

__all__ = ["Baseline", "PROBLEM_VERDICTS", "Problem", "ProblemCertificate", "certify_problem", "dense_hessian",
           "find_critical", "find_minimum", "lbfgs_minimise", "newton_polish",
           "taylor_coefficient"]

PROBLEM_VERDICTS = ("failed", "nondifferentiable", "global_minimum", "below_baseline", "not_critical",
                    "spurious_minimum", "saddle", "degenerate_saddle", "degenerate")
#: Baseline kinds: a proved global minimum value, or the best linear predictor's risk.
BASELINE_KINDS = ("global_minimum", "linear")
#: Risks within this (relative to ``max(1, |b|)``) of the baseline attain it.
RISK_TOL = 1e-9
#: Random null-space directions tried for a descent term of order ≥ 3.
CUBIC_TRIES = 12
#: The highest Taylor order tested along null directions (a depth-L linear net's lowest term at θ = 0 is of
#: order L).
TAYLOR_ORDER = 6


@dataclass(frozen=True)
class Baseline:
    """The value a verdict compares against. ``kind``: ``global_minimum`` (a proved global minimum value of this
    risk) or ``linear`` (the best linear predictor's risk); ``source``: where the value comes from, in words."""

    value: float
    kind: str
    source: str

    def __post_init__(self):
        if self.kind not in BASELINE_KINDS:
            raise ValidationError(f"The 'kind' parameter must be one of {BASELINE_KINDS}. Got {self.kind!r}.")

    def to_dict(self) -> dict:
        return {"value": self.value, "kind": self.kind, "source": self.source}


def dense_hessian(f, theta: torch.Tensor) -> torch.Tensor:
    """The exact dense Hessian of the scalar ``f`` at ``theta``: reverse over reverse, vectorised over the rows
    (``torch.autograd.functional.hessian(vectorize=True)``; 1.8× faster than ``torch.func.hessian``, median of 5, on the
    closed-form Safran–Shamir risk at n·k = 400: docs/performance.md), symmetrised."""
    H = torch.autograd.functional.hessian(f, theta, vectorize=True)
    return 0.5 * (H + H.T)


class Problem:
    """A twice-differentiable risk of a flat parameter vector, with its baseline.

    Subclasses set ``name``, ``n`` (parameters), ``baseline`` and ``symmetries`` (names; ``continuous`` says whether
    any is a continuous group, which makes every Hessian singular) and define :meth:`risk` (torch, differentiable
    by ``torch.func``) and :meth:`start`. :meth:`kink_margin` defaults to ``inf`` (a smooth risk).
    """

    name: str = "problem"
    n: int = 0
    baseline: Baseline
    symmetries: tuple[str, ...] = ()
    continuous: bool = False

    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def start(self, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def kink_margin(self, theta: torch.Tensor) -> float:
        """Distance-like margin to the non-smooth set (``inf``: smooth everywhere)."""
        return math.inf

    def config(self) -> dict:
        return {"problem": self.name, "n": self.n}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


@dataclass
class ProblemCertificate:
    """The verdict at ``theta`` and its evidence (module docstring). ``baseline`` names the value compared with."""

    verdict: str
    risk: float
    baseline: dict
    grad_norm: float | None = None
    grad_tol: float | None = None
    lambda_min: float | None = None
    lambda_max: float | None = None
    residual: float | None = None
    lambda_tol: float | None = None
    kink_margin: float | None = None
    descent_order: int | None = None
    taylor_coefficient: float | None = None
    reason: str = ""
    parameters: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def certify_problem(problem: Problem, theta, tol: float = T.GRAD_TOL, *, seed: int = 0) -> ProblemCertificate:
    """Certify ``theta`` for ``problem``: the verdict of the module docstring with its evidence."""
    theta = torch.as_tensor(theta, dtype=torch.float64).reshape(-1)
    if theta.numel() != problem.n:
        raise ValidationError(f"The 'theta' parameter must have {problem.n} entries for {problem!r}. "
                              f"Got {theta.numel()}.")
    R = float(problem.risk(theta))
    b = problem.baseline
    cert = ProblemCertificate("failed", R, b.to_dict(), parameters=theta.tolist())
    if not math.isfinite(R):
        cert.reason = "the risk is not finite"
        return cert
    risk_tol = RISK_TOL * max(1.0, abs(b.value))
    if b.kind == "global_minimum" and abs(R - b.value) <= risk_tol:
        cert.verdict, cert.reason = "global_minimum", f"R = {R:.12g} attains the global minimum {b.value:.12g} ({b.source})"
        return cert
    if b.kind == "global_minimum" and R < b.value - risk_tol:
        cert.verdict = "below_baseline"
        cert.reason = f"R = {R:.12g} is below the proved global minimum {b.value:.12g}: the baseline is wrong"
        return cert
    margin = problem.kink_margin(theta)
    cert.kink_margin = margin
    if margin <= 0:
        cert.verdict, cert.reason = "nondifferentiable", "the point lies on the risk's non-smooth set"
        return cert
    g = torch.func.grad(problem.risk)(theta)
    H = dense_hessian(problem.risk, theta)
    if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(H).all())):
        cert.verdict, cert.reason = "nondifferentiable", "non-finite derivatives"
        return cert
    cert.grad_norm, cert.grad_tol = float(g.norm()), T.grad_tol(R, tol)
    lam, Q = torch.linalg.eigh(H)
    cert.lambda_min, cert.lambda_max = float(lam[0]), float(lam[-1])
    cert.residual = float(torch.linalg.norm(H @ Q[:, 0] - lam[0] * Q[:, 0]))
    cert.lambda_tol = lam_tol = 1e-8 * max(1.0, float(lam.abs().max()))
    if cert.grad_norm > cert.grad_tol:
        cert.verdict, cert.reason = "not_critical", f"‖∇R‖ = {cert.grad_norm:.3g} > {cert.grad_tol:.3g}"
        return cert
    above = f"R − baseline = {R - b.value:.6g} > 0"
    if cert.lambda_min - cert.residual > lam_tol and not problem.continuous:
        cert.verdict, cert.reason = "spurious_minimum", f"positive definite Hessian (λ_min = {cert.lambda_min:.4g}); {above}"
    elif cert.lambda_min < -lam_tol:
        cert.verdict, cert.reason = "saddle", f"λ_min = {cert.lambda_min:.4g} < −λ_tol; {above}"
    else:
        null = Q[:, lam.abs() <= lam_tol]
        order, coef = _descent_order(problem, theta, null, lam_tol, seed)
        cert.descent_order, cert.taylor_coefficient = order, coef
        if order is not None:
            cert.verdict = "degenerate_saddle"
            cert.reason = (f"no eigenvalue below −λ_tol; along a Hessian null direction u the first Taylor term of "
                           f"R(θ + tu) beyond the second is of order {order} with |c| = {coef:.4g}: the risk falls on "
                           f"one side; {above}")
        else:
            cert.verdict = "degenerate"
            cert.reason = f"the Taylor expansion to order {TAYLOR_ORDER} does not decide; {above}"
    return cert


def taylor_coefficient(f, theta: torch.Tensor, u: torch.Tensor, order: int) -> float:
    """``c_p = (1/p!) d^p/dt^p f(θ + tu)|₀`` for ``p = order`` (``order`` nested forward-mode products, exact)."""
    fn = f
    for _ in range(order):
        fn = (lambda prev: (lambda t: torch.func.jvp(prev, (t,), (u,))[1]))(fn)
    return float(fn(theta)) / math.factorial(order)


def _descent_order(problem: Problem, theta: torch.Tensor, null: torch.Tensor, tol: float, seed: int):
    """The lowest order ``p ≥ 3`` at which some unit null direction ``u`` (``CUBIC_TRIES`` seeded random combinations of
    the Hessian's null basis; a basis vector alone misses terms that mix parameters, like a product of layers) has a
    Taylor coefficient ``|c_p| > tol`` that makes ``R(θ + tu) < R(θ)`` for small ``t`` of one sign (``p`` odd, or
    ``p`` even with ``c_p < 0``), with that ``|c_p|``; ``(None, 0.0)`` when no direction shows a descent up to order
    :data:`TAYLOR_ORDER`. Along each direction the orders are tried upwards and the first nonzero one decides."""
    if null.shape[1] == 0:
        return None, 0.0
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(CUBIC_TRIES):
        z = torch.randn(null.shape[1], generator=gen, dtype=theta.dtype)
        u = null @ (z / z.norm())
        for p in range(3, TAYLOR_ORDER + 1 if best is None else best[0]):
            cp = taylor_coefficient(problem.risk, theta, u, p)
            if abs(cp) > tol:
                if p % 2 == 1 or cp < 0:
                    best = (p, abs(cp))
                break
        if best is not None and best[0] == 3:
            break
    return best if best is not None else (None, 0.0)


def newton_polish(problem: Problem, theta: torch.Tensor, iters: int, *, tol: float,
                  near: float | None = None) -> torch.Tensor:
    """At most ``iters`` Newton steps ``θ ← θ − H⁻¹g`` on the exact Hessian, while the risk is finite (and, with
    ``near`` given, more than ``near`` above the baseline: a global minimum on the non-smooth set has no Hessian),
    ``‖g‖ > tol·max(1, |R|)``, ``H`` is finite and positive definite, and the step lands at a finite risk."""
    f = problem.risk
    for _ in range(iters):
        R = float(f(theta))
        if not math.isfinite(R) or (near is not None and R - problem.baseline.value <= near):
            break
        g = torch.func.grad(f)(theta)
        if not bool(torch.isfinite(g).all()) or float(g.norm()) <= T.grad_tol(R, tol):
            break
        H = dense_hessian(f, theta)
        if not bool(torch.isfinite(H).all()):
            break
        lam, Q = torch.linalg.eigh(H)
        if float(lam[0]) <= 0:
            break
        new = theta - Q @ ((Q.T @ g) / lam)
        if not math.isfinite(float(f(new))):
            break
        theta = new
    return theta


def _levenberg_marquardt(problem: Problem, theta: torch.Tensor, tol: float, iters: int) -> torch.Tensor:
    """Levenberg–Marquardt on ``∇R = 0`` with the exact Hessian, ``p = −(H² + μI)⁻¹Hg`` (reaches saddles as well as
    minima); a step is taken when ``‖∇R‖²`` falls by at least 1e-4 of the model's prediction; stops at a critical
    point (``‖g‖ ≤ 1e-2·tol·max(1, |R|)``) or when ``μ`` passes 1e20."""
    f = problem.risk
    mu = 1e-3
    for _ in range(iters):
        g = torch.func.grad(f)(theta)
        R = float(f(theta))
        if not bool(torch.isfinite(g).all()) or float(g.norm()) <= T.grad_tol(R, tol) * 1e-2:
            break
        H = dense_hessian(f, theta)
        if not bool(torch.isfinite(H).all()):
            break
        lam, Q = torch.linalg.eigh(H)
        gh = Q.T @ g
        gn2 = float(g @ g)
        while mu < 1e20:
            p = -Q @ (lam * gh / (lam * lam + mu))
            g2 = torch.func.grad(f)(theta + p)
            pred = gn2 - float(((g + H @ p) ** 2).sum())
            act = gn2 - float(g2 @ g2)
            if pred > 0 and act > 1e-4 * pred:
                theta = theta + p
                mu = max(mu / 5, 1e-30) if act > 0.75 * pred else mu
                break
            mu *= 4
        else:
            break
    return theta


def lbfgs_minimise(f, theta: torch.Tensor, max_iter: int = 3000) -> torch.Tensor:
    """L-BFGS with a strong-Wolfe line search on ``f`` from ``theta`` to a gradient of 1e-12. Returns the end point,
    or, where the end's risk is not finite (a run that reached a kink gets non-finite derivatives there), the
    lowest iterate with a finite risk and gradient."""
    x = theta.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=0,
                            history_size=50, line_search_fn="strong_wolfe")
    best = [math.inf, theta.clone()]

    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        value = float(loss.detach())
        if math.isfinite(value) and bool(torch.isfinite(x.grad).all()) and value < best[0]:
            best[0], best[1] = value, x.detach().clone()
        return loss

    opt.step(closure)
    return x.detach() if math.isfinite(float(f(x.detach()))) else best[1]


def find_minimum(problem: Problem, theta0=None, *, seed: int = 0, tol: float = T.GRAD_TOL, max_iter: int = 3000,
                 polish: int = 20) -> torch.Tensor:
    """A local minimum from ``theta0`` (default ``problem.start(seed)``): :func:`lbfgs_minimise`, then at most
    ``polish`` Newton steps on the exact Hessian while it is positive definite (:func:`newton_polish`, to
    ``1e-2·tol``)."""
    theta = (problem.start(seed) if theta0 is None else torch.as_tensor(theta0, dtype=torch.float64)).clone()
    end = lbfgs_minimise(problem.risk, theta, max_iter)
    if abs(float(problem.risk(end)) - problem.baseline.value) <= 1e-6 and problem.kink_margin(end) < 1e-3:
        return end                           # at a global minimum on the non-smooth set: no Hessian there
    return newton_polish(problem, end, polish, tol=tol * 1e-2)


def find_critical(problem: Problem, theta0=None, *, seed: int = 0, tol: float = T.GRAD_TOL,
                  max_iter: int = 500) -> torch.Tensor:
    """A critical point of any index from ``theta0`` (default ``problem.start(seed)``): Levenberg–Marquardt on
    ``∇R = 0`` (merit ``‖∇R‖²``, the ratio of actual to predicted decrease decides each step), exact Hessian."""
    theta = (problem.start(seed) if theta0 is None else torch.as_tensor(theta0, dtype=torch.float64)).clone()
    return _levenberg_marquardt(problem, theta, tol, max_iter)
