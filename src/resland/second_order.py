"""The batched finder's second-order steps (:mod:`resland.critical`): curvature backends and step candidates.

For the active members ``θ`` (rows, M × n) with risks ``R``, gradients ``g`` and norms ``‖g‖``, a backend
proposes candidate steps, each with its predicted merit decrease, and the driver keeps the best that passes
its ratio test:

* :class:`DenseCurvature`: dense Hessians and one batched ``eigh``; trust-region Newton
  (:func:`trust_region_steps`, bisection on ``σ`` in the eigenbasis), Newton-MR ``−H⁺g`` and, for
  ``kind="any"``, Levenberg–Marquardt on ``∇R = 0``;
* :class:`KrylovCurvature`: the same steps by SciPy MINRES and CG on exact Hessian-vector products through
  one full-batch gradient graph (at most :data:`KRYLOV_MAX_PRODUCTS` per solve);
* :class:`MixedCurvature`: a backend for the members that need the Hessian, GGN alone for the rest;
* :func:`ggn_step`: the generalised Gauss–Newton step ``−(JᵀDJ + μI)⁻¹g`` (``k`` outputs:
  :func:`ggn_step_outputs`), solved by Cholesky (:func:`cholesky_solve`);
* :func:`backtrack`: a backtracking step along negative curvature that lowers ``R``.

Conventions: mean risk, float64, flat parameters in ``model.parameters()`` order.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse.linalg as spla
import torch

from .kinds import descends
from . import tolerances as T
from .curvature import HessianOperator
from .ensemble import Ensemble

__all__ = ["KRYLOV_MAX_PRODUCTS", "DenseCurvature", "KrylovCurvature", "MixedCurvature", "backtrack",
           "cholesky_solve", "ggn_step", "ggn_step_outputs", "next_radius", "pseudo_inverse_step",
           "trust_region_steps"]

#: Hessian-vector products per Krylov solve (an inexact Newton step; the ratio test guards it).
KRYLOV_MAX_PRODUCTS = 200


class DenseCurvature:
    """Dense Hessians of the active members and their eigendecompositions (one batched ``eigh``)."""

    def __init__(self, ens, th, R, g, gn):
        self.ens, self.th, self.g, self.gn = ens, th, g, gn
        H = HessianOperator(ens, th).dense()
        self.lam, self.Q = torch.linalg.eigh(H)
        self.gh = torch.einsum("kji,kj->ki", self.Q, g)                      # Qᵀg
        n = th.shape[1]
        self.abs_max = self.lam.abs().amax(1)
        self.cut = n * T.EPS64 * torch.clamp(self.abs_max, min=1e-300)

    def distance(self) -> torch.Tensor:
        """``‖(|H| + ‖g‖I)⁻¹g‖`` off the numerically null eigendirections, shape (k,): a distance to the
        critical set, large on flat paths to infinity (where every eigenvalue decays with the gradient)."""
        den = self.lam.abs() + self.gn[:, None]
        keep = self.lam.abs() > self.cut[:, None]
        return torch.linalg.norm(torch.where(keep, self.gh / torch.where(keep, den, 1.0), 0.0), dim=1)

    def escape(self, a: int, R: float) -> torch.Tensor | None:
        """A new θ (n,) one backtracking step along the most negative eigenvector that lowers ``R``, or None."""
        lam_min = float(self.lam[a, 0])
        lam_tol = T.lambda_tol(self.th.shape[1], float(self.abs_max[a]), float(self.gn[a]))
        if lam_min >= -lam_tol:
            return None
        v = self.Q[a, :, 0]
        v = -v if float(self.g[a] @ v) > 0 else v
        return backtrack(self.ens, self.th[a], v, R)

    def candidates(self, kind, mu_h, mu_g, live, radius):
        lam, gh, Q, gn, cut = self.lam[live], self.gh[live], self.Q[live], self.gn[live], self.cut[live]
        steps, preds, which = [], [], {}
        if descends(kind):
            ph = trust_region_steps(lam, gh, cut, radius)
            which["newton"] = 0
            steps.append(ph)
            preds.append(-((gh * ph).sum(1) + 0.5 * (lam * ph * ph).sum(1)))
            ph = pseudo_inverse_step(lam, gh, cut[:, None])                   # Newton-MR: −H⁺g
            convex = lam[:, 0] >= -cut
            steps.append(ph)
            preds.append(torch.where(convex, -((gh * ph).sum(1) + 0.5 * (lam * ph * ph).sum(1)), torch.nan))
            full = [torch.einsum("kij,kj->ki", Q, s) for s in steps]
            s_g, pred_g = ggn_step(self.ens, self.th[live], self.g[live], mu_g)
            which["ggn"] = 2
            full.append(s_g)
            preds.append(pred_g)
            return torch.stack(full, 1), torch.stack(preds, 1), which
        sigma = mu_h * gn
        for ph in (-lam * gh / (lam**2 + sigma[:, None]), pseudo_inverse_step(lam, gh, cut[:, None])):
            r = gh + lam * ph
            steps.append(torch.einsum("kij,kj->ki", Q, ph))
            preds.append(0.5 * gn**2 - 0.5 * (r**2).sum(1))
        which["newton"] = 0
        return torch.stack(steps, 1), torch.stack(preds, 1), which


class KrylovCurvature:
    """Hessian seen through exact HVPs (models above ``dense_max_params``), member by member."""

    def __init__(self, ens, th, R, g, gn):
        self.ens, self.th, self.R, self.g, self.gn = ens, th, R, g, gn
        self._ops = {}

    def _op(self, a: int):
        """Member ``a``'s Hessian: ``(SciPy operator, HessianOperator)``, one gradient graph for both."""
        if a not in self._ops:
            H = HessianOperator(self.ens, self.th[a])
            self._ops[a] = (H.to_scipy(), H)
        return self._ops[a]

    def _solve(self, a: int, shift: float) -> np.ndarray:
        op, _ = self._op(a)
        x, _ = spla.minres(op, -self.g[a].numpy(), shift=-shift, rtol=1e-12, maxiter=KRYLOV_MAX_PRODUCTS)
        return x

    def _lm(self, a: int, sigma: float) -> np.ndarray:
        """Levenberg–Marquardt on ``∇R = 0``: CG on ``(H² + σI)p = −Hg`` (two products per step)."""
        op, _ = self._op(a)
        n = self.th.shape[1]
        normal = spla.LinearOperator((n, n), dtype=np.float64, matvec=lambda x: op @ (op @ x) + sigma * np.ravel(x))
        x, _ = spla.cg(normal, -(op @ self.g[a].numpy()), rtol=1e-12, maxiter=KRYLOV_MAX_PRODUCTS // 2)
        return x

    def distance(self) -> torch.Tensor:
        """Norms of the Newton (MINRES) steps, shape (k,); inf where the gradient test cannot pass."""
        out = []
        for a in range(self.th.shape[0]):
            # Only where the gradient test could pass (the solve costs many products).
            if float(self.gn[a]) <= 1e-6 * T.scale(float(self.R[a])):
                out.append(float(np.linalg.norm(self._solve(a, float(self.gn[a])))))
            else:
                out.append(math.inf)
        return torch.tensor(out, dtype=self.th.dtype)

    def escape(self, a: int, R: float) -> torch.Tensor | None:
        """As the dense backend's escape (a new θ of shape (n,), or None), λ_min's vector from Lanczos."""
        eig = self._op(a)[1].extremes(method="lanczos")
        lam_tol = T.lambda_tol(self.th.shape[1], max(abs(eig.lambda_min), abs(eig.lambda_max)), float(self.gn[a]))
        if eig.lambda_min >= -lam_tol:
            return None
        v = eig.vec_min if float(self.g[a] @ eig.vec_min) <= 0 else -eig.vec_min
        return backtrack(self.ens, self.th[a], v, R)

    def candidates(self, kind, mu_h, mu_g, live, radius):
        rows = torch.nonzero(live).flatten().tolist()
        steps, preds = [], []
        for b, a in enumerate(rows):
            _, H = self._op(a)
            g = self.g[a]
            if descends(kind):
                cand = [self._solve(a, float(mu_h[b] * self.gn[a])), self._solve(a, 0.0)]
            else:
                cand = [self._lm(a, float(mu_h[b] * self.gn[a])), self._solve(a, 0.0)]
            s_list, p_list = [], []
            for x in cand:
                p = torch.as_tensor(x, dtype=g.dtype)
                Hp = H @ p
                s_list.append(p)
                p_list.append(-(g @ p + 0.5 * p @ Hp) if descends(kind)
                              else 0.5 * (g @ g) - 0.5 * ((g + Hp) @ (g + Hp)))
            steps.append(torch.stack(s_list))
            preds.append(torch.stack(p_list))
        steps, preds = torch.stack(steps), torch.stack(preds)
        which = {"newton": 0}
        if descends(kind):
            s_g, pred_g = ggn_step(self.ens, self.th[live], self.g[live], mu_g)
            steps = torch.cat([steps, s_g[:, None]], 1)
            preds = torch.cat([preds, pred_g[:, None]], 1)
            which["ggn"] = 2
        return steps, preds, which


class MixedCurvature:
    """Hessian backends for the members in ``need``, GGN alone for the rest (3 candidate columns)."""

    def __init__(self, ens, th, R, g, gn, need, backend):
        self.ens, self.th, self.g, self.gn, self.need = ens, th, g, gn, need
        self.rows = torch.nonzero(need).flatten()
        self.pos = {int(a): b for b, a in enumerate(self.rows.tolist())}
        self.inner = backend(ens, th[need], R[need], g[need], gn[need]) if self.rows.numel() else None

    def distance(self) -> torch.Tensor:
        """Shape (k,): the backend's estimate; for GGN-only members ``‖(G + ‖g‖I)⁻¹g‖`` where the gradient is small."""
        out = torch.full_like(self.gn, math.inf)
        if self.inner is not None:
            out[self.need] = self.inner.distance()
        far = ~self.need & (self.gn <= 1e-6)
        if bool(far.any()):
            s, _ = ggn_step(self.ens, self.th[far], self.g[far], self.gn[far], absolute=True)
            out[far] = torch.linalg.norm(s, dim=1)
        return out

    def escape(self, a: int, R: float):
        return self.inner.escape(self.pos[a], R) if a in self.pos else None

    def candidates(self, kind, mu_h, mu_g, live, radius):
        k, n = int(live.sum()), self.th.shape[1]
        steps = torch.zeros(k, 3, n, dtype=self.th.dtype)
        preds = torch.full((k, 3), math.nan, dtype=self.th.dtype)
        which = {"newton": 0, "ggn": 2} if descends(kind) else {"newton": 0}
        live_rows = torch.nonzero(live).flatten()
        inner_live = self.need[live]
        if self.inner is not None and bool(inner_live.any()):
            sub_live = live[self.need]
            s, p, _ = self.inner.candidates(kind, mu_h[inner_live], mu_g[inner_live], sub_live, radius[inner_live])
            steps[inner_live, : s.shape[1]], preds[inner_live, : s.shape[1]] = s, p
        far = ~inner_live
        if descends(kind) and bool(far.any()):
            rows = live_rows[far]
            s_g, p_g = ggn_step(self.ens, self.th[rows], self.g[rows], mu_g[far])
            steps[far, 2], preds[far, 2] = s_g, p_g
        return steps, preds, which


def trust_region_steps(lam, gh, cut, radius, iters: int = 80):
    """Trust-region steps in the eigenbasis (batched): ``−(Λ + σI)⁻¹Qᵀg`` with ``‖p‖ ≤ Δ``.

    ``σ ≥ max(0, −λ_min)·(1 + 10⁻⁶)``; inside the ball with the smallest such ``σ`` the step is
    the (pseudo-inverse) Newton step, else ``σ`` is found by bisection on ``‖p(σ)‖ = Δ``.
    The hard case (``g`` orthogonal to a negative eigenvector) is left to the saddle escape.
    """
    def step(sig):
        den = lam + sig[:, None]
        keep = den > cut[:, None]
        return torch.where(keep, -gh / torch.where(keep, den, 1.0), 0.0)

    lo = torch.clamp(-lam[:, 0], min=0.0) * (1 + 1e-6)
    p_lo = step(lo)
    inside = torch.linalg.norm(p_lo, dim=1) <= radius
    a, b = lo.clone(), lo + torch.linalg.norm(gh, dim=1) / radius + cut
    for _ in range(iters):
        mid = 0.5 * (a + b)
        long = torch.linalg.norm(step(mid), dim=1) > radius
        a, b = torch.where(long, mid, a), torch.where(long, b, mid)
    return torch.where(inside[:, None], p_lo, step(b))


def pseudo_inverse_step(lam: torch.Tensor, gh: torch.Tensor, cut) -> torch.Tensor:
    """Newton-MR in the eigenbasis: ``−Λ⁺Qᵀg``, the eigenvalues with ``|λ| ≤ cut`` (numerically null) left out.
    ``lam`` and ``gh = Qᵀg`` of shape (..., n); ``cut`` a float or broadcastable (e.g. (k, 1))."""
    keep = lam.abs() > cut
    return torch.where(keep, -gh / torch.where(keep, lam, 1.0), 0.0)


def next_radius(radius: torch.Tensor, rho: torch.Tensor, ok: torch.Tensor, pn: torch.Tensor) -> torch.Tensor:
    """The trust-region radius after a step of norm ``pn`` with actual/predicted ratio ``rho`` (``ok``: accepted):
    doubled after a good step that reached the boundary, kept after a fair one, else a quarter of the step."""
    return torch.where(ok & (rho > 0.75) & (pn >= 0.99 * radius), 2 * radius,
                       torch.where(ok & (rho > 0.25), radius, 0.25 * pn))


def backtrack(ens, theta, v, R) -> torch.Tensor | None:
    """``θ + αv`` for the first ``α ∈ {1, ½, …, 2⁻⁴⁰}`` that lowers ``R`` beyond rounding, or None."""
    alpha = 1.0
    for _ in range(41):
        trial = theta + alpha * v
        R_new = float(ens.risk(trial[None])[0])
        if math.isfinite(R_new) and R - R_new > 1e2 * T.EPS64 * T.scale(R):
            return trial
        alpha *= 0.5
    return None


def ggn_step(ens: Ensemble, th: torch.Tensor, g: torch.Tensor, mu: torch.Tensor, absolute: bool = False):
    """The generalised Gauss–Newton step ``s = −(JᵀDJ + μI)⁻¹∇R`` and its predicted decrease.

    ``J`` (k × m × n) are the prediction Jacobians, ``D = diag(ℓ''_i)/m``; solved in the smaller
    dimension (push-through identity when ``m ≤ n``) by Cholesky. ``μ`` is relative to
    ``trace(JᵀDJ)/n`` (absolute with ``absolute=True``).
    """
    fr = ens.fr
    J = ens.jacobian(th)
    p = ens.predict(th)
    if fr.k > 1:
        return ggn_step_outputs(fr, J, p, g, mu, absolute)
    e = fr.loss.d1(p, fr.y) / ens.m
    D = torch.clamp(fr.loss.d2(p, fr.y) / ens.m, min=1e-300)
    sqD = torch.sqrt(D)
    Jh = sqD[..., None] * J
    level = (Jh**2).sum((1, 2)) / ens.n + 1e-300
    shift = mu if absolute else mu * level
    if ens.m <= ens.n:
        K = Jh @ Jh.transpose(1, 2)
        s = -torch.einsum("kmn,km->kn", Jh, cholesky_solve(K, e / sqD, shift))
    else:
        s = -cholesky_solve(Jh.transpose(1, 2) @ Jh, g, shift)
    Js = torch.einsum("kmn,kn->km", Jh, s)
    return s, -((g * s).sum(1) + 0.5 * (Js**2).sum(1))


def ggn_step_outputs(fr, J: torch.Tensor, p: torch.Tensor, g: torch.Tensor, mu: torch.Tensor, absolute: bool):
    """:func:`ggn_step` for ``k`` outputs: ``J`` (M × m × k × n), predictions ``p`` (M × m × k).

    Each sample's output Hessian ``H_i`` is factored ``C_i C_iᵀ`` (``C_i = diag(√ℓ''_i)``, or
    ``diag(√s) − s√sᵀ`` for the cross-entropy with softmax ``s``), so ``G = Ĵᵀ Ĵ`` with the rows
    ``Ĵ_i = C_iᵀ J_i / √m``; solved in the smaller of ``n`` and ``m·k``: ``(G + λI)⁻¹g`` with
    ``G = (1/m) Σ_i J_iᵀ H_i J_i`` formed directly (for the cross-entropy ``(√s⊙J)ᵀ(√s⊙J) − BᵀB``,
    ``B_i = sᵢᵀJ_i``: one GEMM of ``m·k·n²`` and no m·k·n temporaries beyond one), or by the push-through identity
    ``(g − Ĵᵀ(ĴĴᵀ + λI)⁻¹Ĵg)/λ``.
    """
    M, m, k, n = J.shape
    if m * k >= n:
        if fr.loss.coupled:
            s = torch.softmax(p, -1)
            A = (torch.sqrt(s)[..., None] * J).reshape(M, m * k, n)
            B = torch.einsum("Mmk,Mmkn->Mmn", s, J)
            G = (A.transpose(1, 2) @ A - B.transpose(1, 2) @ B) / m
        else:
            A = (torch.sqrt(torch.clamp(fr.loss.d2(p, fr.y), min=1e-300))[..., None] * J).reshape(M, m * k, n)
            G = A.transpose(1, 2) @ A / m
        level = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1) / n + 1e-300
        shift = mu if absolute else mu * level
        step = -cholesky_solve(G, g, shift)
        Gs = torch.einsum("knp,kp->kn", G, step)
        return step, -((g * step).sum(1) + 0.5 * (step * Gs).sum(1))
    if fr.loss.coupled:
        s = torch.softmax(p, -1)
        rs = torch.sqrt(s)
        Jh = rs[..., None] * J - rs[..., None] * torch.einsum("Mmk,Mmkn->Mmn", s, J)[:, :, None, :]
    else:
        Jh = torch.sqrt(torch.clamp(fr.loss.d2(p, fr.y), min=1e-300))[..., None] * J
    Jh = Jh.reshape(M, m * k, n) / math.sqrt(m)
    level = (Jh**2).sum((1, 2)) / n + 1e-300
    shift = mu if absolute else mu * level
    Jg = torch.einsum("kmn,kn->km", Jh, g)
    x, used = cholesky_solve(Jh @ Jh.transpose(1, 2), Jg, shift, with_shift=True)
    step = -(g - torch.einsum("kmn,km->kn", Jh, x)) / used[:, None]
    Js = torch.einsum("kmn,kn->km", Jh, step)
    return step, -((g * step).sum(1) + 0.5 * (Js**2).sum(1))


def cholesky_solve(A: torch.Tensor, b: torch.Tensor, mu: torch.Tensor, with_shift: bool = False):
    """Solve ``(A + μI)x = b`` for PSD ``A`` (batched), raising ``μ`` where Cholesky fails; ``(x, μ used)`` with
    ``with_shift``."""
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    floor = 1e-14 * torch.clamp(torch.diagonal(A, dim1=-2, dim2=-1).abs().amax(-1), min=1e-300)
    mu = torch.maximum(mu, floor)
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(A + mu[:, None, None] * eye)
        if not bool((info > 0).any()):
            break
        mu = torch.where(info > 0, mu * 100, mu)
    x = torch.cholesky_solve(b[..., None], L)[..., 0]
    return (x, mu) if with_shift else x


