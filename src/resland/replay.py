"""Replay: rebuild a stored run (or a certificate file) from its parameters and certify it again.

Every stored violation and candidate names its replay command::

    resland replay --store runs.db --run CONFIG_ID:SEED
    resland replay --parquet atlas/runs.parquet --run CONFIG_ID:SEED   # a compact export
    resland replay certificate.json          # the output of ``resland certify --json``

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
from .models import build_model, init_model


@dataclass
class Replay:
    """A replayed certificate next to the stored verdict.

    Attributes:
        source: what was replayed (``store:CONFIG_ID:SEED`` or the file name).
        stored_verdict: the verdict on record (None if the record has none).
        certificate: the fresh :class:`~resland.certificate.Certificate`.
    """

    source: str
    stored_verdict: str | None
    certificate: Certificate

    @property
    def agrees(self) -> bool:
        """The fresh verdict equals the stored one."""
        return self.stored_verdict == self.certificate.verdict


def replay_command(store: str | Path, config_id: str, seed: int) -> str:
    """The command line that replays run ``config_id:seed`` of ``store``."""
    return f"resland replay --store {store} --run {config_id}:{seed}"


def replay_run(store: str | Path, run: str) -> Replay:
    """Replay run ``CONFIG_ID:SEED`` of a census store (its parameters must be stored).

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
    if not params or not cert_json:
        raise ValidationError(f"Run {run!r} has no stored parameters: only candidates keep them by default; set "
                              '[store] parameters = "all" in the spec to keep every run\'s.')
    config, cert = json.loads(config), json.loads(cert_json)
    data = {"name": config["data"], "rho": config.get("rho")}
    return Replay(f"store:{run}", verdict, _certify(data, cert, json.loads(params)))


def replay_export(path: str | Path, run: str) -> Replay:
    """Replay run ``CONFIG_ID:SEED`` of a compact Parquet export (``resland export --compact``,
    the atlas's ``runs.parquet``), which keeps the parameters of violations and unresolved runs.

    The model is rebuilt as the census built it (:func:`resland.models.init_model` from the
    row's config), then given the stored parameters.

    Raises:
        ValidationError: a bad run key, a missing file or run, or a run without parameters.
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
        raise ValidationError(f"Run {run!r} has no parameters in the export: it keeps them for violations and "
                              "unresolved runs only.")
    ds = load_dataset(r["data"], rho=r.get("rho"))
    act = None if r["activation"] == "auto" else r["activation"]
    model = init_model(r["model"], ds.X.shape[1], width=r["width"], depth=r["depth"], activation=act, seed=seed,
                       v_scale=r["v_scale"], delta0=r.get("delta0"))
    _set_parameters(model, json.loads(r["parameters"]))
    return Replay(f"export:{run}", r["verdict"], certify(model, ds.X, ds.y, r["loss"], keep_parameters=True))


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
    model = build_model(cert["model_config"])
    _set_parameters(model, params)
    fresh = certify(model, ds.X, ds.y, cert["loss"], keep_parameters=True)
    if cert.get("data_sha256") and fresh.data_sha256 != cert["data_sha256"]:
        raise ValidationError(f"The data set {data['name']!r} differs from the one certified (SHA-256 "
                              f"{fresh.data_sha256[:12]} ≠ {cert['data_sha256'][:12]}).")
    return fresh
