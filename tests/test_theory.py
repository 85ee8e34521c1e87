"""Theory quantities (theory.md §3–4) against independent computations, at random θ."""

import math

import numpy as np
import pytest
import torch

import resland
from resland import theory
from resland.data import example2

SEEDS = range(5)


def _random_resnet(seed, **kw):
    torch.manual_seed(seed)
    kw = {"d_in": 3, "width": 4, "depth": 3, "activation": "softplus", **kw}
    return resland.ResNet(**kw)


@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_identities(seed, small_data):
    """∂R/∂w = r_L, ∂R/∂c = μ, and the telescoping r_{l-1} = r_l − V_l s_l."""
    X, y = small_data
    model = _random_resnet(seed)
    q = theory.quantities(model, X, y)
    np.testing.assert_allclose(q.grad_w, q.r[-1], rtol=1e-12, atol=1e-14)
    assert q.grad_c == pytest.approx(q.mu, rel=1e-12, abs=1e-15)
    for l in range(1, model.depth + 1):
        V = model.V(l).detach().numpy()
        np.testing.assert_allclose(q.r[l - 1], q.r[l] - V @ q.s[l - 1], rtol=1e-10, atol=1e-13)
    assert q.eps[-1] == 0.0  # E_L = 0


@pytest.mark.parametrize("seed", SEEDS)
def test_eps_against_autograd_jacobians(seed, small_data):
    """ε_l recomputed with per-sample torch.autograd.functional.jacobian of h_l ↦ h_L."""
    X, y = small_data
    model = _random_resnet(seed)
    q = theory.quantities(model, X, y)
    with torch.no_grad():
        hs, phis = model.trace(X)
        dl = 2 * (model(X) - y)
    for l in range(1, model.depth + 1):
        tail = lambda h: torch.nn.Sequential(*model.blocks[l:])(h)  # noqa: E731
        total = 0.0
        for i in range(X.shape[0]):
            J = torch.autograd.functional.jacobian(tail, hs[l][i].detach())
            E = J - torch.eye(3, dtype=torch.float64)
            total += abs(float(dl[i])) * float(torch.linalg.matrix_norm(E, ord=2)) * float(phis[l - 1][i].norm())
        assert q.eps[l - 1] == pytest.approx(total / X.shape[0], rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("loss", ["squared", "logistic", "pseudo_huber"])
@pytest.mark.parametrize("seed", SEEDS)
def test_convexity_inequality_at_random_parameters(seed, loss, small_data, binary_data):
    """§4.1 holds at every θ and every (t, t0), to rounding."""
    X, y = binary_data if loss == "logistic" else small_data
    model = _random_resnet(seed)
    g = np.random.default_rng(seed)
    fit = resland.best_linear(X, y, loss=loss)
    for t, t0 in [(fit.coef, fit.intercept), (g.standard_normal(3), float(g.standard_normal()))]:
        chk = theory.convexity_inequality(model, X, y, t, t0, loss=loss)
        assert chk.slack >= -1e-13 * max(1.0, abs(chk.lhs)), f"seed={seed}: {chk}"


@pytest.mark.parametrize("seed", SEEDS)
def test_rigorous_gap_bound_holds_everywhere(seed, small_data):
    """With all residual gradients kept, R − R_lin ≤ G_rigorous at any θ with w ≠ 0."""
    X, y = small_data
    model = _random_resnet(seed)
    gb = theory.gap_bound(model, X, y)
    R = float(resland.FlatRisk(model, X, y).risk(resland.FlatRisk(model, X, y).theta0))
    assert R - gb.linear_risk <= gb.rigorous * (1 + 1e-12)
    assert R - gb.linear_risk <= gb.convexity + 1e-13
    assert gb.G <= gb.rigorous


def test_shamir_case_has_zero_gap(small_data):
    """L = 1: ε_L = 0 so G = 0 (Shamir's theorem at every critical point)."""
    gb = theory.gap_bound(_random_resnet(0, depth=1), *small_data)
    assert gb.G == 0.0


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("seed", SEEDS)
def test_near_identity_bound_dominates_G(seed, activation, small_data):
    """§4.3: G ≤ ‖t*‖(e^δ−1)e^δ δ (1/m)Σ|ℓ'_i|‖x_i‖ for 1-Lipschitz σ with σ(0)=0, no block biases."""
    model = _random_resnet(seed, activation=activation, block_bias=False, depth=4)
    with torch.no_grad():
        for l in range(1, 5):
            model.V(l).mul_(0.3)
    ni = theory.near_identity_bound(model, *small_data)
    gb = theory.gap_bound(model, *small_data)
    assert ni.applicable
    assert gb.G <= ni.bound * (1 + 1e-12)
    with torch.no_grad():
        delta = sum(float(torch.linalg.matrix_norm(model.V(l), ord=2) * torch.linalg.matrix_norm(model.U(l), ord=2))
                    for l in range(1, 5))
    assert ni.delta == pytest.approx(delta, rel=1e-12)


def test_near_identity_not_applicable_with_bias_or_softplus(small_data):
    assert not theory.near_identity_bound(_random_resnet(0), *small_data).applicable


@pytest.mark.parametrize("seed", SEEDS)
def test_risk_equals_last_probe_when_output_layer_optimal(seed, small_data):
    """§4.4: with (w, c) the best linear fit on h_L, R(θ) = R_lin^{(L)} exactly."""
    X, y = small_data
    model = _random_resnet(seed)
    probes = theory.linear_probes(model, X, y)
    assert len(probes) == model.depth + 1
    with torch.no_grad():
        model.out.weight.copy_(torch.as_tensor(probes[-1].coef)[None])
        model.out.bias.fill_(probes[-1].intercept)
    fr = resland.FlatRisk(model, X, y)
    assert float(fr.risk(fr.theta0)) == pytest.approx(probes[-1].risk, rel=1e-12)
    q = theory.quantities(model, X, y)
    assert np.linalg.norm(q.grad_w) <= 1e-12 and abs(q.mu) <= 1e-12
    assert probes[0].risk == pytest.approx(resland.best_linear(X, y).risk, rel=1e-14)


def test_example2_probe_of_input():
    ds = example2()
    torch.manual_seed(0)
    probes = theory.linear_probes(resland.ResNet(1, 1, 2, "relu"), ds.X, ds.y)
    assert probes[0].risk == pytest.approx(25 / 78, rel=1e-12)


def test_theory_requires_resnet(small_data):
    with pytest.raises(resland.ValidationError) as err:
        theory.quantities(resland.FCNet(3, 2, 1), *small_data)
    assert str(err.value) == "The 'model' parameter must be a resland.ResNet for the theory quantities. Got FCNet."


def test_near_identity_bound_is_depth_independent_for_fixed_budget(small_data):
    """For a fixed δ the a-priori bound is the same at every depth (it depends on δ, t*, ℓ' only)."""
    X, y = small_data
    fit = resland.best_linear(X, y)
    bounds = []
    for L in (1, 4, 16):
        model = _random_resnet(1, activation="relu", block_bias=False, depth=L)
        with torch.no_grad():
            model.out.weight.zero_()
            model.out.bias.fill_(float(y.mean()))  # ℓ' the same at every depth
            for l in range(1, L + 1):
                s = float(torch.linalg.matrix_norm(model.V(l), ord=2) * torch.linalg.matrix_norm(model.U(l), ord=2))
                model.V(l).mul_(0.2 / L / s)
        ni = theory.near_identity_bound(model, X, y, fit=fit)
        assert ni.delta == pytest.approx(0.2, rel=1e-12)
        bounds.append(ni.bound)
    assert max(bounds) == pytest.approx(min(bounds), rel=1e-12)
    assert bounds[0] == pytest.approx(fit.coef_norm * math.expm1(0.2) * math.exp(0.2) * 0.2
                                      * float(np.mean(np.abs(2 * (y.mean() - y).numpy()) * np.linalg.norm(X, axis=1))),
                                      rel=1e-12)
