"""``resland spectrum`` and ``resland landscape``: curvature and loss-landscape pictures at any point.

Both build the model as ``resland certify`` does (a seeded start, or ``--checkpoint``), work at any point, critical
or not, and write JSON and PNG files into ``--out``. Registered on the ``resland`` group by :mod:`resland.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from ._checks import ValidationError, check_choice, check_positive_int
from .checkpoint import load_parameters
from .data import load_dataset, outputs
from .families import FAMILIES
from .losses import LOSSES
from .models import ACTIVATIONS, init_model


def _model_options(f):
    for opt in reversed([
        click.option("--data", "data", required=True, help="A built-in data set (docs/data.md) or a .csv/.npz path."),
        click.option("--model", "model_name", default="resnet", show_default=True, help=", ".join(FAMILIES) + "."),
        click.option("--depth", type=int, default=1, show_default=True, help="Blocks L (resnet) or hidden layers (fc)."),
        click.option("--width", type=int, default=4, show_default=True, help="Hidden width k."),
        click.option("--activation", default=None, help=", ".join(ACTIVATIONS) + " (default: the family's)."),
        click.option("--loss", "loss_name", default=None, help=", ".join(LOSSES) + " (default: the data set's)."),
        click.option("--seed", type=int, default=0, show_default=True, help="torch.manual_seed for the start."),
        click.option("--checkpoint", default=None, help="Parameters to load (.safetensors or a torch state_dict)."),
        click.option("--out", "out", default="results/spectrum", show_default=True, help="Output folder."),
    ]):
        f = opt(f)
    return f


def _build(data, model_name, depth, width, activation, loss_name, seed, checkpoint):
    check_choice("model", model_name, FAMILIES)
    if activation is not None:
        check_choice("activation", activation, ACTIVATIONS)
    if loss_name is not None:
        check_choice("loss", loss_name, LOSSES)
    ds = load_dataset(data)
    loss = loss_name or ds.loss
    model = init_model(model_name, ds.X.shape[1], width=check_positive_int("width", width),
                       depth=check_positive_int("depth", depth), activation=activation, seed=seed,
                       d_out=outputs(ds.y, loss))
    if checkpoint is not None:
        load_parameters(model, checkpoint)
    return ds, loss, model


def _figure(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    draw(ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def register(cli) -> None:
    """Add the ``spectrum`` and ``landscape`` commands to the ``resland`` group."""

    @cli.command("spectrum", short_help="Hessian top-k, trace, SLQ density and per-block table at a point.")
    @_model_options
    @click.option("--k", "k", type=int, default=10, show_default=True, help="Eigenpairs at each end.")
    @click.option("--probes", type=int, default=8, show_default=True, help="SLQ probes.")
    def spectrum_cmd(data, model_name, depth, width, activation, loss_name, seed, checkpoint, out, k, probes):
        """Write spectrum.json, density.png, topk.png and blocks.png into --out."""
        from .curvature import HessianOperator

        ds, loss, model = _build(data, model_name, depth, width, activation, loss_name, seed, checkpoint)
        H = HessianOperator.from_model(model, ds.X, ds.y, loss)
        k = min(check_positive_int("k", k), H.n // 2 or 1)
        both = H.eigenvalues(k, "both")
        tr, dens, table = H.trace(), H.density(probes=check_positive_int("probes", probes)), H.block_table()
        outdir = Path(out)
        outdir.mkdir(parents=True, exist_ok=True)
        doc = {"data": ds.name, "model": model.config() if hasattr(model, "config") else None, "n": H.n,
               "eigenvalues": both.values.tolist(), "residuals": both.residuals.tolist(),
               "trace": {"value": tr.value, "error": tr.error, "method": tr.method},
               "density": {"nodes": dens.nodes.tolist(), "weights": dens.weights.tolist(), "sigma": dens.sigma,
                           "mean": dens.mean, "mean_error": dens.mean_error}, "blocks": table}
        (outdir / "spectrum.json").write_text(json.dumps(doc, indent=1))
        _figure(outdir / "density.png", lambda ax: (ax.plot(dens.grid, dens.values), ax.set_yscale("log"),
                                                    ax.set_ylim(1e-6 * dens.values.max(), 2 * dens.values.max()),
                                                    ax.set_xlabel("eigenvalue"), ax.set_ylabel("density (SLQ)"),
                                                    ax.set_title(f"Hessian spectral density, n = {H.n}")))
        _figure(outdir / "topk.png", lambda ax: (ax.plot(both.values.numpy(), "o"), ax.axhline(0, color="grey", lw=0.5),
                                                 ax.set_xlabel("index (ascending)"), ax.set_ylabel("eigenvalue"),
                                                 ax.set_title(f"{k} eigenvalues at each end")))
        _figure(outdir / "blocks.png", lambda ax: (
            ax.bar(range(len(table)), [r["lambda_max"] for r in table], label="λ_max"),
            ax.bar(range(len(table)), [r["lambda_min"] for r in table], label="λ_min"),
            ax.set_xticks(range(len(table)), [r["block"] for r in table], rotation=45), ax.legend(),
            ax.set_title("per-block curvature")))
        click.echo(f"n = {H.n}: λ_min = {float(both.values[0]):.6g}, λ_max = {float(both.values[-1]):.6g}, "
                   f"tr(H) = {tr.value:.6g} ± {tr.error:.2g} ({tr.method}); wrote {outdir}/spectrum.json and 3 PNGs")

    @cli.command("landscape", short_help="1D and 2D loss-landscape slices through a point (filter-normalised).")
    @_model_options
    @click.option("--radius", type=float, default=1.0, show_default=True, help="Slices span [−radius, radius].")
    @click.option("--points", type=int, default=21, show_default=True, help="Grid points per axis.")
    def landscape_cmd(data, model_name, depth, width, activation, loss_name, seed, checkpoint, out, radius, points):
        """Write landscape.json, slice_1d.png and slice_2d.png into --out."""
        from .landscape import random_direction, slice_1d, slice_2d

        ds, loss, model = _build(data, model_name, depth, width, activation, loss_name, seed, checkpoint)
        if not radius > 0:
            raise ValidationError(f"The '--radius' option must be positive. Got {radius!r}.")
        r = torch.linspace(-radius, radius, check_positive_int("points", points), dtype=torch.float64)
        d1, d2 = random_direction(model, seed=seed + 1), random_direction(model, seed=seed + 2)
        s1, s2 = slice_1d(model, ds.X, ds.y, d1, r, loss), slice_2d(model, ds.X, ds.y, d1, d2, r, r, loss)
        outdir = Path(out)
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "landscape.json").write_text(json.dumps({"radii": r.tolist(), "slice_1d": s1.tolist(),
                                                          "slice_2d": s2.tolist(), "normalize": "filter"}))
        _figure(outdir / "slice_1d.png", lambda ax: (ax.plot(r, s1), ax.axvline(0, color="grey", lw=0.5),
                                                     ax.set_xlabel("r (filter-normalised direction)"),
                                                     ax.set_ylabel("mean risk")))
        _figure(outdir / "slice_2d.png", lambda ax: (ax.contourf(r, r, s2.T, levels=30), ax.plot([0], [0], "w+"),
                                                     ax.set_xlabel("d₁"), ax.set_ylabel("d₂")))
        click.echo(f"R at the point = {float(s1[len(r) // 2]):.6g}; wrote {outdir}/landscape.json and 2 PNGs")
