"""Replay: a stored run or a certify --json file is rebuilt from its parameters and certified again."""

import json
import sqlite3
import subprocess
import sys

import pytest

from resland import ValidationError
from resland.census import RunStore, parse_spec, run_census
from resland.census.report import candidates, write_report
from resland.census.runner import CANDIDATES
from resland.replay import replay_command, replay_file, replay_run


def cli(*args):
    return subprocess.run([sys.executable, "-m", "resland.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_a_certify_json_file_replays_to_the_same_verdict_and_risk(tmp_path):
    res = cli("certify", "--data", "example1", "--rho", "1", "--depth", "1", "--width", "1", "--activation", "tanh",
              "--seed", "0", "--json")
    assert res.returncode == 0, res.stderr
    path = tmp_path / "cert.json"
    path.write_text(res.stdout)
    stored = json.loads(res.stdout)["certificate"]
    rep = replay_file(path)
    assert rep.agrees and rep.certificate.verdict == stored["verdict"]
    assert rep.certificate.risk == stored["risk"]                      # bit for bit: same parameters, same data
    assert rep.certificate.linear_risk_lower == stored["linear_risk_lower"]
    out = cli("replay", path)
    assert out.returncode == 0, out.stderr
    assert "agrees" in out.stdout and stored["verdict"] in out.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "r.db"
    spec = parse_spec({"seeds": 2, "batch_size": 2, "finder": {"max_iter": 40}, "store": {"parameters": "all"},
                       "grid": [{"data": "example2", "depth": 1, "width": 2, "kind": "any"}]})
    with RunStore(path) as s:
        run_census(spec, s, workers=1)
    return path


def test_every_stored_run_replays_to_its_stored_verdict(store):
    with sqlite3.connect(store) as conn:
        keys = conn.execute("SELECT config_id, seed, verdict, risk FROM runs").fetchall()
    assert len(keys) == 2
    for config_id, seed, verdict, risk in keys:
        rep = replay_run(store, f"{config_id}:{seed}")
        assert rep.stored_verdict == verdict and rep.agrees, (rep.certificate.verdict, verdict)
        assert rep.certificate.risk == pytest.approx(risk, rel=1e-14)
    config_id, seed = keys[0][:2]
    res = cli("replay", "--store", store, "--run", f"{config_id}:{seed}", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["agrees"] and out["stored_verdict"] == keys[0][2]
    assert replay_command(store, config_id, seed) == f"resland replay --store {store} --run {config_id}:{seed}"


def test_candidates_list_their_replay_command_in_the_report(store, tmp_path):
    with RunStore(store) as s:
        cands = candidates(s)
        write_report(s, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "<h2 id='dichotomy'>The dichotomy, counted</h2>" in html
    for c in cands:
        assert c["verdict"] in CANDIDATES["verdicts"] or c["outcome"] in CANDIDATES["outcomes"]
        assert f"--run {c['config_id']}:{c['seed']}" in html


def test_bad_replay_requests_are_one_line_errors(store, tmp_path):
    with pytest.raises(ValidationError, match="CONFIG_ID:SEED"):
        replay_run(store, "no-seed")
    with pytest.raises(ValidationError, match="has no run"):
        replay_run(store, "nope:0")
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"certificate": {"verdict": "local_minimum_worse"}}))
    for args in (("replay", bare), ("replay",), ("replay", "--store", store, "--run", "nope:3"),
                 ("replay", tmp_path / "missing.json")):
        res = cli(*args)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr


def test_a_store_without_parameters_says_how_to_keep_them(tmp_path):
    spec = parse_spec({"seeds": 1, "finder": {"max_iter": 5}, "store": {"parameters": "candidates"},
                       "grid": [{"data": "example2", "depth": 1, "width": 1, "activation": "tanh", "kind": "any"}]})
    with RunStore(tmp_path / "c.db") as s:
        run_census(spec, s, workers=1)
        (row,) = list(s.rows())
    if row["parameters"] is None:
        with pytest.raises(ValidationError, match='parameters = "all"'):
            replay_run(tmp_path / "c.db", f"{row['config_id']}:{row['seed']}")
    else:
        assert replay_run(tmp_path / "c.db", f"{row['config_id']}:{row['seed']}").agrees
