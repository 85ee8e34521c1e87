"""Ensembles: M models of one architecture as one stacked computation.

:class:`Ensemble` holds the flat parameters of ``M`` members as rows of ``Θ`` (``M × n``)
and serves every quantity of :class:`~resland.functional.FlatRisk` for all rows at once
with :func:`torch.vmap`: risks, gradients, predictions and per-sample Jacobians ``J``
(``M × m × n``); ``HessianOperator(ens, Θ)`` (resland.curvature) is their block-diagonal
Hessian. Work is always asked for a subset of rows, so members that have finished stop
costing anything.

The one finder (:func:`resland.critical.find_critical_points`) iterates on ensembles;
:func:`resland.certificate.certify_ensemble` certifies their rows with batched Hessian work.

Conventions: mean risk, squared loss ``(p − y)²`` without 1/2, float64.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import grad, jacrev

from ._checks import ValidationError
from .functional import FlatRisk, flat_parameters, prepare_model
from .losses import Loss


class Ensemble:
    """``M`` models of one architecture on one data set, parameters stacked as ``Θ`` (M × n).

    Args:
        models: the members (same architecture: same parameter names and shapes).
        X, y: data; loss: loss name or instance.

    Attributes:
        fr: the :class:`FlatRisk` of the first member (the shared functional view).
        theta: ``Θ``, the members' flat parameters as rows (float64).
        M, n, m: members, parameters per member, samples.
    """

    def __init__(self, models: list[nn.Module], X, y, loss: str | Loss = "squared"):
        if not models:
            raise ValidationError("The 'models' parameter must hold at least one model. Got an empty list.")
        models = [prepare_model(m) for m in models]
        self.fr = FlatRisk(models[0], X, y, loss)
        rows = []
        for i, model in enumerate(models):
            shapes = [p.shape for p in model.parameters()]
            if shapes != self.fr.shapes:
                raise ValidationError(
                    f"The 'models' parameter must hold models of one architecture. Model {i} has parameter "
                    f"shapes {[tuple(s) for s in shapes]}, model 0 has {[tuple(s) for s in self.fr.shapes]}."
                )
            rows.append(flat_parameters(model.parameters()).to(self.fr.dtype))
        self.theta = torch.stack(rows)
        self.M, self.n, self.m = len(models), self.fr.n, self.fr.m
        fr = self.fr

        def predict_one(theta, x):
            return fr.predict(theta, x[None])[0]

        # Per-sample gradients of the prediction: the Jacobian J (m × n) of one member.
        self._jac = torch.vmap(jacrev(predict_one), in_dims=(None, 0))
        self._risk = torch.vmap(fr.risk)
        self._predict = torch.vmap(fr.predict)
        self._grad = torch.vmap(grad(fr.risk))

    # All methods take Θ rows (k × n) and return one result per row.
    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        """``R(θ_j)`` for each row, shape (k,)."""
        return self._risk(theta)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """``∇R(θ_j)`` for each row, shape (k, n)."""
        return self._grad(theta)

    def predict(self, theta: torch.Tensor) -> torch.Tensor:
        """Predictions ``f_{θ_j}(x_i)``, shape (k, m)."""
        return self._predict(theta)

    def jacobian(self, theta: torch.Tensor) -> torch.Tensor:
        """``J_j = ∂f_{θ_j}(x_i)/∂θ``, shape (k, m, n): in closed form for the chain ResNet and the FC
        net (:mod:`resland.closed_form`), else per-sample reverse mode under ``vmap``."""
        chain = self.fr.chain_derivatives
        if chain is not None:
            return chain.jacobian(theta)[1]
        return torch.vmap(lambda t: self._jac(t, self.fr.X))(theta)

    def model_at(self, theta: torch.Tensor) -> nn.Module:
        """A copy of the architecture with parameters ``θ`` (one row, shape (n,))."""
        return self.fr.model_at(theta)
