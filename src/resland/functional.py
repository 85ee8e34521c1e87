"""The one flat-parameter functional view of a model's risk.

:class:`FlatRisk` turns ``(model, X, y, loss)`` into functions of a flat
parameter vector ``θ ∈ R^n`` (the model's parameters concatenated in
``named_parameters`` order) via :func:`torch.func.functional_call`. It serves
the risk, gradients and ``vmap``; every other module goes through it, and
:class:`~resland.curvature.HessianOperator` builds the Hessian on it.

Risk convention: ``R(θ) = (1/m) Σ_i ℓ(f_θ(x_i); y_i)`` (mean, squared loss without 1/2).
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from ._checks import ValidationError, check_data
from .closed_form import ChainDerivatives, supports
from .losses import Loss, get_loss


class ModelConversionWarning(UserWarning):
    """resland computed on a converted copy of the model (float64, or eval mode); the original is unchanged."""


#: Modules whose train-mode forward is random (dropout) or depends on the batch (batch norm).
TRAIN_MODE_MODULES = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm, nn.AlphaDropout)


def prepare_model(model: nn.Module) -> nn.Module:
    """The model resland computes on: ``model`` itself when it is float64 and deterministic, else a copy in
    float64 and in eval mode, with a :class:`ModelConversionWarning` that says what changed (a float32 model stalls
    near ‖∇R‖ ≈ 1e-8, above the 1e-10 test of critical; dropout makes the risk random; batch norm in train mode
    makes it depend on the batch and breaks torch.func). The original is never modified.
    """
    if not isinstance(model, nn.Module):
        raise ValidationError(f"The 'model' parameter must be a torch.nn.Module. Got {type(model).__name__}.")
    low = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float64})
    train = sorted({type(m).__name__ for m in model.modules() if isinstance(m, TRAIN_MODE_MODULES) and m.training})
    if not low and not train:
        return model
    import warnings

    changes = []
    if low:
        changes.append(f"parameters in {', '.join(low)} computed in float64 (float32 stalls near ‖∇R‖ ≈ 1e-8, above "
                       "the 1e-10 test of critical)")
    if train:
        changes.append(f"{', '.join(train)} in train mode put in eval mode (the risk must be a deterministic function "
                       "of θ)")
    warnings.warn("resland works on a copy of the model: " + "; ".join(changes) + ". The model passed is unchanged.",
                  ModelConversionWarning, stacklevel=3)
    copy_ = copy.deepcopy(model)
    if low:
        copy_ = copy_.to(torch.float64)
    return copy_.eval() if train else copy_


def flat_parameters(params) -> torch.Tensor:
    """The tensors ``params`` (e.g. ``model.parameters()``) as one detached flat vector (n,), in order.

    Like ``torch.nn.utils.parameters_to_vector`` but detached and also for non-contiguous tensors.
    """
    return torch.cat([p.detach().reshape(-1) for p in params])


class FlatRisk:
    """Risk of ``model`` on ``(X, y)`` as a function of a flat parameter vector.

    Args:
        model: any ``nn.Module`` mapping (m, d) to (m,) or (m, 1) (one output), or to (m, k) (``k``
            outputs: targets ``y`` of shape (m, k), or class labels (m,) for the cross-entropy).
        X, y: data (NumPy or torch); converted to float64 tensors on the model's device.
        loss: loss name or :class:`~resland.losses.Loss`.

    Attributes:
        theta0: the model's current parameters as a flat float64 vector.
        n: number of parameters.
        k: outputs per sample (1: predictions of shape (m,); else (m, k)).
    """

    def __init__(self, model: nn.Module, X, y, loss: str | Loss = "squared"):
        self.model = model
        self.loss = get_loss(loss)
        params = dict(model.named_parameters())
        if not params:
            raise ValidationError("The 'model' parameter must have at least one parameter. Got a model with none.")
        self.names = list(params)
        self.shapes = [p.shape for p in params.values()]
        self.numels = [p.numel() for p in params.values()]
        self.buffers = dict(model.named_buffers())
        first = next(iter(params.values()))
        self.device, self.dtype = first.device, first.dtype
        X, y = check_data(X, y, dtype=self.dtype)
        self.X = X.to(self.device)
        self.y = self.loss.prepare_targets(y.to(self.device))
        self.m = self.X.shape[0]
        self.theta0 = flat_parameters(params.values())
        self.n = self.theta0.numel()
        out = self.predict(self.theta0)
        if out.ndim not in (1, 2) or out.shape[0] != self.m:
            raise ValidationError(
                f"The 'model' parameter must map X of shape {tuple(self.X.shape)} to outputs of shape "
                f"({self.m},), ({self.m}, 1) or ({self.m}, k). Got output shape {tuple(out.shape)}."
            )
        self.k = 1 if out.ndim == 1 else out.shape[1]
        self.loss.check_outputs(self.k, self.y)

    # Parameter vector <-> named tensors.
    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector into ``{name: tensor}`` in the model's shapes."""
        pieces = torch.split(theta, self.numels)
        return {n: p.view(s) for n, p, s in zip(self.names, pieces, self.shapes)}

    def predict(self, theta: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions ``f_θ(x_i)``, shape (m,) (one output) or (m, k)."""
        X = self.X if X is None else X
        out = functional_call(self.model, (self.unflatten(theta), self.buffers), (X,))
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out

    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        """Mean risk ``R(θ)``."""
        return self.loss.risk(self.predict(theta), self.y)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """``∇R(θ)`` by reverse mode."""
        return grad(self.risk)(theta)

    def risk_and_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(R(θ), ∇R(θ))`` in one reverse pass."""
        g, r = grad(lambda t: (self.risk(t), self.risk(t)), has_aux=True)(theta)
        return float(r), g

    def tvp(self, theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``∇³R(θ)[u, u, ·] = d²/dt² ∇R(θ + t u)|₀`` (n,): forward-over-forward-over-reverse, exact."""
        return jvp(lambda t: jvp(grad(self.risk), (t,), (u,))[1], (theta,), (u,))[1]

    @functools.cached_property
    def chain_derivatives(self):
        """The closed-form derivatives (:class:`~resland.closed_form.ChainDerivatives`) of this
        risk's model, or None where the model has none (then autodiff serves)."""
        return ChainDerivatives(self) if supports(self.model) else None

    def model_at(self, theta: torch.Tensor) -> nn.Module:
        """A deep copy of the model with parameters ``θ`` (flat, shape (n,))."""
        clone = copy.deepcopy(self.model)
        with torch.no_grad():
            for (_, p), t in zip(clone.named_parameters(), self.unflatten(theta).values()):
                p.copy_(t)
        return clone
