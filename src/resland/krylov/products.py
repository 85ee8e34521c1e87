"""Exact full-batch products over chunks of samples: risk, gradient, Hessian- and GGN-vector products.

:class:`ChunkedRisk` is a :class:`~resland.functional.FlatRisk` whose risk, gradient and
curvature products are sums over chunks of ``c`` samples, each chunk one ``torch.func``
transform. Nothing is approximated (the risk stays the full-batch mean); only the order of the
floating-point sum differs from the one-batch computation. Memory is that of one chunk's
activations (``O(c · width · depth)``) plus a few vectors of length ``n``: no ``m × n``
Jacobian and no ``n × n`` matrix is ever formed.

Conventions (docs/theory.md §1): ``R(θ) = (1/m) Σ_i ℓ(f_θ(x_i); y_i)``, squared loss
``(p − y)²`` without 1/2; ``H = ∇²R(θ)``; the generalised Gauss–Newton matrix
``G = (1/m) Jᵀ diag(ℓ''(f_i)) J`` with ``J`` the m × n Jacobian of the predictions.

Where at most ``CACHED_CHUNKS`` chunks make up the data, the autograd graphs of one iterate are kept
and every product is one backward pass through them (2–3× faster than recomputing the chunk's
forward pass; docs/performance.md); above, each product recomputes its chunks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import grad, jvp, vjp

from .. import tolerances as T
from .._checks import check_positive_int
from ..functional import FlatRisk
from ..losses import Loss


def activation_floats(model: nn.Module, x: torch.Tensor) -> int:
    """Floats of every leaf module's output for one sample ``x`` (1, d): the activations a chunk keeps per row."""
    total = [0]
    hooks = [mod.register_forward_hook(lambda _m, _i, out: total.__setitem__(0, total[0] + out.numel()))
             for mod in model.modules() if not list(mod.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return max(total[0], x.numel())


def chunk_rows(model: nn.Module, X: torch.Tensor, budget: int = T.CHUNK_BYTES) -> int:
    """Rows per chunk so that one forward-over-reverse product keeps at most ``budget`` bytes of
    activations (``CHUNK_COPIES`` copies of each activation, float64), at least ``CHUNK_MIN_ROWS``."""
    per_row = activation_floats(model, X[:1]) * X.element_size() * T.CHUNK_COPIES
    return int(min(X.shape[0], max(T.CHUNK_MIN_ROWS, budget // per_row)))


class ChunkedRisk(FlatRisk):
    """The mean risk of ``model`` on ``(X, y)`` with every full-batch quantity summed over chunks.

    Args:
        model, X, y, loss: as :class:`~resland.functional.FlatRisk`.
        chunk: samples per chunk (default :func:`chunk_rows`: the activation budget ``CHUNK_BYTES``).

    Attributes:
        chunk: the chunk size; slices: the chunks, in order; products: Hessian/GGN-vector products so far.
    """

    def __init__(self, model: nn.Module, X, y, loss: str | Loss = "squared", *, chunk: int | None = None):
        self.slices = None
        super().__init__(model, X, y, loss)
        self.chunk = chunk_rows(model, self.X) if chunk is None else check_positive_int("chunk", chunk)
        self.slices = [slice(i, min(i + self.chunk, self.m)) for i in range(0, self.m, self.chunk)]
        self.products = 0
        self._cache = None

    # The pieces: one chunk's predictions and its share of the risk, (1/m) Σ_{i ∈ s} ℓ_i.
    def _predict(self, theta: torch.Tensor, s: slice) -> torch.Tensor:
        return FlatRisk.predict(self, theta, self.X[s])

    def _part(self, theta: torch.Tensor, s: slice) -> torch.Tensor:
        return self.loss.value(self._predict(theta, s), self.y[s]).sum() / self.m

    def predict(self, theta: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions ``f_θ(x_i)`` (m,), chunk by chunk."""
        if X is not None or self.slices is None:
            return super().predict(theta, X)
        return torch.cat([self._predict(theta, s) for s in self.slices])

    def risk(self, theta: torch.Tensor) -> torch.Tensor:
        """Mean risk ``R(θ)`` (a 0-d tensor), summed over chunks."""
        return sum(self._part(theta, s) for s in self.slices)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """``∇R(θ)``: one reverse pass per chunk."""
        return sum(grad(self._part)(theta, s) for s in self.slices)

    def risk_and_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(R(θ), ∇R(θ))``, one reverse pass per chunk."""
        R, g = 0.0, torch.zeros_like(theta)
        for s in self.slices:
            gs, rs = grad(lambda t: (self._part(t, s),) * 2, has_aux=True)(theta)
            R, g = R + float(rs), g + gs
        return R, g

    def tvp(self, theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``∇³R(θ)[u, u, ·]`` (n,): forward-over-forward-over-reverse per chunk."""
        def one(s):
            return jvp(lambda t: jvp(lambda t2: grad(self._part)(t2, s), (t,), (u,))[1], (theta,), (u,))[1]
        return sum(one(s) for s in self.slices)

    def graphs(self, theta: torch.Tensor) -> list | None:
        """Per chunk, the retained autograd graphs of the predictions ``p``, of ``∇R`` and of ``Jᵀu`` at
        ``theta`` (then a product is one backward pass through them, no forward), when at most
        ``CACHED_CHUNKS`` chunks hold them; None above (every product recomputes its chunk).
        Kept for the last ``theta`` object asked (the solver asks with one tensor per iterate)."""
        if self._cache is not None and self._cache[0] is theta:
            return self._cache[1]
        self._cache = None
        if len(self.slices) > T.CACHED_CHUNKS:
            return None
        out = []
        with torch.enable_grad():
            t = theta.detach().requires_grad_(True)
            for s in self.slices:
                p = self._predict(t, s)
                (g,) = torch.autograd.grad(self.loss.value(p, self.y[s]).sum() / self.m, t, create_graph=True)
                u0 = torch.zeros_like(p, requires_grad=True)
                (gu,) = torch.autograd.grad(p, t, u0, create_graph=True)
                out.append((t, p, g, u0, gu, self._curvature(p.detach(), self.y[s])))
        self._cache = (theta, out)
        return out

    def hvp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V`` of shape (n,) or (n, b): a backward pass through the retained gradient graphs
        (:meth:`graphs`), else forward-over-reverse per chunk."""
        block = V.ndim == 2
        self.products += V.shape[1] if block else 1
        cached = self.graphs(theta)
        if cached is not None:
            cols = V.T if block else V[None]
            with torch.enable_grad():
                res = [sum(torch.autograd.grad(g, t, v, retain_graph=True)[0] for t, _, g, _, _, _ in cached)
                       for v in cols]
            return torch.stack(res, 1) if block else res[0]

        def one(v, s):
            return jvp(lambda t: grad(self._part)(t, s), (theta,), (v,))[1]

        out = torch.zeros_like(V)
        for s in self.slices:
            out += torch.vmap(lambda v: one(v, s), in_dims=1, out_dims=1)(V) if block else one(V, s)
        return out

    def ggn(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``G v = (1/m) Jᵀ diag(ℓ'') J v`` for ``v`` (n,): a JVP and a VJP per chunk (``diag(ℓ'')``: each
        sample's output Hessian, :meth:`~resland.losses.Loss.d2v`, for ``k`` outputs)."""
        self.products += 1
        cached = self.graphs(theta)
        if cached is not None:
            out = torch.zeros_like(v)
            with torch.enable_grad():
                for t, p, _, u0, gu, d2 in cached:
                    (jv,) = torch.autograd.grad(gu, u0, v, retain_graph=True)
                    out += torch.autograd.grad(p, t, d2(jv), retain_graph=True)[0]
            return out
        out = torch.zeros_like(v)
        for s in self.slices:
            p, jv = jvp(lambda t: self._predict(t, s), (theta,), (v,))
            _, pullback = vjp(lambda t: self._predict(t, s), theta)
            if self.loss.coupled:
                out += pullback(self.loss.d2v(p, self.y[s], jv) / self.m)[0]
            else:
                out += pullback(self.loss.d2(p, self.y[s]) * jv / self.m)[0]
        return out

    def _curvature(self, p: torch.Tensor, y: torch.Tensor):
        """``u ↦ (1/m) ℓ''·u`` at one chunk's predictions (the output Hessian's product for a coupled loss)."""
        if self.loss.coupled:
            return lambda u: self.loss.d2v(p, y, u) / self.m
        d2 = self.loss.d2(p, y) / self.m
        return lambda u: d2 * u


def risk_of(model: nn.Module, X, y, loss: str | Loss = "squared") -> FlatRisk:
    """The risk view a computation should use: chunked above ``CHUNKED_MIN_ROWS`` samples, else one batch
    (so the small problems of the atlas keep their one-batch rounding)."""
    m = len(X)
    return ChunkedRisk(model, X, y, loss) if m >= T.CHUNKED_MIN_ROWS else FlatRisk(model, X, y, loss)
