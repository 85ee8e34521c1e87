"""The evidence a verdict reads (:func:`gather_evidence`): gradient, linear baseline, kinks, Hessian
extremes, the escape check, the null-space analysis of docs/theory.md §8 and the polish standard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import theory
from .. import tolerances as T
from .._checks import check_positive_float
from ..critical import find_critical_point
from ..curvature import EigResult, HessianOperator
from ..families import family_of
from ..functional import FlatRisk
from ..higher_order import NullAnalysis, analyse_null_space, analyse_null_space_krylov
from ..linear import LinearFit, linear_fit_for
from ..models import ResNet
from ..regions import preactivation_extent
from ..symmetry import unit_activity


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
            no negative curvature: :func:`~resland.higher_order.analyse_null_space`, or matrix-free
            :func:`~resland.higher_order.analyse_null_space_krylov` when ``λ_min`` rests on Krylov).
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
        if self.risk <= self.fit.risk_upper + self.tolerances["risk_tol"]:
            return None
        if self.null is None:
            return "null"
        saddle = self.null.test is not None and self.null.test.found
        # matrix-free, no descent found: inconclusive whatever a polish says (no minimum can be certified)
        return "polish" if self.polish is None and not saddle and self.null.complete else None



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
    fit = linear_fit_for(model, fr.X, fr.y, fr.loss, fit)
    tols = {
        "grad_tol": T.grad_tol(R, T.GRAD_TOL if tol is None else check_positive_float("tol", tol)),
        "risk_tol": T.risk_tol(fit.risk),
        "decrease_tol": T.decrease_tol(fr.m, R),
    }
    ev = Evidence(R, gnorm, fit, tols, theta_norm=float(torch.linalg.norm(theta)))
    if not (math.isfinite(R) and math.isfinite(gnorm)):
        return ev
    with torch.no_grad():
        f = _identified(fr.predict(theta), fr)
    ev.linear_equivalent, tols["pred_tol"] = _linear_equivalent(fr, f, R, fit, tols["risk_tol"])
    ev.trivial, tols["constant_tol"] = _trivial(f, ev.linear_equivalent)
    ev.units = unit_activity(model, fr.X)
    if family_of(model).residual and fr.k == 1:          # §4's bounds are for one output
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
                                  "not excluded, and docs/theory.md §8's null space is probed matrix-free")
    need = ev.needs()
    if need == "escape":
        ev.escape = _escape(fr, theta, g, ev.eig.vec_min, R, tols["decrease_tol"], ev.eig.hv_min)
    elif need == "null":
        if ev.dense:
            ev.null = analyse_null_space(fr, theta, HessianOperator(fr, theta).dense(), lambda_tol=tols["lambda_tol"],
                                         decrease_tol=tols["decrease_tol"], risk=R, seed=seed)
        else:
            ev.null = analyse_null_space_krylov(fr, theta, lambda_tol=tols["lambda_tol"], decrease_tol=tols["decrease_tol"],
                                                risk=R, seed=seed, start=ev.eig.vec_min)
        if ev.needs() == "polish":
            ev.polish, polish_tols = _polish(model, fr, theta, fit, tols["decrease_tol"])
            tols.update(polish_tols)
    return ev



def _set_lambda_tol(ev: Evidence, n: int) -> None:
    ev.tolerances["lambda_tol"] = T.lambda_tol(n, abs(ev.eig.lambda_max), ev.tolerances["grad_tol"])


def is_singular(ev: Evidence) -> bool:
    return abs(ev.eig.lambda_min) <= ev.tolerances["lambda_tol"] + ev.eig.residual


def _polish(model, fr: FlatRisk, theta, fit: LinearFit, decrease_tol: float) -> tuple[dict, dict]:
    """The polish standard's polish: ``kind="any"`` to POLISH_GRAD_TOL, at most POLISH_ITER iterations;
    ``(record, tolerances it adds)``."""
    cp = find_critical_point(model, fr.X, fr.y, fr.loss, kind="any", tol=T.POLISH_GRAD_TOL,
                             max_iter=T.POLISH_ITER, fit=fit)
    theta_p = torch.cat([p.detach().reshape(-1) for p in cp.model.parameters()]).to(theta)
    R_p, g_p = fr.risk_and_grad(theta_p)
    gn_p = float(torch.linalg.norm(g_p))
    added = {"polish_grad_tol": T.grad_tol(R_p, T.POLISH_GRAD_TOL),
             "polish_max_move": T.POLISH_MAX_MOVE * (1.0 + float(torch.linalg.norm(theta)))}
    record = {"risk": R_p, "grad_norm": gn_p, "distance": float(torch.linalg.norm(theta_p - theta)),
              "iterations": cp.iterations, "status": cp.status,
              "err": gn_p * max(1.0, float(torch.linalg.norm(theta_p))) + decrease_tol}
    return record, added



def _identified(f: torch.Tensor, fr: FlatRisk) -> torch.Tensor:
    """Predictions as the loss sees them: the logits of a cross-entropy centred over the classes (a shift
    of a sample's logits changes nothing), else as they are."""
    return f - f.mean(-1, keepdim=True) if fr.loss.coupled else f


def _linear_equivalent(fr: FlatRisk, f: torch.Tensor, R: float, fit: LinearFit, risk_tol: float) -> tuple[bool, float]:
    """``(linear_equivalent, pred_tol)``: ``R`` within ``risk_tol`` of the ``R_lin`` interval and (when attained)
    the predictions ``f`` ((m,) or (m, k), :func:`_identified`) equal to the best linear ones within
    ``pred_tol = PRED_TOL · max(1, max|f_lin|)`` (``max|f|`` in place of ``max|f_lin|`` when ``R_lin`` is
    not attained)."""
    f_lin = None
    if fit.attained:
        coef = torch.as_tensor(np.asarray(fit.coef), dtype=f.dtype)
        if coef.ndim == 2:                                   # W (k, d), w0 (k,)
            f_lin = _identified(fr.X @ coef.T + torch.as_tensor(np.asarray(fit.intercept), dtype=f.dtype), fr)
        else:
            f_lin = fr.X @ coef + float(fit.intercept or 0.0)
    tol = T.PRED_TOL * max(1.0, float((f if f_lin is None else f_lin).abs().max()))
    if not fit.risk_lower - risk_tol <= R <= fit.risk_upper + risk_tol:
        return False, tol
    if f_lin is None:
        # k outputs: a wide interval (a weak dual bound) does not place R at R_lin
        return bool(f.ndim == 1 or fit.risk_upper - fit.risk_lower <= T.WIDE_INTERVAL * max(1.0, abs(fit.risk_upper))), tol
    return bool(float((f - f_lin).abs().max()) <= tol), tol


def _trivial(f: torch.Tensor, linear_equivalent: bool) -> tuple[str, float]:
    """``(trivial, constant_tol)``: ``linear`` (linear-equivalent), ``constant`` (the predictions ``f`` ((m,),
    or each output of (m, k)) vary over the samples by at most ``constant_tol = PRED_TOL · max(1, max|f|)``)
    or ``none`` (docs/theory.md §8)."""
    tol = T.PRED_TOL * max(1.0, float(f.abs().max()))
    if linear_equivalent:
        return "linear", tol
    spread = float((f.amax(0) - f.amin(0)).max())
    return ("constant" if spread <= tol else "none"), tol


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
