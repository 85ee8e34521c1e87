"""The tolerances that define "critical", "kinked" and "converged", and the size thresholds, in one place.

The finder, :func:`~resland.certificate.certify`, the census and the CLI all read them from
here, so a run the finder calls ``converged`` is one ``certify`` calls critical.

Conventions: mean risk ``R``, ``‖·‖`` the Euclidean norm of the flat parameter vector,
``scale(R) = max(1, |R|)`` (the risk's own magnitude, floored at 1 so that risks near 0 do
not ask for gradients below rounding).
"""

from __future__ import annotations

import math

import torch

#: Machine epsilon of float64, the working precision.
EPS64 = float(torch.finfo(torch.float64).eps)


def eps(dtype: torch.dtype = torch.float64) -> float:
    """Machine epsilon of ``dtype``: the tolerances below are multiples of it (float64 unless told)."""
    return float(torch.finfo(dtype).eps)


#: Critical point: ``‖∇R(θ)‖ ≤ GRAD_TOL · max(1, |R(θ)|)``. 1e-10 is ~5·10⁵ eps: far above the
#: rounding of a gradient of a risk of order 1 and small enough that the gap bound it implies
#: (``‖∇R‖·‖θ‖``) is below ``RISK_TOL`` for ``‖θ‖ ≤ 1``.
GRAD_TOL = 1e-10
#: Distance test of a converged run: the regularised Newton step with shift ``‖∇R‖`` is at most
#: ``XTOL · (1 + ‖θ‖)``. It separates a critical point from a flat path to infinity.
XTOL = 1e-6
#: A risk at or below this, under a loss that vanishes only at infinity (logistic, cross-entropy), is the loss
#: vanishing along a path to infinity: ‖∇R‖ is then small because R is, and the gradient test proves nothing
#: (outcomes.vanishing).
VANISHING_RISK = 1e-10
#: The finders' defaults (find_critical_point(s), the matrix-free solve, the CLI and census specs): iterations,
#: and the parameter norm past which a run is called diverging.
MAX_ITER = 200
MAX_NORM = 1e6
#: Kink: a ReLU-type pre-activation with ``|z| ≤ KINK_TOL · max(1, max|z|)`` at a data point.
KINK_TOL = 1e-8
#: Pairs with ``|z| ≤ KINK_CAPTURE · max(1, max|z|)`` are taken as kinked by the kink polish
#: (a run that approaches a kink drives its pre-activation to 1e-12..1e-6 while ‖∇R‖ stays large).
KINK_CAPTURE = 1e-5
#: Linear-equivalent predictions: ``max_i |f_i − f_lin,i| ≤ PRED_TOL · max(1, max|f_lin|)``. At a
#: risk within 1e-10 of R_lin a strictly convex loss allows prediction gaps of order √1e-10.
PRED_TOL = 1e-4
#: Risk comparisons: ``RISK_TOL · max(1, |R_lin|)``.
RISK_TOL = 1e-10
#: Polish standard (certificate): a candidate local_minimum_worse or degenerate point is polished to
#: ``‖∇R‖ ≤ POLISH_GRAD_TOL · max(1, |R|)`` (or until it stalls) in at most ``POLISH_ITER`` finder
#: iterations, and must not move more than ``POLISH_MAX_MOVE · (1 + ‖θ‖)``.
POLISH_GRAD_TOL = 1e-12
POLISH_ITER = 30
POLISH_MAX_MOVE = 1e-4
#: A linear-risk interval wider than ``WIDE_INTERVAL · max(1, |R_lin|)`` says why (LinearFit.why_wide).
WIDE_INTERVAL = 1e-10
#: A risk decrease is real when it exceeds ``DECREASE_FACTOR · m · eps · max(1, |R|)`` (the
#: rounding of a mean of ``m`` losses, with a margin).
DECREASE_FACTOR = 100
#: Optimality of a linear fit (resland.linear): ``‖∇‖ ≤ LINEAR_GRAD_TOL · (1/m)‖|A|ᵀ(|ℓ'| + ℓ''|y|)‖``,
#: the gradient relative to the size of its own terms.
LINEAR_GRAD_TOL = 1e-8


# The higher-order test at a degenerate critical point (resland.higher_order, docs/theory.md §8).
#: First radius ``r_0 = HO_RADIUS · max(1, ‖θ‖)``; radii halve ``HO_RADII`` times.
HO_RADIUS = 0.5
HO_RADII = 24
#: Random directions in the null space (plus the ± basis vectors, at most ``HO_BASIS`` of them).
HO_RANDOM = 16
HO_BASIS = 16
#: A verified descent persists over at least this many consecutive radii.
HO_MIN_RUN = 3
#: The run may end where the extrapolated decrease falls below ``HO_ROUNDING · decrease_tol``.
HO_ROUNDING = 10.0
#: The fitted order at the end of a run is at most this, and at most twice the previous one plus 1
#: (a decrease that vanishes abruptly is a basin edge, not a power law).
HO_MAX_ORDER = 16.0
#: The matrix-free test (n above dense_max_params): LOBPCG's block of approximate null directions and its
#: iteration cap, the random directions in their span, and the MINRES products and relative residual of
#: each second-order correction ``h₂`` (:func:`resland.higher_order.analyse_null_space_krylov`).
HO_KRYLOV_BLOCK = 4
HO_KRYLOV_ITER = 60
HO_KRYLOV_RANDOM = 4
HO_KRYLOV_PRODUCTS = 20
HO_KRYLOV_RTOL = 1e-8
#: ``h₂`` is used only when MINRES brings the residual below this fraction of the right-hand side.
HO_KRYLOV_ACCEPT = 0.1
#: The matrix-free radii begin this many halvings above ``r_0`` (so at ``2³ r_0``) and end at the dense test's last.
HO_KRYLOV_EXTRA_RADII = 3
#: The dense test batches ``HO_VMAP_BYTES // CHUNK_BYTES`` paths per ``vmap`` on chunked samples (all paths on one batch).
HO_VMAP_BYTES = 2**30
#: A matrix-free path stops after this many consecutive radii whose risk change is within decrease_tol.
HO_KRYLOV_QUIET = 3


# Size thresholds: where an algorithm switches from a dense to an iterative form (n = parameters).
#: Largest n for which a dense Hessian (n² floats) is built at all: a memory and time guard.
DENSE_MAX_PARAMS = 2000
#: Up to this n the dense Hessian + ``eigh`` beats Lanczos for the two extremes of one model
#: (benchmarks/bench_dense_threshold.py).
DENSE_EIG_MAX = 100
#: The same crossover for a stack of members (batched Lanczos wins sooner; docs/performance.md).
BATCHED_DENSE_MAX = 32
#: The finder takes dense-Hessian steps up to this n and Krylov (MINRES on HVPs) steps above.
FINDER_DENSE_MAX = 500
#: Below this n the finder tries second-order steps at every iteration; above, only once the
#: gradient is small (GGN steps are cheaper there and as good far from a critical point).
NEWTON_ALWAYS_MAX = 150
#: The kink polish (kinks.analyse_kink) builds dense Lagrangian Hessians; above this n it is skipped.
KINK_POLISH_MAX_PARAMS = 2000
#: Work budget of one kink polish, in units of ``n²·m`` (one Lagrangian Hessian): its iterations are
#: capped at ``max(KINK_POLISH_MIN_ITER, KINK_POLISH_WORK / (n²·m))``. 1e9 is 805 iterations at n = 53,
#: m = 442 (diabetes' depth-1 nets need 150–500) and 112 at n = 137, m = 442, where each iteration
#: costs ~0.4 s: a deep net's polish stays under a minute.
KINK_POLISH_WORK = 1e9
KINK_POLISH_MIN_ITER = 10


# Matrix-free computation at scale (resland.krylov).
#: From this many samples on, the risk and its products are summed over chunks of samples
#: (:class:`resland.krylov.ChunkedRisk`); below, one batch (the atlas's sets keep their rounding).
CHUNKED_MIN_ROWS = 4096
#: Activation bytes one chunk may hold during a forward-over-reverse product, the copies of each
#: activation such a product keeps, and the smallest chunk.
CHUNK_BYTES = 256 * 2**20
CHUNK_COPIES = 6
CHUNK_MIN_ROWS = 256
#: Up to this many chunks the graphs of one iterate are kept between products (ChunkedRisk.graphs).
CACHED_CHUNKS = 4
#: A finder run whose damping passes this stops as ``stalled``: no step lowers its merit.
MU_MAX = 1e12
#: Above ``NEWTON_ALWAYS_MAX`` parameters, ``kind="minimum"`` offers Hessian steps once
#: ``‖∇R‖ ≤ NEWTON_SWITCH·max(1, |R|)`` (or where GGN's damping shows it failing); GGN steps before.
NEWTON_SWITCH = 1e-3
#: The dense finder's GGN step builds the m × n Jacobian; above this many floats (200 MB) the
#: matrix-free finder (resland.krylov) runs instead.
JACOBIAN_MAX_FLOATS = 25_000_000
#: Products per inner Krylov solve of the matrix-free finder (CG on the GGN, MINRES on the Hessian).
KRYLOV_SOLVE_MAX = 250


def kink_polish_iter(kink_iter: int, n: int, m: int) -> int:
    """The kink polish's iteration cap: ``kink_iter``, within the work budget ``KINK_POLISH_WORK``."""
    return int(min(kink_iter, max(KINK_POLISH_MIN_ITER, KINK_POLISH_WORK // (n * n * m))))
#: Largest model ``init_model`` builds (0.8 GB of float64 parameters; resources.py checks memory).
MAX_PARAMS = 10**8
#: Exact rational R_lin bounds (resland.linear) up to this work ``m·k²`` (k = columns of ``[X, 1]``;
#: digits, 1797 × 65, is 7.6e6 and takes ~6 s; diabetes ~0.05 s).
EXACT_MAX_WORK = 4e6
#: Lanczos basis: as large as ``LANCZOS_MEMORY`` bytes allow for the operators of one call, between
#: ``LANCZOS_BASIS_MIN`` and ``LANCZOS_BASIS_MAX`` vectors. Thick restarts of a small basis cost many
#: products at interpolating minima (eigenvalues clustered near 0; docs/performance.md).
LANCZOS_MEMORY = 512 * 2**20
LANCZOS_BASIS_MIN = 64
LANCZOS_BASIS_MAX = 200


def lanczos_basis(k: int, n: int, itemsize: int = 8) -> int:
    """Default Lanczos basis size for ``k`` operators of dimension ``n`` (see ``LANCZOS_MEMORY``)."""
    fits = LANCZOS_MEMORY // (itemsize * max(1, k) * max(1, n)) - 1
    return int(min(LANCZOS_BASIS_MAX, max(LANCZOS_BASIS_MIN, fits)))


def scale(risk: float) -> float:
    """``max(1, |R|)``; 1 for a non-finite risk."""
    return max(1.0, abs(risk)) if math.isfinite(risk) else 1.0


def grad_tol(risk: float, tol: float = GRAD_TOL) -> float:
    """The gradient threshold of a critical point at risk ``R``: ``tol · max(1, |R|)``."""
    return tol * scale(risk)


def is_critical(risk: float, grad_norm: float, tol: float = GRAD_TOL) -> bool:
    """The one definition of "critical": finite risk and ``‖∇R‖ ≤ tol · max(1, |R|)``."""
    return math.isfinite(risk) and math.isfinite(grad_norm) and grad_norm <= grad_tol(risk, tol)


def risk_tol(linear_risk: float) -> float:
    """``RISK_TOL · max(1, |R_lin|)``."""
    return RISK_TOL * scale(linear_risk)


def decrease_tol(m: int, risk: float, dtype: torch.dtype = torch.float64) -> float:
    """``DECREASE_FACTOR · m · eps · max(1, |R|)``: the smallest risk decrease taken as real."""
    return DECREASE_FACTOR * m * eps(dtype) * scale(risk)


def lambda_tol(n: int, lambda_abs_max: float, grad_size: float, dtype: torch.dtype = torch.float64) -> float:
    """Curvature resolution: ``max(100·n·eps·max(1, |λ|_max), 10·grad_size)``.

    An eigenvalue within it of 0 is 0 as far as float64 can tell (docs/theory.md §6); below ``−lambda_tol``
    it is negative curvature. ``grad_size`` is the gradient threshold (certificate) or the
    gradient norm (finder): a residual gradient blurs curvature by about that much.
    """
    return max(100 * n * eps(dtype) * max(1.0, lambda_abs_max), 10 * grad_size)
