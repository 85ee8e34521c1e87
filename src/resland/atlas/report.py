"""The atlas report: a findings summary first, then one table or figure per question (docs/atlas.md).

:func:`findings` gives the summary as sentences of counts, each with the anchor of its table;
:func:`write_atlas_report` writes the self-contained ``index.html`` and :func:`markdown_summary`
the Markdown that docs/atlas.md pastes. Long tables sit behind a fold (``<details>``).
"""

from __future__ import annotations

import html
import math
from collections import Counter
from pathlib import Path

from ..families import family
from .._html import CSS, data_uri, png
from ..census.dichotomy import CERTIFIED, SHORT, cell, label, trivial_of
from ..replay import replay_export_command
from .questions import (core_of, cost, headline, q7_deep, not_counted, q1_below_linear, q2_dichotomy, q2_theorem2, q3_examples,
                        q3_fc_vs_resnet, q4_near_identity, q5_probes, q6_unresolved, rademacher_by_depth)

#: The report's figures as files, for docs/atlas.md (questions 1 and 4).
FIGURE_FILES = ("below_linear.png", "near_identity.png")
#: No log axis of a figure spans more than this many decades (per sign of a symlog axis).
AXIS_DECADES = 7
#: Where the committed export lives, relative to the repository root (replay commands name it).
RUNS_DISPLAY = Path("atlas") / "runs.parquet"


def display_path(runs_path: str | Path) -> str:
    """The export's path as a replay command should name it: relative to the working directory when
    it lies below it, else ``atlas/<name>`` (never an absolute path of the machine that wrote it)."""
    p = Path(runs_path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return (RUNS_DISPLAY.parent / p.name).as_posix()


def dichotomy_rows(rows: list[dict]) -> list[list]:
    """Question 2 as table rows: model, depth, then one cell per verdict of the dichotomy."""
    return [[k[0], k[1], *[cell(v.get(verdict, {})) for verdict in CERTIFIED]] for k, v in q2_dichotomy(rows).items()]


def _non_trivial(table: dict, model: str, verdict: str, depth_min: int = 0) -> int:
    """Non-trivial points of ``verdict`` for ``model`` at depths ``≥ depth_min`` in a :func:`q2_dichotomy` table."""
    return sum(c.get(verdict, {}).get("none", 0) for (m, d), c in table.items() if m == model and d >= depth_min)


def findings(rows: list[dict]) -> list[tuple[str, str]]:
    """The findings summary: ``(sentence, anchor)`` pairs, 4–6 sentences of counts."""
    h = headline(rows)
    triv = ", ".join(f"{v} {k}" for k, v in h["trivial"].items()) or "none"
    out = [(f"{h['runs']:,} runs on {len(h['data_sets'])} data sets reached {h['certified']:,} certified critical "
            f"points; {h['certified_non_trivial']:,} of them are non-trivial evidence (excluded as trivial: {triv}; "
            f"unresolved runs: {h['unresolved_share']:.1%})"
            + (f"; the non-trivial rows are {h['distinct_non_trivial']} distinct points, {h['distinct_full_width']} "
               "of them with no zero unit" if h["distinct_non_trivial"] is not None else "") + ".", "q2")]
    table = q2_dichotomy(rows)
    for model, name in (("resnet", "ResNet"), ("fc", "FC")):
        c = [_non_trivial(table, model, v) for v in CERTIFIED]
        out.append((f"Non-trivial {name} critical points: {c[0]} better than linear (i), {c[1]} strict saddles (ii), "
                    f"{c[2]} degenerate saddles, {c[3]} local minima worse than linear and {c[4]} degenerate points; "
                    f"{sum(_non_trivial(table, model, v, depth_min=8) for v in CERTIFIED)} of them at depth ≥ 8.",
                    "q2"))
    t2 = q2_theorem2(rows)
    kinds = Counter(label(r) for r in t2)
    out.append((f"{len(t2)} ResNet critical point(s) are worse than linear without a negative eigenvalue"
                + (f" ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}); each is listed with its replay "
                   "command." if t2 else ": no certified ResNet point fails case (ii) of the dichotomy."), "theorem2"))
    q3 = q3_fc_vs_resnet(rows)
    out.append(("Verified local minima worse than linear (positive definite beyond the named symmetries, "
                "Example 1's kind): " + "; ".join(f"{m} {v['worse']} among {v['local minima']} certified local minima, "
                                                 f"{v['worse_non_trivial']} of them non-trivial"
                                                 for m, v in q3.items()) + ".", "q3"))
    if (deep := q7_deep(rows))["points"]:
        by = lambda d: ", ".join(f"{k}: {v}" for k, v in d.items())      # noqa: E731
        embedded = any(core != "full width" for core in deep["by_core"])
        how = (": an L₀×k₀ core's critical point embedded by zero units (docs/theory.md §11), " if embedded
               else "; ")
        out.append((f"Non-trivial certified ResNet critical points at depth ≥ 8: {len(deep['points'])} (depth "
                    f"{by(deep['by_depth'])}) on {len(deep['by_data'])} data sets ({by(deep['by_verdict'])}); by the "
                    f"net the finder ran on, {by(deep['by_core'])}{how}{deep['distinct']} distinct points"
                    f"{' of the cores' if embedded else ''}.", "q7"))
    q1 = q1_below_linear(rows)
    shares = []
    for model in ("resnet", "fc"):
        n = sum(v[0] for k, v in q1.items() if k[2] == model)
        b = sum(v[1] for k, v in q1.items() if k[2] == model)
        shares.append(f"{model} {_share(b, n)}")
    out.append((f"Descent runs that got below linear (every limit better than linear): {', '.join(shares)}.", "q1"))
    return out


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
        ax.scatter([p["delta"] for p in sel], [p["gap"] for p in sel], s=14, edgecolors=cmap(i), label=f"L = {d}",
                   facecolors=[("none" if p["trivial"] else cmap(i)) for p in sel])
        bnd = [(p["delta"], p["bound"]) for p in sel if p["bound"] is not None and math.isfinite(p["bound"])]
        if bnd:
            ax.scatter(*zip(*bnd), marker="_", s=60, color=cmap(i))
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_xscale("log")
    top = max(1e-12, max(abs(p["gap"]) for p in pts))     # the gaps set the scale; e^δ bounds run off it
    ax.set_yscale("symlog", linthresh=top * 10.0**-AXIS_DECADES)
    ax.set_ylim(-3 * top, 3 * top)
    dmax = max(p["delta"] for p in pts)
    ax.set_xlim(max(min(p["delta"] for p in pts) / 2, dmax * 10.0**-AXIS_DECADES), 2 * dmax)
    ax.set_xlabel("δ (near-identity size of the blocks)")
    ax.set_ylabel("R − R_lin")
    ax.set_title("Certified ResNet critical points (hollow: trivial, linear or constant; bars: a-priori bound, "
                 f"where on scale; axes span ≤ {AXIS_DECADES} decades)", fontsize=9)
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


def write_atlas_figures(rows: list[dict], directory: str | Path, figures: dict | None = None,
                        prefix: str = "") -> list[Path]:
    """Questions 1 and 4 as PNG files in ``directory`` (for docs/atlas.md), names prefixed with ``prefix``
    (an atlas part's); the paths written.

    ``figures``: :func:`atlas_figures` of ``rows``, if already rendered.
    """
    out = []
    for name, blob in (figures or atlas_figures(rows)).items():
        if blob is not None:
            path = Path(directory) / (prefix + name)
            path.write_bytes(blob)
            out.append(path)
    return out


def _fold(summary: str, body: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


def write_atlas_report(rows: list[dict], out: str | Path, *, spec_name: str = "atlas",
                       runs_path: str | Path = RUNS_DISPLAY, rademacher_draws: int = 6,
                       figures: dict | None = None, also: list = ()) -> None:
    """Write the atlas report to ``out``: the findings summary, then the questions (module docstring).

    ``also``: other parts shown after the findings, as ``(title, rows, report file)``: their findings,
    each linking into that part's own report.

    ``rademacher_draws``: sign vectors per depth for question 4's Rademacher estimate (0: none).
    ``figures``: :func:`atlas_figures` of ``rows``, if already rendered.
    """
    figures = figures or atlas_figures(rows)
    runs = display_path(runs_path)

    def replay(r):
        return replay_export_command(runs, r["config_id"], r["seed"])

    h = headline(rows)
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>resland atlas</title>"
             f"<style>{CSS}</style></head><body><h1>resland atlas: <code>{html.escape(spec_name)}</code></h1>",
             "<h2 id='findings'>Findings</h2><ul>"
             + "".join(f"<li>{html.escape(s)} <a href='#{a}'>table</a></li>" for s, a in findings(rows)) + "</ul>",
             "<p>Evidence rule (docs/theory.md §7–§8): only certified critical points with trivial = none count; "
             "linear-equivalent and constant predictors are shown in brackets and never counted. Every run replays "
             f"from a fresh clone: <code>resland replay --parquet {html.escape(runs)} --run CONFIG_ID:SEED</code> "
             "(stored parameters, or a deterministic rerun of its task checked bit for bit).</p>",
             _table(["outcome", "runs"], [[k, v] for k, v in h["outcomes"].items()])]
    for title, other_rows, href in also:
        parts.append(f"<h2 id='part-{html.escape(Path(href).stem)}'>{html.escape(title)}</h2>"
                     + ("<ul>" + "".join(f"<li>{html.escape(s)} <a href='{html.escape(href)}#{a}'>table</a></li>"
                                          for s, a in findings(other_rows)) + "</ul>" if other_rows else "<p>No runs yet.</p>")
                     + f"<p>The full report of this part: <a href='{html.escape(href)}'>{html.escape(href)}</a>.</p>")
    parts.append("<h2 id='q2'>2. The dichotomy, counted</h2><p>Certified critical points (outcome critical) per "
                 "model and depth: non-trivial count, trivial ones in brackets. (i) better than linear; (ii) strict "
                 "saddle; then the points worse than linear with no eigenvalue below −λ_tol: a verified higher-order "
                 "descent (degenerate saddle), positive definite beyond the named symmetries (local min worse), or "
                 "a null space without descent (degenerate).</p>"
                 + _table(["model", "depth", *[SHORT[v] for v in CERTIFIED]], dichotomy_rows(rows)))
    t2 = q2_theorem2(rows)
    parts.append("<h2 id='theorem2'>ResNet points that bear on Theorem 2</h2>"
                 + ("<p class='alert'>ResNet critical points worse than linear without a negative eigenvalue: case "
                    "(ii) fails as stated. Either the theorem's conditions exclude them or they are counterexamples "
                    "(docs/theory.md §8).</p>" + _table(
                        ["data", "depth", "width", "activation", "verdict", "trivial", "R − R_lin", "replay"],
                        [[r["data"], r["depth"], r["width"], r["activation"], r["verdict"], trivial_of(r),
                          f"{r['gap']:.3e}", replay(r)] for r in t2]) if t2 else
                    "<p>None: every certified ResNet critical point is better than linear or a strict saddle.</p>"))
    if other := not_counted(rows):
        parts.append(_fold(f"Not counted: {len(other)} run(s) whose final point certifies worse than linear without "
                           "negative curvature while the run is diverging (‖θ‖ grows while R falls)",
                           _table(["model", "config", "seed", "verdict", "outcome", "R − R_lin", "replay"],
                                  [[r["model"], r["config_id"], r["seed"], r["verdict"], r["outcome"],
                                    f"{r['gap']:.3e}", replay(r)] for r in other])))
    q3 = q3_fc_vs_resnet(rows)
    ex = q3_examples(rows)
    parts.append("<h2 id='q3'>3. Local minima worse than linear: FC against ResNet</h2><p>Certified local minima: "
                 "better than linear with λ_min ≥ −λ_tol and no null space beyond the symmetries, or "
                 "local_minimum_worse. Example 1's phenomenon at scale is the last column.</p>"
                 + _table(["model", "certified local minima", "worse than linear", "of them non-trivial"],
                          [[k, v["local minima"], v["worse"], v["worse_non_trivial"]] for k, v in q3.items()])
                 + (_fold(f"The {len(ex)} non-trivial local minima worse than linear, with replay commands",
                          _table(["model", "data", "depth", "width", "activation", "R − R_lin", "λ_min beyond symmetries",
                                  "replay"],
                                 [[r["model"], r["data"], r["depth"], r["width"], r["activation"], f"{r['gap']:.3e}",
                                   f"{r['lambda_min']:.3e}", replay(r)] for r in ex])) if ex else ""))
    if (deep := q7_deep(rows))["points"]:
        parts.append("<h2 id='q7'>7. Deep ResNet evidence, by the net the finder ran on</h2><p>Non-trivial certified "
                     "ResNet critical points at depth ≥ 8. A core L₀×k₀ means the dense finder ran on a ResNet of L₀ "
                     "blocks of k₀ units and its point was embedded by zero units: a critical point of the deep net, "
                     "certified in it, whose predictor is the core's (docs/theory.md §11).</p>"
                     + _fold(f"The {len(deep['points'])} points", _table(
                         ["data", "depth", "width", "core", "zero units", "verdict", "R − R_lin", "λ_min", "replay"],
                         [[r["data"], r["depth"], r["width"], core_of(r), r.get("zero_units"), r["verdict"],
                           f"{r['gap']:.3e}", f"{r['lambda_min']:.2e}" if r["lambda_min"] is not None else "–",
                           replay(r)] for r in deep["points"]])))
    q1 = q1_below_linear(rows)
    parts.append("<h2 id='q1'>1. Descent runs that get below linear</h2><p>Kind minimum: outcome below_linear, or "
                 "a critical point or kink with R &lt; R_lin,lower − risk_tol.</p>"
                 + (f"<p><img alt='below-linear share against depth' src='{data_uri(fig1)}'></p>"
                    if (fig1 := figures[FIGURE_FILES[0]]) else "")
                 + _fold("Per data set, depth and model", _table(["data", "depth", "model", "below linear"],
                                                                 [[*k, _share(v[1], v[0])] for k, v in q1.items()])))
    fig = figures[FIGURE_FILES[1]]
    parts.append("<h2 id='q4'>4. Near-identity: R − R_lin against δ</h2>"
                 + (f"<p><img alt='R − R_lin against delta' src='{data_uri(fig)}'></p>" if fig else
                    "<p>No certified ResNet critical points with δ.</p>"))
    depths = sorted({r["depth"] for r in rows if family(r["model"]).residual})
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
    parts.append("<h2 id='q6'>6. Unresolved runs</h2>" + (_fold(f"{len(q6)} unresolved runs", _table(
        ["config", "seed", "status", "‖∇R‖", "replay"],
        [[r["config_id"], r["seed"], r["status"], f"{r['grad_norm']:.2e}" if r["grad_norm"] is not None else "–",
          replay(r)] for r in q6])) if q6 else "<p>None.</p>"))
    c = cost(rows)
    t = c["total"]
    parts.append("<h2 id='cost'>Cost</h2><p>Core-seconds from the runs' own timings (a task's wall time shared "
                 f"among its seeds): {t['core_seconds'] / 60:.0f} core-minutes, {t['wall_minutes']:.0f} minutes on "
                 f"{t['workers']} fully busy workers, {t['runs_per_hour']:,.0f} runs per hour.</p>"
                 + _table(["activation", "kind", "depths", "runs", "s / run"],
                          [[*k, n, f"{sec / n:.2f}"] for k, (n, sec) in c["strata"].items() if n]))
    parts.append("</body></html>")
    Path(out).write_text("\n".join(parts), encoding="utf-8")


def markdown_findings(rows: list[dict]) -> str:
    """The findings as a Markdown list, each sentence linking to its table (the anchors of
    :func:`markdown_summary`)."""
    return "\n".join(f"* {s} ([table](#{a}))" for s, a in findings(rows)) + "\n"


def markdown_summary(rows: list[dict], of: int | None = None, *, with_findings: bool = True) -> str:
    """The findings and questions 1–3 and 5 as Markdown (docs/atlas.md pastes them), each question
    behind an HTML anchor (``q1``, ``q2``, ``theorem2``, ``q3``) that the findings link to.

    ``of``: the runs in the spec, when the export holds only part of them.
    """
    h = headline(rows)
    lines = (["Findings:", "", markdown_findings(rows).rstrip("\n")] if with_findings else [])
    lines += ["", f"{h['runs']} runs" + (f" of {of}" if of else "") + f" on {len(h['data_sets'])} data sets "
              f"({', '.join(h['data_sets'])}).", "", "| outcome | runs |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in h["outcomes"].items()]
    lines += ["", '<a id="q2"></a>', "", "Question 2, the dichotomy counted (non-trivial points; trivial ones in brackets):", "",
              "| model | depth | " + " | ".join(SHORT[v] for v in CERTIFIED) + " |",
              "| --- | --- |" + " --- |" * len(CERTIFIED)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in dichotomy_rows(rows)]
    t2 = q2_theorem2(rows)
    lines += ["", '<a id="theorem2"></a>', "", f"ResNet points worse than linear without a negative eigenvalue: {len(t2)}."]
    lines += [f"* {r['data']} L = {r['depth']} k = {r['width']} {r['activation']}: {r['verdict']} "
              f"(trivial = {trivial_of(r)}), `{replay_export_command(RUNS_DISPLAY.as_posix(), r['config_id'], r['seed'])}`"
              for r in t2]
    lines += ["", '<a id="q3"></a>', "", "Question 3, verified local minima worse than linear:", "",
              "| model | certified local minima | worse than linear | of them non-trivial |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['local minima']} | {v['worse']} | {v['worse_non_trivial']} |"
              for k, v in q3_fc_vs_resnet(rows).items()]
    q1 = q1_below_linear(rows)
    depths = sorted({k[1] for k in q1})
    lines += ["", '<a id="q1"></a>', "", "Question 1, descent runs below linear (all data sets):", "",
              "| model | " + " | ".join(f"L = {d}" for d in depths) + " |", "| --- |" + " --- |" * len(depths)]
    for model in ("resnet", "fc"):
        cells = []
        for d in depths:
            n = sum(v[0] for k, v in q1.items() if k[1] == d and k[2] == model)
            b = sum(v[1] for k, v in q1.items() if k[1] == d and k[2] == model)
            cells.append(_share(b, n))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if (deep := q7_deep(rows))["points"]:
        lines += ["", '<a id="q7"></a>', "", "Question 7, non-trivial certified ResNet points at depth ≥ 8, by data set, "
                  "depth and the net the finder ran on (core L₀×k₀: embedded by zero units, docs/theory.md §11):", "",
                  "| data | depth | core | points |", "| --- | --- | --- | --- |"]
        groups = Counter((r["data"], r["depth"], core_of(r)) for r in deep["points"])
        lines += [f"| {k[0]} | {k[1]} | {k[2]} | {v} |" for k, v in sorted(groups.items())]
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
