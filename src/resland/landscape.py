"""Loss-landscape slices (Li, Xu, Taylor, Studer & Goldstein 2018) through any point of any model.

* :func:`random_direction`: a Gaussian direction in ``model.parameters()`` order, *filter-normalised*: each row of
  every weight matrix (each filter) rescaled to the norm of the same row of ``θ``; bias entries (one-dimensional
  parameters) set to zero (docs/theory.md §11 of the paper notes). ``normalize="none"`` gives a unit vector.
* :func:`slice_1d`: ``R(θ + r d)`` for every radius ``r``, a tensor (len(radii),).
* :func:`slice_2d`: ``R(θ + a d₁ + b d₂)`` on the grid, a tensor (len(radii1), len(radii2)).

The risks are exact mean risks (one batched ``vmap`` call through :class:`~resland.functional.FlatRisk`); a
direction can also be an eigenvector (:func:`resland.spectra.eigenpairs`) or a certificate's escape direction.

Conventions: mean risk, squared loss without 1/2, float64.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import ValidationError, check_choice
from .functional import FlatRisk, flat_parameters, prepare_model

__all__ = ["random_direction", "slice_1d", "slice_2d"]


def random_direction(model: nn.Module, normalize: str = "filter", seed: int = 0) -> torch.Tensor:
    """A random direction (n,) in ``model.parameters()`` order (module docstring).

    >>> import resland
    >>> net = resland.ResNet(3, 2, 1, "tanh")
    >>> d = random_direction(net, seed=1)
    >>> bool(d[6:8].eq(0).all())            # the branch bias b_1 (entries 6, 7, after U_1) is zeroed
    True
    """
    check_choice("normalize", normalize, ("filter", "none"))
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for p in model.parameters():
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if normalize == "filter":
            if p.ndim <= 1:
                d = torch.zeros_like(d)
            else:
                rows_d = d.reshape(d.shape[0], -1)
                rows_p = p.detach().to(torch.float64).reshape(p.shape[0], -1)
                scale = rows_p.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True).clamp(min=1e-300)
                d = (rows_d * scale).reshape(p.shape)
        parts.append(d.reshape(-1))
    out = torch.cat(parts)
    return out / out.norm() if normalize == "none" else out


def _points(model: nn.Module, X, y, loss, thetas: torch.Tensor) -> torch.Tensor:
    fr = FlatRisk(prepare_model(model), X, y, loss)
    return torch.vmap(fr.risk)(thetas)


def _check_direction(model: nn.Module, d, name: str) -> torch.Tensor:
    n = sum(p.numel() for p in model.parameters())
    d = torch.as_tensor(d, dtype=torch.float64).reshape(-1)
    if d.numel() != n or not bool(torch.isfinite(d).all()):
        raise ValidationError(f"The '{name}' parameter must be a finite flat tensor of {n} entries "
                              f"(model.parameters() order). Got {d.numel()} entries.")
    return d


def slice_1d(model: nn.Module, X, y, direction, radii, loss: str = "squared") -> torch.Tensor:
    """``R(θ + r·direction)`` for each ``r`` in ``radii``: a float64 tensor (len(radii),)."""
    d = _check_direction(model, direction, "direction")
    r = torch.as_tensor(radii, dtype=torch.float64).reshape(-1)
    theta = flat_parameters(model.parameters()).to(torch.float64)
    return _points(model, X, y, loss, theta[None, :] + r[:, None] * d[None, :])


def slice_2d(model: nn.Module, X, y, d1, d2, radii1, radii2, loss: str = "squared") -> torch.Tensor:
    """``R(θ + a·d1 + b·d2)`` for ``a`` in ``radii1`` and ``b`` in ``radii2``: a tensor (len(radii1), len(radii2))."""
    d1, d2 = _check_direction(model, d1, "d1"), _check_direction(model, d2, "d2")
    a = torch.as_tensor(radii1, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(radii2, dtype=torch.float64).reshape(-1)
    theta = flat_parameters(model.parameters()).to(torch.float64)
    grid = theta + a[:, None, None] * d1 + b[None, :, None] * d2
    return _points(model, X, y, loss, grid.reshape(-1, theta.numel())).reshape(len(a), len(b))
