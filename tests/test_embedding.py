"""Zero-unit embedding (resland.embedding, docs/theory.md §11), checked against autograd written here.

Tolerances: predictions and risk of an embedded net equal the core's to 1e-14 relative (the sums differ only by
exact zeros); gradients at an embedded critical point ≤ 1e-10 (the finder's critical tolerance), the zero units'
entries exactly 0; the curvature bound λ_min ≤ −‖M_l‖₂ to 1e-12.
"""

import json

import pytest
import torch
from torch.func import functional_call

from conftest import reference_hessian
from resland import ValidationError
from resland.census import parse_spec, run_task
from resland.census.export import compact_row
from resland.critical import find_critical_point
from resland.embedding import embed
from resland.models import init_model


def _risk_and_grad(model, X, y):
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    R = ((functional_call(model, params, (X,)).reshape(-1) - y) ** 2).mean()
    grads = torch.autograd.grad(R, [params[n] for n in names])
    return R.detach(), dict(zip(names, grads))


def _core_point(data_seed, depth, width, seed):
    g = torch.Generator().manual_seed(data_seed)
    X = torch.randn(80, 3, generator=g, dtype=torch.float64)
    y = torch.tanh(X[:, 0] - X[:, 1]) + 0.3 * X[:, 2] ** 2 + 0.1 * torch.randn(80, generator=g, dtype=torch.float64)
    core = init_model("resnet", 3, width=width, depth=depth, activation="tanh", seed=seed, v_scale=1.0)
    cp = find_critical_point(core, X, y, "squared", kind="minimum", max_iter=300)
    assert cp.outcome == "critical"
    return X, y, cp.model


@pytest.fixture(scope="module")
def core_point():
    return _core_point(3, 1, 2, 0)


def test_embedded_net_predicts_what_its_core_predicts_at_any_parameters(small_data):
    X, _ = small_data
    for fam, core_dw, target_dw in (("resnet", (1, 2), (3, 4)), ("resnet", (2, 1), (2, 3)), ("fc", (2, 1), (2, 5))):
        core = init_model(fam, 3, width=core_dw[1], depth=core_dw[0], activation="gelu", seed=0)
        target = init_model(fam, 3, width=target_dw[1], depth=target_dw[0], activation="gelu", seed=5)
        before = [p.detach().clone() for p in target.parameters()]
        e = embed(core, target)
        torch.testing.assert_close(e(X), core(X), rtol=1e-14, atol=1e-14)
        assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))   # target unchanged


def test_an_embedded_critical_point_is_critical_with_exact_zero_gradients_on_zero_units(core_point):
    X, y, core = core_point
    R0, g0 = _risk_and_grad(core, X, y)
    target = init_model("resnet", 3, width=4, depth=3, activation="tanh", seed=0)
    e = embed(core, target)
    R, g = _risk_and_grad(e, X, y)
    assert abs(float(R - R0)) <= 1e-14 * float(R0)
    flat = torch.cat([t.reshape(-1) for t in g.values()])
    assert float(flat.norm()) <= 1e-10
    assert torch.count_nonzero(g["blocks.1.V.weight"]) == 0 and torch.count_nonzero(g["blocks.2.branch.0.weight"]) == 0
    assert torch.count_nonzero(g["blocks.0.V.weight"][:, 2:]) == 0          # zero units of the core's block
    assert torch.count_nonzero(g["blocks.0.branch.0.weight"][2:]) == 0


def _M(model, X, y, l):
    """``M_l = E[δ_l h_{l−1}ᵀ]`` (δ_l = ∂ℓ_i/∂h_l): the derivative of R under ``h_l → h_l + P h_{l−1}`` at P = 0."""
    P = torch.zeros(X.shape[1], X.shape[1], dtype=torch.float64, requires_grad=True)
    h = X
    for j, block in enumerate(model.blocks, start=1):
        h = h + block.V(block.branch(h)) + (h @ P.T if j == l else 0)
    R = ((model.out(h).reshape(-1) - y) ** 2).mean()
    return torch.autograd.grad(R, P)[0]


def test_at_a_resnet_critical_point_M_l_vanishes_and_the_embedded_hessian_is_the_cores_plus_zero():
    X, y, core = _core_point(4, 2, 1, 1)          # a depth-2 width-1 critical point
    assert all(float(torch.linalg.matrix_norm(_M(core, X, y, l), 2)) <= 1e-12 for l in (1, 2))
    target = init_model("resnet", 3, width=2, depth=3, activation="tanh", seed=0)
    e = embed(core, target)
    H, Hc = reference_hessian(e, X, y), reference_hessian(core, X, y)
    # the core's coordinates in the target's flat vector
    index, at = [], 0
    mine = dict(core.named_parameters())
    for name, p in e.named_parameters():
        ids = torch.arange(at, at + p.numel()).reshape(p.shape)
        if name in mine:
            index.append(ids[tuple(slice(0, s) for s in mine[name].shape)].reshape(-1))
        at += p.numel()
    index = torch.cat(index)
    rest = torch.ones(H.shape[0], dtype=torch.bool)
    rest[index] = False
    torch.testing.assert_close(H[index][:, index], Hc, rtol=0, atol=1e-12)
    assert float(H[rest].abs().max()) <= 1e-12


def test_what_cannot_be_embedded_is_refused():
    tanh = dict(activation="tanh", seed=0)
    cases = [(init_model("resnet", 3, width=2, depth=1, activation="relu", seed=0),
              init_model("resnet", 3, width=4, depth=2, activation="relu", seed=0), "σ\\(0\\) = 0"),
             (init_model("resnet", 3, width=4, depth=1, **tanh), init_model("resnet", 3, width=2, depth=2, **tanh),
              "must not be deeper or wider"),
             (init_model("fc", 3, width=1, depth=1, **tanh), init_model("fc", 3, width=4, depth=2, **tanh),
              "FC core must have the target's depth"),
             (init_model("fc", 3, width=1, depth=1, **tanh), init_model("resnet", 3, width=4, depth=1, **tanh),
              "same kind of network"),
             (init_model("resnet", 4, width=1, depth=1, **tanh), init_model("resnet", 3, width=4, depth=1, **tanh),
              "d_in")]
    for core, target, message in cases:
        with pytest.raises(ValidationError, match=message):
            embed(core, target)


def test_a_census_config_with_a_core_runs_the_core_and_certifies_the_embedded_net():
    grid = {"data": "diabetes", "model": "resnet", "depth": 4, "width": 3, "activation": "tanh", "kind": "minimum",
            "core_depth": 1, "core_width": 1}
    spec = parse_spec({"name": "t", "seeds": 1, "engine": "sequential", "finder": {"max_iter": 200}, "grid": [grid]})
    (task,) = spec.tasks()
    row = run_task(task, dict(spec.task_options, store_parameters="all"))[0]
    summary = compact_row(row)
    assert row["error"] is None and row["outcome"] == "critical" and row["verdict"] == "better_than_linear"
    assert (summary["core_depth"], summary["core_width"], summary["depth"], summary["width"]) == (1, 1, 4, 3)
    assert row["zero_units"] == 4 * 3 - 1 and row["trivial"] == "none"
    assert row["n_params"] == len(json.loads(row["parameters"])) == init_model("resnet", 10, width=3, depth=4).count(
        10, width=3, depth=4)
    assert row["grad_norm"] <= 1e-10 * max(1.0, row["risk"])


def test_a_spec_refuses_a_core_that_cannot_embed():
    base = {"data": "diabetes", "model": "resnet", "depth": 4, "width": 3, "activation": "tanh"}
    for extra, message in (({"core_width": 4}, "core_width"), ({"activation": "relu", "core_depth": 1}, "σ"),
                           ({"model": "fc", "core_depth": 2}, "must equal the depth")):
        with pytest.raises(ValidationError, match=message):
            parse_spec({"name": "t", "grid": [dict(base, **extra)]})
