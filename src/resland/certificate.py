"""The certificate of docs/theory.md §5: one verdict, with its evidence and tolerances.

:func:`certify` works in three steps: :func:`gather_evidence` computes what the verdict will read
(gradient, linear baseline, kink extent, Hessian extremes at critical points, the escape check
at negative curvature, the symmetry directions and higher-order test and the polish of a point
worse than linear), :func:`decide` maps that
:class:`Evidence` to a verdict and its reason without computing anything, and the frozen
:class:`Certificate` is built once from both.

Verdicts, decided in this order:

* ``nondifferentiable``: a pre-activation of a kinked activation (``nn.ReLU``,
  ``nn.LeakyReLU`` modules) is within ``kink_tol`` of 0 at some data point, so neither the
  gradient nor the Hessian is defined there;
* ``not_critical``: ``‖∇R‖₂ > grad_tol``;
* ``better_than_linear``: ``R ≤ R_lin,lower + risk_tol`` (``[R_lin,lower, R_lin,upper]`` holds the
  exact infimum of the float64 data: :class:`~resland.linear.LinearFit`);
* ``strict_saddle``: ``λ_min + residual ≤ −lambda_tol``, the eigenvector ``v`` has
  ``vᵀHv < 0`` by a fresh HVP, and a backtracking step ``α ∈ {1, ½, ¼, …}`` along ``±v``
  (the sign with ``∇Rᵀv ≤ 0``) actually lowers the risk by more than ``decrease_tol``;
* for a critical point worse than linear (``R > R_lin,upper + risk_tol``) with no eigenvalue below
  ``−lambda_tol``, second order alone does not decide; docs/theory.md §8 splits it, on the dense
  spectrum (:mod:`resland.higher_order`):

  * ``local_minimum_worse``: the Hessian is positive definite (``> lambda_tol``) on the complement
    of the model's exact symmetry directions (:mod:`resland.symmetry`, each named and checked
    null by a fresh product), and the point meets the *polish standard*: polished (Newton/LM,
    ``kind="any"``, to ``‖∇R‖ ≤ POLISH_GRAD_TOL·max(1, |R|)`` or until it stalls) without moving
    more than ``polish_max_move``, still critical, and ``R_p − R_lin,upper > risk_tol + err``
    with ``err = ‖∇R(θ_p)‖·max(1, ‖θ_p‖) + decrease_tol`` (the residual-gradient term of
    docs/theory.md §4.1, plus the rounding of ``R``);
  * ``degenerate_saddle``: a null space that no symmetry explains, along which the higher-order
    test finds a verified descent: ``escape_direction`` and ``escape_step`` reach a point whose
    risk, recomputed, is lower by more than ``decrease_tol``; and ``R − R_lin,upper > risk_tol + err``;
  * ``degenerate``: such a null space and no verified descent within the probe radii; the
    polish standard as for a minimum. ``higher_order`` records the null dimension, the radii and
    the best probe risk;

  a polish that closes the gap gives ``better_than_linear``; anything else is ``inconclusive``;
* ``inconclusive``: the numerical checks disagree (``λ_min`` is negative beyond tolerance
  but neither ``vᵀHv < 0`` nor a risk decrease can be verified, or the eigensolver did
  not converge), ``R`` lies inside the ``R_lin`` interval (plus ``risk_tol``), the dense spectrum
  the §8 split needs exceeds ``dense_max_params``, or a point worse than linear fails its
  standard. resland says so rather than guess.

Every certificate also says whether the point is *trivial* evidence (docs/theory.md §8):
``trivial = "linear"`` (linear-equivalent, §7), ``"constant"`` (the predictions on the data are
constant to ``pred_tol``: a dead or saturated network, whose risk is the constant predictor's) or
``"none"``; ``units`` counts the dead and saturated hidden units. Only ``trivial = "none"`` is
evidence.

Default tolerances (``eps`` = float64 machine epsilon, ``n`` parameters, ``m`` samples)::

    grad_tol     = GRAD_TOL · max(1, |R|)              (GRAD_TOL = 1e-10, or the ``tol`` argument;
                                                        the finder's definition of critical)
    kink_tol     = KINK_TOL · max(1, max |pre-activation|)   (1e-8)
    risk_tol     = RISK_TOL · max(1, |R_lin|)          (1e-10)
    pred_tol     = PRED_TOL · max(1, max |f_lin|)      (1e-4; linear_equivalent)
    lambda_tol   = max(100 · n · eps · max(1, |λ_max|), 10 · grad_tol)
    decrease_tol = 100 · m · eps · max(1, |R|)
    polish_grad_tol = POLISH_GRAD_TOL · max(1, |R_p|)  (1e-12; the polish standard)
    polish_max_move = POLISH_MAX_MOVE · (1 + ‖θ‖)       (1e-4)

All are defined in :mod:`resland.tolerances`. Every tolerance used is reported in
``Certificate.tolerances``, and each verdict's reason names the bound that decided it.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .curvature import EigResult, HessianOperator
from .functional import FlatRisk
from .higher_order import NullAnalysis, analyse_null_space
from .linear import LinearFit, NotAttainedWarning, best_linear
from .losses import Loss
from .models import ResNet
from . import theory
from . import tolerances as T
from ._checks import check_positive_float
from ._json import jsonable
from .regions import preactivation_extent
from .symmetry import unit_activity

VERDICTS = ("not_critical", "nondifferentiable", "better_than_linear", "strict_saddle", "degenerate_saddle",
            "local_minimum_worse", "degenerate", "inconclusive")
#: The verdicts of a critical point worse than linear without negative curvature (docs/theory.md §8).
WORSE_NO_NEGATIVE = ("degenerate_saddle", "local_minimum_worse", "degenerate")
#: The verdicts that certify a critical point: the dichotomy's cells, in the order tables show them.
CERTIFIED = ("better_than_linear", "strict_saddle") + WORSE_NO_NEGATIVE
#: Kinds of trivial evidence (docs/theory.md §8); only ``none`` counts.
TRIVIAL = ("none", "linear", "constant")


@dataclass(frozen=True)
class Certificate:
    """The verdict at one parameter vector, with its evidence (see the module docstring).

    Attributes:
        verdict: one of ``VERDICTS``; reason: one line saying why.
        risk, linear_risk, linear_attained: ``R(θ)``, ``R_lin`` and whether it is attained.
        linear_risk_lower, linear_risk_upper: the interval that holds the exact ``R_lin``.
        polish: for a candidate ``local_minimum_worse`` or ``degenerate``, the polished point's ``risk``, ``grad_norm``,
            ``distance`` (``‖θ_p − θ‖``), ``iterations``, ``status`` and the error bound ``err``.
        grad_norm: ``‖∇R(θ)‖₂``.
        lambda_min, lambda_max, eig_residual, eig_method: Hessian extremes (None if not computed).
        index: number of eigenvalues ``< −lambda_tol`` (dense spectrum only, else None).
        escape_direction: unit ``v`` (flat tensor): the eigenvector with ``vᵀHv < 0`` (strict
            saddles) or the direction of the higher-order test's escape point (degenerate saddles).
        escape_curvature: ``vᵀHv`` by a fresh HVP (strict saddles); escape_step: the accepted ``α``
            (signed); escape_decrease: ``R(θ) − R(θ + αv) > decrease_tol``, recomputed.
        linear_equivalent: ``|R − R_lin| ≤ risk_tol`` and, when ``R_lin`` is attained, the
            predictions equal the best linear predictions, ``max_i |f_i − (t*ᵀx_i + t0*)| ≤ pred_tol``:
            trivial evidence (a dead or linear branch), counted apart (docs/theory.md §7).
        kink_margin: ``min|z|/max(1, max|z|)`` over ReLU-type pre-activations (None without).
        singular: ``|λ_min| ≤ lambda_tol + residual``: the smallest eigenvalue is 0 as far as
            float64 can tell (docs/theory.md §6: read as 0, never as a sign).
        trivial: ``none``, ``linear`` or ``constant`` (module docstring); units: hidden units,
            dead and saturated (:func:`~resland.symmetry.unit_activity`).
        higher_order: for a critical point worse than linear without negative curvature: the
            symmetry directions projected out, the restricted ``λ_min``, the null dimension and the
            higher-order test (radii, best probe risk, the verified run): docs/theory.md §8.
        gap_bound, near_identity, theory_checks: ResNets only (docs/theory.md §4).
        tolerances: every tolerance used.
        n_params, n_samples, loss, model_config, data_sha256: what was certified.
        parameters: flat parameters, kept for the verdicts of ``WORSE_NO_NEGATIVE`` and
            ``inconclusive`` (to replay) or on request.
    """

    verdict: str
    reason: str
    risk: float
    linear_risk: float
    linear_attained: bool
    grad_norm: float
    linear_risk_lower: float = -math.inf
    linear_risk_upper: float = math.inf
    polish: dict | None = None
    lambda_min: float | None = None
    lambda_max: float | None = None
    eig_residual: float | None = None
    eig_method: str | None = None
    index: int | None = None
    escape_direction: torch.Tensor | None = field(default=None, repr=False)
    escape_curvature: float | None = None
    escape_step: float | None = None
    escape_decrease: float | None = None
    singular: bool | None = None
    linear_equivalent: bool = False
    trivial: str = "none"
    units: dict | None = None
    higher_order: dict | None = None
    kink_margin: float | None = None
    gap_bound: dict | None = None
    near_identity: dict | None = None
    theory_checks: dict | None = None
    tolerances: dict = field(default_factory=dict)
    n_params: int = 0
    n_samples: int = 0
    loss: str = ""
    model_config: dict | None = None
    data_sha256: str = ""
    parameters: list | None = field(default=None, repr=False)

    def _repr_html_(self) -> str:
        """The verdict and its evidence as an HTML table (Jupyter)."""
        import html

        rows = [("verdict", self.verdict), ("reason", self.reason), ("R", self.risk),
                ("R_lin", f"{self.linear_risk:.12g} in [{self.linear_risk_lower:.12g}, {self.linear_risk_upper:.12g}]"),
                ("‖∇R‖", self.grad_norm), ("λ_min", self.lambda_min), ("λ_max", self.lambda_max),
                ("linear-equivalent", self.linear_equivalent), ("kink margin", self.kink_margin),
                ("parameters", self.n_params), ("samples", self.n_samples), ("loss", self.loss)]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>"
                       f"{html.escape(f'{v:.6g}' if isinstance(v, float) else str(v))}</td></tr>" for k, v in rows)
        return f"<table><caption>resland certificate</caption>{body}</table>"

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tensors become lists, non-finite floats become strings)."""
        return jsonable(dict(self.__dict__))


def certify(
    model: nn.Module,
    X,
    y,
    loss: str | Loss = "squared",
    tol: float | None = None,
    *,
    dense_max_params: int = T.DENSE_MAX_PARAMS,
    seed: int = 0,
    keep_parameters: bool = False,
    fit: LinearFit | None = None,
    eig: EigResult | None = None,
) -> Certificate:
    """Certify the model's current parameters (docs/theory.md §5).

    Args:
        model: any ``nn.Module`` with a scalar output; theory fields are filled for
            :class:`~resland.models.ResNet` only.
        X, y: data, shapes (m, d) and (m,) (NumPy or torch); loss: loss name or instance.
        tol: gradient tolerance ``grad_tol`` (default ``GRAD_TOL · max(1, |R|)``, 1e-10).
        dense_max_params: largest ``n`` for which a dense Hessian is allowed (a memory guard).
            The extremes come from the dense spectrum when ``n ≤ min(DENSE_EIG_MAX,
            dense_max_params)`` (the measured crossover), else from Lanczos; a point that
            Lanczos finds without negative curvature (or does not converge on) is decided on the
            dense spectrum whenever ``n ≤ dense_max_params``.
        seed: seeds the Lanczos start vector.
        keep_parameters: store the flat parameters in the certificate for any verdict.
        fit: the best linear predictor of ``(X, y, loss)`` if already computed (one per data set).
        eig: Hessian extremes already computed at exactly these parameters (e.g. by
            :meth:`HessianOperator.extremes <resland.curvature.HessianOperator.extremes>` on a stack);
            used instead of a fresh eigensolve.

    Returns:
        A frozen :class:`Certificate`: the verdict, its one-line reason and the evidence.

    Raises:
        ValidationError: bad data (shapes, non-finite values), an unknown loss, a model whose
            output is not one scalar per sample, or a non-positive ``tol``.
    """
    fr = FlatRisk(model, X, y, loss)
    theta = fr.theta0
    ev = gather_evidence(model, fr, theta, tol=tol, fit=fit, eig=eig, dense_max_params=dense_max_params, seed=seed)
    verdict, reason = decide(ev)
    keep = keep_parameters or verdict in WORSE_NO_NEGATIVE + ("inconclusive",)
    return _certificate(ev, fr, model, verdict, reason, theta if keep else None)


@dataclass
class Escape:
    """A step along an eigenvector ``v`` (unit length): ``vᵀHv`` by a fresh HVP, the accepted step and
    the risk decrease ``R(θ) − R(θ + step·v)`` (None when no step lowered R beyond decrease_tol)."""

    direction: torch.Tensor
    curvature: float | None = None
    step: float | None = None
    decrease: float | None = None


@dataclass
class Evidence:
    """Everything a verdict rests on, gathered before any verdict is decided (:func:`decide`).

    Attributes:
        risk, grad_norm: ``R(θ)`` and ``‖∇R(θ)‖₂``; fit: the certified linear baseline.
        tolerances: the tolerances in use (module docstring), filled as evidence arrives.
        kink: the smallest ``|pre-activation|`` of a ReLU-type unit over the data (None without).
        linear_equivalent: docs/theory.md §7.
        eig: Hessian extremes (at critical points); krylov_note: why ``λ_min`` rests on Krylov.
        escape: the check along the eigenvector of ``λ_min`` (negative curvature only).
        null: symmetry directions, restricted spectrum and higher-order test (worse than linear,
            no negative curvature: :func:`~resland.higher_order.analyse_null_space`).
        polish: the polish standard's polished point (``local_minimum_worse`` and ``degenerate`` candidates).
        theory: ``gap_bound``, ``near_identity`` and ``theory_checks`` (ResNets only).
        trivial: ``none``, ``linear`` or ``constant`` (docs/theory.md §8); units: :func:`~resland.symmetry.unit_activity`.
    """

    risk: float
    grad_norm: float
    fit: LinearFit
    tolerances: dict
    kink: float | None = None
    kink_margin: float | None = None
    linear_equivalent: bool = False
    eig: EigResult | None = None
    krylov_note: str = ""
    escape: Escape | None = None
    null: NullAnalysis | None = None
    polish: dict | None = None
    theory: dict = field(default_factory=dict)
    trivial: str = "none"
    units: dict | None = None
    theta_norm: float = 0.0

    @property
    def critical(self) -> bool:
        """Finite, off every kink and ``‖∇R‖ ≤ grad_tol``."""
        t = self.tolerances
        return (math.isfinite(self.risk) and math.isfinite(self.grad_norm) and self.grad_norm <= t["grad_tol"]
                and not (self.kink is not None and self.kink <= t["kink_tol"]))

    @property
    def negative(self) -> bool:
        """``λ_min + residual ≤ −lambda_tol`` by a converged eigensolver."""
        e = self.eig
        return e is not None and e.converged and e.lambda_min + e.residual <= -self.tolerances["lambda_tol"]

    @property
    def dense(self) -> bool:
        """``λ_min`` comes from the full dense spectrum."""
        return self.eig is not None and self.eig.method.startswith("dense")

    def needs(self) -> str | None:
        """The next evidence the verdict waits for: ``eig``, ``escape``, ``null``, ``polish`` or None."""
        if not self.critical:
            return None
        if self.eig is None:
            return "eig"
        if self.risk <= self.fit.risk_lower + self.tolerances["risk_tol"] or not self.eig.converged:
            return None
        if self.negative:
            return "escape" if self.escape is None else None
        if self.risk <= self.fit.risk_upper + self.tolerances["risk_tol"] or not self.dense:
            return None
        if self.null is None:
            return "null"
        saddle = self.null.test is not None and self.null.test.found
        return "polish" if self.polish is None and not saddle else None


def gather_evidence(model: nn.Module, fr: FlatRisk, theta: torch.Tensor, *, tol: float | None = None,
                    fit: LinearFit | None = None, eig: EigResult | None = None,
                    dense_max_params: int = T.DENSE_MAX_PARAMS, seed: int = 0) -> Evidence:
    """Collect the evidence for a verdict at ``theta`` (flat parameters, shape (n,)), computing only
    what the verdict will read.

    Raises:
        ValidationError: a non-positive ``tol``.
    """
    R, g = fr.risk_and_grad(theta)
    gnorm = float(torch.linalg.norm(g))
    if fit is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotAttainedWarning)
            fit = best_linear(fr.X, fr.y, fr.loss, bias=getattr(model, "out_bias", True))
    tols = {
        "grad_tol": T.grad_tol(R, T.GRAD_TOL if tol is None else check_positive_float("tol", tol)),
        "risk_tol": T.risk_tol(fit.risk),
        "decrease_tol": T.decrease_tol(fr.m, R),
    }
    ev = Evidence(R, gnorm, fit, tols, theta_norm=float(torch.linalg.norm(theta)))
    if not (math.isfinite(R) and math.isfinite(gnorm)):
        return ev
    with torch.no_grad():
        f = fr.predict(theta)
    ev.linear_equivalent, tols["pred_tol"] = _linear_equivalent(fr, f, R, fit, tols["risk_tol"])
    ev.trivial, tols["constant_tol"] = _trivial(f, ev.linear_equivalent)
    ev.units = unit_activity(model, fr.X)
    if isinstance(model, ResNet):
        ev.theory = _theory(model, fr, fit, R)
    extent = preactivation_extent(model, fr.X)          # (min |z|, max |z|) of ReLU-type units
    tols["kink_tol"] = 0.0 if extent is None else T.KINK_TOL * max(1.0, extent[1])
    if extent is not None:
        ev.kink, ev.kink_margin = extent[0], extent[0] / max(1.0, extent[1])
    if ev.needs() == "eig":
        H = HessianOperator(fr, theta)
        ev.eig = eig if eig is not None else H.extremes(
            dense_max_params=min(T.DENSE_EIG_MAX, dense_max_params), seed=seed)
        _set_lambda_tol(ev, fr.n)
        better = R <= fit.risk_lower + tols["risk_tol"]  # then the verdict never reads λ_min
        if not (better or ev.negative or ev.eig.method.startswith("dense")):
            if fr.n <= dense_max_params:
                # "no negative curvature" is what a Krylov method cannot prove (it could miss an
                # eigenvalue): decide it, or an unconverged solve, on the full dense spectrum.
                ev.eig = H.extremes(method="dense")
                _set_lambda_tol(ev, fr.n)
            else:
                ev.krylov_note = (f"λ_min by {ev.eig.method}: a dense spectrum exceeds dense_max_params = "
                                  f"{dense_max_params}, so a negative eigenvalue missed by the Krylov space is "
                                  "not excluded and the null space of docs/theory.md §8 cannot be tested")
    need = ev.needs()
    if need == "escape":
        ev.escape = _escape(fr, theta, g, ev.eig.vec_min, R, tols["decrease_tol"], ev.eig.hv_min)
    elif need == "null":
        ev.null = analyse_null_space(fr, theta, HessianOperator(fr, theta).dense(), lambda_tol=tols["lambda_tol"],
                                     decrease_tol=tols["decrease_tol"], risk=R, seed=seed)
        if ev.needs() == "polish":
            ev.polish = _polish(model, fr, theta, fit, tols)
    return ev


def decide(ev: Evidence) -> tuple[str, str]:
    """The verdict and its one-line reason, from the evidence alone (module docstring; no computation)."""
    R, fit, t = ev.risk, ev.fit, ev.tolerances
    if not (math.isfinite(R) and math.isfinite(ev.grad_norm)):
        return "not_critical", f"the risk ({R}) or its gradient norm ({ev.grad_norm}) is not finite"
    if ev.kink is not None and ev.kink <= t["kink_tol"]:
        return "nondifferentiable", f"a kinked pre-activation is {ev.kink:.3e} ≤ kink_tol from 0 at a data point"
    if ev.grad_norm > t["grad_tol"]:
        return "not_critical", f"‖∇R‖ = {ev.grad_norm:.3e} > grad_tol = {t['grad_tol']:.3e}"
    if R <= fit.risk_lower + t["risk_tol"]:
        return "better_than_linear", f"R − R_lin,lower = {R - fit.risk_lower:.3e} ≤ risk_tol = {t['risk_tol']:.3e}"
    eig = ev.eig
    if not eig.converged:
        return "inconclusive", f"the {eig.method} eigensolver did not converge"
    if ev.negative:
        esc = ev.escape
        if not esc.curvature < 0:
            return "inconclusive", f"λ_min < 0 but a fresh HVP gives vᵀHv = {esc.curvature:.3e} ≥ 0"
        if esc.step is None:
            return "inconclusive", "λ_min < 0 but no backtracking step along the eigenvector lowered the risk beyond rounding"
        return "strict_saddle", (f"λ_min = {eig.lambda_min:.3e} ≤ −lambda_tol, vᵀHv = {esc.curvature:.3e} < 0, and the "
                                 f"step α = {esc.step:.3g} lowers R by {esc.decrease:.3e} > decrease_tol = "
                                 f"{t['decrease_tol']:.3e}")
    if R <= fit.risk_upper + t["risk_tol"]:
        return "inconclusive", (f"R = {R:.12g} lies inside the R_lin interval [{fit.risk_lower:.12g}, "
                                f"{fit.risk_upper:.12g}] (± risk_tol = {t['risk_tol']:.3e}, bound '{fit.bound}'): "
                                "neither better nor worse than linear can be defended"
                                + (f"; the interval is wide because {fit.why_wide}" if fit.why_wide else ""))
    if ev.null is None:
        return "inconclusive", (f"critical, R − R_lin,upper = {R - fit.risk_upper:.3e} > risk_tol and no eigenvalue below "
                                f"−lambda_tol, but {ev.krylov_note}")
    return _worse_than_linear(ev)


def _worse_than_linear(ev: Evidence) -> tuple[str, str]:
    """Split a critical point worse than linear without negative curvature (docs/theory.md §8)."""
    R, fit, t, eig, nu = ev.risk, ev.fit, ev.tolerances, ev.eig, ev.null
    sym = nu.symmetries
    why = (f"critical, R − R_lin,upper = {R - fit.risk_upper:.3e} > risk_tol, λ_min = {eig.lambda_min:.3e} ≥ "
           f"−lambda_tol = {-t['lambda_tol']:.3e}; {sym['count']} exact symmetry direction(s) projected out "
           f"(max ‖Hξ‖ = {sym['max_residual']:.1e})")
    test = nu.test
    if test is not None and test.found:
        err = ev.grad_norm * max(1.0, ev.theta_norm) + t["decrease_tol"]
        gap = R - fit.risk_upper
        if gap <= t["risk_tol"] + err:
            return "inconclusive", (f"{why}; a degenerate saddle, but R − R_lin,upper = {gap:.3e} ≤ risk_tol + err = "
                                    f"{t['risk_tol'] + err:.3e}: not shown worse than linear")
        return "degenerate_saddle", (
            f"{why}; null space of dimension {nu.null_dim} beyond them, and the higher-order test finds a verified "
            f"descent: order ≈ {test.order:.2g} at radii {test.run[0]:.2e}…{test.run[1]:.2e}, the escape point "
            f"(step {test.step:.3e}) lowers R by {test.decrease:.3e} > decrease_tol (case (ii) fails: no negative "
            "eigenvalue)")
    if nu.null_dim:
        why += (f"; a null space of dimension {nu.null_dim} that no symmetry explains, and no verified descent along "
                f"{test.paths} directions at radii {test.radii[0]:.2e}…{test.radii[1]:.2e} (best probe risk "
                f"{test.best_risk:.12g})")
        return _polish_standard(ev, "degenerate", why)
    why += f"; positive definite on their complement (λ_min there = {nu.restricted_lambda_min:.3e} > lambda_tol)"
    return _polish_standard(ev, "local_minimum_worse", why)


def _polish_standard(ev: Evidence, verdict: str, why: str) -> tuple[str, str]:
    """The polish standard of a point claimed worse than linear (module docstring)."""
    fit, t, p = ev.fit, ev.tolerances, ev.polish
    polished = (f"polished ({p['status']}, {p['iterations']} iterations) to ‖∇R‖ = {p['grad_norm']:.3e}, "
                f"R_p = {p['risk']:.12g}, moved {p['distance']:.3e}")
    if not math.isfinite(p["risk"]) or p["distance"] > t["polish_max_move"]:
        return "inconclusive", (f"a candidate {verdict} whose polish moved {p['distance']:.3e} > polish_max_move = "
                                f"{t['polish_max_move']:.3e}: θ is not close to a critical point the polish can confirm")
    if p["risk"] <= fit.risk_lower + t["risk_tol"]:
        return "better_than_linear", (f"{polished}: R_p − R_lin,lower = {p['risk'] - fit.risk_lower:.3e} ≤ risk_tol "
                                      f"= {t['risk_tol']:.3e} (the candidate's gap was within what the remaining "
                                      "gradient explains)")
    if not T.is_critical(p["risk"], p["grad_norm"]):
        return "inconclusive", f"a candidate {verdict}, {polished}: not critical (> grad_tol)"
    gap, bound = p["risk"] - fit.risk_upper, t["risk_tol"] + p["err"]
    if gap <= bound:
        return "inconclusive", (f"a candidate {verdict}, {polished}: R_p − R_lin,upper = {gap:.3e} ≤ risk_tol + err = "
                                f"{bound:.3e} (err = ‖∇R‖·max(1, ‖θ‖) + decrease_tol, the a-posteriori error)")
    return verdict, f"{why}; {polished}; R_p − R_lin,upper = {gap:.3e} > risk_tol + err = {bound:.3e} (the polish standard)"


def _certificate(ev: Evidence, fr: FlatRisk, model: nn.Module, verdict: str, reason: str, theta) -> Certificate:
    """The frozen certificate, built once from the evidence and the verdict."""
    fit, eig = ev.fit, ev.eig
    test = None if ev.null is None else ev.null.test
    esc = ev.escape if ev.escape is not None else (
        Escape(test.direction, None, test.step, test.decrease) if test is not None and test.found else None)
    return Certificate(
        verdict=verdict, reason=reason, risk=ev.risk, linear_risk=fit.risk, linear_attained=fit.attained,
        grad_norm=ev.grad_norm, linear_risk_lower=fit.risk_lower, linear_risk_upper=fit.risk_upper,
        polish=ev.polish,
        lambda_min=None if eig is None else eig.lambda_min, lambda_max=None if eig is None else eig.lambda_max,
        eig_residual=None if eig is None else eig.residual, eig_method=None if eig is None else eig.method,
        index=None if eig is None else eig.count_below(-ev.tolerances["lambda_tol"]),
        escape_direction=None if esc is None else esc.direction,
        escape_curvature=None if esc is None else esc.curvature,
        escape_step=None if esc is None else esc.step, escape_decrease=None if esc is None else esc.decrease,
        singular=None if eig is None else _singular(ev), linear_equivalent=ev.linear_equivalent,
        trivial=ev.trivial, units=ev.units, higher_order=None if ev.null is None else ev.null.to_dict(),
        kink_margin=ev.kink_margin, tolerances=ev.tolerances, n_params=fr.n, n_samples=fr.m, loss=fr.loss.name,
        model_config=model.config() if hasattr(model, "config") else {"model": type(model).__name__},
        data_sha256=_data_hash(fr), parameters=None if theta is None else theta.detach().cpu().tolist(),
        **ev.theory,
    )


def _set_lambda_tol(ev: Evidence, n: int) -> None:
    ev.tolerances["lambda_tol"] = T.lambda_tol(n, abs(ev.eig.lambda_max), ev.tolerances["grad_tol"])


def _singular(ev: Evidence) -> bool:
    return abs(ev.eig.lambda_min) <= ev.tolerances["lambda_tol"] + ev.eig.residual


def _polish(model, fr: FlatRisk, theta, fit: LinearFit, tols: dict) -> dict:
    """The polish standard's polish: ``kind="any"`` to POLISH_GRAD_TOL, at most POLISH_ITER iterations."""
    from .critical import find_critical_point      # the finder imports this module

    cp = find_critical_point(model, fr.X, fr.y, fr.loss, kind="any", tol=T.POLISH_GRAD_TOL,
                             max_iter=T.POLISH_ITER, fit=fit)
    theta_p = torch.cat([p.detach().reshape(-1) for p in cp.model.parameters()]).to(theta)
    R_p, g_p = fr.risk_and_grad(theta_p)
    gn_p = float(torch.linalg.norm(g_p))
    tols["polish_grad_tol"] = T.grad_tol(R_p, T.POLISH_GRAD_TOL)
    tols["polish_max_move"] = T.POLISH_MAX_MOVE * (1.0 + float(torch.linalg.norm(theta)))
    return {"risk": R_p, "grad_norm": gn_p, "distance": float(torch.linalg.norm(theta_p - theta)),
            "iterations": cp.iterations, "status": cp.status,
            "err": gn_p * max(1.0, float(torch.linalg.norm(theta_p))) + tols["decrease_tol"]}


def _linear_equivalent(fr: FlatRisk, f: torch.Tensor, R: float, fit: LinearFit, risk_tol: float) -> tuple[bool, float]:
    """``(linear_equivalent, pred_tol)``: ``R`` within ``risk_tol`` of the ``R_lin`` interval and (when attained)
    the predictions ``f`` (m,) equal to the best linear ones within ``pred_tol = PRED_TOL · max(1, max|f_lin|)``
    (``max|f|`` in place of ``max|f_lin|`` when ``R_lin`` is not attained)."""
    f_lin = (fr.X @ torch.as_tensor(np.asarray(fit.coef), dtype=f.dtype) + float(fit.intercept or 0.0)
             if fit.attained else None)
    tol = T.PRED_TOL * max(1.0, float((f if f_lin is None else f_lin).abs().max()))
    if not fit.risk_lower - risk_tol <= R <= fit.risk_upper + risk_tol:
        return False, tol
    if f_lin is None:
        return True, tol
    return bool(float((f - f_lin).abs().max()) <= tol), tol


def _trivial(f: torch.Tensor, linear_equivalent: bool) -> tuple[str, float]:
    """``(trivial, constant_tol)``: ``linear`` (linear-equivalent), ``constant`` (the predictions ``f`` (m,)
    vary by at most ``constant_tol = PRED_TOL · max(1, max|f|)``) or ``none`` (docs/theory.md §8)."""
    tol = T.PRED_TOL * max(1.0, float(f.abs().max()))
    if linear_equivalent:
        return "linear", tol
    return ("constant" if float(f.max() - f.min()) <= tol else "none"), tol


def _escape(fr, theta, g, v, R, decrease_tol, hv=None) -> Escape:
    """``vᵀHv`` by a fresh HVP, then backtracking along ``±v`` (the sign with ``∇Rᵀv ≤ 0``) until R drops.

    ``hv`` is ``H v`` from the eigensolver's residual check (a fresh HVP at exactly this θ):
    reused, so the escape test costs no Hessian work; without it one HVP is computed.
    """
    scale = torch.linalg.norm(v)
    v = v / scale
    hv = HessianOperator(fr, theta) @ v if hv is None else hv / scale
    if float(g @ v) > 0:
        v, hv = -v, -hv
    esc = Escape(v, float(v @ hv))
    if not esc.curvature < 0:
        return esc
    alpha = 1.0
    for _ in range(60):
        R_new = float(fr.risk(theta + alpha * v))
        if math.isfinite(R_new) and R - R_new > decrease_tol:
            esc.step, esc.decrease = alpha, R - R_new
            return esc
        alpha *= 0.5
    return esc


def _data_hash(fr: FlatRisk) -> str:
    h = hashlib.sha256()
    h.update(fr.X.detach().cpu().numpy().tobytes())
    h.update(fr.y.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _theory(model: ResNet, fr: FlatRisk, fit, R: float) -> dict:
    """``gap_bound``, ``near_identity`` and ``theory_checks`` of a ResNet (docs/theory.md §4)."""
    q = theory.quantities(model, fr.X, fr.y, fr.loss)
    gb = theory.gap_bound(model, fr.X, fr.y, fr.loss, fit=fit, q=q)
    ni = theory.near_identity_bound(model, fr.X, fr.y, fr.loss, fit=fit, q=q)
    checks = {"gap": R - fit.risk, "within_rigorous_gap_bound": bool(R - fit.risk <= gb.rigorous + 1e-12 * max(1.0, abs(R)))}
    if fit.attained:
        conv = theory.convexity_inequality(model, fr.X, fr.y, fit.coef, fit.intercept, fr.loss, q=q)
        checks.update(convexity_lhs=conv.lhs, convexity_rhs=conv.rhs, convexity_slack=conv.slack)
    return {"gap_bound": gb.to_dict(), "near_identity": ni.to_dict(), "theory_checks": checks}
