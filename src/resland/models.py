"""Models with ``k = d_out`` outputs (one by default), all ``torch.nn.Module`` in float64 by default.

* :class:`ResNet`, the chain ResNet of docs/theory.md §1::

      h_0 = x,   h_l = h_{l-1} + V_l φ_l(h_{l-1})   (l = 1..L),   f(x) = wᵀ h_L + c
      (k outputs: f(x) = W h_L + c with W ∈ R^{k×d}, c ∈ R^k)

  with ``φ_l`` an MLP of ``branch_layers`` hidden layers, each ``σ(U h + b)``;
  ``V_l`` (``d × k``, no bias) is the branch's last linear map.
* :class:`FCNet`: ``f(x) = W_{L+1} σ(… σ(W_1 x + b_1) …) + b_{L+1}``.
* :class:`LinearModel`: ``f(x) = tᵀx + t0``.

``forward`` maps ``X`` of shape (m, d) to predictions of shape (m,) (``d_out = 1``) or (m, k).
``config()`` names ``d_out`` only when it is not 1 (so one-output configs keep their census ids).
Blocks are numbered from 1 as in the theory: ``model.U(1)`` is ``U_1``.
"""

from __future__ import annotations

import torch
from torch import nn

from . import tolerances as T
from ._checks import ValidationError, check_choice, check_positive_int, check_scalar

ACTIVATIONS = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}
#: Activations with a kink at 0: the Hessian is undefined where a pre-activation is 0.
KINKED_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module from its name.

    Raises:
        ValidationError: an unknown activation name.
    """
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()


class ResidualBlock(nn.Module):
    """One block ``h ↦ h + V φ(h)`` with ``φ(h) = σ(U_j … σ(U_1 h + b_1) … + b_j)``."""

    def __init__(self, d: int, width: int, activation: str, bias: bool, branch_layers: int, dtype):
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = d
        for _ in range(branch_layers):
            layers += [nn.Linear(fan_in, width, bias=bias, dtype=dtype), make_activation(activation)]
            fan_in = width
        self.branch = nn.Sequential(*layers)
        self.V = nn.Linear(width, d, bias=False, dtype=dtype)

    def phi(self, h: torch.Tensor) -> torch.Tensor:
        """The branch output ``φ(h)`` (before ``V``)."""
        return self.branch(h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h + V φ(U h + b)`` for ``h`` of shape (m, d)."""
        return h + self.V(self.branch(h))


class ResNet(nn.Module):
    """Chain ResNet ``h_l = h_{l-1} + V_l φ_l(h_{l-1})``, ``f = wᵀh_L + c`` (docs/theory.md §1).

    Args:
        d_in: input dimension ``d`` (every ``h_l`` lives in ``R^d``).
        width: hidden width ``k`` of each residual branch.
        depth: number of blocks ``L`` (``L = 1`` is Shamir's ResNet).
        activation: ``relu``, ``softplus``, ``tanh``, ``gelu`` or ``leaky_relu``.
        out_bias: whether the output has the bias ``c``.
        block_bias: whether the branch layers have biases ``b_l``.
        branch_layers: hidden layers per branch (1 gives ``φ_l(h) = σ(U_l h + b_l)``).
        d_out: outputs ``k`` (``f = W h_L + c``, ``W ∈ R^{k×d}``); 1 gives the scalar ``f = wᵀh_L + c``.
        dtype: parameter dtype (float64 by default).

    Example:
        >>> import torch, resland
        >>> _ = torch.manual_seed(0)
        >>> net = resland.ResNet(3, width=4, depth=2)
        >>> hs = net.hidden_states(torch.randn(5, 3, dtype=torch.float64))
        >>> len(hs), tuple(hs[-1].shape)
        (3, (5, 3))
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        activation: str = "softplus",
        out_bias: bool = True,
        block_bias: bool = True,
        branch_layers: int = 1,
        *,
        d_out: int = 1,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        self.d_in = check_positive_int("d_in", d_in)
        self.d_out = check_positive_int("d_out", d_out)
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.branch_layers = check_positive_int("branch_layers", branch_layers)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.out_bias = bool(out_bias)
        self.block_bias = bool(block_bias)
        self.blocks = nn.ModuleList(
            ResidualBlock(d_in, width, activation, block_bias, branch_layers, dtype) for _ in range(depth)
        )
        self.out = nn.Linear(d_in, self.d_out, bias=out_bias, dtype=dtype)

    @staticmethod
    def count(d_in: int, *, width: int, depth: int, block_bias: bool = True, d_out: int = 1) -> int:
        """Parameters of a one-layer-branch ResNet (:func:`param_count`)."""
        return depth * (width * d_in + width * block_bias + d_in * width) + (d_in + 1) * d_out

    @classmethod
    def start(cls, d_in: int, *, width: int, depth: int, activation: str | None, v_scale: float,
              delta0: float | None, d_out: int) -> "ResNet":
        """The seeded start of :func:`init_model` (the seed already set): every ``V_l`` times ``v_scale``, or
        the near-identity start of budget ``delta0``."""
        model = cls(d_in, width, depth, activation or "softplus", block_bias=delta0 is None, d_out=d_out)
        if delta0 is not None:
            scale_to_budget(model, delta0)
        else:
            with torch.no_grad():
                for l in range(1, depth + 1):
                    model.V(l).mul_(v_scale)
        return model

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the architecture."""
        return _with_outputs({
            "model": "resnet",
            "d_in": self.d_in,
            "width": self.width,
            "depth": self.depth,
            "activation": self.activation,
            "out_bias": self.out_bias,
            "block_bias": self.block_bias,
            "branch_layers": self.branch_layers,
        }, self.d_out)

    # Per-block access, 1-based like the theory.
    def _block(self, l: int) -> ResidualBlock:
        if not 1 <= l <= self.depth:
            raise IndexError(f"block index l must be in 1..{self.depth}, got {l}")
        return self.blocks[l - 1]

    def U(self, l: int) -> torch.Tensor:
        """``U_l``: the first branch weight of block ``l`` (``k × d``)."""
        return self._block(l).branch[0].weight

    def b(self, l: int) -> torch.Tensor | None:
        """``b_l`` (k,): the first branch bias of block ``l`` (None without block biases)."""
        return self._block(l).branch[0].bias

    def V(self, l: int) -> torch.Tensor:
        """``V_l``: the last linear map of block ``l`` (``d × k``)."""
        return self._block(l).V.weight

    @property
    def w(self) -> torch.Tensor:
        """Output weights: ``w ∈ R^d``, shape (d,), for one output; ``W``, shape (k, d), for ``k``."""
        return self.out.weight[0] if self.d_out == 1 else self.out.weight

    @property
    def c(self) -> torch.Tensor | None:
        """Output bias ``c``: shape () for one output, (k,) for ``k`` (None when ``out_bias=False``)."""
        if self.out.bias is None:
            return None
        return self.out.bias[0] if self.d_out == 1 else self.out.bias

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[h_0, h_1, …, h_L]``, each of shape (m, d)."""
        hs = [x]
        for block in self.blocks:
            hs.append(block(hs[-1]))
        return hs

    def trace(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``([h_0..h_L], [φ_1..φ_L])`` with ``φ_l = φ_l(h_{l-1})`` of shape (m, k)."""
        hs, phis = [x], []
        for block in self.blocks:
            phi = block.phi(hs[-1])
            phis.append(phi)
            hs.append(hs[-1] + block.V(phi))
        return hs, phis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x) = wᵀh_L + c`` for inputs ``x`` of shape (m, d); returns (m,), or (m, k) for ``k`` outputs."""
        h = x
        for block in self.blocks:
            h = block(h)
        return _squeeze(self.out(h), self.d_out)


class FCNet(nn.Module):
    """Fully-connected net ``f(x) = W_{L+1} σ(… σ(W_1 x + b_1) …) + b_{L+1}`` with ``L`` hidden layers."""

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        activation: str = "relu",
        out_bias: bool = True,
        *,
        d_out: int = 1,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        self.d_in = check_positive_int("d_in", d_in)
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.out_bias = bool(out_bias)
        self.d_out = check_positive_int("d_out", d_out)
        layers: list[nn.Module] = []
        fan_in = d_in
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width, dtype=dtype), make_activation(activation)]
            fan_in = width
        layers.append(nn.Linear(fan_in, self.d_out, bias=out_bias, dtype=dtype))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def count(d_in: int, *, width: int, depth: int, block_bias: bool = True, d_out: int = 1) -> int:
        """Parameters of an FC net (:func:`param_count`)."""
        return d_in * width + width + (depth - 1) * (width * width + width) + (width + 1) * d_out

    @classmethod
    def start(cls, d_in: int, *, width: int, depth: int, activation: str | None, v_scale: float,
              delta0: float | None, d_out: int) -> "FCNet":
        """The seeded start of :func:`init_model` (PyTorch's default initialisation)."""
        return cls(d_in, width, depth, activation or "relu", d_out=d_out)

    def config(self) -> dict:
        return _with_outputs({
            "model": "fc",
            "d_in": self.d_in,
            "width": self.width,
            "depth": self.depth,
            "activation": self.activation,
            "out_bias": self.out_bias,
        }, self.d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions for inputs ``x`` of shape (m, d); returns (m,), or (m, k) for ``k`` outputs."""
        return _squeeze(self.net(x), self.d_out)


class LinearModel(nn.Module):
    """Linear predictor ``f(x) = tᵀx + t0`` (``t0`` present when ``bias=True``)."""

    def __init__(self, d_in: int, bias: bool = True, *, d_out: int = 1, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.d_in = check_positive_int("d_in", d_in)
        self.d_out = check_positive_int("d_out", d_out)
        self.out_bias = bool(bias)
        self.linear = nn.Linear(d_in, self.d_out, bias=bias, dtype=dtype)

    @staticmethod
    def count(d_in: int, *, width: int = 1, depth: int = 1, block_bias: bool = True, d_out: int = 1) -> int:
        """Parameters of ``tᵀx + t0`` (:func:`param_count`)."""
        return (d_in + 1) * d_out

    @classmethod
    def start(cls, d_in: int, *, width: int, depth: int, activation: str | None, v_scale: float,
              delta0: float | None, d_out: int) -> "LinearModel":
        """The seeded start of :func:`init_model`."""
        return cls(d_in, d_out=d_out)

    @classmethod
    def from_config(cls, config: dict) -> "LinearModel":
        return cls(config["d_in"], bias=config.get("out_bias", True), d_out=config.get("d_out", 1))

    def config(self) -> dict:
        return _with_outputs({"model": "linear", "d_in": self.d_in, "out_bias": self.out_bias}, self.d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``tᵀx + t0`` for inputs ``x`` of shape (m, d); returns (m,), or ``Tx + t0`` (m, k) for ``k`` outputs."""
        return _squeeze(self.linear(x), self.d_out)


def _squeeze(out: torch.Tensor, d_out: int) -> torch.Tensor:
    return out.squeeze(-1) if d_out == 1 else out


def _with_outputs(config: dict, d_out: int) -> dict:
    return config if d_out == 1 else {**config, "d_out": d_out}


MODELS = {"resnet": ResNet, "fc": FCNet, "linear": LinearModel}


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from :meth:`config` output (``{"model": name, ...}``).

    Raises:
        ValidationError: an unknown model name or a bad width, depth or activation.
    """
    config = dict(config)
    cls = MODELS[check_choice("model", config.pop("model", None), MODELS)]
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)




@torch.no_grad()
def block_gain(model: ResNet, l: int) -> float:
    """``‖V_l‖₂ ‖U_l‖₂``: block ``l``'s share of ``δ = Σ_l ‖V_l‖₂‖U_l‖₂`` (docs/theory.md §4.3)."""
    return float(torch.linalg.matrix_norm(model.V(l), ord=2) * torch.linalg.matrix_norm(model.U(l), ord=2))


@torch.no_grad()
def scale_to_budget(model: ResNet, delta0: float) -> None:
    """Rescale every ``V_l`` in place so that ``‖V_l‖₂‖U_l‖₂ = δ₀/L``, hence ``δ = δ₀``."""
    for l in range(1, model.depth + 1):
        model.V(l).mul_(delta0 / model.depth / block_gain(model, l))


def param_count(name: str, d_in: int, *, width: int = 4, depth: int = 1, block_bias: bool = True,
                d_out: int = 1) -> int:
    """Number of parameters of :func:`init_model`'s model (one-layer branches), without building it.

    ``block_bias=False``: a ResNet without the branch biases ``b_l`` (:func:`init_model` with ``delta0``)."""
    return MODELS[check_choice("model", name, MODELS)].count(d_in, width=width, depth=depth, block_bias=block_bias,
                                                             d_out=d_out)


def init_model(name: str, d_in: int, *, width: int = 4, depth: int = 1, activation: str | None = None,
               seed: int = 0, v_scale: float = 1.0, delta0: float | None = None, d_out: int = 1) -> nn.Module:
    """A seeded fresh model, the one initialisation the CLI and the census share (``d_out`` outputs).

    ``torch.manual_seed(seed)``, then the constructor (PyTorch's default initialisation);
    for a ResNet every ``V_l`` is then multiplied by ``v_scale`` (near-identity starts).
    ``activation`` defaults to softplus (ResNet) or relu (FCNet).

    ``delta0`` (ResNets only): a start inside the near-identity region of docs/theory.md §4.3,
    a ResNet without branch biases (the class §4.3's a-priori bound is proved for) whose every
    ``V_l`` is rescaled so that ``‖V_l‖₂‖U_l‖₂ = δ₀/L``, hence ``δ = Σ_l ‖V_l‖₂‖U_l‖₂ = δ₀``
    (``v_scale`` must then be 1).

    Raises:
        ValidationError: an unknown model or activation, a non-positive width or depth, more
            than :data:`~resland.tolerances.MAX_PARAMS` parameters, or ``delta0`` that is not
            positive, given for a model other than a ResNet, or with ``v_scale`` ≠ 1.
    """
    check_choice("model", name, MODELS)
    if delta0 is not None:
        check_scalar(delta0, "delta0", float, min_val=0, include_boundaries="neither")
        if MODELS[name] is not ResNet or v_scale != 1.0:
            raise ValidationError(f"The 'delta0' start applies to ResNets with v_scale 1 only. Got model {name!r}, "
                                  f"v_scale {v_scale!r}.")
    n = param_count(name, d_in, width=width, depth=depth, block_bias=delta0 is None, d_out=d_out)
    if n > T.MAX_PARAMS:
        raise ValidationError(
            f"The model would have {n:.3g} parameters ({8 * n / 2**30:.3g} GiB in float64); the limit is "
            f"{T.MAX_PARAMS:.0e}. Choose a smaller 'width' or 'depth'."
        )
    torch.manual_seed(seed)
    return MODELS[name].start(d_in, width=width, depth=depth, activation=activation, v_scale=v_scale, delta0=delta0,
                              d_out=d_out)
