"""The verdicts of a certificate and the rules that decide them from the evidence (no computation).

The order and the definitions are those of :mod:`resland.certificate` (docs/theory.md §5, §8).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .. import tolerances as T

if TYPE_CHECKING:
    from .evidence import Evidence

VERDICTS = ("not_critical", "nondifferentiable", "better_than_linear", "strict_saddle", "degenerate_saddle",
            "local_minimum_worse", "degenerate", "inconclusive")
#: The verdicts of a critical point worse than linear without negative curvature (docs/theory.md §8).
WORSE_NO_NEGATIVE = ("degenerate_saddle", "local_minimum_worse", "degenerate")
#: The verdicts that certify a critical point: the dichotomy's cells, in the order tables show them.
CERTIFIED = ("better_than_linear", "strict_saddle") + WORSE_NO_NEGATIVE
#: Kinds of trivial evidence (docs/theory.md §8); only ``none`` counts.
TRIVIAL = ("none", "linear", "constant")


def decide(ev: "Evidence") -> tuple[str, str]:
    """The verdict and its one-line reason, from the evidence alone (module docstring; no computation)."""
    R, fit, t = ev.risk, ev.fit, ev.tolerances
    if not (math.isfinite(R) and math.isfinite(ev.grad_norm)):
        return "not_critical", f"the risk ({R}) or its gradient norm ({ev.grad_norm}) is not finite"
    if ev.kink is not None and ev.kink <= t["kink_tol"]:
        return "nondifferentiable", f"a kinked pre-activation is {ev.kink:.3e} ≤ kink_tol from 0 at a data point"
    if ev.grad_norm > t["grad_tol"]:
        return "not_critical", f"‖∇R‖ = {ev.grad_norm:.3e} > grad_tol = {t['grad_tol']:.3e}"
    if R <= fit.risk_lower + t["risk_tol"]:
        return "better_than_linear", f"R − R_lin,lower = {R - fit.risk_lower:.3e} ≤ risk_tol = {t['risk_tol']:.3e}"
    eig = ev.eig
    if not eig.converged:
        return "inconclusive", f"the {eig.method} eigensolver did not converge"
    if ev.negative:
        esc = ev.escape
        if not esc.curvature < 0:
            return "inconclusive", f"λ_min < 0 but a fresh HVP gives vᵀHv = {esc.curvature:.3e} ≥ 0"
        if esc.step is None:
            return "inconclusive", "λ_min < 0 but no backtracking step along the eigenvector lowered the risk beyond rounding"
        return "strict_saddle", (f"λ_min = {eig.lambda_min:.3e} ≤ −lambda_tol, vᵀHv = {esc.curvature:.3e} < 0, and the "
                                 f"step α = {esc.step:.3g} lowers R by {esc.decrease:.3e} > decrease_tol = "
                                 f"{t['decrease_tol']:.3e}")
    if R <= fit.risk_upper + t["risk_tol"]:
        return "inconclusive", (f"R = {R:.12g} lies inside the R_lin interval [{fit.risk_lower:.12g}, "
                                f"{fit.risk_upper:.12g}] (± risk_tol = {t['risk_tol']:.3e}, bound '{fit.bound}'): "
                                "neither better nor worse than linear can be defended"
                                + (f"; the interval is wide because {fit.why_wide}" if fit.why_wide else ""))
    if ev.null is None:
        return "inconclusive", (f"critical, R − R_lin,upper = {R - fit.risk_upper:.3e} > risk_tol and no eigenvalue below "
                                f"−lambda_tol, but {ev.krylov_note}")
    return _worse_than_linear(ev)


def _worse_than_linear(ev: "Evidence") -> tuple[str, str]:
    """Split a critical point worse than linear without negative curvature (docs/theory.md §8)."""
    R, fit, t, eig, nu = ev.risk, ev.fit, ev.tolerances, ev.eig, ev.null
    sym = nu.symmetries
    why = (f"critical, R − R_lin,upper = {R - fit.risk_upper:.3e} > risk_tol, λ_min = {eig.lambda_min:.3e} ≥ "
           f"−lambda_tol = {-t['lambda_tol']:.3e}; {sym['count']} exact symmetry direction(s) projected out "
           f"(max ‖Hξ‖ = {sym['max_residual']:.1e})")
    test = nu.test
    if test is not None and test.found:
        err = ev.grad_norm * max(1.0, ev.theta_norm) + t["decrease_tol"]
        gap = R - fit.risk_upper
        if gap <= t["risk_tol"] + err:
            return "inconclusive", (f"{why}; a degenerate saddle, but R − R_lin,upper = {gap:.3e} ≤ risk_tol + err = "
                                    f"{t['risk_tol'] + err:.3e}: not shown worse than linear")
        if nu.complete:
            space = f"null space of dimension {nu.null_dim} beyond them"
            case = "case (ii) fails: no negative eigenvalue"
        else:
            space = (f"{nu.null_dim} approximate null direction(s) by LOBPCG (Ritz values ≤ lambda_tol) beyond them, "
                     f"matrix-free (λ_min by {eig.method})")
            case = ("case (ii) fails unless the Krylov space missed a negative eigenvalue; a saddle either way")
        return "degenerate_saddle", (
            f"{why}; {space}, and the higher-order test finds a verified "
            f"descent: order ≈ {test.order:.2g} at radii {test.run[0]:.2e}…{test.run[1]:.2e}, the escape point "
            f"(step {test.step:.3e}) lowers R by {test.decrease:.3e} > decrease_tol ({case})")
    if not nu.complete:
        probe = ("no Ritz value ≤ lambda_tol, so no direction was probed" if not nu.null_dim else
                 f"no verified descent along {test.paths} paths in the span of {nu.null_dim} approximate null "
                 f"direction(s) at radii {test.radii[0]:.2e}…{test.radii[1]:.2e} (best probe risk {test.best_risk:.12g})")
        return "inconclusive", (f"{why}; matrix-free (λ_min by {eig.method}, n above dense_max_params): LOBPCG's smallest "
                                f"Ritz value on their complement is {nu.restricted_lambda_min:.3e}, and {probe}. A local "
                                "minimum or a flat point needs the whole null space and a lower bound on λ_min, which "
                                "a Krylov method cannot give")
    if nu.null_dim:
        why += (f"; a null space of dimension {nu.null_dim} that no symmetry explains, and no verified descent along "
                f"{test.paths} directions at radii {test.radii[0]:.2e}…{test.radii[1]:.2e} (best probe risk "
                f"{test.best_risk:.12g})")
        return _polish_standard(ev, "degenerate", why)
    why += f"; positive definite on their complement (λ_min there = {nu.restricted_lambda_min:.3e} > lambda_tol)"
    return _polish_standard(ev, "local_minimum_worse", why)


def _polish_standard(ev: "Evidence", verdict: str, why: str) -> tuple[str, str]:
    """The polish standard of a point claimed worse than linear (module docstring)."""
    fit, t, p = ev.fit, ev.tolerances, ev.polish
    polished = (f"polished ({p['status']}, {p['iterations']} iterations) to ‖∇R‖ = {p['grad_norm']:.3e}, "
                f"R_p = {p['risk']:.12g}, moved {p['distance']:.3e}")
    if not math.isfinite(p["risk"]) or p["distance"] > t["polish_max_move"]:
        return "inconclusive", (f"a candidate {verdict} whose polish moved {p['distance']:.3e} > polish_max_move = "
                                f"{t['polish_max_move']:.3e}: θ is not close to a critical point the polish can confirm")
    if p["risk"] <= fit.risk_lower + t["risk_tol"]:
        return "better_than_linear", (f"{polished}: R_p − R_lin,lower = {p['risk'] - fit.risk_lower:.3e} ≤ risk_tol "
                                      f"= {t['risk_tol']:.3e} (the candidate's gap was within what the remaining "
                                      "gradient explains)")
    if not T.is_critical(p["risk"], p["grad_norm"]):
        return "inconclusive", f"a candidate {verdict}, {polished}: not critical (> grad_tol)"
    gap, bound = p["risk"] - fit.risk_upper, t["risk_tol"] + p["err"]
    if gap <= bound:
        return "inconclusive", (f"a candidate {verdict}, {polished}: R_p − R_lin,upper = {gap:.3e} ≤ risk_tol + err = "
                                f"{bound:.3e} (err = ‖∇R‖·max(1, ‖θ‖) + decrease_tol, the a-posteriori error)")
    return verdict, f"{why}; {polished}; R_p − R_lin,upper = {gap:.3e} > risk_tol + err = {bound:.3e} (the polish standard)"



#: Certificate verdicts that presuppose a critical point.
_CRITICAL_VERDICTS = CERTIFIED + ("inconclusive",)


def is_local_minimum(verdict: str | None, lambda_min: float | None, lambda_tol: float | None,
                     null_dim: int | None = None) -> bool:
    """The one test of a certified local minimum: ``local_minimum_worse`` (positive definite beyond the named
    symmetries), or ``better_than_linear`` with ``λ_min ≥ −lambda_tol`` measured and no Hessian null space left
    beyond the symmetries (``null_dim`` 0 or not analysed)."""
    if verdict == "local_minimum_worse":
        return True
    return (verdict == "better_than_linear" and lambda_min is not None and lambda_tol is not None
            and lambda_min >= -lambda_tol and not null_dim)


def cert_outcome(cp, cert) -> str:
    """The run outcome once the certificate is known (the certificate has the last word).

    A finder ``critical`` whose certificate is not at a critical point (``not_critical``,
    ``nondifferentiable``) becomes ``unresolved``; parameters certified as they are (no finder
    run, ``cp`` None) are ``critical`` when the certificate is at a critical point, else ``unresolved``.
    """
    if cp is None:
        return "critical" if cert.verdict in _CRITICAL_VERDICTS else "unresolved"
    if cp.outcome == "critical" and cert.verdict not in _CRITICAL_VERDICTS:
        return "unresolved"
    return cp.outcome
