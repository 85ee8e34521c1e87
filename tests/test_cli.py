"""The CLI: a real certify run, and bad input → one line on stderr, exit status 2, no traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest

import resland


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "resland.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_certify_json_on_example1():
    res = run("certify", "--data", "example1", "--rho", "1", "--depth", "1", "--width", "1",
              "--activation", "tanh", "--seed", "0", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    cert = out["certificate"]
    assert cert["linear_risk"] == pytest.approx(8 / 15, rel=1e-12)
    assert cert["verdict"] in resland.certificate.VERDICTS
    assert out["finder"]["status"] in ("converged", "diverging", "max_iter", "stalled", "nan")


def test_certify_table_on_csv(tmp_path):
    g = np.random.default_rng(0)
    X = g.standard_normal((30, 2))
    y = np.tanh(X[:, 0]) + 0.1 * g.standard_normal(30)
    path = tmp_path / "d.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,target", comments="")
    res = run("certify", "--data", str(path), "--target", "target", "--width", "2", "--activation", "tanh")
    assert res.returncode == 0, res.stderr
    assert "verdict" in res.stdout and "R_lin" in res.stdout


def _csv(tmp_path, text, name="bad.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


CASES = [
    (["--data", "nowhere"],
     "error: The 'data' parameter must be one of example1, example2, diabetes, linnerud, breast-cancer, wine, "
     "iris, star98, grunfeld, engel, anes96, spector, diamonds, flights, movies, cps1988, default, fertility, iris-3, "
     "wine-3, digits, penguins, linnerud-3, or a path to a .csv or .npz file. Got 'nowhere' instead."),
    (["--data", "diabetes", "--depth", "0"],
     "error: The 'depth' parameter must be an int in the range [1, inf). Got 0 instead."),
    (["--data", "diabetes", "--width", "-3"],
     "error: The 'width' parameter must be an int in the range [1, inf). Got -3 instead."),
    (["--data", "diabetes", "--activation", "sigmoid"],
     "error: The 'activation' parameter must be one of 'relu', 'softplus', 'tanh', 'gelu', 'leaky_relu'. "
     "Got 'sigmoid' instead."),
    (["--data", "diabetes", "--loss", "hinge"],
     "error: The 'loss' parameter must be one of 'squared', 'logistic', 'pseudo_huber', 'cross_entropy'. Got 'hinge' instead."),
    (["--data", "diabetes", "--model", "cnn"],
     "error: The 'model' parameter must be one of 'resnet', 'fc', 'linear'. Got 'cnn' instead."),
    (["--data", "example1"],
     "error: The 'rho' parameter is required for example1: a float in (0, inf). Got None."),
    (["--data", "example1", "--rho", "-1"],
     "error: The 'rho' parameter must be a float in the range (0, inf). Got -1.0 instead."),
    (["--data", "diabetes", "--loss", "logistic"],
     "error: The 'y' parameter must hold binary labels in {-1, +1} or {0, 1} for the logistic loss. Got 214 "
     "distinct values, e.g. -1.651, -1.573, -1.495."),
    (["--data", "diabetes", "--depth", "two"],
     "error: Invalid value for '--depth': 'two' is not a valid integer."),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_one_line_exit_2(args, message):
    res = run("certify", *args)
    assert res.returncode == 2
    assert res.stderr.strip() == message
    assert "Traceback" not in res.stderr and res.stdout == ""


@pytest.mark.parametrize(
    "text,extra,message",
    [
        ("a,b,y\n1,2,3\n", ["--target", "z"],
         "The 'target' parameter must name a column of {p!r}: one of a, b, y. Got 'z'."),
        ("a,y\n1,x\n2,3\n", [], "Column 'y' of {p!r} must be numeric. Got 'x' on line 2."),
        ("a,y\n", [], "The CSV file {p!r} must have a header row and at least one data row."),
        ("a,y\n1,nan\n2,3\n", [],
         "The 'y' parameter must contain only finite numbers. Got 1 NaN or inf value(s); drop or impute them first."),
    ],
)
def test_bad_csv(tmp_path, text, extra, message):
    p = _csv(tmp_path, text)
    res = run("certify", "--data", p, *extra)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: " + message.format(p=p)
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.csv"]  # nothing written


def test_npz_missing_arrays(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, features=np.ones((3, 2)))
    res = run("certify", "--data", str(p))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: The NPZ file {str(p)!r} must contain arrays 'X' and 'y'. Got ['features']."
