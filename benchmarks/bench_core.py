"""Core-engine timings for a ResNet with d = 10, width 16, depth 4 on the diabetes data.

Prints (medians over repeats, one process, same machine):
  * hessian_extremes by resland's Lanczos vs the dense Hessian + eigh;
  * HVP time / gradient time (the physical floor is about 2);
  * find_critical_point to tol 1e-10 from seeded starts: on diabetes targets, and on
    realizable targets from a teacher of the same architecture on the diabetes inputs.

Run: .venv/bin/python benchmarks/bench_core.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import scipy
import torch

import resland
from _timing import median_time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--max-iter", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = resland.load_dataset("diabetes")
    torch.manual_seed(0)
    model = resland.ResNet(10, 16, 4, "softplus")
    fr = resland.FlatRisk(model, ds.X, ds.y)
    theta = fr.theta0
    v = torch.randn(fr.n, dtype=torch.float64)
    print(f"# resland {resland.__version__} · torch {torch.__version__} · numpy {np.__version__} · scipy {scipy.__version__}")
    print(f"# {platform.processor() or platform.machine()} · {torch.get_num_threads()} torch threads · "
          f"python {platform.python_version()}")
    print(f"# ResNet d=10 k=16 L=4 softplus, n={fr.n} parameters, diabetes m={fr.m}\n")

    t_grad = median_time(lambda: fr.grad(theta), 20 * args.repeats)
    t_hvp = median_time(lambda: resland.HessianOperator(fr, theta) @ v, 20 * args.repeats)
    t_jvp = median_time(lambda: resland.HessianOperator(fr, theta) @ v[:, None], 20 * args.repeats)
    op = resland.HessianOperator(fr, theta)
    t_cached = median_time(lambda: op @ v, 20 * args.repeats)
    print(f"gradient            {t_grad * 1e3:8.3f} ms")
    print(f"HVP                 {t_hvp * 1e3:8.3f} ms   (double backward, graph built each time)")
    print(f"HVP, jvp(grad)      {t_jvp * 1e3:8.3f} ms   (forward-over-reverse, the block form)")
    print(f"HVP, cached graph   {t_cached * 1e3:8.3f} ms   (further products of one HessianOperator)")
    print(f"HVP / gradient      {t_hvp / t_grad:8.2f}   (jvp form {t_jvp / t_grad:.2f}, cached {t_cached / t_grad:.2f})")

    t_dense = median_time(lambda: resland.hessian_extremes(model, ds.X, ds.y, method="dense"), args.repeats)
    eig_l = resland.hessian_extremes(model, ds.X, ds.y, method="lanczos", tol=1e-8)
    t_lanczos = median_time(lambda: resland.hessian_extremes(model, ds.X, ds.y, method="lanczos", tol=1e-8),
                            args.repeats)
    eig_d = resland.hessian_extremes(model, ds.X, ds.y, method="dense")
    err = max(abs(eig_l.lambda_min - eig_d.lambda_min), abs(eig_l.lambda_max - eig_d.lambda_max))
    print(f"extremes dense      {t_dense:8.3f} s   (dense Hessian + eigh)")
    print(f"extremes Lanczos    {t_lanczos:8.3f} s   ({eig_l.matvecs} HVPs, |Δλ| vs dense = {err:.1e}, "
          f"λ_min = {eig_d.lambda_min:.4g}, λ_max = {eig_d.lambda_max:.4g})")
    print(f"Lanczos / dense     {t_lanczos / t_dense:8.2f}\n")

    with torch.no_grad():
        y_teacher = model(torch.as_tensor(ds.X))
    for label, y in (("diabetes targets", ds.y), ("realizable targets", y_teacher)):
        for seed in range(args.seeds):
            torch.manual_seed(100 + seed)
            if label == "realizable targets":  # start near the teacher
                start = resland.ResNet(10, 16, 4, "softplus")
                start.load_state_dict(model.state_dict())
                with torch.no_grad():
                    for p in start.parameters():
                        p.add_(0.05 * torch.randn_like(p))
            else:
                start = resland.ResNet(10, 16, 4, "softplus")
            cp = resland.find_critical_point(start, ds.X, y, tol=1e-10, max_iter=args.max_iter)
            print(f"find_critical_point {label:18s} seed {seed}: {cp.seconds:7.2f} s  status={cp.status:9s} "
                  f"‖∇R‖={cp.grad_norm:.2e}  R={cp.risk:.4g}  L-BFGS {cp.descent_iterations} + Newton {cp.iterations}")


if __name__ == "__main__":
    main()
