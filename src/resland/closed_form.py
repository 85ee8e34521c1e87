"""Closed-form derivatives of the chain ResNet and the FC net: prediction Jacobians and the dense Hessian.

For the two architectures of :mod:`resland.models` (one-layer branches), the per-sample
Jacobian ``J = ∂f(x_i)/∂θ`` (m × n) and the Hessian of the risk are assembled from the layers'
own derivatives with batched matrix products, for a stack of ``K`` members at once. This is
the fast path of :meth:`HessianOperator.dense <resland.curvature.HessianOperator.dense>` and
:meth:`Ensemble.jacobian <resland.ensemble.Ensemble.jacobian>` for small ``n``, where
autodiff's ``n`` forward-over-reverse passes spend their time on tensors with an inner
dimension of 1–2 (docs/performance.md).

**The formula.** With ``R(θ) = (1/m) Σ_i ℓ(f_i; y_i)``, ``c_i = ℓ'(f_i)/m`` and ``D_i = ℓ''(f_i)/m``:

    ∇²R = Jᵀ diag(D) J + Σ_i c_i ∇²f_i.

The second term is the Hessian of ``Φ = Σ_i c_i f_i`` with ``c`` held fixed. For a chain
``s_l = F_l(s_{l-1}; θ_l)`` with forward Jacobians ``T_l = ∂s_l/∂θ`` and adjoints
``a_l = ∂Φ/∂s_l``, the second-order chain rule gives

    ∇²Φ = Σ_l  ∂(s_{l-1}, θ_l)/∂θᵀ · ∇²⟨a_l, F_l⟩ · ∂(s_{l-1}, θ_l)/∂θ,

one term per layer. A ResNet block ``F(h) = h + V σ(z)``, ``z = U h + b``, with ``u = Vᵀa``
contributes ``Dzᵀ diag(u ⊙ σ''(z)) Dz`` (``Dz = ∂z/∂θ``, the curvature of ``σ``), the
bilinear ``V``–``z`` term ``∂²/∂V_pq∂θ = a_p σ'(z_q) Dz_q`` and the bilinear ``U``–``h`` term
``∂²/∂U_rj∂θ = u_r σ'(z_r) T_{l-1,j}`` (each with its transpose); an FC layer
``F(s) = σ(W s + b)`` the first and the last of these. The output ``f = wᵀs_L + c`` adds the
bilinear ``w``–``s_L`` term. Activations are differentiated as autograd does (ReLU-type:
``σ' = 1[z > 0]`` or the negative slope, ``σ'' = 0``: the current region's piece).

Memory: one layer's forward Jacobians at a time, about ``4 · K · m · width · n + 2 K n²``
floats (``width`` the larger of d and k); :meth:`ChainDerivatives.member_chunk` picks how many
members go through at once.

Conventions: mean risk, squared loss ``(p − y)²`` without 1/2, flat parameters in
``model.parameters()`` order. Tested against ``torch.func.hessian`` (tests/test_closed_form.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .families import family_of

#: Float budget of one chunk's working tensors (128 Mi floats: 1 GiB in float64).
CHUNK_FLOATS = 2**27


def supports(model: nn.Module) -> bool:
    """Whether the closed form covers ``model``'s Jacobian: its family declares a chain layout
    (:meth:`~resland.families.Family.chain_layout`: a ResNet with one-layer branches or an FC net, an
    activation of :data:`~resland.models.ACTIVATIONS` in its default form). Its Hessian: one output only
    (:attr:`ChainDerivatives.k`)."""
    return family_of(model).chain_layout(model) is not None


def activation_derivatives(act: nn.Module, z: torch.Tensor):
    """``(σ(z), σ'(z), σ''(z))`` for the activation module ``act``, as autograd differentiates it."""
    if isinstance(act, nn.Tanh):
        s = torch.tanh(z)
        s1 = 1 - s * s
        return s, s1, -2 * s * s1
    if isinstance(act, nn.Softplus):  # linear above the module's threshold, as torch's softplus
        bz = act.beta * z
        lin = bz > act.threshold
        sig = torch.sigmoid(bz)
        s = torch.where(lin, z, torch.nn.functional.softplus(z, act.beta, act.threshold))
        return s, torch.where(lin, 1.0, sig), torch.where(lin, 0.0, act.beta * sig * (1 - sig))
    if isinstance(act, nn.ReLU):
        return torch.relu(z), (z > 0).to(z.dtype), torch.zeros_like(z)
    if isinstance(act, nn.LeakyReLU):
        pos = z > 0
        slope = torch.full_like(z, act.negative_slope)
        return torch.where(pos, z, slope * z), torch.where(pos, 1.0, slope), torch.zeros_like(z)
    if isinstance(act, nn.GELU):
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return z * cdf, cdf + z * pdf, pdf * (2 - z * z)
    raise TypeError(f"no closed form for activation {type(act).__name__}")


class ChainDerivatives:
    """Closed-form ``f``, ``J`` and ``∇²R`` of a supported model on ``fr``'s data, for stacks of members.

    Args:
        fr: the :class:`~resland.functional.FlatRisk` (its model must pass :func:`supports`).
    """

    def __init__(self, fr):
        model = fr.model
        if not supports(model):
            raise TypeError(f"no closed form for {type(model).__name__}")
        self.fr, self.n, self.m = fr, fr.n, fr.m
        self.offsets, o = {}, 0
        for name, numel, shape in zip(fr.names, fr.numels, fr.shapes):
            self.offsets[name] = (o, tuple(shape))
            o += numel
        layout = family_of(model).chain_layout(model)
        self.resnet, self.act, names, self.out = layout.residual, layout.activation, layout.layers, layout.out
        self.k = layout.outputs
        # Per layer: (U, b, V) names and the columns [start, end) of its parameters.
        self.layers = []
        for U, b, V in names:
            b = b if b in self.offsets else None
            last = V or b or U
            self.layers.append((U, b, V, self.offsets[U][0], self.offsets[last][0] + math.prod(self.offsets[last][1])))
        self.widest = max(model.width, fr.X.shape[1])
        self.floats_per_member = 4 * self.m * self.widest * self.n + 2 * self.n**2

    def member_chunk(self) -> int:
        """Members per pass so that the working tensors stay within :data:`CHUNK_FLOATS`."""
        return max(1, CHUNK_FLOATS // max(1, self.floats_per_member))

    def row_chunk(self) -> int:
        """Samples per pass of one member's Hessian so that its working tensors (``4 · rows · widest · n``
        floats besides the ``2n²`` of ``H``) stay within :data:`CHUNK_FLOATS`; ``m`` when all fit."""
        per_row = 4 * self.widest * self.n
        return int(min(self.m, max(1, (CHUNK_FLOATS - 2 * self.n**2) // per_row)))

    def _param(self, theta: torch.Tensor, name: str | None):
        """Member-stacked parameter ``name`` (K, *shape), or None when the model lacks it."""
        if name is None or name not in self.offsets:
            return None
        o, shape = self.offsets[name]
        return theta[:, o : o + math.prod(shape)].reshape(theta.shape[0], *shape)

    def _place_V(self, T: torch.Tensor, V: str, values: torch.Tensor) -> None:
        """``T[..., p, col(V_pq)] += values[..., q]``: ``∂(V σ)_p/∂V_pq = σ_q``."""
        o, (d, k) = self.offsets[V]
        T[..., o : o + d * k].unflatten(-1, (d, k))[..., torch.arange(d), torch.arange(d), :] += values[..., None, :]

    def _cols(self, name: str) -> slice:
        o, shape = self.offsets[name]
        return slice(o, o + math.prod(shape))

    def _forward(self, theta: torch.Tensor, rows: slice = slice(None)):
        """Activations per layer and the predictions (K, m) on the samples ``rows``."""
        X = self.fr.X[rows]
        s = X.expand(theta.shape[0], *X.shape)
        tape = []
        for U, b, V, _, _ in self.layers:
            z = torch.einsum("kmj,krj->kmr", s, self._param(theta, U))
            if b is not None:
                z = z + self._param(theta, b)[:, None, :]
            a, a1, a2 = activation_derivatives(self.act, z)
            tape.append((s, a, a1, a2))
            s = s + torch.einsum("kmq,kpq->kmp", a, self._param(theta, V)) if self.resnet else a
        wname, cname = self.out
        if self.k > 1:                                  # k outputs: (K, m, k)
            p = torch.einsum("kmj,krj->kmr", s, self._param(theta, wname))
            return (p + self._param(theta, cname)[:, None, :] if cname in self.offsets else p), tape, s
        p = torch.einsum("kmj,kj->km", s, self._param(theta, wname)[:, 0, :])
        if cname in self.offsets:
            p = p + self._param(theta, cname)
        return p, tape, s

    def _reverse(self, theta, tape, s_out, row: int = 0):
        """Per-sample reverse mode of output ``row``: ``J`` (K, m, n), and per layer ``(g_l, u_l, β_l)``: the
        adjoint ``∂f/∂s_l`` of the layer's output, ``u_l`` (``Vᵀg_l`` for a ResNet, ``g_l`` for FC) and ``∂f/∂z_l``."""
        K, n = theta.shape
        mr = s_out.shape[1]                                  # the samples of this pass
        J = torch.zeros(K, mr, n, dtype=theta.dtype, device=theta.device)
        wname, cname = self.out
        o_w, (_, d) = self.offsets[wname]
        J[..., o_w + row * d: o_w + (row + 1) * d] = s_out     # ∂f_row/∂W[row, :]
        if cname in self.offsets:
            J[..., self.offsets[cname][0] + row] = 1.0
        g = self._param(theta, wname)[:, row, None, :].expand(K, mr, -1)
        adjoints = []
        for (U, b, V, _, _), (s_in, a, a1, _) in zip(reversed(self.layers), reversed(tape)):
            if self.resnet:
                J[..., self._cols(V)] = (g[..., :, None] * a[..., None, :]).flatten(2)
                u = torch.einsum("kmp,kpq->kmq", g, self._param(theta, V))
            else:
                u = g
            beta = u * a1
            J[..., self._cols(U)] = (beta[..., :, None] * s_in[..., None, :]).flatten(2)
            if b is not None:
                J[..., self._cols(b)] = beta
            adjoints.append((g, u, beta))
            back = torch.einsum("kmr,krj->kmj", beta, self._param(theta, U))
            g = g + back if self.resnet else back
        return J, adjoints[::-1]

    def jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, J)``: predictions (K, m) and prediction Jacobians (K, m, n) of the rows of ``theta`` (K × n);
        with ``k`` outputs (K, m, k) and (K, m, k, n), one reverse sweep per output."""
        p, tape, s = self._forward(theta)
        if self.k > 1:
            return p, torch.stack([self._reverse(theta, tape, s, j)[0] for j in range(self.k)], 2)
        return p, self._reverse(theta, tape, s)[0]

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The dense, symmetrised Hessian ``∇²R`` (K, n, n) of the rows of ``theta`` (K × n); one output only.

        Raises:
            TypeError: a model with ``k > 1`` outputs (autodiff serves).
        """
        if self.k > 1:
            raise TypeError("the closed-form Hessian is for one output")
        rows = self.row_chunk()
        if rows >= self.m:
            return torch.cat([self._hessian(t) for t in torch.split(theta, self.member_chunk())])
        # one member's working set is over budget: sum its Hessian over chunks of samples (R is a mean)
        return torch.cat([sum(self._hessian(t[None], slice(i, i + rows)) for i in range(0, self.m, rows))
                          for t in theta])

    def _hessian(self, theta: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The share of the samples ``rows`` in ``∇²R`` (the mean over all ``m``), symmetrised."""
        K, n = theta.shape
        p, tape, s_out = self._forward(theta, rows)
        J, adjoints = self._reverse(theta, tape, s_out)
        loss, y, m = self.fr.loss, self.fr.y[rows], self.m
        mr = p.shape[1]
        c = loss.d1(p, y) / m                                               # ℓ'_i / m
        H = J.transpose(1, 2) @ ((loss.d2(p, y) / m)[..., None] * J)        # Jᵀ diag(ℓ''/m) J
        B = torch.zeros(K, n, n, dtype=theta.dtype, device=theta.device)    # bilinear terms, added as B + Bᵀ
        T = None     # ∂s_{l-1}/∂θ over the columns [0, start_l): (K, m, width, start_l)
        for i, ((U, b, V, start, end), (s_in, a, a1, a2), (g, u, beta)) in enumerate(zip(self.layers, tape, adjoints)):
            Uw = self._param(theta, U)
            k, d = Uw.shape[1:]
            zend = self.offsets[V][0] if self.resnet else end   # z_l does not depend on V_l
            # Dz = ∂z_l/∂θ over [0, zend): U T through the input, then U's and b's own columns.
            Dz = torch.zeros(K, mr, k, zend, dtype=theta.dtype, device=theta.device)
            if T is not None:
                Dz[..., :start] = torch.einsum("krj,kmjn->kmrn", Uw, T)
            oU = self.offsets[U][0]
            Dz[..., oU : oU + k * d].unflatten(-1, (k, d))[..., torch.arange(k), torch.arange(k), :] = s_in[..., None, :]
            if b is not None:
                ob = self.offsets[b][0]
                Dz[..., ob : ob + k][..., torch.arange(k), torch.arange(k)] = 1.0
            cu, cb = c[..., None] * u, c[..., None] * beta                  # Φ's adjoints: u and ∂Φ/∂z
            A = Dz.reshape(K, -1, zend)
            H[:, :zend, :zend] += A.transpose(1, 2) @ ((cu * a2).reshape(K, -1, 1) * A)   # curvature of σ
            if T is not None:                                               # U–s_{l-1} bilinear term
                B[:, self._cols(U), :start] += torch.einsum("kmr,kmjn->krjn", cb, T).flatten(1, 2)
            a1Dz = a1[..., None] * Dz                                       # ∂σ(z_l)/∂θ
            if self.resnet:                                                 # V–z bilinear term
                B[:, self._cols(V), :zend] += torch.einsum("kmp,kmqn->kpqn", c[..., None] * g, a1Dz).flatten(1, 2)
            if i == len(self.layers) - 1:
                break
            if self.resnet:                                                 # T_l = ∂s_l/∂θ over [0, end)
                Tn = torch.zeros(K, mr, d, end, dtype=theta.dtype, device=theta.device)
                Tn[..., :zend] = torch.einsum("kpq,kmqn->kmpn", self._param(theta, V), a1Dz)
                if T is not None:
                    Tn[..., :start] += T
                self._place_V(Tn, V, a)
                T = Tn
            else:
                T = a1Dz
        # The output's w–s_L bilinear term needs Σ_i c_i ∂s_L/∂θ; a ResNet's ∂s_L/∂θ is not formed.
        if self.resnet:   # s_L = s_{L-1} + V σ(z_L)
            Mw = torch.zeros(K, d, end, dtype=theta.dtype, device=theta.device)
            Mw[..., :zend] = torch.einsum("kpq,kqn->kpn", self._param(theta, V), torch.einsum("km,kmqn->kqn", c, a1Dz))
            if T is not None:
                Mw[..., :start] += torch.einsum("km,kmjn->kjn", c, T)
            self._place_V(Mw, V, torch.einsum("km,kmq->kq", c, a))
        else:
            Mw = torch.einsum("km,kmjn->kjn", c, a1Dz)
        wname = self.out[0]
        B[:, self._cols(wname), :end] += Mw                                 # w–s_L bilinear term
        H = H + B + B.transpose(1, 2)
        return 0.5 * (H + H.transpose(1, 2))
