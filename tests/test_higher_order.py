"""Degenerate critical points (docs/theory.md §8): symmetry directions, the higher-order test, the
verdicts degenerate_saddle, local_minimum_worse and degenerate, and trivial kinds.

References are independent of the code under test: NumPy risks, ``torch.func.hessian`` + ``eigh``,
``jacrev`` prediction Jacobians, and the closed forms of theory.md §8.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev

import resland
from resland.functional import FlatRisk
from resland.higher_order import _verified_run
from resland.tolerances import HO_ROUNDING
from resland.symmetry import symmetry_directions, unit_activity


class DeepLinear(nn.Module):
    """``f(x) = w_H ⋯ w_1 x`` with scalar weights, all 0 (Kawaguchi's saddle of order H)."""

    def __init__(self, depth: int):
        super().__init__()
        self.w = nn.ParameterList(nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in range(depth))

    def forward(self, x):
        out = x[:, 0]
        for w in self.w:
            out = w * out
        return out


@pytest.fixture(scope="module")
def line_data():
    g = np.random.default_rng(0)
    x = g.standard_normal((40, 1))
    return x, 0.8 * x[:, 0] + 0.3 * g.standard_normal(40) + 0.5


@pytest.mark.parametrize("depth", [3, 4, 5, 6])
def test_deep_linear_nets_at_zero_are_degenerate_saddles_of_order_depth(line_data, depth):
    """θ = 0: ∇R = 0 and ∇²R = 0, yet R falls at order H along (t, …, t) (theory.md §8)."""
    x, y = line_data
    cert = resland.certify(DeepLinear(depth), x, y)
    assert cert.grad_norm == 0.0 and cert.lambda_min == 0.0 and cert.lambda_max == 0.0
    assert cert.verdict == "degenerate_saddle", cert.reason
    assert cert.trivial == "constant"               # f ≡ 0 on the data: trivial, whatever the verdict
    assert cert.higher_order["null_dim"] == depth and cert.higher_order["symmetries"]["count"] == 0
    assert cert.higher_order["test"]["order"] == pytest.approx(depth, abs=0.1)
    # the escape point lowers the risk, recomputed in NumPy
    w = cert.escape_step * np.asarray(cert.escape_direction)
    R_escape = np.mean((np.prod(w) * x[:, 0] - y) ** 2)
    assert np.mean(y**2) - R_escape > cert.tolerances["decrease_tol"]


def test_a_two_layer_linear_net_at_zero_is_a_strict_saddle(line_data):
    cert = resland.certify(DeepLinear(2), *line_data)
    x, y = line_data
    assert cert.verdict == "strict_saddle"
    assert cert.lambda_min == pytest.approx(-2 * abs(np.mean(x[:, 0] * y)), rel=1e-12)  # H = [[0, −2E[xy]], …]


def test_a_deep_tanh_net_at_zero_is_a_degenerate_saddle(line_data):
    """tanh is odd with tanh'(0) = 1: two hidden layers at 0 behave like a depth-3 linear net."""
    x, y = line_data
    net = resland.FCNet(1, 1, 2, "tanh")
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.net[4].bias.fill_(float(y.mean()))
    cert = resland.certify(net, x, y)
    assert cert.verdict == "degenerate_saddle", cert.reason
    assert cert.trivial == "constant" and cert.units == {"units": 2, "dead": 0, "saturated": 2, "zero": 2}


def hinge_example():
    """theory.md §8: 40 points on [−1, 1], y = x on the right, x − mean(x_left) on the left; relu(x)."""
    x = np.linspace(-1, 1, 40)
    y = np.where(x > 0, x, x - x[x < 0].mean())
    return x[:, None], y


def _hinge_net(width=1):
    net = resland.FCNet(1, width, 1, "relu")
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.net[0].weight[0, 0], net.net[2].weight[0, 0] = 1.0, 1.0
        if width > 1:  # a dead second unit: relu(x − 5) = 0 on [−1, 1], outgoing weight 0.3
            net.net[0].weight[1, 0], net.net[0].bias[1], net.net[2].weight[0, 1] = 1.0, -5.0, 0.3
    return net


def test_the_hinge_of_theory_8_is_a_local_minimum_worse_than_linear():
    X, y = hinge_example()
    net = _hinge_net()
    cert = resland.certify(net, X, y)
    assert cert.risk == pytest.approx(0.0437, abs=5e-5) and cert.linear_risk == pytest.approx(0.0164, abs=5e-5)
    assert cert.verdict == "local_minimum_worse", cert.reason
    assert cert.trivial == "none" and cert.kink_margin > 0
    ho = cert.higher_order
    assert ho["symmetries"]["count"] == 1 and ho["symmetries"]["names"] == ["rescaling of unit 1, hidden layer 1"]
    assert ho["null_dim"] == 0 and ho["restricted_lambda_min"] == pytest.approx(0.104, abs=5e-4)
    # reference: dense torch.func.hessian + eigh gives {0 (rescaling), 0.104, 0.550, 3.05}
    fr = FlatRisk(net, X, y)
    ev = torch.linalg.eigvalsh(hessian(fr.risk)(fr.theta0)).numpy()
    np.testing.assert_allclose(ev, [0.0, 0.104, 0.550, 3.05], atol=5e-3)
    assert abs(ev[0]) < 1e-14


def test_a_dead_unit_gives_a_degenerate_point_without_descent():
    """Moving a dead unit's weights changes nothing while it stays dead: a null space that no symmetry
    explains, no descent at any radius tried (docs/theory.md §8's flat minimum)."""
    X, y = hinge_example()
    cert = resland.certify(_hinge_net(width=2), X, y)
    assert cert.units == {"units": 2, "dead": 1, "saturated": 0, "zero": 0}
    assert cert.verdict == "degenerate", cert.reason
    ho = cert.higher_order
    assert ho["symmetries"]["count"] == 2 and ho["null_dim"] == 2     # (u₂, b₂, v₂) less unit 2's rescaling
    assert not ho["test"]["found"] and ho["test"]["best_risk"] == pytest.approx(cert.risk, rel=1e-12)
    assert ho["test"]["radii"][2] >= 20 and "best probe risk" in cert.reason
    assert cert.parameters is not None                                   # kept for replay


def _models():
    torch.manual_seed(3)
    return [resland.ResNet(3, 4, 2, "relu"), resland.ResNet(3, 2, 3, "leaky_relu", branch_layers=2),
            resland.ResNet(3, 2, 2, "tanh"), resland.FCNet(3, 3, 3, "relu"), resland.FCNet(3, 3, 2, "softplus")]


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{type(m).__name__}-{m.activation}-{m.depth}")
def test_every_symmetry_direction_leaves_the_predictions_unchanged_to_first_order(model):
    """J ξ = 0 at any θ for every named direction (J = ∂f/∂θ by jacrev): exact symmetries, not
    properties of a critical point; the counts are the theory's."""
    X = torch.randn(30, 3, dtype=torch.float64)
    fr = FlatRisk(model, X, torch.randn(30, dtype=torch.float64))
    J = jacrev(lambda t: functional_call(model, fr.unflatten(t), (X,)).reshape(-1))(fr.theta0)
    dirs = symmetry_directions(fr, fr.theta0)
    for s in dirs:
        assert float(torch.linalg.norm(J @ s.vector)) <= 1e-12 * float(torch.linalg.norm(J)) * float(
            torch.linalg.norm(s.vector)), s.name
    homogeneous = model.activation in ("relu", "leaky_relu")
    units = model.width * (model.depth if isinstance(model, resland.FCNet) else model.depth * getattr(
        model, "branch_layers", 1))
    last_block = (3 - 1) * model.width if isinstance(model, resland.ResNet) else 0
    assert len(dirs) == units * homogeneous + last_block


def test_verified_runs_are_power_laws_down_to_rounding_not_basin_edges():
    tol = 1e-12
    power = [max(0.0, 2.0**(-4 * j)) for j in range(12)]          # order 4 from r = 1: 1, 1/16, …
    hit = _verified_run(power, tol)
    assert hit is not None and hit[2] == pytest.approx(4.0)
    edge = [1e-3, 8e-4, 6e-4, 4e-4, -1e-6, -1e-7, -1e-8]          # descent only far out: a basin edge
    assert _verified_run(edge, tol) is None
    short = [-1.0, 1e-6, 1e-8, -1e-13]                             # two radii are not a run
    assert _verified_run(short, tol) is None
    at_rounding = [1e-9, 1.25e-10, 1.6e-11, 2e-12 * HO_ROUNDING / 10, 0.0]
    assert _verified_run(at_rounding, tol) is not None


def test_unit_activity_counts_dead_saturated_and_zero_units():
    X = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None]
    net = resland.FCNet(1, 4, 1, "relu")
    with torch.no_grad():
        net.net[0].weight.copy_(torch.tensor([[1.0], [1.0], [1.0], [0.0]]))
        net.net[0].bias.copy_(torch.tensor([-2.0, 0.5, 3.0, 0.0]))   # dead, active, active, zero (and dead)
    assert unit_activity(net, X) == {"units": 4, "dead": 2, "saturated": 0, "zero": 1}
    tanh = resland.FCNet(1, 2, 1, "tanh")
    with torch.no_grad():
        tanh.net[0].weight.fill_(1.0)
        tanh.net[0].bias.copy_(torch.tensor([40.0, 0.0]))        # tanh(x + 40) = 1 to float64
    assert unit_activity(tanh, X) == {"units": 2, "dead": 0, "saturated": 1, "zero": 0}
