"""Census: spec validation, the SQLite store with resume, kill -9, executors, export and report.

Every census here is small (Example 2, a few seeds); results are compared byte for byte:
each task computes on one torch thread, so the same spec gives identical certificates.
"""

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from resland import ValidationError
from resland.census import RunStore, load_spec, parse_spec, run_census
from resland.census.spec import config_id
from resland.census.export import KEEP_PARAMETERS, export

SPEC = """
name = "test"
seeds = {seeds}
batch_size = 2
[finder]
max_iter = 60
[[grid]]
data = "example2"
depth = [1, 2]
width = 2
kind = "any"
"""


def write_spec(tmp_path, seeds=4, name="spec.toml"):
    path = tmp_path / name
    path.write_text(SPEC.format(seeds=seeds))
    return path


def stored(db):
    """{(config_id, seed): (certificate, finder, status)} of a store."""
    with RunStore(db, create=False) as store:
        return {(r["config_id"], r["seed"]): (r["certificate"], r["finder"], r["status"]) for r in store.rows()}


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "resland.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)


# --- spec ---------------------------------------------------------------------------------

def test_spec_expands_the_grid_and_hashes_stably(tmp_path):
    spec = load_spec(write_spec(tmp_path, seeds=5))
    assert spec.n_runs == 10 and len(spec.configs) == 2
    assert [len(t.seeds) for t in spec.tasks()] == [2, 2, 1, 2, 2, 1]
    assert load_spec(write_spec(tmp_path, seeds=5, name="again.toml")).spec_hash == spec.spec_hash
    assert load_spec(write_spec(tmp_path, seeds=6, name="other.toml")).spec_hash != spec.spec_hash


@pytest.mark.parametrize("raw, message", [
    ({"grid": [{"data": "diabetes"}], "sedes": 3},
     "Unknown key 'sedes' in the spec. Allowed keys: name, seeds, engine, batch_size, finder, store, grid."),
    ({"grid": [{"data": "diabetes", "widht": 3}]},
     "Unknown key 'widht' in [[grid]] grid[1]. Allowed keys: data, rho, model, depth, width, activation, loss, "
     "v_scale, kind, seeds, regime, max_params, delta0, max_iter, core_depth, core_width, rows, method."),
    ({"grid": [{"data": "diabetes", "activation": "rellu"}]},
     "The 'grid[1].activation' key must be one of 'auto', 'relu', 'softplus', 'tanh', 'gelu', 'leaky_relu'. "
     "Got 'rellu' instead."),
    ({"grid": [{"data": "diabetes"}], "finder": {"kind": "saddle"}},
     "The 'finder.kind' key must be one of 'minimum', 'any'. Got 'saddle' instead."),
    ({"grid": [{"data": "diabetes", "depth": [1, 0]}]}, "The 'grid[1].depth' key must be an int in the range [1, 256]. Got 0 instead."),
    ({"grid": [{"data": "mnist"}]},
     "The 'grid[1].data' value must be one of 'example1', 'example2', 'diabetes', 'linnerud', 'breast-cancer', "
     "'wine', 'iris', 'star98', 'grunfeld', 'engel', 'anes96', 'spector', 'diamonds', 'flights', 'movies', "
     "'cps1988', 'default', 'fertility', 'iris-3', 'wine-3', 'digits', 'penguins', 'linnerud-3' or a .csv/.npz "
     "path. Got 'mnist'."),
    ({"grid": [{"data": "diabetes"}], "seeds": [1, 1]}, "The 'seeds' key must not repeat a seed. Got [1, 1]."),
    ({"grid": [{"data": "example1"}]}, "The 'grid[1].rho' key is required for example1: a float in (0, inf)."),
    ({"seeds": 2}, "The 'grid' key must hold at least one [[grid]] table. Got none."),
    ({"grid": [{"data": "diabetes"}], "engine": "gpu"},
     "The 'engine' key must be one of 'batched', 'sequential'. Got 'gpu' instead."),
])
def test_bad_specs_name_the_key_and_the_allowed_values(raw, message):
    with pytest.raises(ValidationError) as err:
        parse_spec(raw)
    assert str(err.value) == message


def test_cli_refuses_a_bad_spec_in_one_line_and_runs_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('seeds = 2\n[[grid]]\ndata = "diabetes"\nmodel = "transformer"\n')
    res = cli("census", bad, "--store", tmp_path / "runs.db")
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: The 'grid[1].model' key must be one of 'resnet', 'fc', 'linear'. "
                                  "Got 'transformer' instead.")
    assert not (tmp_path / "runs.db").exists()
    broken = tmp_path / "broken.toml"
    broken.write_text("seeds = [1, 2\n")
    res = cli("census", broken, "--store", tmp_path / "runs.db")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: The spec broken.toml")


# --- store, resume, determinism -------------------------------------------------------------

def test_census_resumes_and_is_deterministic(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    with RunStore(tmp_path / "a.db") as store:
        first = run_census(spec, store, workers=2)
        assert first.pop("compute_seconds") > 0
        assert first == {"tasks": 4, "runs": 8, "failures": 0, "skipped": 0}
        again = run_census(spec, store, workers=2)
        assert again["runs"] == 0 and again["skipped"] == 8  # nothing runs twice
        assert store.count() == 8
    with RunStore(tmp_path / "b.db") as store:
        run_census(spec, store, workers=1)
    a, b = stored(tmp_path / "a.db"), stored(tmp_path / "b.db")
    assert a == b  # same spec and seeds: identical certificates, byte for byte
    verdicts = {json.loads(c)["verdict"] for c, _, _ in a.values()}
    assert verdicts <= {"better_than_linear", "strict_saddle", "not_critical"} and "strict_saddle" in verdicts


def test_batched_engine_matches_the_sequential_reference(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    raw = {**spec.source, "engine": "sequential"}
    seq = parse_spec(raw)
    with RunStore(tmp_path / "b.db") as sb, RunStore(tmp_path / "s.db") as ss:
        run_census(spec, sb, workers=2)
        run_census(seq, ss, workers=2)
        rb = {(r["config_id"], r["seed"]): r for r in sb.rows()}
        rs = {(r["config_id"], r["seed"]): r for r in ss.rows()}
    assert rb.keys() == rs.keys()
    for k, b in rb.items():
        s = rs[k]
        assert b["verdict"] == s["verdict"] and b["status"] == s["status"]
        assert b["risk"] == pytest.approx(s["risk"], rel=1e-9, abs=1e-12)
        if b["lambda_min"] is not None:
            tol = json.loads(b["certificate"])["eig_residual"] + 1e-8
            assert abs(b["lambda_min"] - s["lambda_min"]) <= tol


def test_kill_minus_nine_then_resume_loses_nothing_and_repeats_nothing(tmp_path):
    path = write_spec(tmp_path, seeds=24)
    total = load_spec(path).n_runs
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-m", "resland.cli", "census", str(path), "--store", str(db),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    n = 0
    while time.time() < deadline:
        time.sleep(0.2)
        if db.exists():
            try:
                n = sqlite3.connect(db, timeout=5).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n >= 4:
                break
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its worker processes
    proc.wait()
    killed_at = sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert 0 < killed_at < total, f"kill landed outside the run ({killed_at} of {total} stored)"
    res = cli("census", path, "--store", db, "--workers", "2")
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == total
    assert con.execute("SELECT COUNT(DISTINCT spec_hash || config_id || seed) FROM runs").fetchone()[0] == total
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with RunStore(tmp_path / "clean.db") as store:
        run_census(load_spec(path), store, workers=2)
    assert stored(db) == stored(tmp_path / "clean.db")


def test_a_dead_worker_is_retried_and_counted(tmp_path, monkeypatch):
    from census_helpers import always_die, die_once

    monkeypatch.setenv("RESLAND_TEST_MARKER", str(tmp_path / "marker"))
    spec = load_spec(write_spec(tmp_path, seeds=2))
    with RunStore(tmp_path / "r.db") as store:
        summary = run_census(spec, store, workers=1, task_fn=die_once)
        rows = list(store.rows())
    assert summary["failures"] >= 1
    assert len(rows) == 4 and all(r["status"] != "failed" for r in rows)
    assert max(r["attempts"] for r in rows) == 2
    with RunStore(tmp_path / "dead.db") as store:
        summary = run_census(spec, store, workers=1, retries=1, task_fn=always_die)
        rows = list(store.rows())
    assert len(rows) == 4 and all(r["status"] == "failed" and "died 2 times" in r["error"] for r in rows)


def test_dask_local_cluster_gives_the_local_results(tmp_path):
    pytest.importorskip("distributed")
    spec = load_spec(write_spec(tmp_path))
    with RunStore(tmp_path / "dask.db") as store:
        summary = run_census(spec, store, executor="dask", workers=2)
    assert summary["runs"] == 8 and summary["failures"] == 0
    with RunStore(tmp_path / "local.db") as store:
        run_census(spec, store, workers=2)
    assert stored(tmp_path / "dask.db") == stored(tmp_path / "local.db")


# --- export and report -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def census_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("census")
    res = cli("census", write_spec(tmp), "--store", tmp / "runs.db", "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "census 'test': 8 runs done" in res.stderr
    return tmp / "runs.db"


def test_export_csv_and_parquet_hold_every_run(census_db, tmp_path):
    import csv

    import pyarrow.parquet as pq

    with RunStore(census_db, create=False) as store:
        assert export(store, tmp_path / "r.csv", "csv") == 8
        assert export(store, tmp_path / "r.parquet", "parquet") == 8
        rows = list(store.rows())
    with open(tmp_path / "r.csv", newline="") as fh:
        back = list(csv.DictReader(fh))
    assert [r["certificate"] for r in back] == [r["certificate"] for r in rows]
    table = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [r["risk"] for r in table] == [r["risk"] for r in rows]
    # one flat layout in both formats: the config's keys are columns, no nested config
    assert list(back[0]) == list(table[0]) and "config" not in back[0]
    assert [(r["data"], r["model"], r["depth"], r["kind"]) for r in table] == [
        tuple(json.loads(r["config"])[k] for k in ("data", "model", "depth", "kind")) for r in rows]
    assert [r["depth"] for r in back] == [str(r["depth"]) for r in table]
    res = cli("export", "--store", census_db, "--format", "xlsx")
    assert res.returncode == 2 and res.stderr.strip() == "error: The 'format' parameter must be one of 'csv', 'parquet'. Got 'xlsx' instead."
    res = cli("export", "--store", tmp_path / "missing.db")
    assert res.returncode == 2 and "must exist" in res.stderr


def test_census_report_renders(census_db, tmp_path):
    out = tmp_path / "census.html"
    res = cli("report", "--store", census_db, "--out", out)
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert page.index("id='verdicts'") < page.index("<img")
    assert page.count("data:image/png;base64,") == 3
    assert "example2 · resnet L=2 k=2 softplus · squared · any" in page
    from test_reproduce import _chromium

    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
                          "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<img") == 3 and "Slowest configs" in dom


def test_census_summary_counts_every_run_and_renders_in_jupyter(census_db):
    """The summary's counts equal the store's rows; its HTML is the report's verdict table."""
    from resland.census import RunStore
    from resland.census.report import summarise

    with RunStore(census_db, create=False) as store:
        rows = list(store.rows())
        s = summarise(store)
    assert s.runs == len(rows) and sum(c["converged"] for c in s.configs.values()) == sum(r["converged"] for r in rows)
    for v in {r["verdict"] for r in rows}:
        assert sum(c["verdicts"].get(v, 0) for c in s.configs.values()) == sum(r["verdict"] == v for r in rows)
    page = s._repr_html_()
    assert page.startswith(f"<p>{len(rows)} runs in {len(s.configs)} configs") and page.count("<tr>") == 1 + len(s.configs)


def test_compact_export_is_flat_small_and_keeps_parameters_only_for_candidates(census_db, tmp_path):
    """The published form of a census: one flat row per run, the theory quantities from the
    certificate, no certificate blobs, parameters only for the points worse than linear without negative
    curvature and unresolved runs."""
    import pyarrow.parquet as pq

    from resland.census.export import COMPACT_FIELDS

    res = cli("export", "--store", census_db, "--format", "parquet", "--compact", "--out", tmp_path / "c.parquet")
    assert res.returncode == 0, res.stderr
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.column_names == [k for k, _ in COMPACT_FIELDS]
    with RunStore(census_db, create=False) as store:
        rows = {(r["config_id"], r["seed"]): r for r in store.rows()}
    got = table.to_pylist()
    assert len(got) == len(rows)
    for g in got:
        r = rows[(g["config_id"], g["seed"])]
        cert = json.loads(r["certificate"])
        assert g["risk"] == r["risk"] and g["verdict"] == r["verdict"] and g["outcome"] == r["outcome"]
        assert g["G"] == float(cert["gap_bound"]["G"])
        assert g["delta"] == float(cert["near_identity"]["delta"])
        assert (g["parameters"] is not None) == (r["verdict"] in KEEP_PARAMETERS["verdicts"]
                                                 or r["outcome"] in KEEP_PARAMETERS["outcomes"])
    res = cli("export", "--store", census_db, "--compact", "--out", tmp_path / "c.csv")   # the same columns in CSV
    assert res.returncode == 0, res.stderr
    with open(tmp_path / "c.csv", newline="") as fh:
        assert next(csv.reader(fh)) == [k for k, _ in COMPACT_FIELDS]


def test_example_specs_parse_and_the_open_regime_has_fewer_parameters_than_samples():
    """Every spec in examples/ is valid; the open-regime one is issue 11's census (n = 23 to 347 < m)."""
    from pathlib import Path

    from resland.census import load_spec
    from resland.data import load_dataset
    from resland.models import param_count

    root = Path(__file__).resolve().parents[1] / "examples"
    specs = {p.name: load_spec(p) for p in sorted(root.glob("*.toml"))}
    assert "census-open-regime.toml" in specs
    spec = specs["census-open-regime.toml"]
    m = {name: load_dataset(name).X.shape for name in ("diabetes", "iris")}
    ns = set()
    for c in spec.configs:
        rows, d = m[c["data"]]
        n = param_count("resnet", d, width=c["width"], depth=c["depth"])
        assert n < rows and c["kind"] == "minimum"
        ns.add(n)
    assert min(ns) == 23 and max(ns) == 347 and len(spec.configs) == 72


def test_grid_seeds_and_regime_select_configs_by_parameter_count():
    # diabetes: m = 442, d = 10; a ResNet has L(2kd + k) + d + 1 parameters (width 1: 21L + 11).
    spec = parse_spec({"seeds": 2, "grid": [
        {"data": "diabetes", "depth": [1, 16, 32], "width": 1, "regime": "below_samples", "seeds": [5, 6, 7]},
        {"data": "diabetes", "depth": [1, 16, 32], "width": 1, "regime": "above_samples"},
    ]})
    got = [(c["depth"], c.get("seeds")) for c in spec.configs]
    assert got == [(1, [5, 6, 7]), (16, [5, 6, 7]), (32, None)]          # n = 32, 347 < 442 ≤ 683
    assert spec.n_runs == 3 + 3 + 2
    assert sorted(s for t in spec.tasks() for s in t.seeds) == [0, 1, 5, 5, 6, 6, 7, 7]
    with pytest.raises(ValidationError, match="regime"):
        parse_spec({"grid": {"data": "diabetes", "regime": "small"}})


def test_max_params_filters_configs_without_changing_their_ids():
    grid = {"data": "diabetes", "depth": [1, 2, 4], "width": [1, 2]}
    full = parse_spec({"grid": grid})
    capped = parse_spec({"grid": dict(grid, max_params=95)})
    # n = 21L + 11 (width 1) and 42L + 11 (width 2): 32, 53, 95 | 53, 95, 179
    assert sorted((c["depth"], c["width"]) for c in capped.configs) == [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1)]
    ids = {config_id(c) for c in full.configs}
    assert {config_id(c) for c in capped.configs} < ids and "max_params" not in capped.configs[0]
    with pytest.raises(ValidationError, match="max_params"):
        parse_spec({"grid": dict(grid, max_params=0)})


def test_v_scale_applies_to_resnets_only_so_a_crossed_grid_has_one_fc_config_per_point():
    spec = parse_spec({"grid": {"data": "iris", "model": ["resnet", "fc"], "v_scale": [0.3, 1.0]}})
    got = sorted((c["model"], c["v_scale"]) for c in spec.configs)
    assert got == [("fc", 1.0), ("resnet", 0.3), ("resnet", 1.0)]


def test_finder_newton_always_max_is_validated_and_hashed_only_when_given():
    base = {"grid": {"data": "iris"}}
    assert parse_spec(base).spec_hash == parse_spec({**base, "finder": {}}).spec_hash
    spec = parse_spec({**base, "finder": {"newton_always_max": 64}})
    assert spec.finder["newton_always_max"] == 64 and spec.spec_hash != parse_spec(base).spec_hash
    with pytest.raises(ValidationError, match="newton_always_max"):
        parse_spec({**base, "finder": {"newton_always_max": -1}})


def test_an_edited_spec_adopts_the_runs_it_shares_and_they_are_the_runs_it_would_compute(tmp_path):
    first = parse_spec({"name": "first", "seeds": 2, "finder": {"max_iter": 60},
                        "grid": {"data": "example2", "depth": [1, 2], "width": 2, "kind": "any"}})
    grown = parse_spec({"name": "grown", "seeds": 2, "finder": {"max_iter": 60},
                        "grid": {"data": "example2", "depth": [1, 2, 3], "width": 2, "kind": "any"}})
    other = parse_spec({"name": "other", "seeds": 2, "finder": {"max_iter": 61},
                        "grid": {"data": "example2", "depth": [1, 2], "width": 2, "kind": "any"}})
    with RunStore(tmp_path / "a.db") as store:
        run_census(first, store, workers=1)
        assert store.adopt(other) == 0                           # other finder settings: nothing shared
        assert store.adopt(grown) == 4 and store.adopt(grown) == 0
        assert run_census(grown, store, workers=1)["runs"] == 2   # only depth 3 is computed
        kept = {(r["config_id"], r["seed"]): r for r in store.rows(grown.spec_hash)}
    with RunStore(tmp_path / "b.db") as store:                   # the grown spec from scratch
        run_census(grown, store, workers=1)
        fresh = {(r["config_id"], r["seed"]): r for r in store.rows(grown.spec_hash)}
    assert kept.keys() == fresh.keys() and len(kept) == 6
    for k, r in fresh.items():
        assert (kept[k]["certificate"], kept[k]["finder"], kept[k]["outcome"]) == (r["certificate"], r["finder"], r["outcome"])


def test_delta0_starts_enter_a_config_only_when_given_and_start_at_budget_delta0():
    """``[[grid]] delta0``: a near-identity start (docs/theory.md §4.3), ResNets without branch
    biases; δ = Σ‖V_l‖₂‖U_l‖₂ (numpy's spectral norms, an independent reference) equals δ₀."""
    import numpy as np

    from resland.models import init_model, param_count

    plain = parse_spec({"grid": {"data": "grunfeld", "depth": [1, 32], "width": 1}})
    assert all("delta0" not in c for c in plain.configs)   # older specs keep their config ids
    spec = parse_spec({"grid": {"data": "grunfeld", "depth": [1, 32, 40], "width": 1, "delta0": 0.5,
                                "regime": "below_samples"}})
    # grunfeld: m = 220, d = 3; without branch biases n = 6L + 4 (196 at L = 32, 244 at L = 40)
    assert [(c["depth"], c["delta0"]) for c in spec.configs] == [(1, 0.5), (32, 0.5)]
    assert param_count("resnet", 3, width=1, depth=32, block_bias=False) == 196
    model = init_model("resnet", 3, width=1, depth=32, activation="tanh", seed=3, delta0=0.5)
    assert sum(p.numel() for p in model.parameters()) == 196 and not model.block_bias
    delta = sum(np.linalg.norm(model.V(l).detach().numpy(), 2) * np.linalg.norm(model.U(l).detach().numpy(), 2)
                for l in range(1, 33))
    assert abs(delta - 0.5) <= 1e-14
    for bad in ({"model": "fc"}, {"v_scale": 0.3}, {"delta0": 0.0}):
        with pytest.raises(ValidationError, match="delta0"):
            parse_spec({"grid": dict({"data": "grunfeld", "delta0": 0.5}, **bad)})
    with pytest.raises(ValidationError, match="delta0"):
        init_model("fc", 3, delta0=0.5)


def test_a_grid_max_iter_enters_its_configs_only_and_caps_their_finder_runs():
    """``[[grid]] max_iter`` overrides ``[finder] max_iter`` for that grid's configs only; grids
    without it keep their config ids (and so the atlas's committed runs)."""
    from resland.census import run_task

    raw = {"finder": {"max_iter": 50}, "grid": [{"data": "grunfeld", "depth": 1, "width": 2, "activation": "tanh"},
                                               {"data": "grunfeld", "depth": 2, "width": 2, "activation": "tanh",
                                                "max_iter": 3}]}
    spec = parse_spec(raw)
    plain = parse_spec({"finder": {"max_iter": 50}, "grid": raw["grid"][0]})
    assert spec.configs[0] == plain.configs[0] and "max_iter" not in spec.configs[0]
    assert spec.configs[1]["max_iter"] == 3
    task = next(t for t in spec.tasks() if t.config.get("max_iter") == 3)
    rows = run_task(task, spec.task_options)
    assert all(json.loads(r["finder"])["iterations"] <= 3 for r in rows)
    for bad in (0, -1, 1.5, "x"):
        with pytest.raises(ValidationError, match="max_iter"):
            parse_spec({"grid": dict(raw["grid"][1], max_iter=bad)})


def test_the_documented_summary_schema_is_the_code_s():
    """docs/census.md "Rows" shows the compact export's schema as derived from RunSummary."""
    from pathlib import Path

    from resland.census.row import ROW_FIELDS, SUMMARY_SCHEMA, Run, RunSummary, column_type, schema_table

    doc = (Path(__file__).resolve().parents[1] / "docs" / "census.md").read_text(encoding="utf-8")
    assert schema_table() in doc
    assert [f for f, _ in SUMMARY_SCHEMA] == list(RunSummary.__dataclass_fields__)
    assert ROW_FIELDS == tuple(Run.__dataclass_fields__)
    assert column_type("risk") == "REAL" and column_type("seed") == "INTEGER" and column_type("verdict") == "TEXT"
