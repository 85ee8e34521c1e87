"""Built-in data sets: offline, standardised, and as docs/data.md documents them (size, loss, R_lin)."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import resland
from resland.data import BUILTIN

DOC = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
ROWS = {m.group(1): m.groups() for m in re.finditer(
    r"^\| `([\w-]+)` \| (\d+) \| (\d+) \| (\w+) \| ([^|]+) \| (yes|no[^|]*) \|", DOC, re.M)}


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_loads_offline_as_documented(name):
    ds = resland.load_dataset(name, rho=1.0 if name == "example1" else None)
    _, m, d, loss, r_lin, attained = ROWS[name]
    assert ds.X.shape == (int(m), int(d)) and ds.y.shape in ((int(m),), (int(m), 3)) and ds.loss == loss
    assert np.isfinite(ds.X).all() and np.isfinite(ds.y).all()
    if name not in ("example1", "example2"):
        sd = ds.X.std(0)
        assert np.allclose(ds.X.mean(0), 0, atol=1e-12) and np.allclose(sd[sd > 0], 1, atol=1e-12)
        assert (sd > 0).all() or name == "digits"          # digits' always-blank pixels
        assert ds.source and ds.licence
    if loss == "logistic":
        assert set(np.unique(ds.y)) == {-1.0, 1.0}
    elif loss == "cross_entropy":
        assert set(np.unique(ds.y)) == set(range(ds.outputs))
    elif name not in ("example1", "example2"):
        assert np.allclose(ds.y.mean(0), 0, atol=1e-12) and np.allclose(ds.y.std(0), 1, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", resland.NotAttainedWarning)
        fit = resland.best_linear(ds.X, ds.y, ds.loss)
    assert fit.attained == (attained == "yes")
    documented = 8 / 15 if name == "example1" else float(r_lin)  # example1's row reads "8ρ²/15 (… at ρ = 1)"
    assert fit.risk_lower <= fit.risk_upper and abs(fit.risk - documented) <= 5e-7 * max(1, documented)
