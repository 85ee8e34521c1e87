"""Spectra, traces, per-block curvature and landscape slices (issue 35) against dense references: eigh of the
dense Hessian (torch.func.hessian), its trace and principal blocks, and risks recomputed point by point."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, hessian

import resland
from resland import landscape, spectra


@pytest.fixture(scope="module")
def problem():
    ds = resland.load_dataset("diabetes")
    torch.manual_seed(0)
    net = resland.ResNet(10, 3, 3, "tanh")
    X, y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def risk(t):
        parts, i = {}, 0
        for name, shape in zip(names, shapes):
            k = int(np.prod(shape))
            parts[name] = t[i:i + k].reshape(shape)
            i += k
        return torch.mean((functional_call(net, parts, (X,)) - y) ** 2)

    D = hessian(risk)(theta)                      # the reference: reverse-over-reverse, not resland's closed form
    return net, ds, resland.HessianOperator.from_model(net, ds.X, ds.y), D, torch.linalg.eigvalsh(D)


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
def test_top_k_eigenpairs_match_dense_eigh_within_1e_8_relative(problem, which):
    _, _, H, D, lam = problem
    e = spectra.eigenpairs(H, 10, which)
    ref = {"largest": lam[-10:], "smallest": lam[:10], "both": torch.cat([lam[:10], lam[-10:]])}[which]
    assert e.converged and e.values.shape == ref.shape
    assert float((e.values - ref).abs().max()) <= 1e-8 * float(lam.abs().max())
    # the reported residuals are the true ones, and each value is within its residual of the spectrum
    true_res = torch.linalg.norm(D @ e.vectors - e.vectors * e.values, dim=0)
    assert torch.allclose(e.residuals, true_res, atol=1e-10)
    assert "\n" not in repr(e)


def test_per_block_extremes_and_traces_equal_the_dense_sub_hessians(problem):
    net, _, H, D, _ = problem
    table = spectra.block_table(H, net)
    start, offsets = 0, {}
    for name, p in net.named_parameters():
        offsets[name] = (start, start + p.numel())
        start += p.numel()
    assert [r["block"] for r in table] == ["blocks.0", "blocks.1", "blocks.2", "out"]
    for row in table:
        idx = torch.cat([torch.arange(*offsets[n]) for n in offsets if n.startswith(row["block"])])
        lam = torch.linalg.eigvalsh(D[idx][:, idx])
        assert math.isclose(row["lambda_min"], float(lam[0]), rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(row["lambda_max"], float(lam[-1]), rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(row["trace"], float(lam.sum()), rel_tol=1e-9, abs_tol=1e-12)
    with pytest.raises(resland.ValidationError, match="prefix"):
        spectra.block(H, net, "nope")


def test_hutchpp_error_bars_cover_the_exact_trace_on_95_percent_of_seeds(problem):
    _, _, H, D, _ = problem
    exact = float(torch.trace(D))
    assert spectra.trace(H).value == pytest.approx(exact, rel=1e-12) and spectra.trace(H).error == 0.0
    covered = 0
    for seed in range(40):
        t = spectra.trace(H, dense_max=0, products=60, seed=seed)
        assert t.method == "hutch++" and t.products == 60
        covered += abs(t.value - exact) <= 2 * t.error     # two standard errors
    assert covered >= 38


def test_slq_density_weights_sum_to_one_and_its_mean_is_trace_over_n(problem):
    _, _, H, D, lam = problem
    d = spectra.density(H, probes=12, steps=40, seed=3)
    assert abs(d.weights.sum() - 1.0) <= 1e-12 and d.nodes.min() >= float(lam[0]) - 1e-8
    assert abs(d.mean - float(torch.trace(D)) / H.n) <= 3 * d.mean_error
    assert np.trapezoid(d.values, d.grid) == pytest.approx(1.0, abs=1e-3)


def test_slices_equal_the_risk_recomputed_at_each_point(problem):
    net, ds, _, _, _ = problem
    d1 = landscape.random_direction(net, seed=1)
    d2 = landscape.random_direction(net, normalize="none", seed=2)
    radii = torch.linspace(-1, 1, 7, dtype=torch.float64)
    s1 = landscape.slice_1d(net, ds.X, ds.y, d1, radii)
    s2 = landscape.slice_2d(net, ds.X, ds.y, d1, d2, radii[:3], radii[2:6])
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    X, y = torch.as_tensor(ds.X), torch.as_tensor(ds.y)

    def recomputed(t):
        other = resland.ResNet(10, 3, 3, "tanh")
        torch.nn.utils.vector_to_parameters(t, other.parameters())
        with torch.no_grad():
            return float(torch.mean((other(X) - y) ** 2))

    for r, v in zip(radii, s1):
        assert abs(float(v) - recomputed(theta + r * d1)) <= 1e-12 * max(1.0, abs(float(v)))
    for i, a in enumerate(radii[:3]):
        for j, b in enumerate(radii[2:6]):
            assert abs(float(s2[i, j]) - recomputed(theta + a * d1 + b * d2)) <= 1e-12 * max(1.0, abs(float(s2[i, j])))
    # filter normalisation: each weight row has its row's norm, biases are zero
    i = 0
    for p in net.parameters():
        piece = d1[i:i + p.numel()].reshape(p.shape)
        if p.ndim == 1:
            assert bool((piece == 0).all())
        else:
            assert torch.allclose(piece.norm(dim=1), p.detach().norm(dim=1), rtol=1e-12)
        i += p.numel()
    with pytest.raises(resland.ValidationError, match="direction"):
        landscape.slice_1d(net, ds.X, ds.y, d1[:-1], radii)


def test_the_spectrum_and_landscape_commands_write_their_files_at_a_non_critical_point(tmp_path):
    import json
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "resland.cli", *a], capture_output=True, text=True)  # noqa
    out = run("spectrum", "--data", "diabetes", "--depth", "2", "--width", "2", "--activation", "tanh",
              "--out", str(tmp_path / "s"), "--k", "3")
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "s" / "spectrum.json").read_text())
    assert doc["n"] == 95 and len(doc["eigenvalues"]) == 6 and doc["trace"]["method"] == "exact"
    assert {p.name for p in (tmp_path / "s").glob("*.png")} == {"density.png", "topk.png", "blocks.png"}
    out = run("landscape", "--data", "diabetes", "--depth", "2", "--width", "2", "--activation", "tanh",
              "--out", str(tmp_path / "l"), "--points", "5")
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "l" / "landscape.json").read_text())
    assert len(doc["slice_1d"]) == 5 and len(doc["slice_2d"]) == 5 and doc["slice_1d"][2] == doc["slice_2d"][2][2]
    bad = run("landscape", "--data", "diabetes", "--radius", "-1", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_a_stack_of_members_is_refused_and_one_member_is_served():
    from resland.models import init_model

    ds = resland.load_dataset("diabetes")
    ens = resland.Ensemble([init_model("resnet", 10, width=2, depth=1, activation="tanh", seed=s) for s in range(2)],
                           ds.X, ds.y)
    H = resland.HessianOperator(ens, ens.theta)
    with pytest.raises(resland.ValidationError, match="member"):
        H.eigenvalues(2)
    one = H.member(1)
    ref = torch.linalg.eigvalsh(one.dense())
    assert torch.allclose(one.eigenvalues(2).values, ref[-2:], atol=1e-9)
    assert torch.allclose(H.restrict([1]).eigenvalues(2).values, ref[-2:], atol=1e-9)
    assert one.block_table()[0]["block"] == "blocks.0"
