"""C3 (the dichotomy on deep chain ResNets) and C5 (Shamir's single block) on real data.

For each (data set, depth, seed, finder kind): initialise a smooth ResNet, find a critical
point, certify it (docs/theory.md §5), and count verdicts. The runs are census specs run by the
census runner (resland.census) into a SQLite store next to the report: the paper uses the
census, never the other way round (C4 runs its near-identity starts the same way). The
theorem's conclusion is tested on the critical points actually reached. Evidence is
non-trivial (docs/theory.md §7): certified points that are not linear-equivalent, and descent
runs that got below linear (``below_linear``: every limit of the run is better than linear).
Trivial points (``trivial`` linear or constant, docs/theory.md §8) are counted apart; other runs
that did not converge are counted and never used. Every point worse than linear without a
negative eigenvalue (``degenerate_saddle``, ``local_minimum_worse``, ``degenerate``) fails case
(ii) as stated: it is listed with its replay command and makes the claim ``not_reproduced``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .._html import png
from ..census.dichotomy import label as verdict_label, trivial_of
from ..certificate import WORSE_NO_NEGATIVE
from ..replay import replay_command
from .claims import Claim, audit_fields

EVIDENCE = ("better_than_linear", "strict_saddle")


# Starts: PyTorch's default initialisation (V × 1). Near-identity starts (V × 0.3) land on
# linear-equivalent points; × 1 reaches non-trivial ones (docs/theory.md §7).
V_SCALE = 1.0


MAX_ITER = {"any": 60, "minimum": 30}  # second-order iterations per finder kind (full run)
MAX_ITER_QUICK = {"any": 100, "minimum": 30}  # the quick run's models are small: iterations are cheap


@dataclass(frozen=True)
class Plan:
    """One census spec of a claim: tanh ResNets of ``width`` on ``data`` at the claim's depths,
    searched with finder ``kind`` from ``seeds``. ``grid`` adds ``[[grid]]`` keys: ``delta0``
    (near-identity starts), ``regime`` and ``max_params`` (filters that keep a spec affordable)."""

    data: str
    kind: str
    seeds: range
    width: int
    grid: dict = field(default_factory=dict)


def census_runs(claim_id, plans, depths, store, progress, max_iter=MAX_ITER, workers=None) -> list[dict]:
    """Run a claim's plans as census specs through the census runner; one record per run.

    Every :class:`Plan` becomes one spec (tanh ResNets of the given depths, every V_l ×
    :data:`V_SCALE` unless the plan starts at ``delta0``, all parameters stored) run on the local
    executor into the SQLite ``store``, so a rerun resumes and every run can be replayed
    (``record["replay"]``) or recomputed from scratch (``record["command"]``). One seed per task:
    each run is then the very computation of ``resland certify`` (an ensemble of one), bit for
    bit; stacking seeds changes the rounding of the batched kernels.
    """
    from ..census import RunStore, parse_spec, run_census

    records = []
    with RunStore(store) as db:
        for plan in plans:
            grid = {"data": plan.data, "depth": list(depths), "width": plan.width, "activation": "tanh",
                    "kind": plan.kind, **({} if "delta0" in plan.grid else {"v_scale": V_SCALE}), **plan.grid}
            spec = parse_spec({
                "name": f"{claim_id}-{plan.data}-{plan.kind}", "seeds": list(plan.seeds), "batch_size": 1,
                "finder": {"max_iter": max_iter[plan.kind]}, "store": {"parameters": "all"}, "grid": [grid]})
            done = [0]

            def tick(rows, label=f"{claim_id}: {plan.data} {plan.kind}", total=spec.n_runs):
                done[0] += len(rows)
                progress(f"{label} ({done[0]}/{total} runs)")
            run_census(spec, db, workers=workers or min(2, os.cpu_count() or 1), on_rows=tick)
            records += [_record(claim_id, row, store, max_iter[plan.kind]) for row in db.rows(spec.spec_hash)]
    return records


def _record(claim_id: str, row: dict, store, max_iter: int) -> dict:
    """A claim record from a census row (the verdict only where the run converged)."""
    c, cert = json.loads(row["config"]), json.loads(row["certificate"] or "{}")
    start = f"--delta0 {c['delta0']}" if "delta0" in c else f"--v-scale {c['v_scale']}"
    rec = {"claim": claim_id, "data": c["data"], "loss": cert.get("loss"), "depth": c["depth"], "width": c["width"],
           "activation": c["activation"], "kind": c["kind"], "seed": row["seed"], "status": row["status"],
           "grad_norm": row["grad_norm"], "risk": row["risk"], "outcome": row["outcome"], "v_scale": c["v_scale"],
           "delta0": c.get("delta0"), "n_params": row["n_params"],
           "seconds": row["seconds"], "verdict": None, "replay": replay_command(store, row["config_id"], row["seed"]),
           "command": (f"resland certify --data {c['data']} --depth {c['depth']} --width {c['width']} "
                       f"--activation {c['activation']} --kind {c['kind']} --seed {row['seed']} "
                       f"--max-iter {max_iter} {start}")}
    if row["linear_risk"] is not None:
        rec.update(linear_risk=row["linear_risk"], linear_risk_lower=row["linear_risk_lower"],
                   linear_risk_upper=row["linear_risk_upper"])
    if row["converged"]:
        gb, ni = cert.get("gap_bound") or {}, cert.get("near_identity") or {}
        rec.update(linear_equivalent=bool(row["linear_equivalent"]), trivial=trivial_of(row), verdict=row["verdict"],
                   lambda_min=row["lambda_min"], lambda_max=row["lambda_max"],
                   index=cert.get("index"), escape_decrease=cert.get("escape_decrease"),
                   gap_bound=_num(gb.get("rigorous")), G=_num(gb.get("G")), delta=_num(ni.get("delta")),
                   a_priori=_num(ni.get("bound")), applicable=ni.get("applicable"),
                   audit=audit_fields(cert, c["data"], json.loads(row["parameters"])))
        if row["verdict"] in WORSE_NO_NEGATIVE + ("inconclusive",):
            rec["certificate"] = cert
    return rec


def _num(x) -> float | None:
    return None if x is None else float(x)


def label(r: dict) -> str:
    """What a run ended as: its verdict (trivial points marked), else its outcome."""
    if r["verdict"]:
        t = r.get("trivial") or ("linear" if r.get("linear_equivalent") else "none")
        return r["verdict"] + {"none": "", "linear": " (linear-equivalent)"}.get(t, f" ({t})")
    return r["outcome"] if r["outcome"] == "below_linear" else f"not converged: {r['outcome']}"


def claims_table(records, key) -> list[dict]:
    rows = []
    for value in sorted({r[key] for r in records}):
        sub = [r for r in records if r[key] == value]
        rows.append({key: value, "runs": len(sub), **dict(sorted(Counter(label(r) for r in sub).items()))})
    return rows


def _run_rows(records) -> list[dict]:
    """One row per run for the report, with the command that recomputes it."""
    return [{"data": r["data"], "depth": r["depth"], "kind": r["kind"], "seed": r["seed"], "status": r["status"],
             "outcome": r.get("outcome", ""), "verdict": r.get("verdict") or "",
             "trivial": r.get("trivial", ""),
             "R − R_lin": (r["risk"] - r["linear_risk"]) if r.get("linear_risk") is not None else "",
             "λ_min": r.get("lambda_min") if r.get("lambda_min") is not None else "", "command": r["command"]}
            for r in records]


def nontrivial_evidence(records) -> list[dict]:
    """The runs that say something about depth (docs/theory.md §7–§8): certified ``better_than_linear``
    or ``strict_saddle`` points with ``trivial = none``, and descent runs that got below linear
    (``below_linear``: every limit of the run is better than linear)."""
    return [r for r in records if r["outcome"] == "below_linear"
            or (r.get("verdict") in EVIDENCE and r.get("trivial") == "none")]


def worse_no_negative(records) -> list[dict]:
    """Points worse than linear without a negative eigenvalue: each fails case (ii) as stated."""
    return [r for r in records if r.get("verdict") in WORSE_NO_NEGATIVE]


def _status(records, groups, key) -> tuple[str, str]:
    """``(status, reason)`` of a dichotomy claim over ``groups`` of ``key`` (depths or data sets).

    ``not_reproduced``: a point worse than linear without a negative eigenvalue (:func:`worse_no_negative`).
    ``inconclusive``: an inconclusive certificate, or a group without non-trivial evidence
    (:func:`nontrivial_evidence`; trivial points are counted apart and never suffice). Else ``reproduced``.
    """
    worse = worse_no_negative(records)
    if worse:
        kinds = Counter(verdict_label(r) for r in worse)
        return "not_reproduced", (f"{len(worse)} point(s) worse than linear without a negative eigenvalue ("
                                  + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
                                  + "): case (ii) fails as stated; each listed in details with its replay command")
    bad = [r for r in records if r.get("verdict") == "inconclusive"]
    evidence = nontrivial_evidence(records)
    missing = [g for g in groups if not any(r[key] == g for r in evidence)]
    if bad or missing:
        why = []
        if bad:
            why.append(f"{len(bad)} inconclusive certificate(s)")
        if missing:
            why.append(f"no non-trivial certified point and no below-linear descent run for {key} = {missing}")
        return "inconclusive", "; ".join(why)
    points = [r for r in evidence if r.get("verdict")]
    below = len(evidence) - len(points)
    trivial = sum(1 for r in records if r.get("verdict") in EVIDENCE and r.get("trivial") != "none")
    left = sum(1 for r in records if not r.get("verdict") and r["outcome"] != "below_linear")
    return "reproduced", (f"no point worse than linear without a negative eigenvalue; for every {key}, non-trivial "
                          f"evidence: {len(points)} certified critical points better than linear or strict saddles "
                          f"(trivial = none) and {below} descent runs below linear; {trivial} trivial points "
                          f"(linear-equivalent or constant) counted apart; {left} "
                          f"run{'s' if left != 1 else ''} neither converged nor got below linear")


def per_grid(plans) -> list[dict]:
    return [{"data": p.data, "kind": p.kind, "width": p.width, "seeds": len(p.seeds), **p.grid} for p in plans]


def run_c3(quick: bool, progress=lambda *_: None, store="census.db") -> Claim:
    depths = (1, 2, 4) if quick else (1, 2, 4, 8, 16)
    # Open regime (n < m) only. Descent (minimum) gives below-linear evidence at every depth; saddle
    # search (any) from V × 1 starts reaches non-trivial strict saddles on iris (docs/theory.md §7)
    # and on grunfeld and engel (small d, so small n at every depth). Saddle search on diabetes
    # (n = 32-179) ended unresolved or diverging in 14 of 16 runs for 4 minutes of compute: left out.
    if quick:
        plans = [Plan("diabetes", "minimum", range(2), 1), Plan("iris", "any", range(4), 2),
                 Plan("grunfeld", "any", range(2), 1)]
    else:
        open_regime = {"regime": "below_samples", "max_params": 200}
        plans = [Plan("diabetes", "minimum", range(4), 1), Plan("iris", "any", range(4), 2, open_regime),
                 Plan("grunfeld", "minimum", range(2), 1), Plan("grunfeld", "any", range(4), 1, open_regime),
                 Plan("engel", "any", range(4), 2, open_regime)]
    datasets = sorted({p.data for p in plans})
    claim = Claim(
        id="C3", title="Dichotomy on deep chain ResNets",
        statement=("Every critical point of a deep chain ResNet has R ≤ R_lin or a strictly negative Hessian "
                   "eigenvalue (tested on the critical points reached, under no assumed hypotheses)."),
        paper_value=None,
        commands=["resland reproduce --only C3" + (" --quick" if quick else "")],
    )
    recs = census_runs("C3", plans, depths, store, progress, max_iter=MAX_ITER_QUICK if quick else MAX_ITER)
    claim.records = recs
    claim.status, claim.reason = _status(recs, depths, "depth")
    claim.measured = {"per_depth": claims_table(recs, "depth"), "runs": _run_rows(recs)}
    claim.details = {"datasets": datasets, "depths": list(depths), "activation": "tanh", "grids": per_grid(plans),
                     "init": f"torch.manual_seed(seed); default init; every V_l × {V_SCALE}",
                     "evidence": "certified non-trivial points and below_linear descent runs (docs/theory.md §7)",
                     "worse_no_negative": worse_no_negative(recs),
                     "median_seconds_per_run": float(np.median([r["seconds"] for r in recs]))}
    claim.figures["gap_vs_lambda_min"] = _scatter(recs)
    return claim


def run_c5(quick: bool, progress=lambda *_: None, store="census.db") -> Claim:
    # wine and breast-cancer are linearly separable (R_lin = 0, not attained): no finite minimum to test.
    datasets = ("diabetes", "iris")
    if quick:
        plans = [Plan("diabetes", "minimum", range(2), 2), Plan("iris", "any", range(4), 2)]
    else:
        plans = [p for name in datasets for p in (Plan(name, "any", range(10), 2),
                                                  Plan(name, "minimum", range(10, 20), 2))]
    claim = Claim(
        id="C5", title="Shamir 2018: one residual block",
        statement="With one residual block, no critical point worse than the best linear predictor lacks negative curvature.",
        paper_value=None,
        commands=["resland reproduce --only C5" + (" --quick" if quick else "")],
    )
    recs = census_runs("C5", plans, (1,), store, progress, max_iter=MAX_ITER_QUICK if quick else MAX_ITER)
    claim.records = recs
    claim.status, claim.reason = _status(recs, datasets, "data")
    claim.measured = {"per_dataset": claims_table(recs, "data"), "runs": _run_rows(recs)}
    claim.details = {"datasets": list(datasets), "grids": per_grid(plans),
                     "worse_no_negative": worse_no_negative(recs)}
    return claim


def _scatter(records) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    pts = [r for r in records if r.get("lambda_min") is not None and r.get("linear_risk") is not None]
    depths = sorted({r["depth"] for r in pts})
    cmap = plt.get_cmap("viridis")
    for i, d in enumerate(depths):
        sub = [r for r in pts if r["depth"] == d]
        colour = cmap(i / max(1, len(depths) - 1))
        for trivial in (False, True):
            part = [r for r in sub if (r.get("trivial") != "none") == trivial]
            ax.scatter([r["lambda_min"] for r in part], [r["risk"] - r["linear_risk"] for r in part], s=22,
                       facecolors="none" if trivial else colour, edgecolors=colour,
                       label=f"L = {d}" + (", trivial" if trivial else ""))
    gaps = [abs(r["risk"] - r["linear_risk"]) for r in pts] or [0.0]
    lams = [abs(r["lambda_min"]) for r in pts] or [0.0]
    ylim, xlim = max(1e-8, 3 * max(gaps)), max(1e-6, 3 * max(lams))
    ax.axhspan(0, ylim, xmin=0.5, xmax=1.0, color="tab:red", alpha=0.08, lw=0)  # worse than linear, no negative curvature
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=1e-6)
    ax.set_yscale("symlog", linthresh=1e-9)
    ax.set_xlim(-xlim, xlim)
    ax.set_ylim(-ylim, ylim)
    ax.set_xlabel("λ_min of the Hessian")
    ax.set_ylabel("R − R_lin")
    ax.set_title("Certified critical points (upper right: worse than linear, no negative curvature)")
    if pts:
        ax.legend(fontsize=8)
    return png(fig)
