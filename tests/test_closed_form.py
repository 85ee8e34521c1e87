"""The closed-form Jacobians and Hessians (resland.closed_form) against autograd references, float64.

References: conftest.reference_hessian (torch.autograd.functional.hessian of a risk written out
with its own loss formulas) and per-sample ``torch.func.jacrev``. Tolerance: 1e-12 relative to
the largest entry (the closed form and autograd sum the same terms in different orders; measured
differences are ≤ 1e-15 relative).
"""

import itertools

import pytest
import torch
from torch import nn
from torch.func import jacrev

import resland
from conftest import reference_hessian
from resland import closed_form
from resland.ensemble import Ensemble

RTOL = 1e-12
LOSSES = ("squared", "logistic", "pseudo_huber")


def _cases():
    for act, loss, depth in itertools.product(("tanh", "softplus", "gelu", "relu", "leaky_relu"), LOSSES, (1, 3)):
        yield f"resnet-{act}-{loss}-L{depth}", dict(model="resnet", activation=act, depth=depth), loss
        yield f"fc-{act}-{loss}-L{depth}", dict(model="fc", activation=act, depth=depth), loss
    yield "resnet-no-biases", dict(model="resnet", activation="tanh", depth=2, block_bias=False, out_bias=False), "squared"
    yield "fc-no-out-bias", dict(model="fc", activation="softplus", depth=2, out_bias=False), "squared"


CASES = list(_cases())


def _model(spec, seed):
    spec = dict(spec)
    cls = resland.ResNet if spec.pop("model") == "resnet" else resland.FCNet
    torch.manual_seed(seed)
    model = cls(3, 4, spec.pop("depth"), spec.pop("activation"), **spec)
    with torch.no_grad():   # away from PyTorch's initial scale, and softplus past its threshold
        for p in model.parameters():
            p.mul_(2.0)
    return model


def _data(loss):
    g = torch.Generator().manual_seed(7)
    X = 2 * torch.randn(25, 3, dtype=torch.float64, generator=g)
    y = torch.randn(25, dtype=torch.float64, generator=g)
    return X, torch.sign(y) if loss == "logistic" else y   # labels ±1 for the logistic loss


@pytest.mark.parametrize("name,spec,loss", CASES, ids=[c[0] for c in CASES])
def test_closed_form_hessian_and_jacobian_match_autograd(name, spec, loss):
    X, y = _data(loss)
    models = [_model(spec, s) for s in range(3)]
    ens = Ensemble(models, X, y, loss)
    chain = ens.fr.chain_derivatives
    assert chain is not None
    p, J = chain.jacobian(ens.theta)
    H = chain.hessian(ens.theta)
    for j, model in enumerate(models):
        H_ref = reference_hessian(model, X, y, loss)
        scale = float(H_ref.abs().max())
        assert float((H[j] - H_ref).abs().max()) <= RTOL * scale, name
        assert torch.equal(H[j], H[j].T)
        J_ref = torch.vmap(jacrev(lambda t, x: ens.fr.predict(t, x[None])[0]), in_dims=(None, 0))(ens.theta[j], X)
        assert float((J[j] - J_ref).abs().max()) <= RTOL * float(J_ref.abs().max()), name
        with torch.no_grad():
            f = model(X)
        assert float((p[j] - f).abs().max()) <= 1e-14 * float(f.abs().max())


def test_the_hessian_operator_serves_the_closed_form_and_autodiff_alike(small_data):
    X, y = small_data
    model = _model(dict(model="resnet", activation="softplus", depth=2), 0)
    op = resland.HessianOperator.from_model(model, X, y)
    H_cf, H_ad = op.dense(method="closed_form"), op.dense(method="autodiff")
    assert torch.equal(op.dense(), H_cf)
    assert float((H_cf - H_ad).abs().max()) <= RTOL * float(H_ad.abs().max())
    assert op.products == 3 * op.n


def test_member_chunks_change_nothing(monkeypatch):
    X, y = _data("squared")
    ens = Ensemble([_model(dict(model="resnet", activation="tanh", depth=3), s) for s in range(5)], X, y)
    chain = ens.fr.chain_derivatives
    whole = chain.hessian(ens.theta)
    monkeypatch.setattr(closed_form, "CHUNK_FLOATS", chain.floats_per_member * 2)
    assert chain.member_chunk() == 2
    torch.testing.assert_close(chain.hessian(ens.theta), whole, rtol=0, atol=1e-15 * float(whole.abs().max()))


@pytest.mark.parametrize("name,spec,loss", [c for c in CASES if c[0] in ("resnet-tanh-logistic-L3", "fc-gelu-squared-L3",
                                                                      "resnet-no-biases")])
def test_row_chunks_bound_the_memory_and_change_nothing(monkeypatch, name, spec, loss):
    """A member whose working set is over CHUNK_FLOATS is summed over chunks of samples (4 rows here, 25
    samples: 7 chunks, the last of 1): the same Hessian as one pass and as the reference, rel. 1e-12."""
    X, y = _data(loss)
    models = [_model(spec, s) for s in range(2)]
    ens = Ensemble(models, X, y, loss)
    chain = ens.fr.chain_derivatives
    whole = chain.hessian(ens.theta)
    monkeypatch.setattr(closed_form, "CHUNK_FLOATS", 2 * chain.n**2 + 4 * chain.widest * chain.n * 4)
    assert chain.row_chunk() == 4 and chain.member_chunk() == 1
    chunked = chain.hessian(ens.theta)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=RTOL * float(whole.abs().max()))
    for j, model in enumerate(models):
        H_ref = reference_hessian(model, X, y, loss)
        assert float((chunked[j] - H_ref).abs().max()) <= RTOL * float(H_ref.abs().max()), name


def test_models_without_a_closed_form_fall_back_to_autodiff(small_data):
    X, y = small_data
    two_layer = resland.ResNet(3, 3, 2, "tanh", branch_layers=2)
    user = nn.Sequential(nn.Linear(3, 4, dtype=torch.float64), nn.Tanh(), nn.Linear(4, 1, dtype=torch.float64))
    approx = resland.FCNet(3, 4, 2, "gelu")
    approx.net[1].approximate = "tanh"
    for model in (two_layer, user, approx, resland.LinearModel(3)):
        assert not closed_form.supports(model)
        op = resland.HessianOperator.from_model(model, X, y)
        assert op.fr.chain_derivatives is None
        torch.testing.assert_close(op.dense(), reference_hessian(model, X, y), rtol=1e-10, atol=1e-12)
        with pytest.raises(resland.ValidationError, match="closed_form"):
            op.dense(method="closed_form")
    with pytest.raises(resland.ValidationError, match="method"):
        op.dense(method="fast")
