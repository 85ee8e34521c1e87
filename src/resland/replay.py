"""Replay: rebuild a stored run (or a certificate file) from its parameters and certify it again.

Every stored candidate names its replay command, and every row of a compact export replays::

    resland replay --store runs.db --run CONFIG_ID:SEED
    resland replay --parquet atlas/runs.parquet --run CONFIG_ID:SEED   # a compact export
    resland replay certificate.json          # the output of ``resland certify --json``

A compact export keeps the parameters of the points worse than linear without negative curvature
and of unresolved runs; any other row is *rerun*: its task (config and seed batch) is computed
again from the spec (``atlas.toml`` beside the export, or ``--spec``) and the fresh row must equal
the stored one in every field but the timing (:attr:`Replay.rerun`): bit for bit on the machine that
wrote it, and across machines to :data:`REPLAY_ULPS` ulps in the float fields (BLAS kernels and
vectorised ``exp``/``log`` differ in their last bits between CPUs; docs/reliability.md).

The model is rebuilt from the certificate's ``model_config`` and the flat parameters
(``model.parameters()`` order), the data set from its name, and the data's SHA-256 must equal
the stored one. The replay certifies with the shared definition of "critical"
(:data:`resland.tolerances.GRAD_TOL`), so a stored verdict that does not survive is visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils import vector_to_parameters

from ._checks import ValidationError
from .census.store import RunStore
from .certificate import Certificate, certify
from .data import load_dataset
from .models import build_model


@dataclass
class Replay:
    """A replayed certificate next to the stored verdict.

    Attributes:
        source: what was replayed (``store:CONFIG_ID:SEED`` or the file name).
        stored_verdict: the verdict on record (None if the record has none).
        certificate: the fresh :class:`~resland.certificate.Certificate`.
        rerun: for a rerun export row, ``{"identical": bool, "within_ulps": bool, "max_ulps": float,
            "differences": {field: [stored, fresh]}}`` over every compact field but ``seconds`` (None when
            replayed from parameters). ``identical``: bit for bit; ``within_ulps``: non-float fields equal and
            float fields within :data:`REPLAY_ULPS` ulps (or both at rounding level, ``|a − b| ≤``
            :data:`REPLAY_ABS`), the cross-machine promise.
    """

    source: str
    stored_verdict: str | None
    certificate: Certificate
    rerun: dict | None = None

    @property
    def agrees(self) -> bool:
        """The fresh verdict equals the stored one (and a rerun row agrees to :data:`REPLAY_ULPS` ulps)."""
        return self.stored_verdict == self.certificate.verdict and (self.rerun is None or self.rerun["within_ulps"])


#: Cross-machine reproducibility of a rerun export row: float fields within this many ulps of the larger
#: magnitude. Measured: 1 ulp (the multinomial ``linear_risk`` on two x86-64 CPUs, 2026-12-08).
REPLAY_ULPS = 64
#: Float fields at rounding level (a critical point's ``‖∇R‖``, a zero eigenvalue) agree when within this.
REPLAY_ABS = 1e-13


def ulps_apart(a: float, b: float) -> float:
    """``|a − b|`` in units of the last place of ``max(|a|, |b|)`` (0 for equal values, NaN equal to NaN).

    >>> ulps_apart(0.03966182263852986, 0.03966182263852985)
    1.0
    >>> ulps_apart(1.0, 1.0)
    0.0
    """
    import numpy as np

    if a != a and b != b or a == b:
        return 0.0
    return float(abs(a - b) / np.spacing(max(abs(a), abs(b))))


def _close(a, b) -> bool:
    """Equal for non-floats; for floats within :data:`REPLAY_ULPS` ulps or :data:`REPLAY_ABS`."""
    if isinstance(a, float) and isinstance(b, float):
        return ulps_apart(a, b) <= REPLAY_ULPS or abs(a - b) <= REPLAY_ABS
    return _same(a, b)


def replay_command(store: str | Path, config_id: str, seed: int) -> str:
    """The command line that replays run ``config_id:seed`` of ``store``."""
    return f"resland replay --store {store} --run {config_id}:{seed}"


def replay_run(store: str | Path, run: str, spec: str | Path | None = None) -> Replay:
    """Replay run ``CONFIG_ID:SEED`` of a census store: from its stored parameters, or, without them, rerun from
    ``spec`` (the spec file it was computed under) and compared with the stored row as an export row is.

    Raises:
        ValidationError: a run key not of the form CONFIG_ID:SEED, a missing store, run or
            stored parameters, or data whose SHA-256 differs.
    """
    config_id, seed = _run_key(run)
    with RunStore(store, create=False) as s:
        row = s.run(config_id, seed)
    if row is None:
        raise ValidationError(f"The store {str(store)!r} has no run {run!r}.")
    config, verdict, cert_json, params = row["config"], row["verdict"], row["certificate"], row["parameters"]
    if (not params or not cert_json) and spec is not None:
        from .census.export import compact_row

        return rerun_export_row(compact_row(row), spec, f"store:{run}")
    if not params or not cert_json:
        raise ValidationError(f"Run {run!r} has no stored parameters (only candidates keep them by default): pass "
                              "--spec SPEC to rerun it from its spec, or set [store] parameters = \"all\".")
    config, cert = json.loads(config), json.loads(cert_json)
    data = {"name": config["data"], "rho": config.get("rho"), "rows": config.get("rows")}
    return Replay(f"store:{run}", verdict, _certify(data, cert, json.loads(params)))


def replay_export(path: str | Path, run: str, spec: str | Path | None = None) -> Replay:
    """Replay run ``CONFIG_ID:SEED`` of a compact Parquet export (``resland export --compact``,
    the atlas's ``runs.parquet``).

    With stored parameters the model is rebuilt as the census built it
    (:func:`resland.models.init_model` from the row's config), given them, and certified. Without,
    the run's task is rerun from ``spec`` (default: the spec of the atlas part beside the export) and compared
    field by field (:func:`rerun_export_row`).

    Raises:
        ValidationError: a bad run key, a missing file or run, or a run without parameters and no
            spec of the export's hash to rerun it from.
    """
    config_id, seed = _run_key(run)
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"The 'parquet' file must exist. Got {str(path)!r}, which is not a file.")
    import pyarrow.parquet as pq

    rows = [r for r in pq.read_table(path, filters=[("config_id", "=", config_id)]).to_pylist() if r["seed"] == seed]
    if not rows:
        raise ValidationError(f"The export {str(path)!r} has no run {run!r}.")
    r = rows[0]
    if not r.get("parameters"):
        return rerun_export_row(r, spec if spec is not None else _spec_of(path), f"export:{run}")
    from .census.runner import config_model

    model, ds, _ = config_model(r, seed)
    _set_parameters(model, json.loads(r["parameters"]))
    return Replay(f"export:{run}", r["verdict"], certify(model, ds.X, ds.y, r["loss"], keep_parameters=True))


def rerun_export_row(row: dict, spec_path: str | Path, source: str) -> Replay:
    """Recompute an export row from its spec and seed; the fresh row must agree (bit for bit on one machine).

    The run's task (its config and the batch of seeds it was computed with) is run again by
    :func:`resland.census.run_task` (one torch thread, as every executor runs it), every field of
    the compact row but ``seconds`` (and columns added to the export format after the row was written) is
    compared exactly, and the fresh final point is certified.

    Raises:
        ValidationError: no spec file, a spec whose hash is not the row's, or no task with the run.
    """
    from .census import load_spec, run_task
    from .census.export import COMPACT_FIELDS, compact_row

    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise ValidationError(f"Run {row['config_id']}:{row['seed']} has no parameters in the export and there is no "
                              f"spec {str(spec_path)!r} to rerun it from: pass --spec.")
    spec = load_spec(spec_path)
    if spec.spec_hash != row["spec_hash"]:
        raise ValidationError(f"The spec {str(spec_path)!r} (hash {spec.spec_hash[:12]}) is not the one the run was "
                              f"computed under (hash {row['spec_hash'][:12]}): rerun it with that spec.")
    task = next((t for t in spec.tasks() if t.config_id == row["config_id"] and row["seed"] in t.seeds), None)
    if task is None:
        raise ValidationError(f"The spec {str(spec_path)!r} has no run {row['config_id']}:{row['seed']}.")
    fresh_full = next(r for r in run_task(task, dict(spec.task_options, store_parameters="all"))
                      if r["seed"] == row["seed"])
    fresh = compact_row(fresh_full)
    diff = {k: [row.get(k), fresh.get(k)] for k, _ in COMPACT_FIELDS   # columns newer than the export: not compared
            if k != "seconds" and k in row and not _same(row.get(k), fresh.get(k))}
    floats = [ulps_apart(a, b) for a, b in diff.values() if isinstance(a, float) and isinstance(b, float)]
    if fresh_full["parameters"]:
        from .census.runner import config_model
        model, ds, loss = config_model(task.config, row["seed"])
        _set_parameters(model, json.loads(fresh_full["parameters"]))
        cert = certify(model, ds.X, ds.y, loss, keep_parameters=True)
    else:  # a failed task: nothing to certify; the stored row says so too
        raise ValidationError(f"Run {row['config_id']}:{row['seed']} failed when rerun: {fresh_full['error']}")
    return Replay(source, row["verdict"], cert,
                  {"identical": not diff, "within_ulps": all(_close(a, b) for a, b in diff.values()),
                   "max_ulps": max(floats, default=0.0), "differences": diff})


def _same(a, b) -> bool:
    """Exact equality, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def replay_export_command(path: str | Path, config_id: str, seed: int) -> str:
    """The command line that replays run ``config_id:seed`` of a compact export."""
    return f"resland replay --parquet {path} --run {config_id}:{seed}"


def _set_parameters(model, params: list) -> None:
    """Give ``model`` the flat parameters ``params`` (``model.parameters()`` order)."""
    theta = torch.tensor(params, dtype=torch.float64)
    n = sum(p.numel() for p in model.parameters())
    if theta.numel() != n:
        raise ValidationError(f"The stored parameters have {theta.numel()} entries; the model has {n}.")
    with torch.no_grad():
        vector_to_parameters(theta, model.parameters())


def _run_key(run: str) -> tuple[str, int]:
    config_id, sep, seed = run.rpartition(":")
    if not sep or not config_id or not seed.lstrip("-").isdigit():
        raise ValidationError(f"The 'run' parameter must be CONFIG_ID:SEED. Got {run!r}.")
    return config_id, int(seed)


def replay_file(path: str | Path) -> Replay:
    """Replay ``resland certify --json`` output (or a certificate dictionary with a ``data_spec``).

    Raises:
        ValidationError: an unreadable file, one without ``data_spec`` and parameters, or
            data whose SHA-256 differs.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError(f"The certificate file {str(path)!r} cannot be read as JSON: {exc}.") from None
    cert = doc.get("certificate", doc) if isinstance(doc, dict) else None
    data = doc.get("data_spec") if isinstance(doc, dict) else None
    if not isinstance(cert, dict) or not isinstance(data, dict) or not cert.get("parameters"):
        raise ValidationError(f"The certificate file {str(path)!r} must hold 'data_spec' and a certificate with "
                              "'parameters' (written by resland certify --json).")
    return Replay(str(path), cert.get("verdict"), _certify(data, cert, cert["parameters"]))


def _certify(data: dict, cert: dict, params: list) -> Certificate:
    ds = load_dataset(data["name"], rho=data.get("rho"), target=data.get("target"))
    if data.get("rows"):
        from .data import subsample

        ds = subsample(ds, data["rows"])
    model = build_model(cert["model_config"])
    _set_parameters(model, params)
    fresh = certify(model, ds.X, ds.y, cert["loss"], keep_parameters=True)
    if cert.get("data_sha256") and fresh.data_sha256 != cert["data_sha256"]:
        raise ValidationError(f"The data set {data['name']!r} differs from the one certified (SHA-256 "
                              f"{fresh.data_sha256[:12]} ≠ {cert['data_sha256'][:12]}).")
    return fresh


def _spec_of(export: Path) -> Path:
    """The spec next to an atlas export: an atlas part's export ``NAME.parquet`` has the spec ``NAME.toml``
    (``deep``, ``multiclass``; resland.atlas.PARTS), the main part's ``runs.parquet`` has ``atlas.toml``."""
    own = export.with_suffix(".toml")
    return own if export.name != "runs.parquet" and own.is_file() else export.parent / "atlas.toml"
