"""The landscape atlas: a published census of critical points on real data (docs/atlas.md).

``make atlas`` (``resland atlas``) runs the spec ``atlas/atlas.toml`` into ``atlas/atlas.db``
(git-ignored, resumable), skipping every run already in the committed export
``atlas/runs.parquet`` and keeping the runs an edited spec shares with the earlier one
(:meth:`resland.census.RunStore.adopt`), then rewrites ``atlas/runs.parquet`` (the committed
runs and the new ones, compact form: :data:`resland.census.export.COMPACT_FIELDS`) and
``atlas/index.html``.
On a clone whose ``runs.parquet`` holds every run of the spec, a rerun computes nothing.

The report (:mod:`resland.atlas.report`) opens with a findings summary and answers six questions,
one table or figure each (:mod:`resland.atlas.questions`: functions ``q1_…`` to ``q6_…`` take the
compact rows and return plain data):

1. per data set × depth × model, the share of descent runs (kind ``minimum``) that get below
   linear: ``below_linear``, or a critical point or kink with ``R < R_lin,lower − risk_tol``;
2. the dichotomy counted (docs/theory.md §8): per model and depth, (i) ``better_than_linear``,
   (ii) ``strict_saddle``, ``degenerate_saddle``, ``local_minimum_worse`` and ``degenerate``, split by
   ``trivial``; every ResNet point worse than linear without a negative eigenvalue is listed
   with its replay command;
3. FC against ResNet: verified local minima worse than linear (``local_minimum_worse``), and
   the non-trivial ones (Example 1's phenomenon at scale);
4. near-identity: ``R − R_lin`` against ``δ`` with ``G`` and the a-priori bound (C4 at scale);
5. linear probes along depth at certified ResNet minima: how often ``R_lin(h_l)`` is not
   monotone (C2 at scale): some ``l`` with ``R_lin,lower(h_{l+1}) > R_lin,upper(h_l) + risk_tol``;
6. the unresolved runs, listed for a human to look at.

Conventions: mean risk, no 1/2; ``R_lin`` is the certified interval ``[lower, upper]``
(docs/theory.md §5); ``risk_tol`` is :func:`resland.tolerances.risk_tol`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .._checks import ValidationError
from ..census import RunStore, load_spec, run_census
from ..census.executors import check_options
from ..census.export import COMPACT_FIELDS, compact_row
from .questions import (cost, headline, not_counted, probes_monotone, q1_below_linear, q2_dichotomy, q2_theorem2,
                        q3_examples, q3_fc_vs_resnet, q4_near_identity, q5_probes, q6_unresolved, q7_deep,
                        core_of, rademacher_by_depth, stratum)
from .report import (FIGURE_FILES, atlas_figures, display_path, findings, markdown_findings, markdown_summary,
                     write_atlas_figures, write_atlas_report)

__all__ = ["ATLAS_DIR", "FIGURE_FILES", "MAX_EXPORT_MB", "PARTS", "atlas_figures", "cost", "display_path", "findings",
           "headline", "markdown_findings", "markdown_summary", "not_counted", "probes_monotone", "q1_below_linear", "q2_dichotomy",
           "q2_theorem2", "q3_examples", "q3_fc_vs_resnet", "q4_near_identity", "q5_probes", "q6_unresolved",
           "q7_deep", "core_of", "rademacher_by_depth", "read_runs", "run_atlas", "stratum", "write_atlas_figures", "write_atlas_report",
           "write_runs"]

#: Where ``make atlas`` reads and writes.
ATLAS_DIR = Path("atlas")
SPEC_FILE = "atlas.toml"
RUNS_FILE = "runs.parquet"
REPORT_FILE = "index.html"
STORE_FILE = "atlas.db"
#: The atlas's parts: spec, export, report, working store and figure prefix of each. ``main`` is the
#: atlas of the small real sets; ``deep`` the deep nets on the large sets (issue 26); ``multiclass`` the
#: nets with k outputs on multi-class and multi-target sets (issue 27). The main report shows the
#: findings of every other part too.
PARTS = {"main": (SPEC_FILE, RUNS_FILE, REPORT_FILE, STORE_FILE, ""),
         "deep": ("deep.toml", "deep.parquet", "deep.html", "deep.db", "deep_"),
         "multiclass": ("multiclass.toml", "multiclass.parquet", "multiclass.html", "multiclass.db", "multiclass_")}
#: The other parts' titles in the main report.
PART_TITLES = {"deep": "The deep atlas", "multiclass": "The multi-class atlas"}
#: The committed export's size limit (issue 14): larger means the spec is too big to publish.
MAX_EXPORT_MB = 25


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
              on_start=None, on_rows=None, rademacher_draws: int = 6, export_only: bool = False,
              part: str = "main") -> dict:
    """Run the atlas spec, resuming from the committed export, and write the export and report.

    Args:
        directory: holds ``atlas.toml`` (unless ``spec_path``), ``runs.parquet``, ``index.html``
            and the working store ``atlas.db``.
        executor, workers, scheduler, retries: as :func:`resland.census.run_census`.
        rademacher_draws: as :func:`write_atlas_report`.
        export_only: compute nothing; write the export and report from the committed runs and
            those already in the working store (a partial atlas, to commit and resume later, or
            a report rendered by a newer resland).
        part: ``main``, ``deep`` or ``multiclass`` (:data:`PARTS`): which spec, export, report and store.
            Another part's run rewrites the main report too, from the committed main export (it shows
            every part's findings).

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
    if part not in PARTS:
        raise ValidationError(f"The 'part' parameter must be one of {', '.join(PARTS)}. Got {part!r}.")
    spec_file, runs_file, report_file, store_file, prefix = PARTS[part]
    spec = load_spec(spec_path or directory / spec_file)
    check_options(executor, workers, scheduler, retries)   # before the store file is created
    runs_path, report_path = directory / runs_file, directory / report_file
    committed = [r for r in read_runs(runs_path) if r["spec_hash"] == spec.spec_hash]
    keys = {(r["config_id"], int(r["seed"])) for r in committed}
    with RunStore(directory / store_file) as store:
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
    if part == "main":
        _write_main_report(directory, spec.name, rows, rademacher_draws, figures)
    else:
        write_atlas_report(rows, report_path, spec_name=spec.name, runs_path=runs_path, rademacher_draws=0,
                           figures=figures)
        if (directory / SPEC_FILE).is_file():          # the main report shows this part's findings
            main = load_spec(directory / SPEC_FILE)
            _write_main_report(directory, main.name, [r for r in read_runs(directory / RUNS_FILE)
                                                      if r["spec_hash"] == main.spec_hash], rademacher_draws)
    write_atlas_figures(rows, directory, figures, prefix=prefix)
    out["written"] = True
    return out


def _write_main_report(directory: Path, spec_name: str, rows: list[dict], rademacher_draws: int,
                       figures: dict | None = None) -> None:
    """index.html from the main part's rows, with the findings of the other parts' committed exports."""
    also = [(title, read_runs(directory / PARTS[p][1]), PARTS[p][2]) for p, title in PART_TITLES.items()
            if (directory / PARTS[p][1]).is_file()]
    write_atlas_report(rows, directory / REPORT_FILE, spec_name=spec_name, runs_path=directory / RUNS_FILE,
                       rademacher_draws=rademacher_draws, figures=figures, also=also)


