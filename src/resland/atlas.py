"""The landscape atlas: a published census of critical points on real data (docs/atlas.md).

``make atlas`` (``resland atlas``) runs the spec ``atlas/atlas.toml`` into ``atlas/atlas.db``
(git-ignored, resumable), skipping every run already in the committed export
``atlas/runs.parquet`` and keeping the runs an edited spec shares with the earlier one
(:meth:`resland.census.RunStore.adopt`), then rewrites ``atlas/runs.parquet`` (the committed
runs and the new ones, compact form: :data:`resland.census.export.COMPACT_FIELDS`) and
``atlas/index.html``.
On a clone whose ``runs.parquet`` holds every run of the spec, a rerun computes nothing.

The report answers six questions, one table or figure each (functions ``q1_…`` to ``q6_…``
take the compact rows and return plain data):

1. per data set × depth × model, the share of descent runs (kind ``minimum``) that get below
   linear: ``below_linear``, or a critical point or kink with ``R < R_lin,lower − risk_tol``;
2. certified non-trivial critical points (not linear-equivalent): counts per verdict, and every
   violation with its replay command;
3. FC against ResNet: among certified local minima (``λ_min ≥ −lambda_tol``), the share with
   ``R > R_lin,upper + risk_tol`` (Example 1's phenomenon at scale);
4. near-identity: ``R − R_lin`` against ``δ`` with ``G`` and the a-priori bound (C4 at scale);
5. linear probes along depth at certified ResNet minima: how often ``R_lin(h_l)`` is not
   monotone (C2 at scale): some ``l`` with ``R_lin,lower(h_{l+1}) > R_lin,upper(h_l) + risk_tol``;
6. the unresolved runs, listed for a human to look at.

Conventions: mean risk, no 1/2; ``R_lin`` is the certified interval ``[lower, upper]``
(docs/theory.md §5); ``risk_tol`` is :func:`resland.tolerances.risk_tol`.
"""

from __future__ import annotations

import html
import json
import math
import warnings
from collections import Counter, defaultdict
from pathlib import Path

from . import tolerances as T
from ._html import CSS, data_uri, png
from .census import RunStore, load_spec, run_census
from .census.executors import check_options
from .census.export import COMPACT_FIELDS, compact_row
from .replay import replay_export_command

#: Where ``make atlas`` reads and writes.
ATLAS_DIR = Path("atlas")
SPEC_FILE = "atlas.toml"
RUNS_FILE = "runs.parquet"
REPORT_FILE = "index.html"
STORE_FILE = "atlas.db"
#: The committed export's size limit (issue 14): larger means the spec is too big to publish.
MAX_EXPORT_MB = 25
#: The report's figures as files, for docs/atlas.md (questions 1 and 4).
FIGURE_FILES = ("below_linear.png", "near_identity.png")


# ----------------------------------------------------------------------------- runs
def read_runs(path: str | Path) -> list[dict]:
    """The rows of a compact export (an empty list when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    for r in rows:  # columns added since the file was written read as missing
        for k, _ in COMPACT_FIELDS:
            r.setdefault(k, None)
    return rows


def write_runs(rows: list[dict], path: str | Path) -> int:
    """Write compact rows to ``path`` in key order (a byte-stable file for the same rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(k, getattr(pa, t)()) for k, t in COMPACT_FIELDS])
    rows = sorted(rows, key=lambda r: (r["spec_hash"], r["config_id"], r["seed"]))
    table = pa.Table.from_pylist([{k: r.get(k) for k, _ in COMPACT_FIELDS} for r in rows], schema=schema)
    pq.write_table(table, Path(path), compression="zstd")
    return len(rows)


def run_atlas(directory: str | Path = ATLAS_DIR, *, spec_path: str | Path | None = None, executor: str = "local",
              workers: int | None = None, scheduler: str | None = None, retries: int = 2,
              on_start=None, on_rows=None, rademacher_draws: int = 6, export_only: bool = False) -> dict:
    """Run the atlas spec, resuming from the committed export, and write the export and report.

    Args:
        directory: holds ``atlas.toml`` (unless ``spec_path``), ``runs.parquet``, ``index.html``
            and the working store ``atlas.db``.
        executor, workers, scheduler, retries: as :func:`resland.census.run_census`.
        rademacher_draws: as :func:`write_atlas_report`.
        export_only: compute nothing; write the export and report from the committed runs and
            those already in the working store (a partial atlas, to commit and resume later, or
            a report rendered by a newer resland).

    Returns:
        ``{"spec": name, "committed": runs read from the export, "adopted": runs the working store
        held under an earlier spec with the same run settings (:meth:`RunStore.adopt`), "new": runs computed now,
        "total": runs in the export, "of": runs in the spec, "written": whether the export and report
        were rewritten, "export_mb": the export's size in MB}``. An export over
        :data:`MAX_EXPORT_MB` is written all the same, with a warning: the spec is too large to commit.

    Raises:
        ValidationError: a bad spec or executor options (nothing is written).
    """
    directory = Path(directory)
    spec = load_spec(spec_path or directory / SPEC_FILE)
    check_options(executor, workers, scheduler, retries)   # before the store file is created
    runs_path, report_path = directory / RUNS_FILE, directory / REPORT_FILE
    committed = [r for r in read_runs(runs_path) if r["spec_hash"] == spec.spec_hash]
    keys = {(r["config_id"], int(r["seed"])) for r in committed}
    with RunStore(directory / STORE_FILE) as store:
        adopted = store.adopt(spec)                    # a changed spec keeps the runs it shares
        summary = {"runs": 0} if export_only else run_census(
            spec, store, executor=executor, workers=workers, scheduler=scheduler, retries=retries,
            on_start=on_start, on_rows=on_rows, skip=keys)
        fresh = [compact_row(r) for r in store.rows(spec.spec_hash) if (r["config_id"], r["seed"]) not in keys]
    out = {"spec": spec.name, "committed": len(committed), "adopted": adopted, "new": summary["runs"],
           "total": len(committed) + len(fresh),
           "of": spec.n_runs, "written": False,
           "export_mb": runs_path.stat().st_size / 1e6 if runs_path.is_file() else 0.0}
    if not fresh and not export_only and runs_path.is_file() and report_path.is_file():
        return out                                     # everything is committed: nothing more to do
    rows = committed + fresh
    write_runs(rows, runs_path)
    out["export_mb"] = runs_path.stat().st_size / 1e6
    if out["export_mb"] > MAX_EXPORT_MB:
        warnings.warn(f"{runs_path} is {out['export_mb']:.1f} MB, over the {MAX_EXPORT_MB} MB the atlas may commit: "
                      "cut the spec or store fewer parameters", stacklevel=2)
    figures = atlas_figures(rows)
    write_atlas_report(rows, report_path, spec_name=spec.name, runs_path=runs_path,
                       rademacher_draws=rademacher_draws, figures=figures)
    write_atlas_figures(rows, directory, figures)
    out["written"] = True
    return out


# ----------------------------------------------------------------------------- the questions
def _below(r: dict) -> bool:
    """The run got below linear: ``below_linear``, or a critical point or kink below ``R_lin,lower``."""
    if r["outcome"] == "below_linear":
        return True
    return (r["outcome"] in ("critical", "kink") and r["risk"] is not None and r["linear_risk_lower"] is not None
            and r["risk"] < r["linear_risk_lower"] - T.risk_tol(r["linear_risk_lower"]))


def _local_minimum(r: dict) -> bool:
    return (r["outcome"] == "critical" and r["verdict"] in ("better_than_linear", "violation")
            and r["lambda_min"] is not None and r["lambda_tol"] is not None and r["lambda_min"] >= -r["lambda_tol"])


def q1_below_linear(rows: list[dict]) -> dict:
    """``(data, depth, model) → (runs, below)`` over the descent runs (kind ``minimum``)."""
    out: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["kind"] == "minimum":
            c = out[(r["data"], r["depth"], r["model"])]
            c[0] += 1
            c[1] += _below(r)
    return {k: tuple(v) for k, v in sorted(out.items())}


def q2_certified(rows: list[dict]) -> tuple[dict, list[dict]]:
    """Certified non-trivial critical points: ``(model, verdict) → count``, and the violations."""
    counts: dict = defaultdict(int)
    for r in rows:
        if r["outcome"] == "critical" and not r["linear_equivalent"] and r["verdict"] in (
                "better_than_linear", "strict_saddle", "violation"):
            counts[(r["model"], r["verdict"])] += 1
    # Only critical outcomes: a run that ends on a violation certificate while ‖θ‖ still grows (a
    # diverging run on a plateau) is not a critical point the finder reached (see uncounted_violations).
    viol = [r for r in rows if r["outcome"] == "critical" and r["verdict"] == "violation"]
    return dict(sorted(counts.items())), viol


def uncounted_violations(rows: list[dict]) -> list[dict]:
    """Runs whose final point certifies as a violation but whose outcome is not ``critical``
    (the finder saw ``‖θ‖`` grow while R fell): listed, never counted as violations."""
    return [r for r in rows if r["verdict"] == "violation" and r["outcome"] != "critical"]


def q3_fc_vs_resnet(rows: list[dict]) -> dict:
    """``model → (certified local minima, of them with R > R_lin,upper + risk_tol)``."""
    out: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        if _local_minimum(r):
            c = out[r["model"]]
            c[0] += 1
            c[1] += r["risk"] > r["linear_risk_upper"] + T.risk_tol(r["linear_risk_upper"])
    return {k: tuple(v) for k, v in sorted(out.items())}


def q4_near_identity(rows: list[dict]) -> list[dict]:
    """ResNet certified critical points with ``δ``: depth, δ, ``R − R_lin``, G and the a-priori bound."""
    return [{"data": r["data"], "depth": r["depth"], "delta": r["delta"], "gap": r["gap"], "G": r["G"],
             "bound": r["near_identity_bound"], "trivial": bool(r["linear_equivalent"])}
            for r in rows if r["model"] == "resnet" and r["outcome"] == "critical" and r["delta"] is not None
            and r["gap"] is not None and math.isfinite(r["delta"])]


def rademacher_by_depth(depths, *, data: str = "diabetes", width: int = 2, draws: int = 6,
                        steps: int = 100) -> list[dict]:
    """The empirical Rademacher estimate of the near-identity class (C4's, δ ≤ δ₀) against depth.

    Per depth: the mean and standard error over ``draws`` sign vectors of a lower bound on
    ``sup_f (1/m) Σ σ_i f(x_i)`` (Adam, ``steps`` steps; :func:`resland.paper.near_identity.rademacher`).
    """
    import numpy as np
    import torch

    from .data import load_dataset
    from .paper.near_identity import DELTA0, rademacher

    X = torch.as_tensor(load_dataset(data).X)
    out = []
    for depth in sorted(set(depths)):
        vals = rademacher(X, depth, width, DELTA0, draws, steps)
        out.append({"depth": depth, "mean": float(np.mean(vals)),
                    "se": float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else math.nan})
    return out


def probes_monotone(probe_risks: list) -> bool:
    """``R_lin(h_l)`` never rises past its tolerance along depth (intervals ``[lower, upper]``)."""
    return all(b[0] <= a[1] + T.risk_tol(a[1]) for a, b in zip(probe_risks, probe_risks[1:]))


def q5_probes(rows: list[dict]) -> dict:
    """``(data, depth) → (certified ResNet minima with probes, of them not monotone)``."""
    out: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["probe_risks"]:
            c = out[(r["data"], r["depth"])]
            c[0] += 1
            c[1] += not probes_monotone(json.loads(r["probe_risks"]))
    return {k: tuple(v) for k, v in sorted(out.items())}


def q6_unresolved(rows: list[dict]) -> list[dict]:
    """The unresolved runs (their parameters are in the export)."""
    return [r for r in rows if r["outcome"] == "unresolved"]


def headline(rows: list[dict]) -> dict:
    """Runs, data sets, outcomes, certified non-trivial points, the unresolved share."""
    outcomes: dict = defaultdict(int)
    for r in rows:
        outcomes[r["outcome"] or "failed"] += 1
    counts, _ = q2_certified(rows)
    n = len(rows)
    return {"runs": n, "data_sets": sorted({r["data"] for r in rows}), "outcomes": dict(sorted(outcomes.items())),
            "certified_non_trivial": sum(counts.values()),
            "unresolved_share": outcomes.get("unresolved", 0) / n if n else 0.0}


def stratum(r: dict) -> tuple[str, str, str]:
    """The cost stratum of a run or config: activation class (``relu`` or ``smooth``), kind, depth band."""
    return ("relu" if r["activation"] == "relu" else "smooth", r["kind"], "1–4" if r["depth"] <= 4 else "8–32")


def cost(rows: list[dict], workers: int = 2) -> dict:
    """What the atlas cost, per stratum ``(activation class, kind, depth band)``: ``(runs, core-seconds)``.

    A row's ``seconds`` is its task's wall time on one worker divided by the task's seeds, so
    core-seconds add up; ``"total"`` adds the wall time ``core-seconds / workers`` (the time on
    ``workers`` fully busy workers) and the runs per hour it implies.
    """
    out: dict = defaultdict(lambda: [0, 0.0])
    for r in rows:
        key = stratum(r)
        out[key][0] += 1
        out[key][1] += r["seconds"] or 0.0
    strata = {k: (v[0], v[1]) for k, v in sorted(out.items())}
    n, sec = sum(v[0] for v in strata.values()), sum(v[1] for v in strata.values())
    wall = sec / workers
    return {"strata": strata, "total": {"runs": n, "core_seconds": sec, "workers": workers, "wall_minutes": wall / 60,
                                        "runs_per_hour": n / wall * 3600 if wall else 0.0}}


def markdown_summary(rows: list[dict], of: int | None = None) -> str:
    """The headline numbers and questions 1–3 and 5 as Markdown tables (docs/atlas.md pastes them).

    ``of``: the runs in the spec, when the export holds only part of them.
    """
    h = headline(rows)
    lines = [f"{h['runs']} runs" + (f" of {of}" if of else "") + f" on {len(h['data_sets'])} data sets "
             f"({', '.join(h['data_sets'])}); {h['certified_non_trivial']} certified non-trivial critical points; "
             f"unresolved {h['unresolved_share']:.1%}.", "", "| outcome | runs |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in h["outcomes"].items()]
    q1 = q1_below_linear(rows)
    depths = sorted({k[1] for k in q1})
    lines += ["", "Question 1, descent runs below linear (all data sets):", "",
              "| model | " + " | ".join(f"L = {d}" for d in depths) + " |", "| --- |" + " --- |" * len(depths)]
    for model in ("resnet", "fc"):
        cells = []
        for d in depths:
            n = sum(v[0] for k, v in q1.items() if k[1] == d and k[2] == model)
            b = sum(v[1] for k, v in q1.items() if k[1] == d and k[2] == model)
            cells.append(_share(b, n))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    counts, viol = q2_certified(rows)
    lines += ["", "Question 2, certified non-trivial critical points:", "", "| model | verdict | points |",
              "| --- | --- | --- |"] + [f"| {k[0]} | {k[1]} | {v} |" for k, v in counts.items()]
    other = uncounted_violations(rows)
    lines += ["", f"Violations: {sum(r['model'] == 'resnet' for r in viol)} ResNet, "
              f"{sum(r['model'] == 'fc' for r in viol)} FC."
              + (f" Not counted: {len(other)} runs that end on a violation certificate while diverging "
                 f"({', '.join(f'{v} {k}' for k, v in sorted(Counter(r['model'] for r in other).items()))})."
                 if other else "")]
    lines += ["", "Question 3, certified local minima worse than linear:", "", "| model | worse than linear |",
              "| --- | --- |"] + [f"| {k} | {_share(v[1], v[0])} |" for k, v in q3_fc_vs_resnet(rows).items()]
    q5 = q5_probes(rows)
    n5, b5 = sum(v[0] for v in q5.values()), sum(v[1] for v in q5.values())
    lines += ["", f"Question 5: {_share(b5, n5)} certified ResNet minima with probes have a certified rise of "
              "R_lin(h_l) along depth."]
    c = cost(rows)
    t = c["total"]
    lines += ["", f"Cost (core-seconds from the runs' own timings; wall time on {t['workers']} fully busy workers):", "",
              "| activation | kind | depths | runs | s / run | runs / h per core |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {k[0]} | {k[1]} | {k[2]} | {n} | {sec / n:.2f} | {3600 * n / sec:,.0f} |"
              for k, (n, sec) in c["strata"].items() if sec > 0]
    lines += ["", f"Total: {t['runs']} runs, {t['core_seconds'] / 60:.0f} core-minutes, {t['wall_minutes']:.0f} minutes "
              f"on {t['workers']} workers, {t['runs_per_hour']:,.0f} runs per hour."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the report
def _table(head: list[str], body: list[list]) -> str:
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in row) + "</tr>" for row in body)
            + "</table>")


def _share(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "–"


def near_identity_figure(points: list[dict]) -> bytes | None:
    """``R − R_lin`` against ``δ`` per depth, with the a-priori bound (PNG), or None without points."""
    pts = [p for p in points if p["delta"] > 0]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    depths = sorted({p["depth"] for p in pts})
    cmap = plt.get_cmap("viridis", max(2, len(depths)))
    for i, d in enumerate(depths):
        sel = [p for p in pts if p["depth"] == d]
        ax.scatter([p["delta"] for p in sel], [p["gap"] for p in sel], s=14, color=cmap(i), label=f"L = {d}",
                   facecolors=[("none" if p["trivial"] else cmap(i)) for p in sel])
        bnd = [(p["delta"], p["bound"]) for p in sel if p["bound"] is not None and math.isfinite(p["bound"])]
        if bnd:
            ax.scatter(*zip(*bnd), marker="_", s=60, color=cmap(i))
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-10)
    lim = 3 * max(1e-9, max(abs(p["gap"]) for p in pts))   # the gaps set the scale; e^δ bounds run off it
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("δ (near-identity size of the blocks)")
    ax.set_ylabel("R − R_lin")
    ax.set_title("Certified ResNet critical points (hollow: linear-equivalent; bars: a-priori bound, "
                 "where on scale)", fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    return png(fig)


def below_linear_figure(q1: dict) -> bytes | None:
    """Question 1 as a figure: the below-linear share of descent runs against depth, one panel
    per data set, ResNet and FC side by side (PNG), or None without rows."""
    if not q1:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = sorted({k[0] for k in q1})
    cols = min(3, len(data))
    rows_ = math.ceil(len(data) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.4 * cols, 2.6 * rows_), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, data):
        for model, style in (("resnet", "o-"), ("fc", "s--")):
            pts = sorted((k[1], v[1] / v[0]) for k, v in q1.items() if k[0] == name and k[2] == model and v[0])
            if pts:
                ax.plot(*zip(*pts), style, ms=4, label=model)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("depth L", fontsize=8)
    for ax in axes.flat[len(data):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("share below linear")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Descent runs (kind minimum) that get below the best linear predictor", fontsize=10)
    fig.tight_layout()
    return png(fig)


def atlas_figures(rows: list[dict]) -> dict[str, bytes | None]:
    """The figures of questions 1 and 4 (PNG bytes, None without points), keyed by :data:`FIGURE_FILES`."""
    return {FIGURE_FILES[0]: below_linear_figure(q1_below_linear(rows)),
            FIGURE_FILES[1]: near_identity_figure(q4_near_identity(rows))}


def write_atlas_figures(rows: list[dict], directory: str | Path, figures: dict | None = None) -> list[Path]:
    """Questions 1 and 4 as PNG files in ``directory`` (for docs/atlas.md); the paths written.

    ``figures``: :func:`atlas_figures` of ``rows``, if already rendered.
    """
    out = []
    for name, blob in (figures or atlas_figures(rows)).items():
        if blob is not None:
            path = Path(directory) / name
            path.write_bytes(blob)
            out.append(path)
    return out


def write_atlas_report(rows: list[dict], out: str | Path, *, spec_name: str = "atlas",
                       runs_path: str | Path = ATLAS_DIR / RUNS_FILE, rademacher_draws: int = 6,
                       figures: dict | None = None) -> None:
    """Write the atlas report (six questions, see the module docstring) to ``out``.

    ``rademacher_draws``: sign vectors per depth for question 4's Rademacher estimate (0: none).
    ``figures``: :func:`atlas_figures` of ``rows``, if already rendered.
    """
    figures = figures or atlas_figures(rows)
    h = headline(rows)
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>resland atlas</title>"
             f"<style>{CSS}</style></head><body><h1>resland atlas: <code>{html.escape(spec_name)}</code></h1>",
             f"<p>{h['runs']} runs on {len(h['data_sets'])} data sets ({', '.join(h['data_sets'])}) · "
             f"{h['certified_non_trivial']} certified non-trivial critical points · unresolved "
             f"{h['unresolved_share']:.1%}</p>",
             _table(["outcome", "runs"], [[k, v] for k, v in h["outcomes"].items()])]
    q1 = q1_below_linear(rows)
    parts.append("<h2 id='q1'>1. Descent runs that get below linear</h2><p>Kind minimum: outcome below_linear, or "
                 "a critical point or kink with R &lt; R_lin,lower − risk_tol.</p>"
                 + (f"<p><img alt='below-linear share against depth' src='{data_uri(fig1)}'></p>"
                    if (fig1 := figures[FIGURE_FILES[0]]) else "")
                 + _table(["data", "depth", "model", "below linear"], [[*k, _share(v[1], v[0])] for k, v in q1.items()]))
    counts, viol = q2_certified(rows)
    parts.append("<h2 id='q2'>2. Certified non-trivial critical points</h2>"
                 + _table(["model", "verdict", "points"], [[*k, v] for k, v in counts.items()]))
    res_viol = [r for r in viol if r["model"] == "resnet"]
    parts.append(f"<p class='alert'><b>{len(res_viol)} ResNet violation(s)</b>: counterexample candidates to the "
                 "paper's dichotomy.</p>" if res_viol else
                 "<p>No ResNet violation: no certified critical point of a ResNet that is worse than linear and "
                 "not a strict saddle.</p>")
    if viol:
        parts.append(f"<p>{len(viol) - len(res_viol)} FC violation(s): fully-connected critical points worse than "
                     "linear without escape (the theorem does not cover FC networks; Example 1's phenomenon).</p>"
                     + _table(["model", "config", "seed", "R − R_lin", "replay"],
                              [[r["model"], r["config_id"], r["seed"], f"{r['gap']:.3e}",
                                replay_export_command(runs_path, r["config_id"], r["seed"])] for r in viol]))
    if other := uncounted_violations(rows):
        parts.append(f"<p>Not counted: {len(other)} run(s) whose final point certifies as a violation while the run "
                     "is diverging (‖θ‖ grows while R falls, e.g. a drift along a vanishing-gradient plateau).</p>"
                     + _table(["model", "config", "seed", "outcome", "R − R_lin", "replay"],
                              [[r["model"], r["config_id"], r["seed"], r["outcome"], f"{r['gap']:.3e}",
                                replay_export_command(runs_path, r["config_id"], r["seed"])] for r in other]))
    q3 = q3_fc_vs_resnet(rows)
    parts.append("<h2 id='q3'>3. FC against ResNet</h2><p>Certified local minima (λ_min ≥ −lambda_tol) with "
                 "R &gt; R_lin,upper + risk_tol.</p>"
                 + _table(["model", "worse than linear"], [[k, _share(v[1], v[0])] for k, v in q3.items()]))
    fig = figures[FIGURE_FILES[1]]
    parts.append("<h2 id='q4'>4. Near-identity: R − R_lin against δ</h2>"
                 + (f"<p><img alt='R − R_lin against delta' src='{data_uri(fig)}'></p>" if fig else
                    "<p>No certified ResNet critical points with δ.</p>"))
    depths = sorted({r["depth"] for r in rows if r["model"] == "resnet"})
    if rademacher_draws and depths:
        rad = rademacher_by_depth(depths, draws=rademacher_draws)
        parts.append(f"<p>Empirical Rademacher estimate of the near-identity class on diabetes (width 2, "
                     f"{rademacher_draws} sign draws per depth): flat in depth when the a-priori bound holds.</p>"
                     + _table(["depth", "mean", "standard error"],
                              [[r["depth"], f"{r['mean']:.4f}", f"{r['se']:.4f}"] for r in rad]))
    q5 = q5_probes(rows)
    parts.append("<h2 id='q5'>5. Linear probes along depth</h2><p>Certified ResNet local minima whose probe risks "
                 "R_lin(h_l) rise somewhere along depth (beyond the intervals and risk_tol).</p>"
                 + _table(["data", "depth", "not monotone"], [[*k, _share(v[1], v[0])] for k, v in q5.items()]))
    q6 = q6_unresolved(rows)
    parts.append("<h2 id='q6'>6. Unresolved runs</h2>" + (_table(
        ["config", "seed", "status", "‖∇R‖", "replay"],
        [[r["config_id"], r["seed"], r["status"], f"{r['grad_norm']:.2e}" if r["grad_norm"] is not None else "–",
          replay_export_command(runs_path, r["config_id"], r["seed"])] for r in q6]) if q6 else "<p>None.</p>"))
    c = cost(rows)
    t = c["total"]
    parts.append("<h2 id='cost'>Cost</h2><p>Core-seconds from the runs' own timings (a task's wall time shared "
                 f"among its seeds): {t['core_seconds'] / 60:.0f} core-minutes, {t['wall_minutes']:.0f} minutes on "
                 f"{t['workers']} fully busy workers, {t['runs_per_hour']:,.0f} runs per hour.</p>"
                 + _table(["activation", "kind", "depths", "runs", "s / run"],
                          [[*k, n, f"{sec / n:.2f}"] for k, (n, sec) in c["strata"].items() if n]))
    parts.append("</body></html>")
    Path(out).write_text("\n".join(parts), encoding="utf-8")
