"""The certificate of theory.md §5: one verdict, with its evidence and tolerances.

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
* ``violation``: critical, worse than linear and no negative curvature beyond
  ``lambda_tol``: a counterexample candidate; ``to_dict`` then carries the parameters. It must
  meet the *violation standard*: the point is polished (Newton/LM, ``kind="any"``, to
  ``‖∇R‖ ≤ POLISH_GRAD_TOL·max(1, |R|)`` or until it stalls) without moving away, the polished point
  is critical, not ``linear_equivalent``, and ``R_p − R_lin,upper > risk_tol + err`` with the
  a-posteriori error ``err = ‖∇R(θ_p)‖·max(1, ‖θ_p‖) + decrease_tol`` (the residual-gradient term
  of theory.md §4.1, plus the rounding of ``R``). A polish that closes the gap gives
  ``better_than_linear``; anything else is ``inconclusive``, and the reason names the bound;
  When ``λ_min`` is 0 within tolerance the certificate is flagged ``degenerate`` and the
  reason says that second order cannot decide (with a risk-lowering step along the null
  eigenvector, if one is found);
* ``inconclusive``: the numerical checks disagree (``λ_min`` is negative beyond tolerance
  but neither ``vᵀHv < 0`` nor a risk decrease can be verified, or the eigensolver did
  not converge), ``R`` lies inside the ``R_lin`` interval (plus ``risk_tol``), or a candidate
  violation fails the violation standard. Not one of the theory's five: resland says so rather
  than guess.

Default tolerances (``eps`` = float64 machine epsilon, ``n`` parameters, ``m`` samples)::

    grad_tol     = GRAD_TOL · max(1, |R|)              (GRAD_TOL = 1e-10, or the ``tol`` argument;
                                                        the finder's definition of critical)
    kink_tol     = KINK_TOL · max(1, max |pre-activation|)   (1e-8)
    risk_tol     = RISK_TOL · max(1, |R_lin|)          (1e-10)
    pred_tol     = PRED_TOL · max(1, max |f_lin|)      (1e-4; linear_equivalent)
    lambda_tol   = max(100 · n · eps · max(1, |λ_max|), 10 · grad_tol)
    decrease_tol = 100 · m · eps · max(1, |R|)
    polish_grad_tol = POLISH_GRAD_TOL · max(1, |R_p|)  (1e-12; the violation standard)
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

from .curvature import DENSE_EIG_MAX, DENSE_MAX_PARAMS, EigResult, extremes_at
from .functional import FlatRisk
from .linear import LinearFit, NotAttainedWarning, best_linear
from .losses import Loss
from .models import ResNet
from . import theory
from . import tolerances as T
from ._checks import check_positive_float
from .regions import preactivation_extent

VERDICTS = ("not_critical", "nondifferentiable", "better_than_linear", "strict_saddle", "violation", "inconclusive")


@dataclass
class Certificate:
    """The verdict at one parameter vector, with its evidence (see the module docstring).

    Attributes:
        verdict: one of ``VERDICTS``; reason: one line saying why.
        risk, linear_risk, linear_attained: ``R(θ)``, ``R_lin`` and whether it is attained.
        linear_risk_lower, linear_risk_upper: the interval that holds the exact ``R_lin``.
        polish: for a candidate violation, the polished point's ``risk``, ``grad_norm``,
            ``distance`` (``‖θ_p − θ‖``), ``iterations``, ``status`` and the error bound ``err``.
        grad_norm: ``‖∇R(θ)‖₂``.
        lambda_min, lambda_max, eig_residual, eig_method: Hessian extremes (None if not computed).
        index: number of eigenvalues ``< −lambda_tol`` (dense spectrum only, else None).
        escape_direction: unit ``v`` (flat tensor) with ``vᵀHv < 0`` (strict saddles).
        escape_curvature: ``vᵀHv`` by a fresh HVP; escape_step: the accepted ``α`` (signed).
        escape_decrease: ``R(θ) − R(θ + αv) > 0``.
        linear_equivalent: ``|R − R_lin| ≤ risk_tol`` and, when ``R_lin`` is attained, the
            predictions equal the best linear predictions, ``max_i |f_i − (t*ᵀx_i + t0*)| ≤ pred_tol``:
            trivial evidence (a dead or linear branch), counted apart (docs: theory §7).
        kink_margin: ``min|z|/max(1, max|z|)`` over ReLU-type pre-activations (None without).
        degenerate: ``|λ_min| ≤ lambda_tol + residual``: the smallest eigenvalue is 0 as far as
            float64 can tell (theory.md §6: read as 0, never as a sign). A degenerate
            ``violation`` says so in its reason, and reports a step along the null eigenvector
            that lowers ``R`` when one exists (a higher-order saddle).
        gap_bound, near_identity, theory_checks: ResNets only (theory.md §4).
        tolerances: every tolerance used.
        n_params, n_samples, loss, model_config, data_sha256: what was certified.
        parameters: flat parameters, kept for ``violation`` (to replay) or on request.
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
    degenerate: bool | None = None
    linear_equivalent: bool = False
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

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tensors become lists, non-finite floats become strings)."""
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().tolist()
            out[k] = _jsonable(v)
        return out


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else str(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    return v


def certify(
    model: nn.Module,
    X,
    y,
    loss: str | Loss = "squared",
    tol: float | None = None,
    *,
    dense_max_params: int = DENSE_MAX_PARAMS,
    seed: int = 0,
    keep_parameters: bool = False,
    fit: LinearFit | None = None,
    eig: EigResult | None = None,
) -> Certificate:
    """Certify the model's current parameters (theory.md §5).

    Args:
        model: any ``nn.Module`` with a scalar output; theory fields are filled for
            :class:`~resland.models.ResNet` only.
        X, y: data; loss: loss name or instance.
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
            :func:`resland.ensemble.batched_extremes`); used instead of a fresh eigensolve.
    """
    fr = FlatRisk(model, X, y, loss)
    theta = fr.theta0
    R, g = fr.risk_and_grad(theta)
    gnorm = float(torch.linalg.norm(g))
    out_bias = getattr(model, "out_bias", True)
    if fit is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotAttainedWarning)
            fit = best_linear(fr.X, fr.y, fr.loss, bias=out_bias)
    tols = {
        "grad_tol": T.grad_tol(R, T.GRAD_TOL if tol is None else check_positive_float("tol", tol)),
        "risk_tol": T.risk_tol(fit.risk),
        "decrease_tol": T.decrease_tol(fr.m, R),
    }
    cert = Certificate(
        verdict="", reason="", risk=R, linear_risk=fit.risk, linear_attained=fit.attained, grad_norm=gnorm,
        linear_risk_lower=fit.risk_lower, linear_risk_upper=fit.risk_upper,
        tolerances=tols, n_params=fr.n, n_samples=fr.m, loss=fr.loss.name,
        model_config=model.config() if hasattr(model, "config") else {"model": type(model).__name__},
        data_sha256=_data_hash(fr),
    )
    if not (math.isfinite(R) and math.isfinite(gnorm)):
        return _done(cert, "not_critical", f"the risk ({R}) or its gradient norm ({gnorm}) is not finite", theta,
                     keep_parameters)
    cert.linear_equivalent, tols["pred_tol"] = _linear_equivalent(fr, theta, R, fit, tols["risk_tol"])
    if isinstance(model, ResNet):
        _fill_theory(cert, model, fr, fit)

    extent = preactivation_extent(model, fr.X)          # (min |z|, max |z|) of ReLU-type units
    tols["kink_tol"] = kink_tol = 0.0 if extent is None else T.KINK_TOL * max(1.0, extent[1])
    cert.kink_margin = None if extent is None else extent[0] / max(1.0, extent[1])
    kink = None if extent is None else extent[0]
    if kink is not None and kink <= kink_tol:
        return _done(cert, "nondifferentiable",
                     f"a kinked pre-activation is {kink:.3e} ≤ kink_tol from 0 at a data point", theta, keep_parameters)
    if gnorm > tols["grad_tol"]:
        return _done(cert, "not_critical", f"‖∇R‖ = {gnorm:.3e} > grad_tol = {tols['grad_tol']:.3e}",
                     theta, keep_parameters)

    if eig is None:
        eig = extremes_at(fr, theta, method="auto", dense_max_params=min(DENSE_EIG_MAX, dense_max_params), seed=seed)
    _fill_eig(cert, eig, tols)
    if R <= fit.risk_lower + tols["risk_tol"]:
        return _done(cert, "better_than_linear",
                     f"R − R_lin,lower = {R - fit.risk_lower:.3e} ≤ risk_tol = {tols['risk_tol']:.3e}", theta,
                     keep_parameters)
    negative = eig.converged and eig.lambda_min + eig.residual <= -tols["lambda_tol"]
    if not negative and not eig.method.startswith("dense") and fr.n <= dense_max_params:
        # `violation` claims no negative curvature, which a Krylov method cannot prove (it could
        # miss an eigenvalue): decide it, or an unconverged solve, on the full dense spectrum.
        eig = extremes_at(fr, theta, method="dense")
        _fill_eig(cert, eig, tols)
        negative = eig.lambda_min + eig.residual <= -tols["lambda_tol"]
    if not eig.converged:
        return _done(cert, "inconclusive", f"the {eig.method} eigensolver did not converge", theta, True)
    if negative:
        ok, why = _verify_escape(cert, fr, theta, g, eig.vec_min, R, tols["decrease_tol"], eig.hv_min)
        if ok:
            return _done(cert, "strict_saddle", why, theta, keep_parameters)
        return _done(cert, "inconclusive", why, theta, True)
    interval = f"[{fit.risk_lower:.12g}, {fit.risk_upper:.12g}]"
    if R <= fit.risk_upper + tols["risk_tol"]:
        return _done(cert, "inconclusive",
                     f"R = {R:.12g} lies inside the R_lin interval {interval} (± risk_tol = {tols['risk_tol']:.3e}, "
                     f"bound '{fit.bound}'): neither better than linear nor a violation can be defended"
                     + (f"; the interval is wide because {fit.why_wide}" if fit.why_wide else ""), theta, True)
    why = (f"critical, R − R_lin,upper = {R - fit.risk_upper:.3e} > risk_tol and λ_min = {eig.lambda_min:.3e} > "
           f"−lambda_tol = {-tols['lambda_tol']:.3e}")
    if not eig.method.startswith("dense"):
        why += (f" (λ_min by {eig.method}: a dense spectrum exceeds dense_max_params = {dense_max_params}, "
                "so a negative eigenvalue missed by the Krylov space is unlikely but not excluded)")
    if cert.degenerate:
        why += "; λ_min is 0 within lambda_tol: the Hessian is degenerate and second order cannot decide"
        probe = _probe_null_direction(fr, theta, eig.vec_min, R, tols["decrease_tol"])
        if probe is not None:
            cert.escape_direction, cert.escape_step, cert.escape_decrease = eig.vec_min, probe[0], probe[1]
            why += (f"; a step α = {probe[0]:.3g} along the null eigenvector lowers R by {probe[1]:.3e} "
                    "(a higher-order saddle, not a local minimum)")
    verdict, standard = _violation_standard(cert, model, fr, theta, fit, tols)
    return _done(cert, verdict, why + "; " + standard if verdict == "violation" else standard, theta, True)


def _violation_standard(cert: Certificate, model, fr: FlatRisk, theta, fit: LinearFit, tols: dict) -> tuple[str, str]:
    """Polish a candidate violation and decide it (module docstring): ``(verdict, reason)``."""
    from .critical import find_critical_point      # the finder imports this module

    cp = find_critical_point(model, fr.X, fr.y, fr.loss, kind="any", tol=T.POLISH_GRAD_TOL,
                             max_iter=T.POLISH_ITER, fit=fit)
    theta_p = torch.cat([p.detach().reshape(-1) for p in cp.model.parameters()]).to(theta)
    R_p, g_p = fr.risk_and_grad(theta_p)
    gn_p = float(torch.linalg.norm(g_p))
    norm_p = float(torch.linalg.norm(theta_p))
    dist = float(torch.linalg.norm(theta_p - theta))
    err = gn_p * max(1.0, norm_p) + tols["decrease_tol"]
    cert.polish = {"risk": R_p, "grad_norm": gn_p, "distance": dist, "iterations": cp.iterations,
                   "status": cp.status, "err": err}
    tols["polish_grad_tol"] = T.grad_tol(R_p, T.POLISH_GRAD_TOL)
    tols["polish_max_move"] = move = T.POLISH_MAX_MOVE * (1.0 + float(torch.linalg.norm(theta)))
    polished = (f"polished ({cp.status}, {cp.iterations} iterations) to ‖∇R‖ = {gn_p:.3e}, "
                f"R_p = {R_p:.12g}, moved {dist:.3e}")
    if not math.isfinite(R_p) or dist > move:
        return "inconclusive", (f"a candidate violation whose polish moved {dist:.3e} > polish_max_move = "
                                f"{move:.3e}: θ is not close to a critical point the polish can confirm")
    if R_p <= fit.risk_lower + tols["risk_tol"]:
        return "better_than_linear", (f"{polished}: R_p − R_lin,lower = {R_p - fit.risk_lower:.3e} ≤ risk_tol = "
                                      f"{tols['risk_tol']:.3e} (the candidate's gap was within what the remaining "
                                      "gradient explains)")
    if not T.is_critical(R_p, gn_p):
        return "inconclusive", f"a candidate violation, {polished}: not critical (> grad_tol)"
    gap = R_p - fit.risk_upper
    if gap <= tols["risk_tol"] + err:
        return "inconclusive", (f"a candidate violation, {polished}: R_p − R_lin,upper = {gap:.3e} ≤ risk_tol + err = "
                                f"{tols['risk_tol'] + err:.3e} (err = ‖∇R‖·max(1, ‖θ‖) + decrease_tol, the "
                                "a-posteriori error)")
    return "violation", (f"{polished}; R_p − R_lin,upper = {gap:.3e} > risk_tol + err = {tols['risk_tol'] + err:.3e} "
                         "(the violation standard)")


def _linear_equivalent(fr: FlatRisk, theta, R: float, fit: LinearFit, risk_tol: float) -> tuple[bool, float]:
    """``R`` within ``risk_tol`` of the ``R_lin`` interval and (when attained) predictions equal to the best linear ones."""
    if not fit.risk_lower - risk_tol <= R <= fit.risk_upper + risk_tol:
        return False, math.nan
    if not fit.attained:
        return True, math.nan
    with torch.no_grad():
        f = fr.predict(theta)
        f_lin = fr.X @ torch.as_tensor(np.asarray(fit.coef), dtype=f.dtype) + float(fit.intercept or 0.0)
    tol = T.PRED_TOL * max(1.0, float(f_lin.abs().max()))
    return bool(float((f - f_lin).abs().max()) <= tol), tol


def _probe_null_direction(fr, theta, v, R, decrease_tol) -> tuple[float, float] | None:
    """Steps ``±α v`` (``α = 1, ½, …, 2⁻²⁰``) along a zero-curvature eigenvector; the first that lowers R."""
    v = v / torch.linalg.norm(v)
    alpha = 1.0
    for _ in range(21):
        for a in (alpha, -alpha):
            R_new = float(fr.risk(theta + a * v))
            if math.isfinite(R_new) and R - R_new > decrease_tol:
                return a, R - R_new
        alpha *= 0.5
    return None


def _done(cert: Certificate, verdict: str, reason: str, theta: torch.Tensor, keep: bool) -> Certificate:
    cert.verdict, cert.reason = verdict, reason
    if keep:
        cert.parameters = theta.detach().cpu().tolist()
    return cert


def _fill_eig(cert: Certificate, eig: EigResult, tols: dict) -> None:
    tols["lambda_tol"] = lambda_tol = T.lambda_tol(cert.n_params, abs(eig.lambda_max), tols["grad_tol"])
    cert.lambda_min, cert.lambda_max = eig.lambda_min, eig.lambda_max
    cert.eig_residual, cert.eig_method = eig.residual, eig.method
    cert.index = eig.count_below(-lambda_tol)
    cert.degenerate = abs(eig.lambda_min) <= lambda_tol + eig.residual


def _verify_escape(cert, fr, theta, g, v, R, decrease_tol, hv=None) -> tuple[bool, str]:
    """Check ``vᵀHv < 0``, then backtrack along ``±v`` until the risk drops.

    ``hv`` is ``H v`` from the eigensolver's residual check (a fresh HVP at exactly this θ):
    reused, so the escape test costs no Hessian work; without it one HVP is computed.
    """
    scale = torch.linalg.norm(v)
    v = v / scale
    hv = fr.hvp(theta, v) if hv is None else hv / scale
    if float(g @ v) > 0:
        v, hv = -v, -hv
    curvature = float(v @ hv)
    cert.escape_direction, cert.escape_curvature = v, curvature
    if not curvature < 0:
        return False, f"λ_min < 0 but a fresh HVP gives vᵀHv = {curvature:.3e} ≥ 0"
    alpha = 1.0
    for _ in range(60):
        R_new = float(fr.risk(theta + alpha * v))
        if math.isfinite(R_new) and R - R_new > decrease_tol:
            cert.escape_step, cert.escape_decrease = alpha, R - R_new
            return True, (f"λ_min = {cert.lambda_min:.3e} ≤ −lambda_tol, vᵀHv = {curvature:.3e} < 0, and the step "
                          f"α = {alpha:.3g} lowers R by {R - R_new:.3e} > decrease_tol = {decrease_tol:.3e}")
        alpha *= 0.5
    return False, "λ_min < 0 but no backtracking step along the eigenvector lowered the risk beyond rounding"


def _data_hash(fr: FlatRisk) -> str:
    h = hashlib.sha256()
    h.update(fr.X.detach().cpu().numpy().tobytes())
    h.update(fr.y.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _fill_theory(cert: Certificate, model: ResNet, fr: FlatRisk, fit) -> None:
    q = theory.quantities(model, fr.X, fr.y, fr.loss)
    gb = theory.gap_bound(model, fr.X, fr.y, fr.loss, fit=fit, q=q)
    ni = theory.near_identity_bound(model, fr.X, fr.y, fr.loss, fit=fit, q=q)
    cert.gap_bound, cert.near_identity = gb.to_dict(), ni.to_dict()
    checks = {"gap": cert.risk - fit.risk, "within_rigorous_gap_bound": bool(cert.risk - fit.risk <= gb.rigorous + 1e-12 * max(1.0, abs(cert.risk)))}
    if fit.attained:
        conv = theory.convexity_inequality(model, fr.X, fr.y, fit.coef, fit.intercept, fr.loss, q=q)
        checks.update(convexity_lhs=conv.lhs, convexity_rhs=conv.rhs, convexity_slack=conv.slack)
    cert.theory_checks = checks
