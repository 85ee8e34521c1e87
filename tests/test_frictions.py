"""Frictions a new user met (issue 35), each retried: one clear line or a warned, documented conversion."""

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import resland
from resland.functional import ModelConversionWarning, prepare_model


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "resland.cli", *args], capture_output=True, text=True)


def test_a_csv_given_as_checkpoint_and_a_duplicate_header_are_one_line_errors(tmp_path):
    (tmp_path / "x.csv").write_text("a,b,y\n1,2,3\n4,5,6\n")
    (tmp_path / "dup.csv").write_text("a,a,c,y\n1,2,3,4\n4,5,6,7\n5,6,7,9\n")
    out = _cli("certify", "--data", "diabetes", "--depth", "1", "--width", "1", "--checkpoint", str(tmp_path / "x.csv"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "text file" in out.stderr, out.stderr
    out = _cli("certify", "--data", str(tmp_path / "dup.csv"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "'a' more than once" in out.stderr, out.stderr


def test_certify_help_lists_every_data_set_and_loss_and_shows_defaults():
    from resland.data import BUILTIN
    from resland.losses import LOSSES

    text = " ".join(_cli("certify", "--help").stdout.split())
    assert all(name in text for name in BUILTIN) and all(name in text for name in LOSSES)
    assert "cross_entropy" in text and "[default: resnet]" in text and "[default: steps]" in text


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")   # torch.func internals
def test_a_float32_module_with_dropout_is_computed_in_float64_eval_mode_and_reaches_critical():
    """The same net in float32 stalled at ‖∇R‖ ≈ 1e-8; resland now warns, copies it to float64 in eval mode, and
    the run is critical by the one gradient test; the user's module is unchanged."""
    ds = resland.load_dataset("diabetes")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 3), nn.Tanh(), nn.Dropout(0.2), nn.Linear(3, 1)).float()
    with pytest.warns(ModelConversionWarning, match="float32.*Dropout"):
        cp = resland.find_critical_point(net, ds.X, ds.y, max_iter=100)
    assert cp.outcome == "critical" and next(cp.model.parameters()).dtype == torch.float64
    assert net.training and next(net.parameters()).dtype == torch.float32
    # the risk is a deterministic function of θ: two certificates agree bit for bit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelConversionWarning)
        a, b = resland.certify(cp.model, ds.X, ds.y), resland.certify(cp.model, ds.X, ds.y)
    assert a.risk == b.risk and a.verdict == b.verdict == "better_than_linear"


def test_batch_norm_in_train_mode_is_put_in_eval_mode_with_a_warning():
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 1)).double()
    with pytest.warns(ModelConversionWarning, match="BatchNorm1d in train mode"):
        model = prepare_model(bn)
    assert not model.training and bn.training
    assert prepare_model(model) is model            # already float64 and in eval mode: used as it is
    ds = resland.load_dataset("iris")
    with pytest.warns(ModelConversionWarning):
        cert = resland.certify(bn, ds.X, ds.y, "logistic")
    assert cert.verdict == "not_critical"


def test_a_relative_csv_in_a_spec_is_read_from_the_spec_folder_and_a_store_in_a_missing_folder_says_so(tmp_path,
                                                                                                     monkeypatch):
    from resland._checks import ValidationError
    from resland.census import RunStore, load_spec

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "my.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i * 0.5 + (i % 2)}\n"
                                                                 for i in range(12)))
    (tmp_path / "specs" / "s.toml").write_text('seeds = 1\n[[grid]]\ndata = "my.csv"\nmodel = "linear"\n')
    monkeypatch.chdir(tmp_path)                      # the working directory is not the spec's folder
    spec = load_spec("specs/s.toml")
    assert spec.configs[0]["data"] == str((tmp_path / "specs" / "my.csv").resolve())
    with pytest.raises(ValidationError, match="folder that does not exist"):
        RunStore(tmp_path / "nowhere" / "runs.db")


def test_reprs_are_one_line_summaries():
    ds = resland.load_dataset("diabetes")
    net = resland.ResNet(10, 2, 2, "tanh")
    H = resland.HessianOperator.from_model(net, ds.X, ds.y)
    eig = H.extremes()
    assert repr(H).startswith("HessianOperator(shape=(95, 95)") and "\n" not in repr(eig)
    assert "lambda_min=" in repr(eig) and len(repr(eig)) < 300 and eig.count_below(eig.lambda_min - 1) == 0  # dense


def test_certify_ensemble_takes_the_finders_critical_points_as_they_come():
    from resland.models import init_model

    ds = resland.load_dataset("diabetes")
    ens = resland.Ensemble([init_model("resnet", 10, width=2, depth=1, activation="tanh", seed=s) for s in range(3)],
                           ds.X, ds.y)
    cps = resland.find_critical_points(ens, "minimum")
    by_points = resland.certify_ensemble(ens, cps)
    theta = torch.stack([resland.flat_parameters(cp.model.parameters()) for cp in cps])
    by_theta = resland.certify_ensemble(ens, theta, seeds=[0, 1, 2])
    assert [c.verdict for c in by_points] == [c.verdict for c in by_theta]
    assert [c.risk for c in by_points] == [c.risk for c in by_theta]


def test_find_critical_point_seed_is_deprecated_not_a_type_error():
    ds = resland.load_dataset("diabetes")
    net = resland.ResNet(10, 1, 1, "tanh")
    with pytest.warns(FutureWarning, match="deprecated and ignored"):
        cp = resland.find_critical_point(net, ds.X, ds.y, max_iter=5, seed=3)
    assert cp.outcome in resland.OUTCOMES


def test_the_census_summary_counts_trivial_points_apart_and_keeps_each_count_on_one_line(tmp_path):
    (tmp_path / "s.toml").write_text('name = "t"\nseeds = 4\n[finder]\nmax_iter = 60\n[[grid]]\ndata = "example2"\n'
                                     'model = "resnet"\ndepth = 1\nwidth = 2\nactivation = "softplus"\nkind = "any"\n')
    out = subprocess.run([sys.executable, "-m", "resland.cli", "census", str(tmp_path / "s.toml"), "--store",
                          str(tmp_path / "r.db"), "--workers", "1"], capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "60"})
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stderr.splitlines() if "verdicts of the critical points" in l)
    assert "non-trivial" in line                         # whole, unwrapped, with the trivial split
    from resland.census import RunStore

    with RunStore(tmp_path / "r.db") as store:
        rows = [r for r in store.rows() if r["outcome"] == "critical"]
    for r in rows:
        if (r["trivial"] or "none") != "none":
            assert f"trivial: {r['trivial']}" in line


def test_replay_from_a_store_reruns_a_run_without_parameters_from_its_spec(tmp_path):
    from resland.census import RunStore, load_spec, run_census
    from resland.replay import replay_run

    (tmp_path / "s.toml").write_text('name = "t"\nseeds = 2\n[finder]\nmax_iter = 60\n[[grid]]\ndata = "example2"\n'
                                     'model = "resnet"\ndepth = 1\nwidth = 1\nactivation = "tanh"\n')
    with RunStore(tmp_path / "r.db") as store:
        run_census(load_spec(tmp_path / "s.toml"), store, workers=1)
        bare = next(r for r in store.rows() if not r["parameters"])
    key = f"{bare['config_id']}:{bare['seed']}"
    with pytest.raises(resland.ValidationError, match="--spec"):
        replay_run(tmp_path / "r.db", key)
    rep = replay_run(tmp_path / "r.db", key, tmp_path / "s.toml")
    assert rep.rerun["identical"] and rep.agrees and rep.certificate.verdict == bare["verdict"]
    out = _cli("replay", "cert.json", "--spec", str(tmp_path / "s.toml"))
    assert out.returncode == 2 and "--spec" in out.stderr and out.stderr.count("\n") == 1


def test_progress_reaches_a_log_without_a_terminal_and_the_python_api():
    import io

    out = _cli("certify", "--data", "diabetes", "--depth", "1", "--width", "2", "--activation", "tanh")
    assert out.returncode == 0 and "resland search: iteration 1/" in out.stderr
    buf = io.StringIO()
    ds = resland.load_dataset("diabetes")
    with resland.reporting(resland.log_progress(every=0.0, stream=buf)):
        resland.find_critical_point(resland.ResNet(10, 2, 1, "tanh"), ds.X, ds.y, max_iter=5)
    assert buf.getvalue().count("resland search: iteration") >= 1


def test_report_table_names_the_data_set_and_symlog_ticks_leave_zero_alone():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resland.census.report import CensusSummary, _symlog

    runs = [{"data": d, "model": "resnet", "depth": 1, "outcome": "critical", "verdict": "better_than_linear",
             "trivial": "none", "kink_margin": None} for d in ("iris", "diabetes")]
    page = CensusSummary(configs={}, points=[], candidates=[], runs_flat=runs).dichotomy_table()
    assert "<th>data</th>" in page and "iris" in page and "diabetes" in page
    fig, ax = plt.subplots()
    _symlog(ax, "y", 1.0, 1e-6)
    ticks = sorted(abs(t) for t in ax.get_yticks() if t != 0)
    assert ticks and ticks[0] >= 1e-5            # the smallest labelled decade is 10× the linear threshold
    plt.close(fig)
