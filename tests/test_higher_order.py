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


# The matrix-free test (n above dense_max_params): each piece against its dense reference.

def _zero_tanh_net(width: int, depth: int, y) -> resland.FCNet:
    """A tanh FC net at θ = 0 but the output bias = mean(y): critical, constant, a degenerate saddle of
    order depth + 1 (tanh is odd, tanh'(0) = 1: a deep linear chain at 0)."""
    net = resland.FCNet(1, width, depth, "tanh")
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.net[-1].bias.fill_(float(np.mean(y)))
    return net


def _numpy_tanh_fc(theta: np.ndarray, net: resland.FCNet, x: np.ndarray) -> np.ndarray:
    """The FC net's forward pass in NumPy from flat parameters (``model.parameters()`` order)."""
    h, at = x, 0
    linears = [m for m in net.net if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        out, inp = lin.weight.shape
        W = theta[at: at + out * inp].reshape(out, inp)
        b = theta[at + out * inp: at + out * inp + out]
        at += out * inp + out
        h = h @ W.T + b
        if i < len(linears) - 1:
            h = np.tanh(h)
    return h[:, 0]


@pytest.mark.parametrize("chunked", [False, True])
def test_tvp_is_the_third_derivative_contracted_twice(chunked):
    """∇³R[u, u, ·] against jacfwd(hessian) contracted with u twice (dense reference), rel. 1e-12."""
    from torch.func import jacfwd

    from resland.krylov import ChunkedRisk

    torch.manual_seed(0)
    net = resland.ResNet(3, 2, 2, "tanh")
    X, y = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    fr = ChunkedRisk(net, X, y, chunk=7) if chunked else FlatRisk(net, X, y)
    theta = fr.theta0 + 0.3 * torch.randn(fr.n, dtype=torch.float64)
    u = torch.randn(fr.n, dtype=torch.float64)
    ref = torch.einsum("ijk,j,k->i", jacfwd(hessian(FlatRisk(net, X, y).risk))(theta), u, u)
    assert float(torch.linalg.norm(fr.tvp(theta, u) - ref)) <= 1e-12 * float(torch.linalg.norm(ref))


def test_lobpcg_directions_are_the_bottom_of_the_dense_spectrum_off_the_constraints():
    """krylov_null_directions at a generic θ (an indefinite H, n = 62) against eigh of the dense Hessian
    restricted to the complement of a constraint block S: Ritz values within their residuals (+1e-10) of
    the smallest eigenvalues, the residuals those of P H P (P = I − S Sᵀ, dense), the vectors orthogonal to S."""
    from resland.curvature import HessianOperator
    from resland.higher_order import krylov_null_directions

    torch.manual_seed(1)
    net = resland.ResNet(3, 4, 3, "tanh")
    X, y = torch.randn(80, 3, dtype=torch.float64), torch.randn(80, dtype=torch.float64)
    fr = FlatRisk(net, X, y)
    theta = fr.theta0
    Hd = hessian(fr.risk)(theta)
    S = torch.linalg.qr(torch.randn(fr.n, 3, dtype=torch.float64))[0]
    lam, V, res, products = krylov_null_directions(HessianOperator(fr, theta), S, tol=1e-10, seed=0)
    Q = torch.linalg.svd(S, full_matrices=True)[0][:, 3:]
    ref = torch.linalg.eigvalsh(Q.T @ Hd @ Q)[: lam.numel()]
    assert lam.numel() == 4 and products > 0
    assert torch.all((lam - ref).abs() <= res + 1e-10), (lam, ref, res)
    assert float(res.max()) <= 1e-8
    P = torch.eye(fr.n, dtype=torch.float64) - S @ S.T
    torch.testing.assert_close(torch.linalg.norm(P @ Hd @ V - V * lam, dim=0), res, rtol=1e-6, atol=1e-13)
    assert float((S.T @ V).abs().max()) <= 1e-12


@pytest.mark.parametrize("width,depth", [(3, 2), (4, 3), (8, 4)])
def test_the_matrix_free_test_finds_the_dense_tests_degenerate_saddles(line_data, width, depth):
    """Forced matrix-free (dense_max_params = 1): the same verdict and order as the dense test, with
    λ_min by Lanczos, null directions by LOBPCG, and an escape point that lowers R (NumPy forward)."""
    x, y = line_data
    net = _zero_tanh_net(width, depth, y)
    dense = resland.certify(net, x, y)
    free = resland.certify(net, x, y, dense_max_params=1)
    assert dense.verdict == free.verdict == "degenerate_saddle", free.reason
    ho = free.higher_order
    assert dense.higher_order["method"] == "dense" and ho["method"] == "lobpcg" and free.eig_method == "lanczos"
    assert ho["test"]["order"] == pytest.approx(dense.higher_order["test"]["order"], abs=0.1)
    assert ho["test"]["order"] == pytest.approx(depth + 1, abs=0.1)
    assert "LOBPCG" in free.reason and "missed a negative eigenvalue" in free.reason
    assert max(abs(v) for v in ho["ritz"]["values"]) <= free.tolerances["lambda_tol"]
    assert ho["test"]["evaluations"] < ho["test"]["paths"] * ho["test"]["radii"][2]   # quiet paths stop
    # the dense test's radii, plus three halvings above its first
    assert ho["test"]["radii"][2] == dense.higher_order["test"]["radii"][2] + 3
    assert ho["test"]["radii"][0] == pytest.approx(8 * dense.higher_order["test"]["radii"][0], rel=1e-12)
    assert ho["test"]["radii"][1] == pytest.approx(dense.higher_order["test"]["radii"][1], rel=1e-12)
    theta0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()
    theta = theta0 + free.escape_step * np.asarray(free.escape_direction)
    R_escape = np.mean((_numpy_tanh_fc(theta, net, x) - y) ** 2)
    assert free.risk - R_escape > free.tolerances["decrease_tol"]
    assert free.escape_step <= 1.5 * ho["test"]["run"][1]          # near θ: within 3r/2 of the last radius


def test_the_matrix_free_test_never_certifies_a_minimum():
    """The hinge (a local minimum worse than linear) and the dead unit (a flat point): dense, they are
    local_minimum_worse and degenerate; matrix-free no descent is found, and the verdict is inconclusive
    with the reason (no whole null space, no lower bound on λ_min)."""
    X, y = hinge_example()
    for net, dense_verdict in [(_hinge_net(), "local_minimum_worse"), (_hinge_net(width=2), "degenerate")]:
        assert resland.certify(net, X, y).verdict == dense_verdict
        free = resland.certify(net, X, y, dense_max_params=1)
        assert free.verdict == "inconclusive" and "a Krylov method cannot give" in free.reason, free.reason
        ho = free.higher_order
        assert ho["method"] == "lobpcg" and ho["symmetries"]["count"] == net.width
        assert ho["test"] is None or not ho["test"]["found"]


def test_the_matrix_free_test_runs_on_chunked_products(line_data):
    """m = 5,000 ≥ CHUNKED_MIN_ROWS: the certificate sums every product over chunks of samples, and the
    matrix-free test still finds the order-4 saddle of the depth-3 tanh net at 0."""
    from resland.tolerances import CHUNKED_MIN_ROWS

    g = np.random.default_rng(2)
    x = g.standard_normal((5000, 1))
    y = 0.8 * x[:, 0] + 0.3 * g.standard_normal(5000) + 0.5
    assert len(y) >= CHUNKED_MIN_ROWS
    free = resland.certify(_zero_tanh_net(4, 3, y), x, y, dense_max_params=1)
    assert free.verdict == "degenerate_saddle" and free.higher_order["method"] == "lobpcg", free.reason
    assert free.higher_order["test"]["order"] == pytest.approx(4.0, abs=0.1)
    # the dense test on chunked samples batches a few paths per vmap: the same decreases as all at once
    dense = resland.certify(_zero_tanh_net(4, 3, y), x, y)
    assert dense.verdict == "degenerate_saddle" and dense.higher_order["method"] == "dense"
    assert dense.higher_order["test"]["order"] == pytest.approx(4.0, abs=0.1)


def test_path_blocks_of_the_dense_test_change_nothing(line_data, monkeypatch):
    """On chunked samples the dense test evaluates its 66 paths a few per vmap; with every path in one
    vmap (HO_VMAP_BYTES raised) the decreases, hence the result, are the same to 1e-15 relative."""
    from resland import tolerances
    from resland.certificate.evidence import gather_evidence
    from resland.krylov import ChunkedRisk

    x, y = line_data
    net = _zero_tanh_net(3, 2, y)
    fr = ChunkedRisk(net, x, y, chunk=7)
    assert 1 <= tolerances.HO_VMAP_BYTES // tolerances.CHUNK_BYTES < 66     # several blocks by default
    runs = []
    for budget in (tolerances.HO_VMAP_BYTES, 10**15):
        monkeypatch.setattr(tolerances, "HO_VMAP_BYTES", budget)
        runs.append(gather_evidence(net, fr, fr.theta0).null.test)
    a, b = runs
    assert a.paths == b.paths == 66
    assert a.found and b.found and a.order == pytest.approx(b.order, rel=1e-12)
    assert a.decrease == pytest.approx(b.decrease, rel=1e-9) and a.best_risk == pytest.approx(b.best_risk, rel=1e-15)
