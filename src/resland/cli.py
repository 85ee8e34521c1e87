"""Command-line interface: ``resland certify …``.

Bad input prints one line to stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import json
import sys
import time

import click

from ._checks import ValidationError, check_choice, check_positive_int
from .certificate import cert_outcome, certify
from .checkpoint import load_parameters
from .critical import METHODS, find_critical_point
from .outcomes import log_progress
from .higher_order import null_dimension
from .tolerances import DENSE_MAX_PARAMS, FINDER_DENSE_MAX
from .tolerances import GRAD_TOL, MAX_ITER
from .kinds import KINDS
from .resources import dense_limit, parse_memory
from .data import BUILTIN, load_dataset, outputs
from .losses import LOSSES
from .families import FAMILIES
from .models import ACTIVATIONS, init_model


@click.group(context_settings={"max_content_width": 110, "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="resland")
def cli():
    """resland: critical points of deep ResNets vs the best linear predictor."""


@cli.command("certify", short_help="Find a critical point from a seeded start and certify it.")
@click.option("--data", "data", required=True,
              help=f"A built-in data set (docs/data.md: {', '.join(BUILTIN)}; standardised) or a .csv/.npz path (used "
                   "as given, not standardised).")
@click.option("--target", default=None, help="Target column of a CSV file (default: the last).")
@click.option("--rho", type=float, default=None, help="rho of example1 (required there).")
@click.option("--model", "model_name", default="resnet", show_default=True, help=", ".join(FAMILIES) + ".")
@click.option("--depth", type=int, default=1, show_default=True, help="Blocks L (resnet) or hidden layers (fc).")
@click.option("--width", type=int, default=4, show_default=True, help="Hidden width k.")
@click.option("--activation", default=None, help=f"{', '.join(ACTIVATIONS)} (default: the family's; resnet softplus, fc relu).")
@click.option("--loss", "loss_name", default=None, help=f"{', '.join(LOSSES)} (default: the data set's).")
@click.option("--seed", type=int, default=0, show_default=True, help="torch.manual_seed for the initialisation.")
@click.option("--kind", default="minimum", show_default=True, help="minimum or any (Newton-type, reaches saddles).")
@click.option("--method", default="steps", show_default=True,
              help="steps (the stepping finder) or continuation (a path of exact critical points, docs/theory.md §12: "
                   "Tikhonov for minimum, Newton homotopy for any; smooth activations).")
@click.option("--tol", type=float, default=GRAD_TOL, show_default=True,
              help="Relative gradient tolerance of 'critical' (finder and certificate): ‖∇R‖ ≤ tol·max(1, |R|).")
@click.option("--max-iter", type=int, default=MAX_ITER, show_default=True, help="Finder iterations.")
@click.option("--v-scale", type=float, default=1.0, show_default=True,
              help="Multiply every V_l of the initial ResNet by this (near-identity starts).")
@click.option("--delta0", type=float, default=None,
              help="A near-identity start of budget δ₀: a ResNet without branch biases, every V_l rescaled so that "
                   "Σ‖V_l‖‖U_l‖ = δ₀ (docs/theory.md §4.3).")
@click.option("--checkpoint", default=None,
              help="Certify these parameters (a .safetensors file or a torch state_dict, loaded with "
                   "weights_only=True) as they are, in the architecture given by --model/--depth/--width/--activation.")
@click.option("--refine", is_flag=True, help="With --checkpoint: search for a critical point from the checkpoint first.")
@click.option("--max-params", type=int, default=DENSE_MAX_PARAMS, show_default=True,
              help="Largest parameter count for a dense Hessian; above it Lanczos / Krylov methods on HVPs.")
@click.option("--max-memory", default="2GiB", show_default=True,
              help="Memory a dense Hessian and its eigh may use (e.g. 512MiB, 4GB); beyond it, the iterative solver.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the finder result and certificate as JSON (wall-clock figures only in 'timing').")
def certify_cmd(data, target, rho, model_name, depth, width, activation, loss_name, seed, kind, method, tol, max_iter,
                v_scale, delta0, checkpoint, refine, max_params, max_memory, as_json):
    """Build a model, find a critical point from a seeded start (or load one), and certify it."""
    check_choice("model", model_name, FAMILIES)
    if activation is not None:
        check_choice("activation", activation, ACTIVATIONS)
    if loss_name is not None:
        check_choice("loss", loss_name.replace("-", "_"), LOSSES)
    check_choice("kind", kind, KINDS)
    check_choice("method", method, METHODS)
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    max_iter = check_positive_int("max_iter", max_iter)
    ds = load_dataset(data, rho=rho, target=target)
    loss = loss_name or ds.loss
    if refine and checkpoint is None:
        raise ValidationError("The '--refine' option needs --checkpoint.")
    model = init_model(model_name, ds.X.shape[1], width=width, depth=depth, activation=activation, seed=seed,
                       v_scale=v_scale, delta0=delta0, d_out=outputs(ds.y, loss))
    n = sum(p.numel() for p in model.parameters())
    dense_max = dense_limit(n, check_positive_int("max_params", max_params), parse_memory(max_memory))
    cp = None
    timing = {}
    if checkpoint is not None:
        load_parameters(model, checkpoint)
    from rich.console import Console

    from .critical import reporting

    console = Console(stderr=True)
    plain = None if console.is_terminal else log_progress(10.0)   # a log file: a plain line every 10 s
    with console.status(f"finding a critical point ({n} parameters, {ds.X.shape[0]} samples)") as status:
        def progress(stage, it, total, gn):
            status.update(f"{stage}: iteration {it}/{total}, smallest ‖∇R‖ = {gn:.2e}" if stage == "search"
                          else f"{stage} (active-set Newton, at most {total} iterations) from ‖∇R‖ = {gn:.2e}")
            if plain is not None:
                plain(stage, it, total, gn)

        if checkpoint is None or refine:
            with reporting(progress):
                cp = find_critical_point(model, ds.X, ds.y, loss, kind=kind, tol=tol, max_iter=max_iter,
                                         dense_max_params=min(dense_max, FINDER_DENSE_MAX), method=method)
            model = cp.model
            timing["finder_seconds"] = cp.seconds
        status.update("certifying: gradient, R_lin interval, Hessian spectrum, §8 tests where needed")
        start = time.perf_counter()
        cert = certify(model, ds.X, ds.y, loss, tol, dense_max_params=dense_max, seed=seed, keep_parameters=as_json)
    timing["certify_seconds"] = time.perf_counter() - start
    if as_json:
        finder = None if cp is None else cp.to_dict(timing=False)
        # Every wall-clock figure lives in "timing": the rest is byte-identical for the same command.
        outcome = cert_outcome(cp, cert)
        click.echo(json.dumps({"data": ds.name, "data_spec": {"name": data, "rho": rho, "target": target},
                               "outcome": outcome, "finder": finder, "certificate": cert.to_dict(),
                               "timing": timing}, indent=2, default=_json_default))
        return
    _print_table(ds, cp, cert)


@cli.command("reproduce", short_help="Re-derive every claim of the paper (report.html, claims.json).")
@click.option("--quick", is_flag=True, help="Fewer seeds and grid points (under 3 minutes on 2 cores).")
@click.option("--out", "out", default="results/reproduce", show_default=True, help="Output folder.")
@click.option("--only", "only", multiple=True, help="Run only these claims of the paper (C1..C5); repeatable.")
@click.option("--paper", "paper", multiple=True,
              help="Reproduce this paper's claims: yun-sra-jadbabaie-2019 (the default: C1-C5), safran-shamir-2018, "
                   "kawaguchi-2016, hardt-ma-2017, shamir-2018, yun-sra-jadbabaie-2019-iclr, or all; repeatable.")
def reproduce_cmd(quick, out, only, paper):
    """Re-derive every claim of the paper (or of the neighbouring papers) and write report.html, claims.json, plots
    and records."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.table import Table

    from .paper.reproduce import CLAIMS, claim_count, papers_for, reproduce

    for cid in only:
        check_choice("only", cid, CLAIMS)
    papers = papers_for(tuple(paper) or None)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("claims"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.description}"), console=console,
                  transient=True) as bar:
        task = bar.add_task("starting", total=claim_count(papers, tuple(only)))
        claims = reproduce(out, quick=quick, only=tuple(only), paper=papers,
                           progress=lambda msg: bar.update(task, description=msg), claim_done=lambda _: bar.advance(task))
    table = Table(title=f"Claims ({'quick' if quick else 'full'} run) · report: {out}/report.html")
    for col in (("paper",) if len(papers) > 1 else ()) + ("id", "claim", "status", "why"):
        table.add_column(col)
    colour = {"reproduced": "green", "not_reproduced": "red", "inconclusive": "yellow"}
    for c in claims:
        table.add_row(*((c.paper,) if len(papers) > 1 else ()), c.id, c.title, f"[{colour[c.status]}]{c.status}[/]",
                      c.reason)
    Console().print(table)


@cli.command("census", short_help="Run a census from a TOML sweep spec (resumable).")
@click.argument("spec_path", metavar="SPEC")
@click.option("--store", "store_path", default="runs.db", show_default=True, help="SQLite run store (resumed if it exists).")
@click.option("--executor", default="local", show_default=True, help="local (process pool) or dask.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: the CPU count).")
@click.option("--scheduler", default=None,
              help="Address of a running Dask scheduler (tcp://host:8786); default: a LocalCluster on 127.0.0.1.")
@click.option("--retries", type=int, default=2, show_default=True, help="Resubmissions of a task whose worker died.")
def census_cmd(spec_path, store_path, executor, workers, scheduler, retries):
    """Run a landscape census from a TOML sweep spec; finished runs in the store are skipped."""
    from rich.console import Console

    from .census import RunStore, load_spec, run_census
    from .census.executors import check_options

    spec = load_spec(spec_path)
    check_options(executor, workers, scheduler, retries)  # before the store file is created
    for name in sorted({(c["data"], c.get("rho")) for c in spec.configs}, key=str):  # fail before anything runs
        load_dataset(name[0], rho=name[1])
    console = Console(stderr=True)
    with RunStore(store_path) as store:
        verdicts: dict[str, int] = {}
        with _CensusProgress(console, verdicts) as bar:
            summary = run_census(spec, store, executor=executor, workers=workers, scheduler=scheduler,
                                 retries=retries, on_rows=bar.advance, on_start=bar.start)
        console.print(f"census {spec.name!r}: {summary['runs']} runs done now, {summary['skipped']} already in "
                      f"{store_path}, {summary['failures']} worker failures")
        _print_tally(console, store, spec.spec_hash)
        _print_replays(console, store, store_path)


def _print_tally(console, store, spec_hash: str) -> None:
    """Outcomes and certificate verdicts of every stored run of the spec (a resumed census included).

    Outcomes (critical, kink, below_linear, diverging, …) and verdicts are tallied apart: a run that
    ended below_linear or diverging is an outcome, never a verdict.
    """
    from collections import Counter

    rows = list(store.rows(spec_hash))
    outcomes = Counter(r["outcome"] or "failed" for r in rows)
    crit = [r for r in rows if r["outcome"] == "critical" and r["verdict"]]
    verdicts = Counter(r["verdict"] for r in crit)
    trivial = Counter((r["verdict"], r["trivial"] or "none") for r in crit)
    points = {(r["verdict"], r["point"]) for r in crit if r.get("point") and (r["trivial"] or "none") == "none"}

    def cell(v: str, n: int) -> str:
        parts = [f"{k} {trivial[(v, k)]}" for k in ("linear", "constant") if trivial[(v, k)]]
        evidence = trivial[(v, "none")]
        distinct = sum(1 for p in points if p[0] == v)
        return (f"{v} {n} ({evidence} non-trivial" + (f", {distinct} distinct" if distinct else "")
                + (f"; trivial: {', '.join(parts)}" if parts else "") + ")")

    # soft_wrap: a count is never split across lines in a log without a terminal
    console.print(f"  {len(rows)} stored runs of the spec · outcomes: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())), soft_wrap=True)
    console.print("  verdicts of the critical points: "
                  + ("; ".join(cell(k, v) for k, v in sorted(verdicts.items())) or "none (no run ended critical)"),
                  soft_wrap=True)


def _print_replays(console, store, store_path, limit: int = 20) -> None:
    """The replay command of every stored candidate (the first ``limit``)."""
    from .census.report import candidates
    from .replay import replay_command

    cands = candidates(store)
    for r in cands[:limit]:
        console.print(f"  {r['verdict'] or r['outcome']}: {replay_command(store_path, r['config_id'], r['seed'])}")
    if len(cands) > limit:
        console.print(f"  … and {len(cands) - limit} more candidates (resland export lists them all)")


class _CensusProgress:
    """A rich progress bar: runs done / total, rate, ETA and the verdict counts so far."""

    def __init__(self, console, verdicts: dict):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.verdicts = verdicts
        self.bar = Progress(TextColumn("census"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
                            console=console, transient=False)
        self.task = None
        self.t0 = 0.0
        self.done = 0

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def start(self, total: int, skipped: int) -> None:
        self.t0 = time.perf_counter()
        self.task = self.bar.add_task("census", total=total, rate="", counts=f"({skipped} resumed)" if skipped else "")

    def advance(self, rows: list[dict]) -> None:
        for r in rows:   # trivial points are counted apart: "better_than_linear (trivial: linear)"
            key = r["verdict"] or r["status"]
            if r.get("trivial") not in (None, "none"):
                key += f" (trivial: {r['trivial']})"
            self.verdicts[key] = self.verdicts.get(key, 0) + 1
        self.done += len(rows)
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        counts = " ".join(f"{k}:{v}" for k, v in sorted(self.verdicts.items()))
        self.bar.update(self.task, advance=len(rows), rate=f"{rate:.2f} runs/s", counts=counts)


@cli.command("replay", short_help="Re-certify a stored run, or rerun an export row bit for bit.")
@click.argument("cert_file", required=False)
@click.option("--store", "store_path", default=None, help="SQLite run store (with --run).")
@click.option("--parquet", "parquet_path", default=None, help="Compact export, e.g. atlas/runs.parquet (with --run).")
@click.option("--run", "run", default=None, help="CONFIG_ID:SEED of a stored run.")
@click.option("--spec", "spec_path", default=None,
              help="Spec to rerun a run without stored parameters: an export row (default: the spec beside the "
                   "export) or a store run (required there).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored and the fresh verdict and the certificate as JSON.")
def replay_cmd(cert_file, store_path, parquet_path, run, spec_path, as_json):
    """Certify a stored run again from its parameters, or rerun an export row from its spec (bit for bit)."""
    from .replay import replay_export, replay_file, replay_run

    sources = (cert_file is not None) + (store_path is not None) + (parquet_path is not None)
    if sources != 1 or (cert_file is None) != (run is not None):
        raise ValidationError("Give a certificate file, or --store or --parquet with --run CONFIG_ID:SEED.")
    if spec_path is not None and cert_file is not None:
        raise ValidationError("The '--spec' option reruns a run without stored parameters: it needs --store or "
                              "--parquet with --run, not a certificate file.")
    rep = (replay_file(cert_file) if cert_file else replay_run(store_path, run, spec_path) if store_path
           else replay_export(parquet_path, run, spec_path))
    cert = rep.certificate
    if as_json:
        click.echo(json.dumps({"source": rep.source, "stored_verdict": rep.stored_verdict, "agrees": rep.agrees,
                               "rerun": rep.rerun, "certificate": cert.to_dict()}, indent=2, default=_json_default))
        return
    _print_table(None, None, cert, title=rep.source)
    if rep.rerun is not None:
        diff = rep.rerun["differences"]
        click.echo("rerun from the spec: " + (
            "bit-identical to the stored row (all fields but seconds)" if not diff
            else f"within {rep.rerun['max_ulps']:.0f} ulp(s) of the stored row in {', '.join(sorted(diff))}"
            if rep.rerun["within_ulps"] else f"DIFFERS in {len(diff)} field(s): {', '.join(sorted(diff))}"))
    click.echo(f"stored verdict: {rep.stored_verdict} · replayed: {cert.verdict} · "
               + ("agrees" if rep.agrees else "DIFFERS"))


@cli.command("atlas", short_help="Run the landscape atlas (resumes from atlas/runs.parquet).")
@click.option("--dir", "directory", default="atlas", show_default=True,
              help="Holds atlas.toml, the committed runs.parquet and index.html, and the working store atlas.db.")
@click.option("--executor", default="local", show_default=True, help="local (process pool) or dask.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: the CPU count).")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler (with --executor dask).")
@click.option("--retries", type=int, default=2, show_default=True, help="Resubmissions of a task whose worker died.")
@click.option("--export-only", is_flag=True,
              help="Compute nothing: write runs.parquet and index.html from the runs done so far (a partial atlas).")
@click.option("--part", default="main", show_default=True,
              help="main (atlas.toml -> runs.parquet, index.html), deep (deep.toml -> deep.parquet, deep.html: "
                   "deep nets on the large data sets) or multiclass (multiclass.toml -> multiclass.parquet, "
                   "multiclass.html: k-output nets); index.html shows every part's findings.")
def atlas_cmd(directory, executor, workers, scheduler, retries, export_only, part):
    """Run the landscape atlas, resuming from the committed runs.parquet, and write runs.parquet and index.html."""
    from rich.console import Console

    from .atlas import run_atlas

    from .atlas import PARTS

    console = Console(stderr=True)
    verdicts: dict[str, int] = {}
    check_choice("part", part, tuple(PARTS))
    runs, report = PARTS[part][1], PARTS[part][2]
    with _CensusProgress(console, verdicts) as bar:
        out = run_atlas(directory, executor=executor, workers=workers, scheduler=scheduler, retries=retries,
                        on_rows=bar.advance, on_start=bar.start, export_only=export_only, part=part)
    console.print(f"atlas {out['spec']!r}: {out['committed']} runs committed, "
                  + (f"{out['adopted']} kept from an earlier spec, " if out["adopted"] else "")
                  + f"{out['new']} computed now, "
                  f"{out['total']} of {out['of']} in {directory}/{runs} ({out['export_mb']:.2f} MB)"
                  + (f"; wrote {directory}/{runs} and {directory}/{report}" if out["written"] else "; nothing to do"))


@cli.command("export", short_help="Export a run store to CSV or Parquet.")
@click.option("--store", "store_path", required=True, help="SQLite run store.")
@click.option("--format", "fmt", default="csv", show_default=True, help="csv or parquet.")
@click.option("--out", "out", default=None, help="Output file (default: the store's name with .csv/.parquet).")
@click.option("--compact", is_flag=True, help="The flat columns only (no certificates; parameters of the points "
                                              "worse than linear without negative curvature and of unresolved "
                                              "runs): the published form of a census.")
def export_cmd(store_path, fmt, out, compact):
    """Export every run of a store to CSV or Parquet: one row per run, the config as flat columns (the same in
    both formats), certificates as JSON text; --compact: the flat columns only."""
    from pathlib import Path

    from .census import RunStore
    from .census.export import FORMATS, export, export_compact

    check_choice("format", fmt, FORMATS)
    out = out or str(Path(store_path).with_suffix("." + fmt))
    with RunStore(store_path, create=False) as store:
        n = export_compact(store, out, fmt=fmt) if compact else export(store, out, fmt)
    click.echo(f"wrote {n} runs to {out}")


@cli.command("report", short_help="Write the HTML report of a census store.")
@click.option("--store", "store_path", required=True, help="SQLite run store.")
@click.option("--out", "out", default="census.html", show_default=True, help="HTML report to write.")
def report_cmd(store_path, out):
    """Write an HTML report of a census: verdicts per config, R − R_lin vs depth, λ_min scatter, convergence."""
    from .census import RunStore
    from .census.report import write_report

    with RunStore(store_path, create=False) as store:
        n = write_report(store, out)
    click.echo(f"wrote {out} ({n} runs)")


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _print_table(ds, cp, cert, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"{title or ds.description} · {cert.model_config.get('model')} · {cert.loss} loss"
    finder = Table(title="Critical-point search", show_header=False, title_justify="left")
    if cp is not None:
        outcome = cert_outcome(cp, cert)
        # at a kink the gradient of one smooth piece is not a stationarity measure: Clarke stationarity is
        gn_label = "‖∇R‖ (one smooth piece; see the kink analysis)" if outcome == "kink" else "‖∇R‖"
        for k, v in (("outcome", outcome), ("status", cp.status), (gn_label, cp.grad_norm),
                     ("grad tolerance", cp.grad_tol), ("kink margin", cp.kink_margin),
                     ("iterations", cp.iterations),
                     ("seconds", cp.seconds), ("message", cp.message)):
            finder.add_row(k, _fmt(v))
    table = Table(title=f"Certificate: {title}", show_header=False, title_justify="left")
    trivial = f" (trivial: {cert.trivial})" if cert.trivial not in (None, "none") else ""
    rows = [("verdict", f"[bold]{cert.verdict}[/bold]{trivial}"), ("reason", cert.reason),
            ("trivial", cert.trivial), ("hidden units (dead, saturated)", None if cert.units is None else
                                         f"{cert.units['units']} ({cert.units['dead']}, {cert.units['saturated']})"),
            ("R", cert.risk),
            ("R_lin", cert.linear_risk),
            ("R_lin interval", f"[{cert.linear_risk_lower:.12g}, {cert.linear_risk_upper:.12g}]"),
            ("R − R_lin", cert.risk - cert.linear_risk), ("‖∇R‖", cert.grad_norm),
            ("λ_min", cert.lambda_min), ("λ_max", cert.lambda_max),
            ("index", cert.index if cert.index is not None else None if cert.lambda_min is None else
             f"not counted ({cert.eig_method}: λ_min is an upper bound; "
             + ("none found below −lambda_tol)" if cert.lambda_min >= -cert.tolerances["lambda_tol"] else
                "at least 1)")),
            ("escape decrease", cert.escape_decrease)]
    if cert.higher_order:
        ho = cert.higher_order
        rows.append(("symmetries projected out", ho["symmetries"]["count"]))
        if null_dimension(ho) is not None:
            rows.append(("null dimension beyond them", ho["null_dim"]))
        else:
            rows.append(("null directions found (LOBPCG, matrix-free)", ho["null_dim"]))
    if cert.gap_bound:
        rows.append(("gap bound G (Prop. A, rigorous)", cert.gap_bound["rigorous"]))
    rows.append(("parameters", cert.n_params))
    for k, v in rows:
        table.add_row(k, _fmt(v))
    if cp is not None:
        console.print(finder)
    console.print(table)
    console.print("tolerances: " + ", ".join(f"{k}={v:.2e}" for k, v in cert.tolerances.items()))
    console.print(FIELD_NOTES)


#: What the printed fields mean (docs/theory.md §3–§8), printed under every certificate.
FIELD_NOTES = ("fields: trivial = linear (the best linear predictions, R = R_lin) or constant (constant predictions): "
               "not evidence; index = Hessian eigenvalues below −lambda_tol (0 at a minimum; counted from the dense spectrum only); escape decrease = the "
               "risk drop of the verified step along negative curvature (strict saddles); gap bound G = Proposition A's "
               "bound on R − R_lin (docs/theory.md §4); R_lin interval = the certified \\[lower, upper] of the best "
               "linear risk; mean risk, squared loss without 1/2.")


def _json_default(v):
    return v.detach().cpu().tolist() if hasattr(v, "detach") else str(v)


from .cli_spectra import register as _register_spectra   # noqa: E402  (the spectrum and landscape commands)

_register_spectra(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line to stderr and exit 2 on bad input."""
    try:
        cli.main(args=argv, prog_name="resland", standalone_mode=False)
    except ValidationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:  # usage errors: unknown option, bad type, …
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
