"""What a finder run ends with: :class:`CriticalPoint`, the outcomes, the divergence evidence and
the progress reporter. Shared by the dense driver (:mod:`resland.critical`) and the matrix-free
one (:mod:`resland.krylov`); the outcomes are defined in :mod:`resland.critical`'s docstring.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from . import tolerances as T

OUTCOMES = ("critical", "kink", "below_linear", "diverging", "gradient_flat", "unresolved", "failed")
#: Gradient-flat (docs/theory.md §9, Frye et al. 2021): ``‖H∇R‖ ≤ GRADIENT_FLAT_TOL·‖H‖₂‖∇R‖`` at a stopped run whose
#: ``‖∇R‖`` is above the gradient test: the gradient lies in the Hessian's near-null space, where the merit
#: ``½‖∇R‖²`` of a Newton-type saddle search has a vanishing gradient ``H∇R``.
GRADIENT_FLAT_TOL = 1e-3
#: Minimum accepted steps before the ‖θ‖ trend is read as divergence.
DIVERGENCE_MIN_STEPS = 20


@dataclass
class CriticalPoint:
    """Result of the finder for one start.

    Attributes:
        model: a copy of the model at the final parameters.
        risk: ``R`` there; grad_norm: ``‖∇R‖₂``.
        converged: the run ended at a critical point (``outcome`` ``critical`` or ``kink``).
        status: why the driver stopped: ``converged``, ``kink``, ``diverging``, ``max_iter``,
            ``stalled`` or ``nan``.
        outcome: one of :data:`OUTCOMES` (module docstring).
        iterations: driver iterations; seconds: wall time (of the whole batch when batched).
        kind: ``minimum`` or ``any``; method: ``dense`` or ``krylov`` (the curvature backend).
        grad_tol: ``tol · max(1, |R|)`` at the end; newton_step: the distance estimate.
        param_norm: ``‖θ‖``.
        kink_margin: ``min|z|/max(1, max|z|)`` over ReLU-type pre-activations (None without).
        kink: :meth:`resland.kinks.KinkAnalysis.to_dict` when a kink polish ran.
        linear_risk: ``R_lin`` used for ``below_linear``; path_min_risk: the lowest risk on the
            descent path, recomputed (``kind="minimum"``).
        divergence: ``{growth, frac_up, risk_decrease, grad_decay, steps}`` of the second half
            of the accepted steps (None with fewer than 20).
        flatness: for a run that stopped short of critical, ``{"ratio": ‖H∇R‖/(‖H‖₂‖∇R‖), "hg_norm", "h_norm",
            "grad_norm", "tol"}`` (:func:`gradient_flatness`); None otherwise.
        path: for ``method="continuation"``, ``{"steps", "hessians", "folds", "jumps", "t_end", "mu"|"lambda0"}``.
        steps: accepted steps by kind: ``newton`` (regularised), ``newton_mr``, ``ggn``, ``lm``,
            ``escape`` (along negative curvature).
        message: one line saying why the run ended as it did.
        parameters: the final flat parameters for ``unresolved`` and ``failed`` runs.
    """

    model: nn.Module
    risk: float
    grad_norm: float
    converged: bool
    status: str
    outcome: str
    iterations: int
    seconds: float
    kind: str
    grad_tol: float
    newton_step: float
    param_norm: float
    method: str
    message: str
    kink_margin: float | None = None
    kink: dict | None = None
    linear_risk: float | None = None
    path_min_risk: float | None = None
    divergence: dict | None = None
    steps: dict = field(default_factory=dict)
    parameters: list | None = field(default=None, repr=False)
    history: list = field(default_factory=list, repr=False)
    flatness: dict | None = None
    path: dict | None = None

    def to_dict(self, *, timing: bool = True) -> dict:
        """The fields as plain values; ``timing=False`` leaves out the wall time ``seconds``."""
        drop = ("model", "history") if timing else ("model", "history", "seconds")
        return {k: v for k, v in self.__dict__.items() if k not in drop}


#: The progress reporter of the running search, if any (:func:`reporting`).
_PROGRESS: contextvars.ContextVar = contextvars.ContextVar("resland_progress", default=None)


@contextlib.contextmanager
def reporting(callback):
    """Within the block, every finder iteration calls ``callback(stage, iteration, max_iter, grad_norm)``
    (``stage`` is ``"search"`` or ``"kink polish"``; ``grad_norm`` the smallest ‖∇R‖ of the live members)."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def log_progress(every: float = 10.0, stream=None):
    """A progress callback for :func:`reporting` that writes one plain line (stage, iteration, smallest ‖∇R‖, elapsed
    seconds) at most every ``every`` seconds to ``stream`` (default ``sys.stderr``): progress in a log file or a
    notebook, where a terminal spinner shows nothing.

    >>> import io
    >>> out = io.StringIO()
    >>> cb = log_progress(every=0.0, stream=out)
    >>> cb("search", 3, 200, 1.5e-4)
    >>> out.getvalue().split(" (")[0]
    'resland search: iteration 3/200, smallest ‖∇R‖ = 1.500e-04'
    """
    import sys
    import time

    start, last = time.perf_counter(), [-math.inf]

    def callback(stage: str, it: int, total: int, gn: float) -> None:
        now = time.perf_counter()
        if now - last[0] >= every:
            last[0] = now
            print(f"resland {stage}: iteration {it}/{total}, smallest ‖∇R‖ = {gn:.3e} ({now - start:.0f} s)",
                  file=stream or sys.stderr, flush=True)

    return callback


def report_progress(stage: str, it: int, max_iter: int, gn: float) -> None:
    cb = _PROGRESS.get()
    if cb is not None:
        cb(stage, it, max_iter, gn)


#: A run to infinity (both finders' :func:`divergence`, the kink polish's drift test): ``‖θ‖`` grew by this
#: factor over the window, on at least DIVERGENCE_FRAC_UP of its steps, while the risk fell.
DIVERGENCE_GROWTH = 1.05
DIVERGENCE_FRAC_UP = 0.75


def runs_away(norms, risk_decrease: float) -> bool:
    """The one test of a run to infinity over a window of ``‖θ‖`` values ``norms`` (in order) whose risk fell
    by ``risk_decrease``."""
    tn = np.asarray(norms, dtype=float)
    return bool(tn[-1] >= DIVERGENCE_GROWTH * tn[0] and np.mean(np.diff(tn) > 0) >= DIVERGENCE_FRAC_UP
                and risk_decrease > 0)


def divergence(history: list) -> dict | None:
    """Evidence of a run to infinity from ``(R, ‖∇R‖, ‖θ‖)`` per iteration (None if too short).

    Over the second half of the iterations: ``growth = ‖θ‖_end/‖θ‖_mid``, ``frac_up`` the share
    of steps that increased ``‖θ‖``, ``risk_decrease = R_mid − R_end`` and
    ``grad_decay = ‖∇R‖_end/‖∇R‖_mid``. ``diverging``: growth ≥ 1.05, frac_up ≥ 0.75 and the
    risk decreased.
    """
    steps = [h for i, h in enumerate(history) if i == 0 or h != history[i - 1]]
    if len(steps) < DIVERGENCE_MIN_STEPS:
        return None
    half = steps[len(steps) // 2:]
    tn = np.array([h[2] for h in half])
    growth = float(tn[-1] / tn[0]) if tn[0] > 0 else math.inf
    frac_up = float(np.mean(np.diff(tn) > 0))
    risk_decrease = half[0][0] - half[-1][0]
    grad_decay = half[-1][1] / half[0][1] if half[0][1] > 0 else math.nan
    return {"growth": growth, "frac_up": frac_up, "risk_decrease": risk_decrease, "grad_decay": grad_decay,
            "steps": len(steps), "diverging": runs_away(tn, risk_decrease)}


def vanishing(status: str, risk: float, loss) -> tuple[str, str]:
    """A ``converged`` or ``kink`` status at ``R ≤ VANISHING_RISK`` under a loss that vanishes only at infinity
    becomes ``diverging`` (no finite point has so small a risk and a zero gradient; the classes are separated
    and the run heads to infinity); ``(status, note)``."""
    if status in ("converged", "kink") and getattr(loss, "vanishes_at_infinity", False) and risk <= T.VANISHING_RISK:
        return "diverging", (f"; R = {risk:.3e} ≤ {T.VANISHING_RISK:g}: the {loss.name} loss is positive at every "
                             "finite point, so ‖∇R‖ is small because R is (a path to infinity), not a critical point")
    return status, ""


def gradient_flatness(H, g) -> dict:
    """``‖H∇R‖/(‖H‖₂‖∇R‖)`` from a Hessian operator ``H`` (``H @ v``; ``‖H‖₂`` by its extreme eigenvalues) and
    the gradient ``g``: near 0 when ``∇R`` lies in the Hessian's near-null space (a gradient-flat point)."""
    import torch

    hg = float(torch.linalg.norm(H @ g))
    if hasattr(H, "extremes"):
        ext = H.extremes()
        h_norm = max(abs(ext.lambda_min), abs(ext.lambda_max))
    else:
        h_norm = float(torch.linalg.eigvalsh(H).abs().max())
    gn = float(torch.linalg.norm(g))
    ratio = hg / (h_norm * gn) if h_norm > 0 and gn > 0 else math.nan
    return {"ratio": ratio, "hg_norm": hg, "h_norm": h_norm, "grad_norm": gn, "tol": GRADIENT_FLAT_TOL}


def settle_outcome(status: str, path_min: float | None, fit, div: dict | None, flatness_probe):
    """:func:`outcome_of`, with the gradient-flat test (``flatness_probe()``: a :func:`gradient_flatness` dict) run
    only for a run that would otherwise be ``unresolved`` (a probe may return None: no test); ``(outcome, note,
    flatness or None)``."""
    outcome, note = outcome_of(status, path_min, fit, div)
    if outcome != "unresolved":
        return outcome, note, None
    flat = flatness_probe()
    if flat is None:
        return outcome, note, None
    return (*outcome_of(status, path_min, fit, div, flat), flat)


def outcome_of(status: str, path_min: float | None, fit, div: dict | None,
               flat: dict | None = None) -> tuple[str, str]:
    """A run's outcome (first match wins, :mod:`resland.critical`'s docstring) from the driver's final
    ``status``, the lowest risk on the descent path (None for ``kind="any"``), the linear fit and the
    :func:`divergence` evidence; and what to add to the run's message."""
    if status == "nan":
        return "failed", ""
    if status in ("converged", "kink"):
        return ("critical" if status == "converged" else "kink"), ""
    if path_min is not None and path_min < fit.risk_lower - T.risk_tol(fit.risk):
        return "below_linear", (f"; a descent iterate has R = {path_min:.6g} < R_lin,lower = {fit.risk_lower:.6g}: "
                                "every limit is better than linear")
    if status == "diverging" or (div is not None and div["diverging"]):
        return "diverging", ""
    if flat is not None and flat["ratio"] <= flat["tol"]:
        return "gradient_flat", (f"; gradient-flat: ‖H∇R‖ = {flat['hg_norm']:.3e} ≤ {flat['tol']:g}·‖H‖‖∇R‖ = "
                                 f"{flat['tol'] * flat['h_norm'] * flat['grad_norm']:.3e} (ratio {flat['ratio']:.2e}): "
                                 "∇R lies in the Hessian's near-null space; not a critical point")
    return "unresolved", ""
