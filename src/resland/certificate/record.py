"""The frozen :class:`Certificate` and :func:`certify` (the module docstring of :mod:`resland.certificate`)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import tolerances as T
from .._json import jsonable
from ..curvature import EigResult
from ..functional import FlatRisk
from ..krylov import risk_of
from ..linear import LinearFit
from ..losses import Loss
from ..functional import prepare_model
from .evidence import Escape, Evidence, is_singular, gather_evidence
from .verdicts import WORSE_NO_NEGATIVE, decide


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
    model = prepare_model(model)          # float64, eval mode (a warned copy when it is not)
    fr = risk_of(model, X, y, loss)       # summed over chunks of samples on large data
    theta = fr.theta0
    ev = gather_evidence(model, fr, theta, tol=tol, fit=fit, eig=eig, dense_max_params=dense_max_params, seed=seed)
    verdict, reason = decide(ev)
    keep = keep_parameters or verdict in WORSE_NO_NEGATIVE + ("inconclusive",)
    return _certificate(ev, fr, model, verdict, reason, theta if keep else None)



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
        singular=None if eig is None else is_singular(ev), linear_equivalent=ev.linear_equivalent,
        trivial=ev.trivial, units=ev.units, higher_order=None if ev.null is None else ev.null.to_dict(),
        kink_margin=ev.kink_margin, tolerances=ev.tolerances, n_params=fr.n, n_samples=fr.m, loss=fr.loss.name,
        model_config=model.config() if hasattr(model, "config") else {"model": type(model).__name__},
        data_sha256=_data_hash(fr), parameters=None if theta is None else theta.detach().cpu().tolist(),
        **ev.theory,
    )



def _data_hash(fr: FlatRisk) -> str:
    h = hashlib.sha256()
    h.update(fr.X.detach().cpu().numpy().tobytes())
    h.update(fr.y.detach().cpu().numpy().tobytes())
    return h.hexdigest()
