"""The dichotomy, counted honestly (docs/theory.md §8): one place that says which rows are evidence.

A row (a census run or a compact export row, as a dict) is a *certified critical point* when its
outcome is ``critical`` and its verdict is one of :data:`CERTIFIED`. Each one falls in one cell of
the dichotomy: (i) ``better_than_linear``, (ii) ``strict_saddle``, or, worse than linear without a
negative eigenvalue, ``degenerate_saddle``, ``local_minimum_worse`` or ``degenerate``; and each is
split by ``trivial`` (``none``, ``linear``, ``constant``). Only ``trivial = none`` is evidence.
"""

from __future__ import annotations

from collections import defaultdict

from ..certificate import CERTIFIED, TRIVIAL, WORSE_NO_NEGATIVE
from ..families import FAMILIES

#: Short column names for :data:`CERTIFIED`.
SHORT = {"better_than_linear": "(i) better", "strict_saddle": "(ii) strict saddle",
         "degenerate_saddle": "degenerate saddle", "local_minimum_worse": "local min worse", "degenerate": "degenerate"}


def trivial_of(row: dict) -> str:
    """The row's ``trivial`` kind; a row written before the field existed reads ``linear`` when it was
    flagged linear-equivalent and ``unknown`` otherwise (never ``none``: it is not evidence)."""
    t = row.get("trivial")
    if t in TRIVIAL:
        return t
    return "linear" if row.get("linear_equivalent") else "unknown"


def label(row: dict) -> str:
    """The row's verdict, with its trivial kind in brackets unless it is ``none``."""
    t = trivial_of(row)
    return row["verdict"] + ("" if t == "none" else f" ({t})")


def cell(d: dict) -> str:
    """A ``{trivial → count}`` cell of :func:`counts`: the non-trivial count, then the trivial ones in
    brackets (``12 (+3 linear, 40 constant)``)."""
    extra = ", ".join(f"{d[k]} {k}" for k in ("linear", "constant", "unknown") if d.get(k))
    return f"{d.get('none', 0)}" + (f" (+{extra})" if extra else "")


def certified(row: dict) -> bool:
    """A critical outcome with a certified verdict of the dichotomy."""
    return row.get("outcome") == "critical" and row.get("verdict") in CERTIFIED


def evidence(row: dict) -> bool:
    """A certified critical point that is not trivial: the only rows that count as evidence."""
    return certified(row) and trivial_of(row) == "none"


def counts(rows, key=lambda r: (r["model"], r["depth"])) -> dict:
    """``key(row) → {verdict → {trivial → count}}`` over the certified critical points."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for r in rows:
        if certified(r):
            out[key(r)][r["verdict"]][trivial_of(r)] += 1
    return {k: {v: dict(t) for v, t in d.items()} for k, d in sorted(out.items())}


def bearing_on_theorem_2(rows) -> list[dict]:
    """ResNet critical points worse than linear without a negative eigenvalue, trivial or not: each
    fails case (ii) as stated (docs/theory.md §8), so each is listed, never folded into a count."""
    return [r for r in rows if certified(r) and _residual(r.get("model")) and r["verdict"] in WORSE_NO_NEGATIVE]


def _residual(name) -> bool:
    fam = FAMILIES.get(name)
    return fam is not None and fam.residual
