"""Scale: products, certificates and time to critical of the matrix-free layer (resland.krylov).

Part 1, products against n and m: a tanh ResNet on the first m rows of ``flights`` (d = 7), sized to
n ≈ 1e3 (depth 8, width 8), 1e4 (16, 40) or 1e5 (32, 208); m = 1e4, 5e4, 3e5. Each cell runs in its own
process (one torch thread) and reports the time of R and ∇R, of one Hessian-vector and one GGN-vector
product, of the certificate's λ_min (thick-restart Lanczos on chunked products, at most ``--lanczos``
products) where one product takes under ``--product-cap`` seconds, and the peak RSS.

Part 2, time to ‖∇R‖ ≤ 1e-6 and ≤ 1e-10·max(1, R) on the same starts: resland's matrix-free finder
(``solve``, kind minimum), ``torch.optim.LBFGS`` (strong Wolfe, history 50) and SciPy's ``trust-krylov``
fed resland's exact Hessian-vector products. Problem: a depth-4, width-8 tanh ResNet (n = 618) on the first
10,000 rows of ``diamonds`` (the issue's example), seeds 0..S-1, each method capped at ``--budget`` s.
Ratios are per start, in the same process; the median is reported.

Part 2b (``--cores``), the same comparison on the problems the deep atlas solves (docs/theory.md §11): the
ResNet cores (1×1, 1×2, 2×1 blocks × units, tanh) on all rows of diamonds, movies, cps1988 and default, where
resland runs its dense finder (``find_critical_point``, kind minimum) and LBFGS and trust-krylov get the exact
full-batch risk, gradient and Hessian-vector products of ``ChunkedRisk``.

Part 3 (``--target MAX_ITER``): the issue's target run, a depth-16, width-32 tanh ResNet (n = 9,914) on all
53,920 rows of diamonds: find_critical_point then certify, with outcome, times and peak RSS.

Part 4 (``--null``): the certificate's matrix-free higher-order test (docs/theory.md §8) at scale. A depth-3
tanh FC net at θ = 0 with output bias mean(y) is a critical point, constant, worse than linear, with no
negative eigenvalue and a descent of order 4 (a deep linear chain at 0). Widths 20, 68, 220 give n ≈ 1e3, 1e4,
1e5; m = 1e4, 5e4 or 3e5 rows of ``flights``. Each cell (own process, one torch thread) runs ``certify`` and,
separately and first (where n·m ≤ 1e10), :func:`resland.higher_order.analyse_null_space_krylov` (lambda_tol
with |λ|_max = 2, the output bias's curvature), then ``certify`` (dense §8 up to DENSE_MAX_PARAMS, matrix-free above) and, where n ≤
DENSE_MAX_PARAMS, the dense :func:`~resland.higher_order.analyse_null_space` in the same process (a ratio).
It reports the verdict, the times, the products, the risks evaluated along the paths and the peak RSS after
the matrix-free analysis and at the end.

Usage: python benchmarks/bench_scale.py [--quick] [--out benchmarks/results/bench_scale.json]
GPU rows: the same script with --device cuda (one prepared command; docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = {1_000: (8, 8), 10_000: (16, 40), 100_000: (32, 208)}


def _cell(n_target: int, m: int, lanczos: int, product_cap: float, device: str) -> dict:
    import torch

    import resland
    from resland.krylov import ChunkedRisk

    torch.set_num_threads(1)
    ds = resland.load_dataset("flights")
    X, y = ds.X[:m], ds.y[:m]
    depth, width = SIZES[n_target]
    model = resland.models.init_model("resnet", X.shape[1], width=width, depth=depth, activation="tanh", seed=0)
    model = model.to(device)
    out = {"n_target": n_target, "m": m, "depth": depth, "width": width}
    t = time.perf_counter()
    fr = ChunkedRisk(model, X, y)
    out.update(n=fr.n, chunk=fr.chunk, chunks=len(fr.slices), setup_s=time.perf_counter() - t)
    th = fr.theta0
    v = torch.randn(fr.n, dtype=th.dtype, device=th.device)

    def timed(f):
        t0 = time.perf_counter()
        f()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    out["risk_grad_first_s"] = timed(lambda: fr.risk_and_grad(th))   # pays torch.func's first-call setup
    out["risk_grad_s"] = timed(lambda: fr.risk_and_grad(th))
    out["hvp_s"] = timed(lambda: fr.hvp(th, v))          # the first product also builds the kept graphs
    out["hvp_again_s"] = timed(lambda: fr.hvp(th, v))
    out["ggn_s"] = timed(lambda: fr.ggn(th, v))
    if out["hvp_again_s"] <= product_cap:
        t0 = time.perf_counter()
        eig = resland.HessianOperator(fr, th).extremes(method="lanczos", tol=1e-6, max_steps=lanczos, seed=0)
        out.update(lanczos_s=time.perf_counter() - t0, lanczos_products=eig.matvecs, lambda_min=eig.lambda_min,
                   lambda_max=eig.lambda_max, lanczos_converged=eig.converged)
        t0 = time.perf_counter()
        fit = resland.best_linear(X, y)
        out.update(r_lin_s=time.perf_counter() - t0, r_lin_width=fit.risk_upper - fit.risk_lower)
    else:
        out["lanczos_s"] = None
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


NULL_WIDTHS = {1_000: 20, 10_000: 68, 100_000: 220}
NULL_CELLS = [(1_000, 10_000), (10_000, 50_000), (100_000, 10_000), (100_000, 300_000)]
NULL_ALONE_MAX = 10**10    # n·m above which the cell times certify alone (hours on 2 cores otherwise)


def _null_cell(n_target: int, m: int, device: str) -> dict:
    """Part 4: one cell of the matrix-free higher-order test (module docstring)."""
    import torch

    import resland
    from resland.higher_order import analyse_null_space_krylov
    from resland.krylov import risk_of

    torch.set_num_threads(1)
    ds = resland.load_dataset("flights")
    X, y = ds.X[:m], ds.y[:m]
    model = resland.FCNet(X.shape[1], NULL_WIDTHS[n_target], 3, "tanh")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.net[-1].bias.fill_(float(y.mean()))
    model = model.to(device)
    fr = risk_of(model, X, y)
    R = float(fr.risk(fr.theta0))
    tols = {"lambda_tol": resland.tolerances.lambda_tol(fr.n, 2.0, resland.tolerances.grad_tol(R)),
            "decrease_tol": resland.tolerances.decrease_tol(m, R)}
    null_s = rss_null = None
    if fr.n * m <= NULL_ALONE_MAX:                         # above, only certify (it runs the same analysis)
        t0 = time.perf_counter()
        null = analyse_null_space_krylov(fr, fr.theta0, risk=R, **tols).to_dict()
        null_s = time.perf_counter() - t0
        rss_null = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    cert = resland.certify(model, X, y)
    certify_s = time.perf_counter() - t0
    if null_s is None:
        null = cert.higher_order
    dense_s = None
    if fr.n <= resland.tolerances.DENSE_MAX_PARAMS:          # the same analysis on the dense Hessian, same run
        from resland.higher_order import analyse_null_space
        t0 = time.perf_counter()
        analyse_null_space(fr, fr.theta0, resland.HessianOperator(fr, fr.theta0).dense(), risk=R, **tols)
        dense_s = time.perf_counter() - t0
    test = null["test"] or {}
    out = {"n": cert.n_params, "m": m, "width": NULL_WIDTHS[n_target], "verdict": cert.verdict,
           "eig_method": cert.eig_method, "certify_s": certify_s, "null_s": null_s, "dense_null_s": dense_s,
           "peak_rss_null_gb": rss_null, "null_method": null["method"],
           "null_directions": null["null_dim"], "ritz_max": max(abs(v) for v in null["ritz"]["values"]),
           "lobpcg_products": null["ritz"]["products"], "hvp_products": null["ritz"]["total_products"],
           "found": test.get("found"), "order": test.get("order"), "paths": test.get("paths"),
           "evaluations": test.get("evaluations"),
           "chunks": len(getattr(fr, "slices", [0])), "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _target(max_iter: int, core: tuple[int, int] | None = None) -> dict:
    """The issue's target run: a depth-16, width-32 tanh ResNet on all of diamonds, find_critical_point (kind
    minimum, ``max_iter``) then certify; outcome, times and peak RSS. With ``core = (L₀, k₀)`` the finder runs
    on that core (same seed) and its point is embedded into the target (docs/theory.md §11)."""
    import torch

    import resland

    torch.set_num_threads(1)
    ds = resland.load_dataset("diamonds")
    model = resland.models.init_model("resnet", ds.X.shape[1], width=32, depth=16, activation="tanh", seed=0)
    t0 = time.perf_counter()
    if core is None:
        cp = resland.find_critical_point(model, ds.X, ds.y, kind="minimum", max_iter=max_iter)
    else:
        start = resland.models.init_model("resnet", ds.X.shape[1], width=core[1], depth=core[0], activation="tanh",
                                          seed=0)
        from resland.embedding import embedded_point
        cp = embedded_point(resland.find_critical_point(start, ds.X, ds.y, kind="minimum", max_iter=max_iter), model)
    t1 = time.perf_counter()
    cert = resland.certify(cp.model, ds.X, ds.y)
    return {"n": sum(p.numel() for p in model.parameters()), "m": len(ds.y), "max_iter": max_iter,
            "outcome": cp.outcome, "status": cp.status, "risk": cp.risk, "path_min_risk": cp.path_min_risk,
            "linear_risk": cert.linear_risk, "grad_norm": cp.grad_norm, "iterations": cp.iterations, "steps": cp.steps,
            "find_s": t1 - t0, "certify_s": time.perf_counter() - t1, "verdict": cert.verdict, "method": cp.method,
            "message": cp.message, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "core": core, "certified_grad_norm": cert.grad_norm, "lambda_min": cert.lambda_min, "trivial": cert.trivial}


def _trace_solve(fr, th0, budget):
    """resland's matrix-free finder: (time, ‖∇R‖, R) at every iteration."""
    from resland.critical import reporting
    from resland.krylov import solve

    trace, t0 = [], time.perf_counter()

    def cb(stage, it, mx, gn):
        trace.append((time.perf_counter() - t0, gn))
        if time.perf_counter() - t0 > budget:
            raise TimeoutError

    try:
        with reporting(cb):
            st, _, _ = solve(fr, th0.clone(), kind="minimum", tol=1e-10, max_iter=10_000)
        trace.append((time.perf_counter() - t0, st.grad_norm))
    except TimeoutError:
        pass
    return trace


def _trace_lbfgs(fr, th0, budget):
    import torch

    x = th0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=20, history_size=50, line_search_fn="strong_wolfe",
                            tolerance_grad=0.0, tolerance_change=0.0)
    trace, t0 = [], time.perf_counter()

    def closure():
        opt.zero_grad()
        R, g = fr.risk_and_grad(x.detach())
        x.grad = g
        trace.append((time.perf_counter() - t0, float(torch.linalg.norm(g)), R))
        return torch.tensor(R, dtype=x.dtype)

    while time.perf_counter() - t0 < budget:
        opt.step(closure)
        if trace and trace[-1][1] <= 1e-10 * max(1.0, trace[-1][2]):
            break
    return [(t, g) for t, g, _ in trace]


def _trace_trust_krylov(fr, th0, budget):
    import scipy.optimize as so
    import torch

    trace, t0 = [], time.perf_counter()

    def fun(x):
        R, g = fr.risk_and_grad(torch.as_tensor(x))
        gn = float(torch.linalg.norm(g))
        trace.append((time.perf_counter() - t0, gn))
        if time.perf_counter() - t0 > budget or gn <= 1e-10 * max(1.0, R):
            raise StopIteration
        return R, g.numpy()

    def hessp(x, p):
        return fr.hvp(torch.as_tensor(x), torch.as_tensor(p)).numpy()

    try:
        so.minimize(fun, th0.numpy(), jac=True, hessp=hessp, method="trust-krylov",
                    options={"gtol": 1e-12, "maxiter": 100_000})
    except StopIteration:
        pass
    return trace


def _trace_dense(model, X, y, loss, budget):
    """resland's dense finder on a core: (time, ‖∇R‖) at every iteration."""
    from resland.critical import find_critical_point, reporting

    trace, t0 = [], time.perf_counter()

    def cb(stage, it, mx, gn):
        trace.append((time.perf_counter() - t0, gn))
        if time.perf_counter() - t0 > budget:
            raise TimeoutError

    try:
        with reporting(cb):
            cp = find_critical_point(model, X, y, loss, kind="minimum", tol=1e-10, max_iter=10_000)
        trace.append((time.perf_counter() - t0, cp.grad_norm))
    except TimeoutError:
        pass
    return trace


def _compare_cores(seeds: int, budget: float) -> dict:
    import torch

    import resland
    from resland.krylov import ChunkedRisk

    torch.set_num_threads(1)
    rows = []
    for data in ("diamonds", "movies", "cps1988", "default"):
        ds = resland.load_dataset(data)
        for depth, width in ((1, 1), (1, 2), (2, 1)):
            for seed in range(seeds):
                def start():
                    return resland.models.init_model("resnet", ds.X.shape[1], width=width, depth=depth,
                                                     activation="tanh", seed=seed)
                fr = ChunkedRisk(start(), ds.X, ds.y, ds.loss)
                row = {"data": data, "core": f"{depth}x{width}", "seed": seed, "n": fr.n, "m": fr.m}
                traces = {"resland": _trace_dense(start(), ds.X, ds.y, ds.loss, budget),
                          "lbfgs": _trace_lbfgs(fr, fr.theta0, budget),
                          "trust_krylov": _trace_trust_krylov(fr, fr.theta0, budget)}
                for name, tr in traces.items():
                    row[name] = {"to_1e-6": _first(tr, 1e-6), "to_1e-10": _first(tr, 1e-10),
                                 "final_grad_norm": min(g for _, g in tr) if tr else math.nan,
                                 "seconds": tr[-1][0] if tr else 0}
                _ratios(row, budget)
                print(json.dumps(row), flush=True)
                rows.append(row)
    return {"starts": rows, "summary": _summary(rows), "budget_s": budget}


def _ratios(row: dict, budget: float) -> None:
    """``ratio_{thr}``: the better peer's time over resland's, where a peer got there; ``speedup_at_least_{thr}``:
    that ratio, or, where resland got there and neither peer did, ``budget`` over resland's time (a lower bound:
    each peer either ran the whole budget or stopped on its own without getting there)."""
    for thr in ("to_1e-6", "to_1e-10"):
        ours, others = row["resland"][thr], [row[k][thr] for k in ("lbfgs", "trust_krylov") if row[k][thr]]
        row[f"ratio_{thr}"] = (min(others) / ours) if ours and others else None
        row[f"speedup_at_least_{thr}"] = (row[f"ratio_{thr}"] if others else budget / ours) if ours else None


def _summary(rows: list[dict]) -> dict:
    summary = {}
    for thr in ("to_1e-6", "to_1e-10"):
        r = [row[f"ratio_{thr}"] for row in rows if row[f"ratio_{thr}"] is not None]
        lo = [row.get(f"speedup_at_least_{thr}") for row in rows if row.get(f"speedup_at_least_{thr}") is not None]
        summary[thr] = {"median_speedup": statistics.median(r) if r else None, "starts_with_ratio": len(r),
                        "median_speedup_at_least": statistics.median(lo) if lo else None,
                        "starts_with_bound": len(lo),
                        "resland_reached": sum(row["resland"][thr] is not None for row in rows),
                        "lbfgs_reached": sum(row["lbfgs"][thr] is not None for row in rows),
                        "trust_krylov_reached": sum(row["trust_krylov"][thr] is not None for row in rows)}
    return summary


def _first(trace, thr):
    return next((t for t, g in trace if g <= thr), None)


def _compare(seeds: int, budget: float) -> dict:
    import torch

    import resland
    from resland.krylov import ChunkedRisk

    torch.set_num_threads(1)
    ds = resland.load_dataset("diamonds")
    X, y = ds.X[:10_000], ds.y[:10_000]
    rows = []
    for seed in range(seeds):
        model = resland.models.init_model("resnet", X.shape[1], width=8, depth=4, activation="tanh", seed=seed)
        fr = ChunkedRisk(model, X, y)
        th0 = fr.theta0
        row = {"seed": seed, "n": fr.n, "m": fr.m}
        for name, runner in (("resland", _trace_solve), ("lbfgs", _trace_lbfgs), ("trust_krylov", _trace_trust_krylov)):
            tr = runner(fr, th0, budget)
            row[name] = {"to_1e-6": _first(tr, 1e-6), "to_1e-10": _first(tr, 1e-10),
                         "final_grad_norm": min(g for _, g in tr) if tr else math.nan, "seconds": tr[-1][0] if tr else 0}
            print(seed, name, row[name], flush=True)
        _ratios(row, budget)
        rows.append(row)
    return {"starts": rows, "summary": _summary(rows), "budget_s": budget}


def _subprocess_cell(flag: str, n: int, m: int, extra: list[str]) -> dict:
    """One cell in its own process (``flag N,M`` plus ``extra``): its JSON line, or the error; with the wall time."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, flag, f"{n},{m}", *extra], capture_output=True, text=True)
    cell = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {
        "n_target": n, "m": m, "error": res.stderr[-500:]}
    cell["wall_s"] = time.perf_counter() - t0
    print(json.dumps(cell), flush=True)
    return cell


def _header(torch) -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__}


def _write(path: str, out: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n ≤ 1e4, m ≤ 5e4; 2 starts of 60 s")
    ap.add_argument("--out", default="benchmarks/results/bench_scale.json")
    ap.add_argument("--lanczos", type=int, default=60)
    ap.add_argument("--product-cap", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    ap.add_argument("--compare-only", action="store_true")
    ap.add_argument("--cores", action="store_true", help="only part 2b, the comparison on the deep atlas's cores "
                    "(--seeds starts each, --budget s per method)")
    ap.add_argument("--target", type=int, metavar="MAX_ITER", help="only the issue's target run (depth 16, width 32, "
                    "all of diamonds) with this max_iter, in its own process")
    ap.add_argument("--target-core", metavar="L0,K0", help="with --target: run the finder on this core and embed")
    ap.add_argument("--null", action="store_true", help="only part 4, the matrix-free higher-order test at scale")
    ap.add_argument("--null-cell", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.null_cell:
        n, m = map(int, a.null_cell.split(","))
        print(json.dumps(_null_cell(n, m, a.device)))
        return
    if a.null:
        import torch

        rows = [_subprocess_cell("--null-cell", n, m, ["--device", a.device])
                for n, m in (NULL_CELLS[:2] if a.quick else NULL_CELLS)]
        _write(a.out, {**_header(torch), "device": a.device, "null": rows})
        return
    if a.target:
        core = tuple(map(int, a.target_core.split(","))) if a.target_core else None
        print(json.dumps(_target(a.target, core)))
        return
    if a.cores:
        import torch

        out = {**_header(torch), "compare_cores": _compare_cores(a.seeds, a.budget)}
        _write(a.out, out)
        print(json.dumps(out["compare_cores"]["summary"], indent=1))
        return
    if a.cell:
        n, m = map(int, a.cell.split(","))
        print(json.dumps(_cell(n, m, a.lanczos, a.product_cap, a.device)))
        return
    import torch

    ns = [1_000, 10_000] if a.quick else list(SIZES)
    ms = [10_000, 50_000] if a.quick else [10_000, 50_000, 300_000]
    cells = []
    if not a.compare_only:
        for n in ns:
            for m in ms:
                cells.append(_subprocess_cell("--cell", n, m, ["--lanczos", str(a.lanczos), "--product-cap",
                                                               str(a.product_cap), "--device", a.device]))
    compare = _compare(2 if a.quick else a.seeds, 60.0 if a.quick else a.budget)
    _write(a.out, {**_header(torch), "device": a.device, "cells": cells, "compare": compare})
    print(json.dumps(compare["summary"], indent=1))


if __name__ == "__main__":
    main()
