"""Model families: the one protocol through which resland asks a network what it is (docs/theory.md §8, §10).

A family declares

* its module class and name (``resnet``, ``fc``, ``linear``; a user ``nn.Module`` is wrapped in the base
  :class:`Family`, named ``custom``), the census grid keys that apply to it and its default activation;
* its parameters and outputs: :meth:`Family.count` (without building), :meth:`Family.outputs` (``k``);
* its exact symmetry directions at θ (:meth:`Family.symmetry_directions`; none for a custom module);
* optionally its closed-form derivatives (:meth:`Family.chain_layout`, the layer layout that
  :mod:`resland.closed_form` differentiates) and its activation regions (:meth:`Family.kinked_modules`,
  the ReLU-type modules :mod:`resland.regions` tracks);
* whether it carries the ResNet quantities of §3–§4 (``residual``: Proposition A, the near-identity
  bounds, the linear probes on block outputs).

Every other module asks :func:`family_of` (a model) or :func:`family` (a name); nothing else branches on a
model's name or class. tests/test_families.py runs one conformance suite over every family.

Symmetry directions (docs/theory.md §8): a tangent ``ξ`` of a one-parameter family of parameter changes
that leaves every prediction unchanged; at a critical point an exact null vector of the Hessian.

* positive rescaling of a hidden unit of a positively homogeneous activation (``relu``,
  ``leaky_relu``): ``(u, b, v) → (αu, αb, v/α)``, tangent ``(u, b, −v)``;
* the last ResNet block's ``V_L`` in directions ``N = a e_jᵀ`` with ``wᵀa = 0`` (``a ∈ null(W)`` for
  ``k`` outputs; all of ``V_L`` when ``w = 0``): ``f`` depends on ``V_L`` only through ``wᵀV_L``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import tolerances as T
from ._checks import ValidationError, check_choice
from .models import KINKED_ACTIVATIONS, FCNet, LinearModel, ResNet

#: Positively homogeneous activations: ``σ(αz) = ασ(z)`` for ``α > 0``.
HOMOGENEOUS = KINKED_ACTIVATIONS
#: Activation modules the closed form differentiates (GELU in its exact form only).
_CLOSED_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Softplus, nn.Tanh)


@dataclass(frozen=True)
class SymmetryDirection:
    """One exact symmetry direction: ``name`` says which, ``vector`` is the flat tangent (n,)."""

    name: str
    vector: torch.Tensor


@dataclass(frozen=True)
class ChainLayout:
    """The layer layout :class:`~resland.closed_form.ChainDerivatives` differentiates: the activation module,
    per layer the parameter names ``(U, b, V)`` (``V`` None for an FC layer, ``b`` None without bias), the
    output's ``(weight, bias)`` names, whether the layers are residual blocks, and the outputs ``k`` (the
    closed-form Hessian is for ``k = 1``; the Jacobian for any ``k``)."""

    activation: nn.Module
    layers: list
    out: tuple
    residual: bool
    outputs: int = 1


class Family:
    """The protocol, and the family of a custom ``nn.Module``: outputs from the module's ``d_out`` when it
    has one (else read off its predictions), no declared symmetry (every zero eigenvalue goes to the
    higher-order test), autodiff derivatives, activation regions of its ReLU-type modules."""

    name = "custom"
    module: type = nn.Module
    #: census grid keys that apply (the others are fixed: depth = width = 1, activation auto, v_scale 1)
    grid_keys: tuple = ()
    default_activation = ""
    #: the chain ResNet's quantities (docs/theory.md §3–§4) exist
    residual = False

    def count(self, d_in: int, *, width: int = 1, depth: int = 1, block_bias: bool = True, d_out: int = 1) -> int:
        """Parameters of the family's seeded start, without building it.

        Raises:
            ValidationError: a custom module (resland does not build it).
        """
        if not hasattr(self.module, "count"):
            raise ValidationError("A custom nn.Module has no seeded start in resland: count its parameters "
                                  "with sum(p.numel() for p in model.parameters()).")
        return self.module.count(d_in, width=width, depth=depth, block_bias=block_bias, d_out=d_out)

    def outputs(self, model: nn.Module) -> int | None:
        """Outputs ``k`` per sample (None: known only from the predictions)."""
        return getattr(model, "d_out", None)

    def symmetry_directions(self, model: nn.Module, theta: torch.Tensor) -> list[SymmetryDirection]:
        """The exact symmetry directions at ``theta`` (flat, in ``model.named_parameters()`` order)."""
        return []

    def chain_layout(self, model: nn.Module) -> ChainLayout | None:
        """The closed form's layout, or None where autodiff serves."""
        return None

    def kinked_modules(self, model: nn.Module) -> list[nn.Module]:
        """The ReLU-type activation modules (activation regions), in ``model.modules()`` order."""
        return [mod for mod in model.modules() if isinstance(mod, KINKED_ACTIVATIONS)]

    def check_core(self, core: nn.Module, target: nn.Module) -> None:
        """Raise :class:`ValidationError` unless ``core`` embeds into ``target`` by zero units
        (:mod:`resland.embedding`; the architectures are already checked to agree but for width and depth)."""
        raise ValidationError(f"A {self.name} model has no zero-unit embedding: use a ResNet or an FC net.")


class ResNetFamily(Family):
    name, module = "resnet", ResNet
    grid_keys = ("depth", "width", "activation", "v_scale", "delta0")
    default_activation = "softplus"
    residual = True

    def symmetry_directions(self, model, theta):
        where = _offsets(model)
        out = []
        if _homogeneous(model):
            for l in range(1, model.depth + 1):
                chain = [f"blocks.{l - 1}.branch.{2 * i}" for i in range(model.branch_layers)] + [f"blocks.{l - 1}.V"]
                out += _rescalings(theta, where, chain, f"block {l} branch")
        return out + _last_block(model, theta, where)

    def check_core(self, core, target):
        return None         # any depth L₀ ≤ L and width k₀ ≤ k: blocks L₀+1..L are zero blocks

    def chain_layout(self, model):
        if model.branch_layers != 1 or not _closed(model.blocks[0].branch[1]):
            return None
        layers = [(f"blocks.{l}.branch.0.weight", f"blocks.{l}.branch.0.bias", f"blocks.{l}.V.weight")
                  for l in range(model.depth)]
        return ChainLayout(model.blocks[0].branch[1], layers, ("out.weight", "out.bias"), True, model.d_out)


class FCFamily(Family):
    name, module = "fc", FCNet
    grid_keys = ("depth", "width", "activation")
    default_activation = "relu"

    def symmetry_directions(self, model, theta):
        if not _homogeneous(model):
            return []
        return _rescalings(theta, _offsets(model), [f"net.{2 * i}" for i in range(model.depth + 1)], "hidden")

    def check_core(self, core, target):
        if core.depth != target.depth:      # an FC layer cannot be made the identity
            raise ValidationError(f"An FC core must have the target's depth ({target.depth}); got {core.depth}.")

    def chain_layout(self, model):
        if not _closed(model.net[1]):
            return None
        layers = [(f"net.{2 * l}.weight", f"net.{2 * l}.bias", None) for l in range(model.depth)]
        return ChainLayout(model.net[1], layers, (f"net.{2 * model.depth}.weight", f"net.{2 * model.depth}.bias"),
                           False, model.d_out)


class LinearFamily(Family):
    name, module = "linear", LinearModel


#: The named families, by the name a census spec or the CLI uses.
FAMILIES: dict[str, Family] = {f.name: f for f in (ResNetFamily(), FCFamily(), LinearFamily())}
_BY_CLASS = {f.module: f for f in FAMILIES.values()}
_CUSTOM = Family()


def family(name: str) -> Family:
    """The family called ``name``.

    Raises:
        ValidationError: an unknown name.
    """
    return FAMILIES[check_choice("model", name, FAMILIES)]


def family_of(model: nn.Module) -> Family:
    """The family of ``model`` (by its exact class: a subclass may change what the family assumes), or the
    custom family."""
    return _BY_CLASS.get(type(model), _CUSTOM)


# ----------------------------------------------------------------------------- symmetry helpers
def _homogeneous(model: nn.Module) -> bool:
    return any(isinstance(m, HOMOGENEOUS) for m in model.modules())


def _closed(act: nn.Module) -> bool:
    if isinstance(act, nn.GELU):
        return act.approximate == "none"
    return isinstance(act, _CLOSED_ACTIVATIONS)


def _offsets(model: nn.Module) -> dict[str, tuple[int, torch.Size]]:
    out, at = {}, 0
    for name, p in model.named_parameters():
        out[name] = (at, p.shape)
        at += p.numel()
    return out


def _rescalings(theta, where, chain: list[str], label: str) -> list[SymmetryDirection]:
    """Rescaling tangents of the hidden units between consecutive linear maps ``chain[t] → chain[t+1]``
    (module name prefixes, e.g. ``net.0`` and ``net.2``)."""
    out = []
    for t, (into, nxt) in enumerate(zip(chain[:-1], chain[1:]), start=1):
        (w_at, w_shape), (v_at, v_shape) = where[f"{into}.weight"], where[f"{nxt}.weight"]
        k, fan_in = w_shape
        bias = where.get(f"{into}.bias")
        for j in range(k):
            xi = torch.zeros_like(theta)
            xi[w_at + j * fan_in: w_at + (j + 1) * fan_in] = theta[w_at + j * fan_in: w_at + (j + 1) * fan_in]
            if bias is not None:
                xi[bias[0] + j] = theta[bias[0] + j]
            cols = v_at + j + v_shape[1] * torch.arange(v_shape[0])
            xi[cols] = -theta[cols]
            if torch.any(xi != 0):
                out.append(SymmetryDirection(f"rescaling of unit {j + 1}, {label} layer {t}", xi))
    return out


def _last_block(model: ResNet, theta, where) -> list[SymmetryDirection]:
    """``V_L`` moved by ``a e_jᵀ`` with ``a ⊥ w``: (d − 1)·k directions (d·k when ``w = 0``); with
    several outputs ``a ∈ null(W)`` (rank of ``W`` by ``d·eps`` relative to its largest singular value)."""
    v_at, (d, k) = where[f"blocks.{model.depth - 1}.V.weight"]
    w_at, (k_out, _) = where["out.weight"]
    if k_out > 1:
        W = theta[w_at: w_at + k_out * d].reshape(k_out, d)
        _, s, Vh = torch.linalg.svd(W, full_matrices=True)
        r = int((s > d * T.eps(W.dtype) * s[0]).sum()) if float(s[0]) > 0 else 0
        basis = Vh[r:].T
    else:
        basis = _perp(theta[w_at: w_at + d])
    out = []
    for j in range(k):
        for i in range(basis.shape[1]):
            xi = torch.zeros_like(theta)
            xi[v_at + j + k * torch.arange(d)] = basis[:, i]
            out.append(SymmetryDirection(f"V_L ⊥ w, column {j + 1}, direction {i + 1}", xi))
    return out


def _perp(w: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of ``w⊥`` (all of ``R^d`` when ``w = 0``)."""
    d = w.shape[0]
    if torch.all(w == 0):
        return torch.eye(d, dtype=w.dtype, device=w.device)
    # the last d − 1 left singular vectors of w
    return torch.linalg.svd(w[:, None], full_matrices=True)[0][:, 1:]
