"""Known landscapes: results of neighbouring papers whose answers someone else proved (docs/theory.md §13), as
ground truth for resland's finder and certificate.

* :mod:`~resland.known.problem`: the problem protocol (any twice-differentiable risk with its own baseline),
  :func:`~resland.known.problem.certify_problem`, :func:`~resland.known.problem.find_minimum`,
  :func:`~resland.known.problem.find_critical`;
* :mod:`~resland.known.safran_shamir`: the two-layer ReLU student/teacher population risk in closed form (SS18);
* :mod:`~resland.known.linear_nets`: deep linear nets (K16) and linear residual nets (HM17) on real data;
* :mod:`~resland.known.papers`: the papers ``resland reproduce --paper`` knows, and their claims.
"""

from .linear_nets import DeepLinear, LinearResNet
from .papers import PAPERS
from .problem import Baseline, Problem, certify_problem, find_critical, find_minimum
from .safran_shamir import StudentTeacher, certify_student, find_student_minimum, population_risk

__all__ = ["Baseline", "DeepLinear", "LinearResNet", "PAPERS", "Problem", "StudentTeacher", "certify_problem",
           "certify_student", "find_critical", "find_minimum", "find_student_minimum", "population_risk"]
