"""The census report: one self-contained HTML file read from a run store.

Sections: verdict counts per config (the points worse than linear without negative curvature
first, flagged), ``R − R_lin`` against depth, ``λ_min`` against ``R − R_lin`` (the dichotomy plane:
such points sit at ``R − R_lin > 0``, ``λ_min ≥ 0``), convergence rate per config, the slowest
configs, and the replay command of every candidate (``degenerate_saddle``,
``local_minimum_worse``, ``degenerate``, ``inconclusive``, unresolved or failed run with stored
parameters). Only runs with a verdict of :data:`~resland.census.dichotomy.CERTIFIED` count as
certified critical points, and of them only ``trivial = none`` as evidence (drawn filled).
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .._html import CSS, data_uri, png
from ..critical import OUTCOMES
from ..families import family
from ..replay import replay_command
from ..certificate import WORSE_NO_NEGATIVE
from .dichotomy import CERTIFIED, SHORT, bearing_on_theorem_2, cell, counts, trivial_of
from .runner import CANDIDATES
from .store import RunStore

_COLOURS = {"better_than_linear": "#1b7837", "strict_saddle": "#2166ac", "degenerate_saddle": "#5e3c99",
            "local_minimum_worse": "#b2182b", "degenerate": "#e7298a", "inconclusive": "#e08214",
            "nondifferentiable": "#8c6bb1"}


def _first(v: str) -> tuple:
    """Sort key: the verdicts worse than linear without negative curvature first."""
    return (v not in WORSE_NO_NEGATIVE, v)
_MAX_POINTS = 20000  # scatter points kept in memory
AXIS_DECADES = 8     # a log axis spans at most this many decades a side


def _label(c: dict) -> str:
    c = dict(c)
    fam = family(c["model"])
    if c["activation"] == "auto":
        c["activation"] = fam.default_activation
    if not fam.grid_keys:
        return f"{c['data']} · {fam.name} · {c['loss']} · {c['kind']}"
    return (f"{c['data']} · {c['model']} L={c['depth']} k={c['width']} {c['activation']} · {c['loss']} · "
            f"{c['kind']} · V×{c['v_scale']:g}")


@dataclass
class CensusSummary:
    """What a run store holds, per config: counts of runs, outcomes and verdicts.

    Attributes:
        configs: ``config_id → {config, runs, converged, seconds, verdicts, outcomes,
            linear_equivalent, failed}`` (``verdicts`` and ``outcomes`` map a name to a count).
        points: certified and near-certified runs for the plots (depth, gap, λ_min, verdict, data, trivial).
        candidates: the replay keys of the candidates (module docstring).

    In Jupyter it renders as the verdict table of the report (``_repr_html_``).
    """

    configs: dict
    points: list
    candidates: list
    runs_flat: list = None

    def dichotomy_table(self) -> str:
        """The dichotomy counted (docs/theory.md §8): per model and depth, each certified verdict's
        non-trivial count with the trivial ones in brackets."""
        runs = self.runs_flat or []
        by_data = {d: counts([r for r in runs if r.get("data") == d]) for d in sorted({str(r.get("data")) for r in runs})}
        if not any(by_data.values()):
            return "<p>No certified critical points.</p>"
        head = "".join(f"<th>{html.escape(SHORT[v])}</th>" for v in CERTIFIED)
        body = "".join(
            f"<tr><td>{html.escape(d)}</td><td>{html.escape(str(k[0]))}</td><td>{k[1]}</td>"
            + "".join(f"<td>{cell(c.get(v, {}))}</td>" for v in CERTIFIED) + "</tr>"
            for d, table in by_data.items() for k, c in table.items())
        return f"<table><tr><th>data</th><th>model</th><th>depth</th>{head}</tr>{body}</table>"

    @property
    def runs(self) -> int:
        return sum(c["runs"] for c in self.configs.values())

    def verdict_names(self) -> list[str]:
        """Every verdict (or status, for runs without one) present, worse-than-linear ones first."""
        return sorted({v for c in self.configs.values() for v in c["verdicts"]}, key=_first)

    def verdict_table(self) -> str:
        """The HTML table of verdicts per config."""
        names = self.verdict_names()
        rows = [f"<tr><td>{html.escape(_label(c['config']))}</td><td>{c['runs']}</td>"
                f"<td>{c['converged'] / c['runs']:.0%}</td>"
                + "".join(f"<td>{c['verdicts'].get(v, 0)}</td>" for v in names) + "</tr>"
                for c in sorted(self.configs.values(), key=lambda c: _label(c["config"]))]
        return ("<table><tr><th>config</th><th>runs</th><th>converged</th>"
                + "".join(f"<th>{html.escape(v)}</th>" for v in names) + "</tr>" + "".join(rows) + "</table>")

    def _repr_html_(self) -> str:
        return (f"<p>{self.runs} runs in {len(self.configs)} configs · {len(self.candidates)} candidates to replay</p>"
                + self.verdict_table())


def summarise(store: RunStore) -> CensusSummary:
    """Per-config counts, the points of the plots and the candidates to replay, in one pass over the store."""
    per = defaultdict(lambda: {"runs": 0, "converged": 0, "seconds": 0.0, "verdicts": defaultdict(int),
                               "outcomes": defaultdict(int), "linear_equivalent": 0, "trivial": 0, "failed": 0,
                               "config": None})
    points, cands, flat = [], [], []
    for r in store.rows():
        if (cand := _candidate(r)) is not None:
            cands.append(cand)
        c = json.loads(r["config"])
        if c["loss"] == "auto" and r["certificate"]:  # show the loss actually used
            c["loss"] = json.loads(r["certificate"])["loss"]
        flat.append({"model": c["model"], "depth": c.get("depth", 0) if family(c["model"]).grid_keys else 0,
                     "outcome": r["outcome"], "verdict": r["verdict"], "trivial": r.get("trivial"),
                     "linear_equivalent": r["linear_equivalent"], "config_id": r["config_id"], "seed": r["seed"],
                     "data": c["data"], "gap": r["gap"]})
        s = per[r["config_id"]]
        s["config"] = c
        s["runs"] += 1
        s["converged"] += int(r["converged"] or 0)
        s["seconds"] += r["seconds"] or 0.0
        s["failed"] += r["status"] == "failed"
        s["verdicts"][r["verdict"] or r["status"]] += 1
        s["outcomes"][r["outcome"] or "failed"] += 1
        trivial = trivial_of(r) != "none"
        s["linear_equivalent"] += bool(r["linear_equivalent"])
        s["trivial"] += trivial and r["outcome"] == "critical"
        if r["verdict"] in CERTIFIED + ("inconclusive", "nondifferentiable") and len(points) < _MAX_POINTS:
            points.append({"depth": c["depth"] if family(c["model"]).grid_keys else 0, "gap": r["gap"],
                           "lambda_min": r["lambda_min"], "verdict": r["verdict"], "data": c["data"],
                           "trivial": trivial})
    return CensusSummary(dict(per), points, _sorted_candidates(cands), flat)


def candidates(store: RunStore) -> list[dict]:
    """Stored runs with parameters whose verdict or outcome makes them candidates (worse than linear first)."""
    return _sorted_candidates(_candidate(r) for r in store.rows())


def _candidate(r: dict) -> dict | None:
    """The replay key of a stored row that is a candidate with parameters, else None."""
    if r["parameters"] and (r["verdict"] in CANDIDATES["verdicts"] or r["outcome"] in CANDIDATES["outcomes"]):
        return {"config_id": r["config_id"], "seed": r["seed"], "verdict": r["verdict"], "outcome": r["outcome"]}
    return None


def _sorted_candidates(cands) -> list[dict]:
    return sorted((c for c in cands if c), key=lambda r: (_first(r["verdict"] or ""), r["config_id"], r["seed"]))


def write_report(store: RunStore, out: str | Path) -> int:
    """Write the HTML report to ``out``; returns the number of runs read."""
    s = summarise(store)
    configs, n = s.configs, s.runs
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>resland census</title>"
             f"<style>{CSS}</style></head><body><h1>resland census</h1>"]
    specs = store.specs()
    parts.append("<p>" + " · ".join(f"spec <code>{html.escape(x['name'])}</code> ({x['spec_hash'][:12]}, "
                                    f"{x['n_runs']} runs)" for x in specs) + f" · {n} runs stored</p>")
    n_worse = sum(c["verdicts"].get(v, 0) for c in configs.values() for v in WORSE_NO_NEGATIVE)
    if n_worse:
        parts.append(f"<p class='alert'><b>{n_worse} critical point(s) worse than linear without a negative "
                     "eigenvalue</b> (degenerate_saddle, local_minimum_worse, degenerate). Each replays from its "
                     "stored parameters with the command below.</p>")
    cands = s.candidates
    if cands:
        parts.append("<h2 id='replay'>Candidates to replay</h2><table><tr><th>verdict / outcome</th><th>command</th>"
                     "</tr>" + "".join(f"<tr><td>{html.escape(c['verdict'] or c['outcome'])}</td><td><code>"
                                       f"{html.escape(replay_command(store.path, c['config_id'], c['seed']))}</code>"
                                       "</td></tr>" for c in cands[:50]) + "</table>")
    parts.append("<h2 id='dichotomy'>The dichotomy, counted</h2><p>Certified critical points per model and depth: "
                 "the non-trivial count, trivial ones (linear-equivalent, constant) in brackets (docs/theory.md §8)."
                 "</p>" + s.dichotomy_table())
    t2 = bearing_on_theorem_2(s.runs_flat)
    if t2:
        parts.append("<p class='alert'>ResNet critical points worse than linear without a negative eigenvalue (case "
                     "(ii) fails as stated):</p><table><tr><th>data</th><th>depth</th><th>verdict</th><th>trivial</th>"
                     "<th>replay</th></tr>" + "".join(
                         f"<tr><td>{html.escape(r['data'])}</td><td>{r['depth']}</td><td>{r['verdict']}</td><td>"
                         f"{trivial_of(r)}</td><td><code>{html.escape(replay_command(store.path, r['config_id'], r['seed']))}"
                         "</code></td></tr>" for r in t2) + "</table>")
    parts.append("<h2 id='verdicts'>Verdicts per config</h2>" + s.verdict_table())
    outcome_names = [o for o in OUTCOMES if any(c["outcomes"].get(o) for c in configs.values())]
    parts.append("<h2 id='outcomes'>Run outcomes per config</h2><p>Trivial critical points (linear-equivalent: the "
                 "network's predictions are the best linear ones; constant: the predictions are constant) are "
                 "not evidence: counted apart and drawn hollow in the plots.</p><table><tr><th>config</th>"
                 + "".join(f"<th>{html.escape(o)}</th>" for o in outcome_names)
                 + "<th>critical, linear-equivalent</th><th>critical, trivial</th><th>critical, non-trivial</th></tr>")
    for c in sorted(configs.values(), key=lambda c: _label(c["config"])):
        crit = c["outcomes"].get("critical", 0)
        parts.append(f"<tr><td>{html.escape(_label(c['config']))}</td>"
                     + "".join(f"<td>{c['outcomes'].get(o, 0)}</td>" for o in outcome_names)
                     + f"<td>{c['linear_equivalent']}</td><td>{c['trivial']}</td><td>{crit - c['trivial']}</td></tr>")
    parts.append("</table>")
    for title, fig in (("R − R_lin against depth", _gap_plot(s.points)),
                       ("λ_min against R − R_lin", _scatter(s.points)),
                       ("Convergence rate per config", _convergence(configs))):
        parts.append(f"<h2>{title}</h2>")
        parts.append(f"<p><img alt='{html.escape(title)}' src='{data_uri(fig)}'></p>" if fig else
                     "<p>No certified critical points to plot.</p>")
    parts.append("<h2 id='slowest'>Slowest configs</h2><table><tr><th>config</th><th>seconds per run</th>"
                 "<th>runs</th></tr>")
    for c in sorted(configs.values(), key=lambda c: -c["seconds"] / c["runs"])[:10]:
        parts.append(f"<tr><td>{html.escape(_label(c['config']))}</td><td>{c['seconds'] / c['runs']:.3g}</td>"
                     f"<td>{c['runs']}</td></tr>")
    parts.append("</table><p>Certified = a verdict of the dichotomy (" + ", ".join(CERTIFIED) + "); runs that did not "
                 "converge (not_critical) are counted, never plotted as evidence.</p></body></html>")
    Path(out).write_text("\n".join(parts), encoding="utf-8")
    return n


def _figure(w=7.5, h=4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


#: Marker area of the scatter plots: large enough that a hollow (trivial) marker reads as hollow.
MARKER_SIZE = 34


def _gap_plot(points) -> bytes | None:
    pts = [p for p in points if p["verdict"] in CERTIFIED and p["gap"] is not None]
    if not pts:
        return None
    import numpy as np

    fig, ax = _figure()
    rng = np.random.default_rng(0)
    for v in CERTIFIED:
        sel = [p for p in pts if p["verdict"] == v]
        if sel:
            x = np.array([p["depth"] for p in sel], float) + rng.uniform(-0.15, 0.15, len(sel))
            ax.scatter(x, [p["gap"] for p in sel], s=MARKER_SIZE, alpha=0.8, edgecolors=_COLOURS[v], label=v,
                       linewidths=1.3, facecolors=[("none" if p["trivial"] else _COLOURS[v]) for p in sel])
    ax.axhline(0, color="k", lw=0.8)
    _symlog(ax, "y", max(abs(p["gap"]) for p in pts), 1e-6)
    ax.set_xlabel("depth L (0 = linear model)")
    ax.set_ylabel("R − R_lin")
    ax.legend(fontsize=8)
    return png(fig)


def _scatter(points) -> bytes | None:
    pts = [p for p in points if p["lambda_min"] is not None and p["gap"] is not None]
    if not pts:
        return None
    fig, ax = _figure()
    lim = max(max(abs(p["gap"]) for p in pts), max(abs(p["lambda_min"]) for p in pts), 1e-3) * 2
    ax.fill_between([0, lim], 0, lim, color="#b2182b", alpha=0.08, label="worse than linear, no negative curvature")
    for v, col in _COLOURS.items():
        sel = [p for p in pts if p["verdict"] == v]
        if sel:
            ax.scatter([p["gap"] for p in sel], [p["lambda_min"] for p in sel], s=MARKER_SIZE, alpha=0.8,
                       edgecolors=col, linewidths=1.3, facecolors=[("none" if p["trivial"] else col) for p in sel],
                       label=v)
    for axis in ("x", "y"):
        _symlog(ax, axis, lim / 2, 1e-8)
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("R − R_lin")
    ax.set_ylabel("λ_min(∇²R)")
    ax.legend(fontsize=8)
    return png(fig)


def _symlog(ax, axis: str, top: float, linthresh: float) -> None:
    """Symmetric log axis to ±8·top (a margin of about a decade), about four labelled decades a side and
    at most ``AXIS_DECADES`` decades between the linear threshold and the top."""
    import math

    top = max(top, 10 * linthresh) * 8
    linthresh = max(linthresh, top * 10.0**-AXIS_DECADES)
    getattr(ax, f"set_{axis}scale")("symlog", linthresh=linthresh)
    lo, hi = math.floor(math.log10(linthresh)), math.ceil(math.log10(top))
    stride = max(1, math.ceil((hi - lo) / 4))
    # no labelled decade within a factor 10 of the threshold: its ±labels would sit on top of the 0 label
    decades = [10.0**k for k in range(hi, lo - 1, -stride) if 10.0**k >= 10 * linthresh]
    getattr(ax, f"set_{axis}ticks")(sorted([-d for d in decades] + [0.0] + decades))
    getattr(ax, f"set_{axis}lim")(-top, top)


def _convergence(configs) -> bytes | None:
    if not configs:
        return None
    items = sorted(configs.values(), key=lambda c: _label(c["config"]))
    fig, ax = _figure(7.5, 0.35 * len(items) + 1.2)
    ax.barh([_label(c["config"]) for c in items], [c["converged"] / c["runs"] for c in items], color="#4393c3")
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of runs converged")
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    return png(fig)
