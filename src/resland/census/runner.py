"""Run one census task: a config and its seeds, batched or one seed at a time.

:func:`run_task` is what every executor ships to a worker. It always computes with one
torch thread (restored afterwards), so a task gives the same bits on any executor, and it
never raises: a failing task returns one ``failed`` row per seed with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import traceback
import warnings
from contextlib import contextmanager

import numpy as np
import scipy
import torch

from ..certificate import WORSE_NO_NEGATIVE, cert_outcome, certify, certify_ensemble
from ..certificate.verdicts import is_local_minimum
from ..data import load_dataset, outputs, subsample
from ..critical import find_critical_points
from ..embedding import embedded_point
from ..ensemble import Ensemble
from ..functional import flat_parameters
from ..linear import NotAttainedWarning, linear_fit_for
from ..families import family_of
from ..higher_order import null_dimension
from ..models import init_model
from ..points import family_key, point_id
from ..theory import linear_probes
from .row import ROW_FIELDS, Run
from .spec import Task

__all__ = ["CANDIDATES", "ROW_FIELDS", "config_data", "config_model", "core_config", "failed_rows", "local_minimum", "run_task", "versions"]

#: The columns of a run row (the store's schema follows it).
#: Runs whose final parameters are stored under ``[store] parameters = "candidates"`` (the default).
CANDIDATES = {"outcomes": ("unresolved", "gradient_flat", "failed"), "verdicts": WORSE_NO_NEGATIVE + ("inconclusive",)}


def versions() -> dict:
    """Versions that can change a result."""
    from .. import __version__

    return {"resland": __version__, "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version()}


@contextmanager
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_task(task: Task, finder: dict) -> list[dict]:
    """Find and certify a critical point for every seed of ``task``; one row per seed.

    ``finder`` holds the spec's ``[finder]`` settings (``kind`` is taken from the config) and
    ``store_parameters`` (the spec's ``[store] parameters``): ``all`` stores every run's final
    flat parameters (``model.parameters()`` order) in the ``parameters`` column, ``candidates``
    only those of the verdicts of ``CANDIDATES`` (the points worse than linear without negative
    curvature, and inconclusive certificates) and of unresolved or failed runs.
    ``seconds`` of a row is the task's wall time divided by its number of seeds.
    """
    start = time.perf_counter()
    with _one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAttainedWarning)
        try:
            rows = _run(task, finder)
        except Exception as exc:  # a task never takes the census down; the reason is stored
            reason = f"{type(exc).__name__}: {exc}"
            rows = [_row(task, s, status="failed", error=reason + "\n" + traceback.format_exc(limit=3))
                    for s in task.seeds]
    share = (time.perf_counter() - start) / len(task.seeds)
    for r in rows:
        r["seconds"] = share
    return rows


def config_data(config: dict):
    """The data set of a census config: the named set, its seeded subsample when the config names ``rows``."""
    ds = load_dataset(config["data"], rho=config.get("rho"))
    return subsample(ds, config["rows"]) if "rows" in config else ds


def config_model(config: dict, seed: int, ds=None):
    """``(model, data set, loss name)`` of one run of a census config: the seeded start the census
    builds (:func:`~resland.models.init_model`), the named data set and the config's loss."""
    c = config
    ds = ds if ds is not None else config_data(c)
    loss = ds.loss if c["loss"] == "auto" else c["loss"]
    act = None if c["activation"] in ("auto", None) else c["activation"]
    model = init_model(c["model"], ds.X.shape[1], width=c["width"], depth=c["depth"], activation=act, seed=seed,
                       v_scale=c["v_scale"], delta0=c.get("delta0"), d_out=outputs(ds.y, loss))
    return model, ds, loss


def core_config(config: dict) -> dict | None:
    """The config of the net the finder runs on when ``config`` names a core (``core_depth``/``core_width``,
    docs/theory.md §11), else None."""
    if "core_depth" not in config:
        return None
    return dict(config, depth=config["core_depth"], width=config["core_width"])


#: Finder results of cores, by (core config, seed, finder options): the targets of one core (the same
#: core embedded at several depths and widths) share its run. Deterministic, so a hit changes no bit.
_CORE_RUNS: dict = {}
_CORE_RUNS_MAX = 256


def _find_core(start, core: dict, seed: int, ds, loss, fit, opts):
    key = (json.dumps(core, sort_keys=True), int(seed), json.dumps(opts, sort_keys=True, default=str))
    if key not in _CORE_RUNS:
        if len(_CORE_RUNS) >= _CORE_RUNS_MAX:
            _CORE_RUNS.pop(next(iter(_CORE_RUNS)))
        _CORE_RUNS[key] = find_critical_points(Ensemble([start], ds.X, ds.y, loss), core["kind"], batched=False,
                                               fit=fit, **opts)[0]
    return _CORE_RUNS[key]


def _run(task: Task, finder: dict) -> list[dict]:
    c = task.config
    ds = config_data(c)
    built = [config_model(c, s, ds) for s in task.seeds]
    models, loss = [b[0] for b in built], built[0][2]
    core = core_config(c)
    solve = models if core is None else [config_model(core, s, ds)[0] for s in task.seeds]
    opts = {k: finder[k] for k in ("tol", "max_iter", "xtol", "max_norm")}
    opts["max_iter"] = c.get("max_iter", opts["max_iter"])   # a grid's own max_iter wins
    opts["kink_iter"] = finder.get("kink_iter")
    if "method" in c:
        opts["method"] = c["method"]
    if "newton_always_max" in finder:
        opts["newton_always_max"] = finder["newton_always_max"]
    keep = finder.get("store_parameters", "candidates") == "all"
    fit = linear_fit_for(models[0], ds.X, ds.y, loss)
    if task.engine == "batched":
        cps = find_critical_points(Ensemble(solve, ds.X, ds.y, loss), c["kind"], batched=True, fit=fit, **opts)
        cps = cps if core is None else [embedded_point(cp, m) for cp, m in zip(cps, models)]
        theta = torch.stack([flat_parameters(cp.model.parameters()) for cp in cps])
        certs = certify_ensemble(Ensemble(models, ds.X, ds.y, loss), theta, task.seeds, fit=fit, tol=opts["tol"])
    else:  # the reference: the same finder one seed at a time, certify() with its own eigensolver
        cps, certs = [], []
        for s, model, start in zip(task.seeds, models, solve):
            if core is None:
                cp = find_critical_points(Ensemble([start], ds.X, ds.y, loss), c["kind"], batched=False, fit=fit,
                                          **opts)[0]
            else:
                cp = embedded_point(_find_core(start, core, s, ds, loss, fit, opts), model)
            cps.append(cp)
            certs.append(certify(cp.model, ds.X, ds.y, loss, opts["tol"], fit=fit, seed=s))
    return [_row(task, s, cp=cp, cert=cert, keep=keep, probes=_probes(cp, cert, ds, loss), point=_point(c, cp, cert, ds))
            for s, cp, cert in zip(task.seeds, cps, certs)]


def _point(config: dict, cp, cert, ds) -> str | None:
    """The distinct-point id (:func:`resland.points.point_id`) of a certified critical point, else None."""
    if cert.verdict in ("not_critical", "nondifferentiable") or cp.outcome not in ("critical", "kink"):
        return None
    with torch.no_grad():
        pred = cp.model(torch.as_tensor(ds.X, dtype=torch.float64)).detach().cpu().numpy()
    return point_id(family_key(dict(config, loss=cert.loss)), cert.data_sha256, cert.risk, pred)


def local_minimum(cert) -> bool:
    """A certified critical point with ``λ_min ≥ −lambda_tol``: verdict better_than_linear or
    local_minimum_worse, the smallest Hessian eigenvalue measured and not below tolerance."""
    return is_local_minimum(cert.verdict, cert.lambda_min, cert.tolerances.get("lambda_tol"),
                            null_dimension(cert.higher_order))


def _probes(cp, cert, ds, loss) -> list | None:
    """``[R_lin,lower, R_lin,upper]`` of the linear probe on each block output ``h_0 … h_L`` at a
    certified local minimum of a ResNet (docs/theory.md §4.4), else None."""
    if cp.outcome != "critical" or not family_of(cp.model).residual or not local_minimum(cert):
        return None
    return [[p.risk_lower, p.risk_upper] for p in linear_probes(cp.model, ds.X, ds.y, loss)]


def failed_rows(task: Task, reason: str) -> list[dict]:
    """One ``failed`` row per seed of ``task`` (a worker died or the task raised), with the reason."""
    return [_row(task, s, status="failed", error=reason) for s in task.seeds]


def _row(task: Task, seed: int, *, cp=None, cert=None, status: str | None = None, error: str | None = None,
         keep: bool = False, probes: list | None = None, point: str | None = None) -> dict:
    row = Run(spec_hash=task.spec_hash, config_id=task.config_id, seed=int(seed), engine=task.engine,
              config=json.dumps(task.config, sort_keys=True), attempts=1, error=error,
              versions=json.dumps(versions(), sort_keys=True))
    if cp is None:
        row.status, row.outcome, row.converged = status or "failed", "failed", 0
        return row.to_dict()
    cd = cert.to_dict()
    finder = cp.to_dict(timing=False)  # timings live in their own column
    finder.pop("parameters", None)     # in their own column
    outcome = cert_outcome(cp, cert)
    candidate = outcome in CANDIDATES["outcomes"] or cert.verdict in CANDIDATES["verdicts"]
    theta = flat_parameters(cp.model.parameters()).tolist() if keep or candidate else None
    kink = cp.kink or {}
    fields = dict(
        status=cp.status, outcome=outcome, converged=int(outcome in ("critical", "kink")), verdict=cert.verdict,
        linear_equivalent=int(cert.linear_equivalent), trivial=cert.trivial,
        null_dim=null_dimension(cert.higher_order),
        symmetry_dim=None if cert.higher_order is None else cert.higher_order["symmetries"]["count"],
        dead_units=None if cert.units is None else cert.units["dead"],
        saturated_units=None if cert.units is None else cert.units["saturated"],
        zero_units=None if cert.units is None else cert.units.get("zero"), risk=cert.risk, linear_risk=cert.linear_risk,
        linear_risk_lower=cert.linear_risk_lower, linear_risk_upper=cert.linear_risk_upper,
        gap=cert.risk - cert.linear_risk, path_min_risk=cp.path_min_risk, lambda_min=cert.lambda_min,
        lambda_max=cert.lambda_max, grad_norm=cert.grad_norm, kink_margin=cp.kink_margin,
        clarke_stationary=None if not kink else int(kink["clarke_stationary"]), iterations=cp.iterations,
        n_params=cert.n_params, certificate=json.dumps(cd, sort_keys=True, default=str),
        finder=json.dumps(finder, sort_keys=True, default=str),
        parameters=None if theta is None else json.dumps(theta),
        probe_risks=None if probes is None else json.dumps(probes), point=point,
    )
    return dataclasses.replace(row, **fields).to_dict()
