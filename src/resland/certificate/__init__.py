"""The certificate of docs/theory.md §5: one verdict, with its evidence and tolerances.

:func:`certify` works in three steps: :func:`gather_evidence` computes what the verdict will read
(gradient, linear baseline, kink extent, Hessian extremes at critical points, the escape check
at negative curvature, the symmetry directions and higher-order test and the polish of a point
worse than linear), :func:`decide` maps that
:class:`Evidence` to a verdict and its reason without computing anything, and the frozen
:class:`Certificate` is built once from both.

Verdicts, decided in this order:

* ``nondifferentiable``: a pre-activation of a kinked activation (``nn.ReLU``,
  ``nn.LeakyReLU`` modules) is within ``kink_tol`` of 0 at some data point, so neither the
  gradient nor the Hessian is defined there;
* ``not_critical``: ``‖∇R‖₂ > grad_tol``;
* ``better_than_linear``: ``R ≤ R_lin,lower + risk_tol`` (``[R_lin,lower, R_lin,upper]`` holds the
  exact infimum of the float64 data: :class:`~resland.linear.LinearFit`);
* ``strict_saddle``: ``λ_min + residual ≤ −lambda_tol``, the eigenvector ``v`` has
  ``vᵀHv < 0`` by a fresh HVP, and a backtracking step ``α ∈ {1, ½, ¼, …}`` along ``±v``
  (the sign with ``∇Rᵀv ≤ 0``) actually lowers the risk by more than ``decrease_tol``;
* for a critical point worse than linear (``R > R_lin,upper + risk_tol``) with no eigenvalue below
  ``−lambda_tol``, second order alone does not decide; docs/theory.md §8 splits it, on the dense
  spectrum (:mod:`resland.higher_order`):

  * ``local_minimum_worse``: the Hessian is positive definite (``> lambda_tol``) on the complement
    of the model's exact symmetry directions (:mod:`resland.symmetry`, each named and checked
    null by a fresh product), and the point meets the *polish standard*: polished (Newton/LM,
    ``kind="any"``, to ``‖∇R‖ ≤ POLISH_GRAD_TOL·max(1, |R|)`` or until it stalls) without moving
    more than ``polish_max_move``, still critical, and ``R_p − R_lin,upper > risk_tol + err``
    with ``err = ‖∇R(θ_p)‖·max(1, ‖θ_p‖) + decrease_tol`` (the residual-gradient term of
    docs/theory.md §4.1, plus the rounding of ``R``);
  * ``degenerate_saddle``: a null space that no symmetry explains, along which the higher-order
    test finds a verified descent: ``escape_direction`` and ``escape_step`` reach a point whose
    risk, recomputed, is lower by more than ``decrease_tol``; and ``R − R_lin,upper > risk_tol + err``;
  * ``degenerate``: such a null space and no verified descent within the probe radii; the
    polish standard as for a minimum. ``higher_order`` records the null dimension, the radii and
    the best probe risk;

  a polish that closes the gap gives ``better_than_linear``; anything else is ``inconclusive``;
* ``inconclusive``: the numerical checks disagree (``λ_min`` is negative beyond tolerance
  but neither ``vᵀHv < 0`` nor a risk decrease can be verified, or the eigensolver did
  not converge), ``R`` lies inside the ``R_lin`` interval (plus ``risk_tol``), the dense spectrum
  the §8 split needs exceeds ``dense_max_params``, or a point worse than linear fails its
  standard. resland says so rather than guess.

Every certificate also says whether the point is *trivial* evidence (docs/theory.md §8):
``trivial = "linear"`` (linear-equivalent, §7), ``"constant"`` (the predictions on the data are
constant to ``pred_tol``: a dead or saturated network, whose risk is the constant predictor's) or
``"none"``; ``units`` counts the dead and saturated hidden units. Only ``trivial = "none"`` is
evidence.

Default tolerances (``eps`` = float64 machine epsilon, ``n`` parameters, ``m`` samples)::

    grad_tol     = GRAD_TOL · max(1, |R|)              (GRAD_TOL = 1e-10, or the ``tol`` argument;
                                                        the finder's definition of critical)
    kink_tol     = KINK_TOL · max(1, max |pre-activation|)   (1e-8)
    risk_tol     = RISK_TOL · max(1, |R_lin|)          (1e-10)
    pred_tol     = PRED_TOL · max(1, max |f_lin|)      (1e-4; linear_equivalent)
    lambda_tol   = max(100 · n · eps · max(1, |λ_max|), 10 · grad_tol)
    decrease_tol = 100 · m · eps · max(1, |R|)
    polish_grad_tol = POLISH_GRAD_TOL · max(1, |R_p|)  (1e-12; the polish standard)
    polish_max_move = POLISH_MAX_MOVE · (1 + ‖θ‖)       (1e-4)

All are defined in :mod:`resland.tolerances`. Every tolerance used is reported in
``Certificate.tolerances``, and each verdict's reason names the bound that decided it.
"""

from __future__ import annotations

from .batch import certify_ensemble
from .evidence import Escape, Evidence, gather_evidence
from .record import Certificate, certify
from .verdicts import CERTIFIED, TRIVIAL, VERDICTS, WORSE_NO_NEGATIVE, cert_outcome, decide

__all__ = ["CERTIFIED", "TRIVIAL", "VERDICTS", "WORSE_NO_NEGATIVE", "Certificate", "Escape", "Evidence",
           "cert_outcome", "certify", "certify_ensemble", "decide", "gather_evidence"]
