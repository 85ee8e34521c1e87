"""Property-based fuzzing (hypothesis): any input either works or is a ValidationError.

Targets: the CSV and NPZ loaders, the sweep-spec parser (dicts and raw TOML text) and the
CLI's options. For the CLI the property is: exit status 0, or 2 with exactly one line on
stderr, never a traceback. Case counts per target are recorded in docs/reliability.md.
"""

import io
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resland import ValidationError
from resland.census import load_spec, parse_spec
from resland.cli import main
from resland.data import load_dataset

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
COUNTS: dict[str, dict[str, int]] = {}


def record(target: str, outcome: str) -> None:
    COUNTS.setdefault(target, {}).setdefault(outcome, 0)
    COUNTS[target][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nfuzz cases:", {k: dict(v, total=sum(v.values())) for k, v in COUNTS.items()})


cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                  st.text(alphabet=string.printable, max_size=6), st.just(""))
numbers = st.one_of(st.floats(-1e6, 1e6), st.floats(), st.integers(-10, 10)).map(repr)
tables = st.integers(1, 4).flatmap(lambda k: st.tuples(
    st.lists(st.text(alphabet=string.ascii_letters, min_size=1, max_size=3), min_size=k, max_size=k),
    st.lists(st.lists(numbers, min_size=k, max_size=k), min_size=0, max_size=6)))
csv_text = st.one_of(
    tables.map(lambda t: "\n".join(",".join(r) for r in [t[0], *t[1]])),  # mostly well-formed
    st.lists(st.lists(cells, min_size=1, max_size=4), min_size=0, max_size=6).map(
        lambda rows: "\n".join(",".join(r) for r in rows)),
    st.text(max_size=200),
)


@FUZZ
@given(body=csv_text, raw=st.binary(max_size=40), use_raw=st.booleans(), target=st.one_of(st.none(), st.text(max_size=3)))
def test_csv_loader(tmp_path_factory, body, raw, use_raw, target):
    path = tmp_path_factory.mktemp("csv") / "d.csv"
    path.write_bytes(raw if use_raw else body.encode("utf-8", "surrogatepass"))
    try:
        ds = load_dataset(str(path), target=target)
    except ValidationError:
        record("csv", "ValidationError")
        return
    assert ds.X.shape[0] == ds.y.shape[0] >= 1 and np.isfinite(ds.X).all()
    record("csv", "loaded")


from hypothesis.extra import numpy as hnp

arrays = st.one_of(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 3))),
    hnp.arrays(np.float64, st.integers(1, 5)),
    st.builds(lambda s, a: np.full(s, a), st.lists(st.integers(0, 4), max_size=3).map(tuple),
              st.one_of(st.floats(), st.integers(-5, 5), st.booleans())),
    st.builds(lambda n: np.array(["a"] * n), st.integers(0, 3)),
    st.builds(lambda n: np.zeros(n, dtype=complex), st.integers(0, 3)),
)


@FUZZ
@given(X=arrays, y=arrays, keys=st.sampled_from([("X", "y"), ("X",), ("x", "y"), ()]), raw=st.binary(max_size=60),
       use_raw=st.booleans())
def test_npz_loader(tmp_path_factory, X, y, keys, raw, use_raw):
    path = tmp_path_factory.mktemp("npz") / "d.npz"
    if use_raw:
        path.write_bytes(raw)
    else:
        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in zip(keys, (X, y))})
        path.write_bytes(buf.getvalue())
    try:
        ds = load_dataset(str(path))
    except ValidationError:
        record("npz", "ValidationError")
        return
    assert ds.X.ndim == 2 and ds.X.shape[0] == ds.y.shape[0]
    record("npz", "loaded")


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(), st.text(max_size=8),
              st.sampled_from(["diabetes", "example2", "example1", "resnet", "fc", "linear", "tanh", "any", "auto"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
grid_keys = st.sampled_from(["data", "rho", "model", "depth", "width", "activation", "loss", "v_scale", "kind", "wdth"])
valid_grid = st.fixed_dictionaries(
    {"data": st.sampled_from(["example2", "diabetes", "iris", "example1", "nope"])},
    optional={"rho": st.sampled_from([1.0, -1.0, 0.5]), "model": st.sampled_from(["resnet", "fc", "linear", "x"]),
              "depth": st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), max_size=3)),
              "width": st.integers(0, 3), "activation": st.sampled_from(["tanh", "relu", "auto", "sigmoid"]),
              "loss": st.sampled_from(["squared", "logistic", "auto", "l1"]),
              "v_scale": st.one_of(st.floats(), st.just(0.3)), "kind": st.sampled_from(["any", "minimum", "?"])})
near_valid_specs = st.fixed_dictionaries(
    {"grid": st.lists(valid_grid, min_size=1, max_size=2)},
    optional={"seeds": st.one_of(st.integers(-1, 5), st.lists(st.integers(-1, 5), max_size=3)),
              "engine": st.sampled_from(["batched", "sequential", "gpu"]), "batch_size": st.integers(0, 8),
              "finder": st.fixed_dictionaries({}, optional={"tol": st.floats(), "max_iter": st.integers(-1, 50),
                                                             "kind": st.sampled_from(["any", "minimum", "both"])})})
spec_dicts = st.one_of(near_valid_specs, st.fixed_dictionaries(
    {},
    optional={
        "name": values, "seeds": st.one_of(values, st.lists(st.integers(-2, 5), max_size=4)), "engine": values,
        "batch_size": values, "finder": st.dictionaries(st.sampled_from(["kind", "tol", "max_iter", "xtol", "bad"]),
                                                          values, max_size=3),
        "grid": st.one_of(values, st.lists(st.dictionaries(grid_keys, values, max_size=5), max_size=2)),
        "extra": values,
    },
))


@FUZZ
@given(raw=spec_dicts)
def test_spec_parser(raw):
    try:
        spec = parse_spec(raw)
    except ValidationError:
        record("spec (dict)", "ValidationError")
        return
    assert spec.n_runs >= 1 and spec.tasks()
    record("spec (dict)", "parsed")


@FUZZ
@given(text=st.text(max_size=300))
def test_spec_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("spec") / "s.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_spec(path)
    except ValidationError:
        record("spec (TOML text)", "ValidationError")
        return
    record("spec (TOML text)", "parsed")


def run_cli(capsys, argv) -> tuple[int, str]:
    """Run the CLI in-process: (exit status, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


option_values = {
    "--data": st.sampled_from(["example2", "example1", "mnist", "", "x.csv", "diabetes.npz"]),
    "--rho": st.sampled_from(["1", "0", "-1", "nan", "inf", "abc"]),
    "--model": st.sampled_from(["resnet", "fc", "linear", "cnn", ""]),
    "--depth": st.sampled_from(["1", "2", "0", "-3", "1.5", "x"]),
    "--width": st.sampled_from(["1", "2", "0", "99999999999999999999", "w"]),
    "--activation": st.sampled_from(["tanh", "softplus", "relu", "sigmoid", ""]),
    "--loss": st.sampled_from(["squared", "logistic", "pseudo-huber", "hinge"]),
    "--kind": st.sampled_from(["minimum", "any", "saddle"]),
    "--tol": st.sampled_from(["1e-10", "0", "-1", "nan", "inf", "t"]),
    "--max-iter": st.sampled_from(["3", "0", "-1", "1e3"]),
    "--descent-iter": st.sampled_from(["5", "0", "x"]),
    "--v-scale": st.sampled_from(["0.3", "0", "-1", "nan", "inf"]),
    "--checkpoint": st.sampled_from(["missing.pt", "x.safetensors"]),
}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(opts=st.dictionaries(st.sampled_from(sorted(option_values)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: option_values[k] for k in keys})), refine=st.booleans())
def test_cli_certify_options(capsys, opts, refine):
    argv = ["certify", "--json"] + [x for k, v in opts.items() for x in (k, v)] + (["--refine"] if refine else [])
    if "--data" not in opts:
        argv += ["--data", "example2"]
    if "--max-iter" not in opts:
        argv += ["--max-iter", "3"]
    if "--descent-iter" not in opts:
        argv += ["--descent-iter", "5"]
    code, err = run_cli(capsys, argv)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    record("cli certify", f"exit {code}")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=st.lists(st.sampled_from(["--store", "--executor", "dask", "local", "--workers", "0", "-1", "2",
                                      "--scheduler", "tcp://127.0.0.1:1", "--retries", "-1", "--format", "xml",
                                      "--out", "missing.db", "nonexistent.toml"]), max_size=5),
       cmd=st.sampled_from(["census", "export", "report"]))
def test_cli_census_export_report_options(capsys, tmp_path_factory, args, cmd):
    cwd = tmp_path_factory.mktemp("cli")
    argv = [cmd] + [a if a not in ("missing.db", "nonexistent.toml") else str(cwd / a) for a in args]
    code, err = run_cli(capsys, argv)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (argv, code, err)  # never runs: no valid spec/store
    record(f"cli {cmd}", "exit 2")
