"""The atlas: a census that resumes from its committed export, and the six questions of its report.

The questions are checked on rows built by hand (counts known independently); the probe column
against NumPy least squares on the block outputs; the export's replay against the stored verdict.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import resland
from conftest import teacher_problem
from resland import atlas
from resland.census import RunStore, load_spec, run_census
from resland.census.export import COMPACT_FIELDS, compact_row
from resland.models import init_model
from resland.replay import replay_export

SMOKE = """
name = "atlas-test"
seeds = 2
engine = "batched"
[finder]
kind = "minimum"
max_iter = 40
[[grid]]
data = "linnerud"
model = ["resnet", "fc"]
depth = 1
width = 1
activation = "tanh"
"""


def test_the_atlas_resumes_from_its_committed_export_and_then_does_nothing(tmp_path):
    (tmp_path / "atlas.toml").write_text(SMOKE)
    first = atlas.run_atlas(tmp_path, workers=1, rademacher_draws=0)
    assert {k: first[k] for k in ("spec", "committed", "new", "total", "of", "written")} == {
        "spec": "atlas-test", "committed": 0, "new": 4, "total": 4, "of": 4, "written": True}
    assert 0 < first["export_mb"] < atlas.MAX_EXPORT_MB
    runs = tmp_path / "runs.parquet"
    rows = atlas.read_runs(runs)
    assert len(rows) == 4 and {r["model"] for r in rows} == {"resnet", "fc"}
    assert all(r["outcome"] in resland.OUTCOMES for r in rows)
    blob = runs.read_bytes()
    # A clone: the committed export and report, no working store. Nothing is computed or rewritten.
    for f in tmp_path.glob("atlas.db*"):
        f.unlink()
    again = atlas.run_atlas(tmp_path, workers=1, rademacher_draws=0)
    assert {k: again[k] for k in ("spec", "committed", "new", "total", "written")} == {
        "spec": "atlas-test", "committed": 4, "new": 0, "total": 4, "written": False}
    assert runs.read_bytes() == blob
    # One more seed: only the two new runs are computed; the committed four are kept as they were.
    (tmp_path / "atlas.toml").write_text(SMOKE.replace("seeds = 2", "seeds = [0, 1, 2]"))
    more = atlas.run_atlas(tmp_path, workers=1, rademacher_draws=0)
    assert more["new"] == 6 and more["committed"] == 0   # a new spec (its hash changed): all its runs are new
    assert len(atlas.read_runs(runs)) == 6


def test_the_export_is_byte_stable_for_the_same_rows(tmp_path):
    rows = [_row(config_id=f"c{i}", seed=i % 2) for i in range(5)]
    atlas.write_runs(rows, tmp_path / "a.parquet")
    atlas.write_runs(rows[::-1], tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def _row(**kw):
    r = dict.fromkeys(k for k, _ in COMPACT_FIELDS)
    r.update(spec_hash="h", config_id="c", seed=0, data="diabetes", model="resnet", depth=1, width=2,
             activation="tanh", v_scale=1.0, kind="minimum", loss="squared", outcome="below_linear",
             verdict="not_critical", linear_equivalent=0, trivial="none", risk=0.4, linear_risk=0.48, linear_risk_lower=0.48,
             linear_risk_upper=0.48, gap=-0.08, lambda_min=None, lambda_tol=None)
    r.update(kw)
    return r


def test_the_six_questions_count_what_they_say():
    lin = 0.5
    rows = [
        _row(outcome="below_linear"),                                                    # q1: below
        _row(outcome="unresolved", risk=0.6, status="max_iter", grad_norm=1e-3),        # q1: not below; q6
        _row(outcome="critical", verdict="better_than_linear", risk=lin, linear_risk_lower=lin, linear_risk_upper=lin,
             linear_equivalent=1, trivial="linear", lambda_min=-1e-3, lambda_tol=1e-9),   # trivial, a saddle
        _row(outcome="critical", verdict="better_than_linear", risk=0.3, linear_risk_lower=lin, linear_risk_upper=lin,
             lambda_min=1e-6, lambda_tol=1e-9, probe_risks=json.dumps([[0.5, 0.5], [0.45, 0.45], [0.3, 0.3]])),
        _row(model="fc", outcome="critical", verdict="local_minimum_worse", risk=0.7, linear_risk_lower=lin,
             linear_risk_upper=lin, lambda_min=0.0, lambda_tol=1e-9, gap=0.2, config_id="fcv", seed=3, null_dim=0),
        _row(model="fc", outcome="critical", verdict="local_minimum_worse", risk=0.9, linear_risk_lower=lin,
             linear_risk_upper=lin, lambda_min=0.0, lambda_tol=1e-9, gap=0.4, trivial="constant", depth=8),
        _row(outcome="critical", verdict="degenerate_saddle", risk=0.9, linear_risk_lower=lin, linear_risk_upper=lin,
             lambda_min=0.0, lambda_tol=1e-9, gap=0.4, trivial="constant", depth=8, config_id="rd", seed=5),
        _row(model="fc", outcome="critical", verdict="better_than_linear", risk=0.2, linear_risk_lower=lin,
             linear_risk_upper=lin, lambda_min=-2e-9, lambda_tol=1e-9),               # λ_min below −tol: no minimum
        _row(outcome="critical", verdict="better_than_linear", risk=0.3, linear_risk_lower=lin, linear_risk_upper=lin,
             lambda_min=0.0, lambda_tol=1e-9, probe_risks=json.dumps([[0.5, 0.5], [0.4, 0.41], [0.42, 0.43]]),
             depth=2),
        _row(kind="any", outcome="below_linear"),                                      # not a descent run
    ]
    q1 = atlas.q1_below_linear(rows)
    assert q1[("diabetes", 1, "resnet")] == (4, 2)      # below_linear and the critical point at 0.3
    assert q1[("diabetes", 1, "fc")] == (2, 1)
    assert q1[("diabetes", 2, "resnet")] == (1, 1)
    assert atlas.q2_dichotomy(rows) == {
        ("fc", 1): {"better_than_linear": {"none": 1}, "local_minimum_worse": {"none": 1}},
        ("fc", 8): {"local_minimum_worse": {"constant": 1}},
        ("resnet", 1): {"better_than_linear": {"linear": 1, "none": 1}},
        ("resnet", 2): {"better_than_linear": {"none": 1}},
        ("resnet", 8): {"degenerate_saddle": {"constant": 1}}}
    assert [(v["config_id"], v["seed"]) for v in atlas.q2_theorem2(rows)] == [("rd", 5)]   # trivial, still listed
    # local minima: better with λ_min ≥ −tol (the linear-equivalent point is a saddle), or local_minimum_worse
    assert atlas.q3_fc_vs_resnet(rows) == {"fc": {"local minima": 2, "worse": 2, "worse_non_trivial": 1},
                                           "resnet": {"local minima": 2, "worse": 0, "worse_non_trivial": 0}}
    assert [r["config_id"] for r in atlas.q3_examples(rows)] == ["fcv"]
    assert atlas.q5_probes(rows) == {("diabetes", 1): (1, 0), ("diabetes", 2): (1, 1)}   # 0.42 > 0.41 + tol
    assert [r["outcome"] for r in atlas.q6_unresolved(rows)] == ["unresolved"]
    h = atlas.headline(rows)
    assert h["runs"] == 10 and h["certified_non_trivial"] == 4 and math.isclose(h["unresolved_share"], 1 / 10)
    assert h["certified"] == 7 and h["trivial"] == {"constant": 2, "linear": 1}


def test_deep_resnet_evidence_is_counted_by_the_net_the_finder_ran_on():
    crit = dict(outcome="critical", verdict="better_than_linear", risk=0.3, linear_risk_lower=0.5,
                linear_risk_upper=0.5, gap=-0.2, depth=8, width=8)
    rows = [_row(**crit, core_depth=1, core_width=1, zero_units=63, config_id="a"),
            _row(**dict(crit, depth=32), core_depth=1, core_width=1, config_id="b"),        # the same core point
            _row(**dict(crit, risk=0.25), core_depth=2, core_width=1, config_id="c"),
            _row(**dict(crit, risk=0.2), config_id="d"),                                     # full width, no core
            _row(**dict(crit, risk=0.2), core_depth=8, core_width=8, config_id="e"),          # the core is the net
            _row(**crit, core_depth=1, core_width=1, trivial="constant", config_id="f"),     # not evidence
            _row(**dict(crit, depth=4), core_depth=1, core_width=1, config_id="g"),         # not deep
            _row(**dict(crit, model="fc"), core_depth=8, core_width=1, config_id="h")]      # not a ResNet
    q = atlas.q7_deep(rows)
    assert [r["config_id"] for r in q["points"]] == ["a", "b", "c", "d", "e"]
    assert q["by_depth"] == {8: 4, 32: 1} and q["by_core"] == {"1×1": 2, "2×1": 1, "full width": 2}
    assert q["distinct"] == 3        # a and b are one core point; d and e are the same full-width risk
    sentence = next(s for s, a in atlas.findings(rows) if a == "q7")
    assert "at depth ≥ 8: 5 (depth 8: 4, 32: 1)" in sentence and "3 distinct points" in sentence


def test_probe_intervals_overlapping_within_tolerance_are_monotone():
    assert atlas.probes_monotone([[0.5, 0.5], [0.5, 0.5 + 1e-12]])
    assert atlas.probes_monotone([[0.5, 0.52], [0.51, 0.53]])     # intervals overlap: no certified rise
    assert not atlas.probes_monotone([[0.5, 0.5], [0.5 + 1e-6, 0.6]])


@pytest.fixture(scope="module")
def teacher_store(tmp_path_factory):
    """A census on teacher data (realizable, m = 200 ≫ n): certified interpolating minima."""
    d = tmp_path_factory.mktemp("teacher")
    teacher, _, X, y = teacher_problem(seed=1, d=2, k=2, L=2, m=200)
    np.savez(d / "teacher.npz", X=X.numpy(), y=y.numpy())
    (d / "spec.toml").write_text(f"""
name = "teacher"
seeds = [0, 1]
engine = "batched"
[store]
parameters = "all"
[finder]
kind = "minimum"
max_iter = 300
[[grid]]
data = "{d / 'teacher.npz'}"
depth = 2
width = 2
activation = "tanh"
""")
    store = RunStore(d / "runs.db")
    run_census(load_spec(d / "spec.toml"), store, workers=1)
    return d, store, torch.as_tensor(X), torch.as_tensor(y)


def test_probe_risks_are_the_least_squares_fits_on_the_block_outputs(teacher_store):
    d, store, X, y = teacher_store
    rows = [r for r in store.rows() if r["probe_risks"]]
    assert rows, [(r["outcome"], r["verdict"], r["lambda_min"]) for r in store.rows()]
    for r in rows:
        cfg = json.loads(r["config"])
        model = init_model("resnet", 2, width=2, depth=2, activation="tanh", seed=r["seed"])
        torch.nn.utils.vector_to_parameters(torch.tensor(json.loads(r["parameters"]), dtype=torch.float64),
                                            model.parameters())
        assert cfg["depth"] == 2
        with torch.no_grad():
            hs = model.hidden_states(X)
        probes = json.loads(r["probe_risks"])
        assert len(probes) == len(hs) == 3
        for (lo, up), h in zip(probes, hs):
            A = np.c_[h.numpy(), np.ones(len(y))]
            res = A @ np.linalg.lstsq(A, y.numpy(), rcond=None)[0] - y.numpy()
            ref = float(np.mean(res**2))
            assert lo <= ref * (1 + 1e-9) + 1e-15 and ref <= up * (1 + 1e-9) + 1e-15, (lo, ref, up)


def test_a_run_replays_from_the_compact_export(teacher_store, tmp_path):
    d, store, X, y = teacher_store
    full = next(r for r in store.rows() if r["outcome"] == "critical")
    row = compact_row(full)
    assert row["parameters"] is None                   # kept for worse-than-linear points and unresolved runs only
    row["parameters"] = full["parameters"]
    atlas.write_runs([row], tmp_path / "runs.parquet")
    rep = replay_export(tmp_path / "runs.parquet", f"{row['config_id']}:{row['seed']}")
    assert rep.agrees and rep.certificate.verdict == full["verdict"]
    assert math.isclose(rep.certificate.risk, full["risk"], rel_tol=1e-12, abs_tol=1e-20)


def test_replay_from_an_export_rejects_a_missing_run_in_one_line(tmp_path):
    atlas.write_runs([_row()], tmp_path / "runs.parquet")
    out = subprocess.run([sys.executable, "-m", "resland.cli", "replay", "--parquet", str(tmp_path / "runs.parquet"),
                          "--run", "nope:0"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "has no run 'nope:0'" in out.stderr
    out = subprocess.run([sys.executable, "-m", "resland.cli", "replay", "--parquet", str(tmp_path / "runs.parquet"),
                          "--run", "c:0"], capture_output=True, text=True)     # no parameters and no atlas.toml
    assert out.returncode == 2 and "no parameters" in out.stderr and "--spec" in out.stderr


def test_the_committed_atlas_spec_covers_what_the_atlas_promises():
    from pathlib import Path

    spec = load_spec(Path(__file__).parents[1] / "atlas" / "atlas.toml")
    cs = spec.configs
    losses = {c["data"]: resland.load_dataset(c["data"]).loss for c in cs}
    assert sum(v == "squared" for v in losses.values()) >= 3 and sum(v == "logistic" for v in losses.values()) >= 2
    for name in losses:                                            # R_lin attained on every data set
        ds = resland.load_dataset(name)
        assert resland.best_linear(ds.X, ds.y, ds.loss).attained, name
    assert {c["model"] for c in cs} == {"resnet", "fc"}
    assert {c["depth"] for c in cs} >= {1, 2, 4, 8, 16, 32} and {c["width"] for c in cs} >= {1, 16}
    assert {c["activation"] for c in cs} == {"relu", "softplus", "tanh"}
    assert {c["kind"] for c in cs} == {"minimum", "any"} and {c["v_scale"] for c in cs} >= {0.3, 1.0}
    # Every model appears at every depth it has in the other model's grid (side by side).
    for data in losses:
        dw = {m: {(c["depth"], c["width"]) for c in cs if c["model"] == m and c["data"] == data} for m in ("resnet", "fc")}
        assert dw["resnet"] & dw["fc"], data
    assert spec.n_runs >= 10_000


def test_the_committed_export_is_the_whole_spec_within_the_atlas_targets():
    """atlas/runs.parquet holds every run of atlas/atlas.toml (so `make atlas` on a clone computes
    nothing), each with an outcome and, where certified, a trivial kind; at most 5 % unresolved; at
    least 600 certified critical points with trivial = none; the retired verdict `violation` nowhere;
    under 25 MB."""
    from pathlib import Path

    from resland.census.spec import config_id

    root = Path(__file__).parents[1] / "atlas"
    spec = load_spec(root / "atlas.toml")
    rows = atlas.read_runs(root / "runs.parquet")
    assert {(r["spec_hash"], r["config_id"], r["seed"]) for r in rows} == {
        (spec.spec_hash, config_id(c), s) for c in spec.configs for s in spec.seeds_of(c)}
    assert all(r["outcome"] in ("critical", "kink", "below_linear", "diverging", "unresolved", "failed") for r in rows)
    h = atlas.headline(rows)
    assert h["unresolved_share"] <= 0.05 and h["certified_non_trivial"] >= 600 and len(h["data_sets"]) >= 6
    assert not [r for r in rows if r["verdict"] == "violation"]
    assert all(r["trivial"] in ("none", "linear", "constant") for r in rows if r["outcome"] == "critical")
    page = (root / "index.html").read_text()
    assert "atlas/runs.parquet --run" in page and "/tmp/" not in page and page.index("id='findings'") < page.index("id='q2'")
    assert (root / "runs.parquet").stat().st_size <= atlas.MAX_EXPORT_MB * 1e6


def test_bad_executor_options_leave_the_atlas_directory_untouched(tmp_path):
    (tmp_path / "atlas.toml").write_text(SMOKE)
    out = subprocess.run([sys.executable, "-m", "resland.cli", "atlas", "--dir", str(tmp_path), "--workers", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas.toml"]


def test_the_report_opens_with_findings_and_names_repo_relative_replay_commands(tmp_path):
    lin = 0.5
    rows = [_row(outcome="below_linear", depth=d, seed=s, config_id=f"b{d}") for d in (1, 2, 4) for s in range(2)]
    rows += [_row(model="fc", outcome="critical", verdict="local_minimum_worse", risk=0.7, linear_risk_lower=lin,
                  linear_risk_upper=lin, lambda_min=0.1, lambda_tol=1e-9, gap=0.2, config_id="fcv")]
    out = tmp_path / "index.html"
    atlas.write_atlas_report(rows, out, rademacher_draws=0, runs_path=tmp_path / "runs.parquet")  # absolute
    page = out.read_text()
    assert page.index("<h2 id='findings'>") < page.index("<h2 id='q2'>")
    findings = page[page.index("<ul>"):page.index("</ul>")]
    assert 4 <= findings.count("<li>") <= 6 and findings.count("<a href='#") == findings.count("<li>")
    assert "None: every certified ResNet critical point is better than linear or a strict saddle." in page
    assert "resland replay --parquet atlas/runs.parquet --run fcv:0" in page and str(tmp_path) not in page
    paths = atlas.write_atlas_figures(rows, tmp_path)
    assert [p.name for p in paths] == ["below_linear.png"]          # no certified ResNet point with δ
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_only_publishes_a_partial_atlas_that_a_rerun_completes(tmp_path):
    (tmp_path / "atlas.toml").write_text(SMOKE)
    spec = load_spec(tmp_path / "atlas.toml")
    with RunStore(tmp_path / "atlas.db") as store:     # seed 0 of each config done, seed 1 not yet
        run_census(spec, store, workers=1, skip={(c["config_id"], 1) for c in
                                                 [{"config_id": t.config_id} for t in spec.tasks()]})
    part = atlas.run_atlas(tmp_path, export_only=True, rademacher_draws=0)
    assert (part["new"], part["total"], part["of"], part["written"]) == (0, 2, 4, True)
    assert sorted(r["seed"] for r in atlas.read_runs(tmp_path / "runs.parquet")) == [0, 0]
    for f in tmp_path.glob("atlas.db*"):                # a clone of the partial atlas
        f.unlink()
    rest = atlas.run_atlas(tmp_path, workers=1, rademacher_draws=0)
    assert (rest["committed"], rest["new"], rest["total"]) == (2, 2, 4)
    assert sorted(r["seed"] for r in atlas.read_runs(tmp_path / "runs.parquet")) == [0, 0, 1, 1]


def test_the_markdown_summary_states_the_counts_of_the_questions():
    lin = 0.5
    rows = [_row(outcome="below_linear", config_id="a"), _row(outcome="unresolved", risk=0.6, config_id="b"),
            _row(model="fc", outcome="critical", verdict="local_minimum_worse", risk=0.7, linear_risk_lower=lin,
                 linear_risk_upper=lin, lambda_min=0.1, lambda_tol=1e-9, gap=0.2, config_id="c"),
            _row(model="fc", outcome="critical", verdict="degenerate", risk=0.7, linear_risk_lower=lin,
                 linear_risk_upper=lin, lambda_min=0.0, lambda_tol=1e-9, gap=0.2, config_id="d", trivial="constant")]
    md = atlas.markdown_summary(rows, of=10)
    assert md.startswith("Findings:\n\n* 4 runs on 1 data sets reached 2 certified critical points; 1 of them are "
                         "non-trivial evidence (excluded as trivial: 1 constant; unresolved runs: 25.0%). ([table](#q2))")
    assert "4 runs of 10 on 1 data sets (diabetes)." in md
    assert "| resnet | 1/2 (50%) |" in md and "| fc | 0/2 (0%) |" in md      # question 1 at L = 1
    assert "| fc | 1 | 0 | 0 | 0 | 1 | 0 (+1 constant) |" in md               # question 2
    assert "ResNet points worse than linear without a negative eigenvalue: 0." in md
    assert "| fc | 1 | 1 | 1 |" in md                                         # question 3


def test_cost_adds_core_seconds_per_stratum_and_gives_runs_per_hour():
    rows = [_row(config_id="a", seconds=1.0), _row(config_id="b", seconds=3.0, depth=8),
            _row(config_id="c", seconds=2.0, activation="relu", kind="any")]
    c = atlas.cost(rows, workers=2)
    assert c["strata"] == {("relu", "any", "1–4"): (1, 2.0), ("smooth", "minimum", "1–4"): (1, 1.0),
                           ("smooth", "minimum", "8–32"): (1, 3.0)}
    assert c["total"]["core_seconds"] == 6.0 and c["total"]["wall_minutes"] == 3.0 / 60
    assert c["total"]["runs_per_hour"] == 3 / 3.0 * 3600
    assert "| smooth | minimum | 8–32 | 1 | 3.00 | 1,200 |" in atlas.markdown_summary(rows)


def test_a_worse_certificate_at_a_diverging_run_is_listed_but_not_counted(tmp_path):
    lin = 0.5
    crit = dict(model="resnet", verdict="degenerate", risk=0.7, linear_risk_lower=lin, linear_risk_upper=lin,
                lambda_min=0.0, lambda_tol=1e-9, gap=0.2)
    rows = [_row(outcome="critical", config_id="a", **crit), _row(outcome="diverging", config_id="b", **crit)]
    assert atlas.q2_dichotomy(rows) == {("resnet", 1): {"degenerate": {"none": 1}}}
    assert [r["config_id"] for r in atlas.q2_theorem2(rows)] == ["a"]
    assert [r["config_id"] for r in atlas.not_counted(rows)] == ["b"]
    atlas.write_atlas_report(rows, tmp_path / "index.html", rademacher_draws=0)
    page = (tmp_path / "index.html").read_text()
    assert "Not counted: 1 run(s)" in page and "ResNet critical points worse than linear without a negative" in page


def test_every_export_row_replays_from_a_fresh_clone_parameters_or_a_bit_for_bit_rerun(tmp_path):
    """Rows without stored parameters rerun their task from atlas.toml beside the export and must
    equal the stored row in every field but the timing; a changed spec is refused in one line."""
    (tmp_path / "atlas.toml").write_text(SMOKE)
    atlas.run_atlas(tmp_path, workers=1, rademacher_draws=0)
    rows = atlas.read_runs(tmp_path / "runs.parquet")
    bare = [r for r in rows if not r["parameters"]]
    assert bare
    for r in bare[:2]:
        rep = replay_export(tmp_path / "runs.parquet", f"{r['config_id']}:{r['seed']}")
        assert rep.rerun == {"identical": True, "within_ulps": True, "max_ulps": 0.0, "differences": {}} and rep.agrees
        assert rep.certificate.verdict == r["verdict"] and rep.certificate.risk == r["risk"]
    # a stored row that does not match its rerun is reported, field by field
    tampered = [dict(r, risk=r["risk"] + 1e-9) if r is bare[0] else r for r in rows]
    atlas.write_runs(tampered, tmp_path / "runs.parquet")
    rep = replay_export(tmp_path / "runs.parquet", f"{bare[0]['config_id']}:{bare[0]['seed']}")
    assert not rep.agrees and list(rep.rerun["differences"]) == ["risk"]
    (tmp_path / "atlas.toml").write_text(SMOKE.replace("max_iter = 40", "max_iter = 41"))
    out = subprocess.run([sys.executable, "-m", "resland.cli", "replay", "--parquet", str(tmp_path / "runs.parquet"),
                          "--run", f"{bare[0]['config_id']}:{bare[0]['seed']}"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "is not the one the run" in out.stderr


def test_the_rademacher_estimate_of_question_4_runs_per_depth():
    rad = atlas.rademacher_by_depth([1, 2], draws=2, steps=3)
    assert [r["depth"] for r in rad] == [1, 2] and all(r["mean"] > 0 and r["se"] >= 0 for r in rad)


def test_the_deep_part_has_its_own_export_and_report_and_the_main_page_shows_its_findings(tmp_path):
    """``part="deep"``: deep.toml -> deep.parquet and deep.html (figures prefixed deep_); index.html, rewritten,
    carries a section with the deep part's findings linking into deep.html; the main export is untouched."""
    (tmp_path / "atlas.toml").write_text(SMOKE)
    atlas.run_atlas(tmp_path, workers=1, rademacher_draws=0)
    main_blob = (tmp_path / "runs.parquet").read_bytes()
    (tmp_path / "deep.toml").write_text(SMOKE.replace('name = "atlas-test"', 'name = "deep-test"')
                                        .replace("depth = 1", "depth = 8").replace("seeds = 2", "seeds = 1"))
    out = atlas.run_atlas(tmp_path, workers=1, rademacher_draws=0, part="deep")
    assert out["spec"] == "deep-test" and out["new"] == 2 and out["written"]
    rows = atlas.read_runs(tmp_path / "deep.parquet")
    assert {(r["model"], r["depth"]) for r in rows} == {("resnet", 8), ("fc", 8)}
    assert (tmp_path / "runs.parquet").read_bytes() == main_blob
    page = (tmp_path / "index.html").read_text()
    assert "<h2 id='part-deep'>The deep atlas</h2>" in page and "href='deep.html#" in page
    assert "deep-test" in (tmp_path / "deep.html").read_text()
    assert not (tmp_path / "deep_below_linear.png").exists() or (tmp_path / "below_linear.png").exists()
    with pytest.raises(resland.ValidationError, match="part"):
        atlas.run_atlas(tmp_path, part="wide")


def test_the_committed_deep_export_is_its_spec_and_its_cheapest_row_reruns_bit_for_bit():
    """atlas/deep.parquet holds every run of atlas/deep.toml under its hash, and a row without parameters
    reruns from the spec (the matrix-free finder included) to the same bits."""
    from resland.census import load_spec
    from resland.replay import replay_export

    root = Path(__file__).resolve().parents[1] / "atlas"
    spec = load_spec(root / "deep.toml")
    rows = atlas.read_runs(root / "deep.parquet")
    assert {(r["config_id"], r["seed"]) for r in rows} == {(t.config_id, s) for t in spec.tasks() for s in t.seeds}
    assert {r["spec_hash"] for r in rows} == {spec.spec_hash}
    assert all(r["n_params"] < min(10_000, 60_000) for r in rows) and {r["data"] for r in rows} >= {"default", "diamonds"}
    cheap = min((r for r in rows if r["parameters"] is None), key=lambda r: r["seconds"])
    rep = replay_export(root / "deep.parquet", f"{cheap['config_id']}:{cheap['seed']}", spec=root / "deep.toml")
    assert rep.rerun["within_ulps"], rep.rerun["differences"]   # bit for bit here; REPLAY_ULPS across machines


def test_the_committed_multiclass_export_is_its_spec_and_reruns_bit_for_bit():
    """atlas/multiclass.parquet holds every run of atlas/multiclass.toml; k-output nets on ≥ 3 multi-class sets with
    the cross-entropy, ResNet and FC, depths 1–8; a certified non-trivial 3-class saddle reruns from the spec (found
    by replay without naming the spec) to the same bits; no critical point sits at a vanishing cross-entropy."""
    from resland.census import load_spec
    from resland.replay import replay_export

    root = Path(__file__).resolve().parents[1] / "atlas"
    spec = load_spec(root / "multiclass.toml")
    rows = atlas.read_runs(root / "multiclass.parquet")
    assert {(r["config_id"], r["seed"]) for r in rows} == {(t.config_id, s) for t in spec.tasks() for s in t.seeds}
    assert len({r["data"] for r in rows if r["loss"] == "cross_entropy"}) >= 3
    assert {r["model"] for r in rows} == {"resnet", "fc"} and {r["depth"] for r in rows} == {1, 2, 4, 8}
    assert not any(r["outcome"] == "critical" and r["loss"] == "cross_entropy" and r["risk"] <= 1e-10 for r in rows)
    saddles = [r for r in rows if r["outcome"] == "critical" and r["verdict"] == "strict_saddle"
               and r["trivial"] == "none" and r["loss"] == "cross_entropy" and r["parameters"] is None]
    cheap = min(saddles, key=lambda r: r["seconds"])
    rep = replay_export(root / "multiclass.parquet", f"{cheap['config_id']}:{cheap['seed']}")
    assert rep.rerun["within_ulps"], rep.rerun["differences"]   # bit for bit here; REPLAY_ULPS across machines
    assert rep.certificate.verdict == "strict_saddle"
