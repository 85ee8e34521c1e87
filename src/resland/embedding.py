"""Zero-unit embedding: a critical point of a narrower or shallower network is one of a wider or deeper
network (docs/theory.md §11).

Let the *core* be a ResNet of depth ``L₀`` and width ``k₀`` and the *target* a ResNet of depth ``L ≥ L₀`` and
width ``k ≥ k₀`` with the same input, outputs, biases and activation ``σ``. The embedding copies the core's
``U_l, b_l, V_l`` into the first ``k₀`` units of blocks ``1..L₀`` and its output ``(w, c)``; every other unit
has a zero incoming row, a zero bias and a zero outgoing column (blocks ``L₀+1..L`` are zero blocks). For an
FC net the depth must match and only widths grow. Conventions: mean risk, flat parameters in
``model.parameters()`` order.

**Exactness** needs ``σ(0) = 0`` (``tanh``, ``gelu``): a zero unit then outputs ``σ(0)·0 = 0`` exactly, so
every prediction — and every iterate of a path of the core — is the same in the target. At a critical point
of the core the target's gradient vanishes too: a zero unit's outgoing column has gradient
``E[δ σ(0)] = 0``, its incoming row and bias ``σ'(0)·E[(vᵀδ) h] = 0`` because ``v = 0``. ReLU-type
activations are refused: a zero unit's pre-activation is exactly 0 on every sample, a kink.

**Curvature** (ResNets; proof in docs/theory.md §11). Write ``δ_l = ∂ℓ_i/∂h_l``. At every critical point of a
chain ResNet ``M_l = E[δ_l h_{l−1}ᵀ] = 0`` and ``E[δ_l] = 0`` for every block ``l`` (``M_L = wE[ℓ'h_{L−1}ᵀ]`` vanishes
with ``∂R/∂w``, ``∂R/∂V_L``; ``M_l = M_{l+1} − (∂R/∂V_l)V_lᵀ`` and ``E[δ_l] = E[δ_{l+1}]`` by ``∂R/∂U_{l+1}``,
``∂R/∂b_{l+1}``). A zero unit's Hessian block couples ``(u, b, v)`` only through ``σ'(0)·M_l`` and ``E[δ_l]``, so
at an embedded critical point the target's Hessian is the core's ⊕ 0: the same negative eigenvalues (a strict
saddle of the core is one of the target), and a null space of at least the zero units' parameters. For an FC
net the coupling is ``E[g_{l+1} a_{l−1}ᵀ]``, not a gradient, and zero units can carry negative curvature; the
certificate measures it.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ._checks import ValidationError
from .models import ACTIVATIONS

#: Activations with ``σ(0) = 0`` and a derivative at 0: zero units are exact and smooth.
EMBEDDABLE = ("tanh", "gelu")


def embed(core: nn.Module, target: nn.Module) -> nn.Module:
    """A copy of ``target`` carrying ``core``'s parameters in its leading units and blocks, zeros elsewhere.

    Args:
        core: the smaller network (same family, input, outputs, biases and activation as ``target``).
        target: the network to embed into; its parameter values are not read and it is not changed.

    Raises:
        ValidationError: different families or architectures, a core larger than the target, a family that
            cannot embed (linear, custom; FC of another depth), or an activation with ``σ(0) ≠ 0`` or a kink.
    """
    from .families import family_of

    check_embeddable(core, target)
    family_of(target).check_core(core, target)
    out = copy.deepcopy(target)
    mine = dict(core.named_parameters())
    with torch.no_grad():
        for name, p in out.named_parameters():
            p.zero_()
            if name in mine:
                p[tuple(slice(0, s) for s in mine[name].shape)] = mine[name]
    return out


def check_embeddable(core: nn.Module, target: nn.Module) -> None:
    """Raise :class:`ValidationError` unless ``core`` fits into ``target`` by leading slices."""
    if type(core) is not type(target):
        raise ValidationError(f"The core and the target must be the same kind of network. Got "
                              f"{type(core).__name__} and {type(target).__name__}.")
    ck, tk = core.config(), target.config()
    act = tk.get("activation")
    if act not in EMBEDDABLE:
        raise ValidationError(f"Zero units are exact only for activations with σ(0) = 0 and a derivative at 0 "
                              f"({', '.join(EMBEDDABLE)}). Got {act!r}.")
    for key in sorted(set(ck) | set(tk)):
        if key not in ("width", "depth") and ck.get(key) != tk.get(key):
            raise ValidationError(f"The core's {key} ({ck.get(key)!r}) differs from the target's ({tk.get(key)!r}).")
    if ck.get("width", 1) > tk.get("width", 1) or ck.get("depth", 1) > tk.get("depth", 1):
        raise ValidationError(f"The core (depth {ck.get('depth')}, width {ck.get('width')}) must not be deeper or "
                              f"wider than the target (depth {tk.get('depth')}, width {tk.get('width')}).")
    names = dict(target.named_parameters())
    for name, p in core.named_parameters():
        if name not in names or any(a > b for a, b in zip(p.shape, names[name].shape)):
            raise ValidationError(f"The core's parameter {name} {tuple(p.shape)} has no place in the target.")


def zero_activation(name: str) -> bool:
    """Whether zero units are exact for the named activation (``σ(0) = 0``, smooth at 0)."""
    return name in EMBEDDABLE and name in ACTIVATIONS


def embedded_point(cp, target: nn.Module):
    """The finder's result ``cp`` (a :class:`~resland.outcomes.CriticalPoint` of a core) carried into ``target``:
    the same run — every iterate of the core's path is an iterate of the target's with the same risk — with
    the model replaced by :func:`embed` of it. The certificate recomputes ``R`` and ``∇R`` in the target."""
    from .functional import flat_parameters

    model = embed(cp.model, target)
    core = cp.model.config()
    parameters = None if cp.parameters is None else flat_parameters(model.parameters()).tolist()
    return dataclasses.replace(cp, model=model, parameters=parameters,
                               message=f"{cp.message} (on the depth-{core.get('depth')} width-{core.get('width')} "
                                       f"core, embedded by zero units)")
