"""Activation regions of ReLU-type networks and their smooth pieces (docs/theory.md §7).

A ReLU-type network (``nn.ReLU``, ``nn.LeakyReLU`` units) is smooth inside each *activation
region*: the set of ``θ`` where every pre-activation ``z_{iu}`` (data point ``i``, unit ``u``)
keeps its sign. Inside a region the risk equals the smooth *piece* ``R_P`` obtained by fixing
the pattern ``P`` (each unit's output is ``z·P`` for ReLU). Local minima of these networks
typically lie on a *kink*: some pairs have ``z_{iu} = 0`` and the risk is not differentiable.

Here:

* :func:`kinked_modules`: the ReLU-type modules, as the model's family declares them;
* :func:`preactivations` and :func:`kink_margin`: the pre-activations at the data and the
  smallest ``|z|`` relative to ``max(1, max|z|)``;
* :func:`fixed_pattern`: a context in which the model computes the piece ``R_P``;
* :class:`Pieces`: the pieces near ``θ``, their pre-activations and gradients.

:mod:`resland.kinks` polishes a point onto its kink and describes it (Clarke stationarity, one-sided
derivatives, piece minimality), with the active-set Newton polish of :mod:`resland.kink_polish`.

Conventions: mean risk, flat parameters in ``model.parameters()`` order, pairs indexed as
``(activation module j, sample i, unit u)`` with modules in ``model.modules()`` order.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .families import family_of
from .functional import FlatRisk


def kinked_modules(model: nn.Module) -> list[nn.Module]:
    """The ReLU-type activation modules of ``model`` (its family's activation regions), in ``model.modules()``
    order."""
    return family_of(model).kinked_modules(model)


def _slope(mod: nn.Module) -> float:
    return float(getattr(mod, "negative_slope", 0.0))


@contextmanager
def recording(model: nn.Module):
    """Record the input ``z`` of every ReLU-type module during the forward passes in the block."""
    seen: list[torch.Tensor] = []
    hooks = [mod.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0])) for mod in kinked_modules(model)]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def fixed_pattern(model: nn.Module, masks: list[torch.Tensor]):
    """Compute the smooth piece ``R_P``: each ReLU-type module outputs ``z·(P + (1 − P)·slope)``.

    Args:
        masks: one float tensor per module of :func:`kinked_modules`, shape (m, k) like the
            module's input on the full data (1 = the unit is "on").

    Only valid for forward passes on the full data ``X`` the masks were made for.
    """
    mods = kinked_modules(model)
    if len(masks) != len(mods):
        raise ValueError(f"expected {len(mods)} masks, got {len(masks)}")

    def hook_for(mask, slope):
        return lambda _m, inp, _o: inp[0] * (mask + (1.0 - mask) * slope)

    hooks = [mod.register_forward_hook(hook_for(mask, _slope(mod))) for mod, mask in zip(mods, masks)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def preactivations(model: nn.Module, X: torch.Tensor) -> list[torch.Tensor]:
    """The inputs ``z`` (each (m, k)) of the ReLU-type modules on data ``X``, detached."""
    with torch.no_grad(), recording(model) as seen:
        model(X)
    return [z.detach() for z in seen]


def preactivation_extent(model: nn.Module, X: torch.Tensor) -> tuple[float, float] | None:
    """``(min |z_{iu}|, max |z_{iu}|)`` over data points and ReLU-type units (None if there are none)."""
    zs = preactivations(model, X)
    if not zs:
        return None
    return min(float(z.abs().min()) for z in zs), max(float(z.abs().max()) for z in zs)


def kink_margin(model: nn.Module, X: torch.Tensor) -> float | None:
    """``min |z_{iu}| / max(1, max |z_{iu}|)`` over data points and ReLU-type units (None if none).

    Positive at an interior point of an activation region; 0 (to rounding) on a kink.
    """
    ext = preactivation_extent(model, X)
    return None if ext is None else ext[0] / max(1.0, ext[1])


class Pieces:
    """The pieces ``R_P`` of one model near ``θ``, their pre-activations and gradients."""

    def __init__(self, fr: FlatRisk):
        self.fr = fr
        self.mods = kinked_modules(fr.model)
        self.shapes = [z.shape for z in self._z_list(fr.theta0)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]

    def _z_list(self, theta):
        with recording(self.fr.model) as seen:
            self.fr.predict(theta)
        return list(seen)

    def z(self, theta, masks=None) -> torch.Tensor:
        """All pre-activations as one flat vector, shape (m·Σ_l k_l,) (one entry per sample and
        unit), under the pattern ``masks`` if given."""
        if masks is None:
            return torch.cat([z.reshape(-1) for z in self._z_list(theta)])
        with fixed_pattern(self.fr.model, masks):
            return torch.cat([z.reshape(-1) for z in self._z_list(theta)])

    def masks(self, flat_mask: torch.Tensor) -> list[torch.Tensor]:
        """The flat activation pattern (one 0/1 per sample and unit) split into per-layer (m, k) masks."""
        return [p.reshape(s) for p, s in zip(torch.split(flat_mask, self.sizes), self.shapes)]

    def risk(self, theta, flat_mask):
        with fixed_pattern(self.fr.model, self.masks(flat_mask)):
            return self.fr.risk(theta)

    def risk_and_z(self, theta, flat_mask):
        """``R_P(θ)`` and all pre-activations under the pattern, from one forward pass."""
        with fixed_pattern(self.fr.model, self.masks(flat_mask)), recording(self.fr.model) as seen:
            R = self.fr.risk(theta)
        return R, torch.cat([z.reshape(-1) for z in seen])

    def grad(self, theta, flat_mask):
        return torch.func.grad(lambda t: self.risk(t, flat_mask))(theta)

    def pair(self, flat_index: int) -> tuple[int, int, int]:
        j = 0
        while flat_index >= self.sizes[j]:
            flat_index -= self.sizes[j]
            j += 1
        k = self.shapes[j][1]
        return j, flat_index // k, flat_index % k
