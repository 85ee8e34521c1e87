"""Matrix-free computation at scale: exact products over chunks of samples and the Krylov finder.

* :mod:`~resland.krylov.products`: :class:`ChunkedRisk`, the full-batch risk, gradient, Hessian-
  and GGN-vector products summed over chunks of samples (``torch.func``);
* :mod:`~resland.krylov.steps`: the step strategies (GGN by CG, trust-region Newton by Steihaug CG,
  Newton-MR by MINRES, LM on ``∇R``);
* :mod:`~resland.krylov.solver`: the solver state and its driver.

:func:`resland.find_critical_point` uses this finder above the dense limit (``n >
dense_max_params``, or an ``m × n`` Jacobian above ``JACOBIAN_MAX_FLOATS``); :func:`resland.certify`
uses :class:`ChunkedRisk` from ``CHUNKED_MIN_ROWS`` samples on.
"""

from .products import ChunkedRisk, chunk_rows, risk_of
from .solver import SolverState, find_critical_point_krylov, solve
from .steps import GaussNewton, GradientLM, NewtonCG, NewtonMR, Proposal, Step, default_steps, minres, steihaug

__all__ = ["ChunkedRisk", "GaussNewton", "GradientLM", "NewtonCG", "NewtonMR", "Proposal", "SolverState", "Step", "chunk_rows",
           "default_steps", "find_critical_point_krylov", "minres", "risk_of", "solve", "steihaug"]
