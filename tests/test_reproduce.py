"""`resland reproduce --quick`: the claims file, the closed forms, the C2 witness and the rendered report."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import resland
from resland.paper.claims import STATUSES
from resland.theory import linear_probes


@pytest.fixture(scope="session")
def claims(quick_run):
    return {c["id"]: c for c in json.loads((quick_run / "claims.json").read_text())}


def test_all_claims_present_with_status_and_evidence(claims, quick_run):
    from resland.known.papers import PAPERS

    assert sorted(c for c in claims if claims[c]["paper"] == "yun-sra-jadbabaie-2019") == ["C1", "C2", "C3", "C4", "C5"]
    assert sorted(claims) == sorted(cid for p in PAPERS.values() for cid in p.claims)
    for cid in ("C3", "C4", "C5"):   # non-trivial evidence (docs/theory.md §7) reproduces them
        assert claims[cid]["status"] == "reproduced", (cid, claims[cid]["reason"])
    for c in claims.values():
        assert c["status"] in STATUSES
        assert c["statement"] and c["reason"] and c["measured"] and c["details"] and c["commands"]
        for fig in c["figures"]:
            assert (quick_run / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (quick_run / "records.jsonl").read_text().count("\n") > 50


def test_c1_matches_closed_forms(claims):
    c1 = claims["C1"]
    assert c1["status"] == "reproduced", c1["reason"]
    star = 3 * (1 + math.sqrt(21)) / 4
    assert c1["details"]["crossing_numeric"] == pytest.approx(star, rel=1e-9)
    assert c1["details"]["symbolic_R_lin_equals_8rho2_over_15"] is True
    paper = {0.1, 1.0, 2.0, 4.0, 4.5}
    rows = c1["details"]["grid"]
    assert {r["rho"] for r in rows} >= paper and any(r["rho"] > star for r in rows)
    for r in rows:
        rho = r["rho"]
        assert r["R_lin"] == pytest.approx(8 * rho**2 / 15, rel=1e-9)
        assert r["fc_global_min"] == pytest.approx(8 * rho**2 / 15, rel=1e-9)
        R2 = rho**2 * (12 * rho**2 + 82 * rho + 215) / (21 * rho**2 + 156 * rho + 420)
        assert r["R2"] == pytest.approx(R2, rel=1e-12)
        assert r["R2_below_linear"] == (rho < star)
        if rho in paper:
            assert r["resnet_global_min"] == pytest.approx(29 * rho**2 / 57, rel=1e-9)
    one = next(r for r in rows if r["rho"] == 1.0)
    assert one["resnet_global_min"] == pytest.approx(0.508772, abs=1e-6)
    assert one["R2"] == pytest.approx(0.517588, abs=1e-6)


def test_c2_witness_reloads_and_certifies(claims):
    w = claims["C2"]["details"]["witness"]
    assert w is not None, claims["C2"]["reason"]
    model = resland.build_model(w["config"])
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in w["state_dict"].items()})
    ds = resland.load_dataset("example2")
    cert = resland.certify(model, ds.X, ds.y)
    assert cert.risk <= 1e-10 and cert.verdict == "better_than_linear", cert.reason  # a global minimum (R = 0)
    probes = [p.risk for p in linear_probes(model, ds.X, ds.y)]
    assert probes[0] == pytest.approx(25 / 78, rel=1e-12)
    assert probes[1] > probes[0] + 1e-9


def test_no_point_worse_than_linear_without_negative_curvature_goes_unreported(claims):
    for cid in ("C3", "C5"):  # C4's claim is about bounds: such points are listed, not its status
        c = claims[cid]
        n_worse = len(c["details"]["worse_no_negative"])
        assert (c["status"] == "not_reproduced") == (n_worse > 0)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(quick_run, tmp_path):
    browser = _chromium()
    if browser is None:
        print("SKIP reason: chromium is not installed (Debian package 'chromium'; .ci/run installs it when it can)")
        pytest.skip("chromium is not installed")
    report = quick_run / "report.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "report.png"
    keep = quick_run / "screenshot.png"
    res = subprocess.run([browser, *flags, "--window-size=1200,6000", f"--screenshot={shot}", report.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.exists(), res.stderr[-2000:]
    console_errors = [l for l in res.stderr.splitlines() if "CONSOLE" in l and ("ERROR" in l or "Uncaught" in l)]
    assert not console_errors, console_errors
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.index("id=\"claims\"") < dom.index("<img")  # the claims table comes first, then plots
    assert dom.count("data:image/png;base64,") >= 4  # one plot each for C1..C4
    # the screenshot shows the table and a plot: matplotlib's blue appears, and the page is not blank
    from matplotlib.image import imread

    img = (imread(shot)[:, :, :3] * 255).astype(int)
    assert img.std() > 10
    plot_colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # matplotlib's first three
    hits = sum(int(np.all(np.abs(img - np.array(c)) < 25, axis=-1).sum()) for c in plot_colours)
    assert hits > 200, "no plot visible in the first 6,000 pixels (claims table of every paper, then plots)"
    shutil.copy(shot, keep)


def test_cli_only_rejects_unknown_claim():
    res = subprocess.run([sys.executable, "-m", "resland.cli", "reproduce", "--only", "C9"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: The 'only' parameter must be one of 'C1', 'C2', 'C3', 'C4', 'C5'. Got 'C9' instead."


@pytest.mark.parametrize("claim", ["C3", "C4"])
def test_rerun_command_of_a_census_row_reproduces_it(quick_run, claim):
    """A census record's ``resland certify`` command recomputes it (C4's with ``--delta0``)."""
    rec = next(json.loads(l) for l in (quick_run / "records.jsonl").read_text().splitlines()
               if json.loads(l).get("claim") == claim and json.loads(l).get("verdict"))
    args = rec["command"].split()[1:] + ["--json"]
    assert ("--delta0" in args) == (claim == "C4")
    res = subprocess.run([sys.executable, "-m", "resland.cli", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["finder"]["status"] == rec["status"]
    assert out["certificate"]["verdict"] == rec["verdict"]
    assert out["certificate"]["risk"] == pytest.approx(rec["risk"], rel=1e-12)


def test_c3_c4_and_c5_run_as_census_specs_and_replay_from_their_store(quick_run):
    """C3, C4 and C5 go through the census runner: their runs are in ``census.db`` (one spec per data
    set and finder kind, every run with its parameters), and a certified record replays to its verdict."""
    from resland.census import RunStore

    recs = [json.loads(l) for l in (quick_run / "records.jsonl").read_text().splitlines()]
    ours = [r for r in recs if r.get("claim") in ("C3", "C4", "C5")]
    with RunStore(quick_run / "census.db", create=False) as store:
        rows = list(store.rows())
        assert {s["name"].split("-")[0] for s in store.specs()} == {"C3", "C4", "C5"}
    assert len(rows) == len(ours) and all(r["parameters"] for r in rows)
    rec = next(r for r in ours if r["verdict"])
    res = subprocess.run([sys.executable, "-m", "resland.cli", *rec["replay"].split()[1:], "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["agrees"] and out["certificate"]["verdict"] == rec["verdict"]
    assert out["certificate"]["risk"] == pytest.approx(rec["risk"], rel=1e-12)


def test_dichotomy_status_needs_non_trivial_evidence_in_every_group():
    """docs/theory.md §7–§8: trivial points (linear or constant) never reproduce a claim on their own; a
    certified non-trivial point or a below-linear descent run does; a point worse than linear without
    negative curvature (even a trivial one) is never outweighed."""
    from resland.paper.dichotomy import _status

    def rec(depth, outcome="critical", verdict=None, trivial="none"):
        return {"depth": depth, "outcome": outcome, "verdict": verdict, "trivial": trivial}

    trivial = [rec(1, verdict="better_than_linear", trivial="linear"), rec(2, verdict="strict_saddle", trivial="constant")]
    status, reason = _status(trivial, (1, 2), "depth")
    assert status == "inconclusive" and "depth = [1, 2]" in reason
    status, reason = _status(trivial + [rec(1, "below_linear"), rec(2, verdict="strict_saddle")], (1, 2), "depth")
    assert status == "reproduced" and "1 certified" in reason and "1 descent" in reason and "2 trivial" in reason
    status, _ = _status(trivial + [rec(1, "below_linear"), rec(2, "unresolved")], (1, 2), "depth")
    assert status == "inconclusive"
    for verdict in ("degenerate_saddle", "local_minimum_worse", "degenerate"):
        status, reason = _status([rec(1, "below_linear"), rec(1, verdict=verdict, trivial="constant")], (1,), "depth")
        assert status == "not_reproduced" and f"1 {verdict} (constant)" in reason
