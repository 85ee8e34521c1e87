"""Certify every member of an :class:`~resland.ensemble.Ensemble` with the Hessian work batched."""

from __future__ import annotations


import torch

from .. import tolerances as T
from ..curvature import EigResult, HessianOperator
from ..ensemble import Ensemble
from ..functional import flat_parameters
from ..linear import LinearFit, linear_fit_for
from .record import Certificate, certify


def certify_ensemble(
    ens: Ensemble,
    theta=None,
    seeds: list[int] | None = None,
    *,
    fit: LinearFit | None = None,
    keep_parameters: bool = False,
    tol: float = T.GRAD_TOL,
) -> list[Certificate]:
    """:func:`~resland.certificate.certify` every row of ``theta`` (k × n), the Hessian work batched.

    ``theta`` may also be the list of :class:`~resland.outcomes.CriticalPoint` that
    :func:`~resland.critical.find_critical_points` returned (their models' parameters are stacked), or None
    (the ensemble's own rows). ``seeds`` (the Lanczos start of each row) defaults to ``0, 1, …``.

    ``R``, ``∇R`` and, for the rows that pass certify's gradient test, the extremes
    (:meth:`HessianOperator.extremes <resland.curvature.HessianOperator.extremes>` on the stack) are computed for all rows at once; ``R_lin`` once. Each
    verdict is then decided by :func:`certify` itself, so the rules are the same.
    """
    if theta is None:
        theta = ens.theta
    elif isinstance(theta, (list, tuple)):
        theta = torch.stack([flat_parameters(cp.model.parameters()).to(ens.fr.dtype) for cp in theta])
    seeds = list(range(theta.shape[0])) if seeds is None else seeds
    fit = linear_fit_for(ens.fr.model, ens.fr.X, ens.fr.y, ens.fr.loss, fit)
    R = ens.risk(theta)
    gnorm = torch.linalg.norm(ens.grad(theta), dim=1)
    critical = torch.tensor([j for j in range(len(R)) if T.is_critical(float(R[j]), float(gnorm[j]), tol)], dtype=torch.long)
    eigs: dict[int, EigResult] = {}
    if critical.numel():
        found = HessianOperator(ens, theta[critical]).extremes(seed=[seeds[j] for j in critical.tolist()])
        eigs = dict(zip(critical.tolist(), found))
    return [
        certify(ens.model_at(theta[j]), ens.fr.X, ens.fr.y, ens.fr.loss, tol, fit=fit, eig=eigs.get(j), seed=seeds[j],
                keep_parameters=keep_parameters)
        for j in range(theta.shape[0])
    ]
