"""The two searches for critical points (``kind``), defined once (docs/theory.md §5, §9).

* ``minimum``: descent on the risk ``R``: every accepted step lowers ``R``, a critical iterate with
  negative curvature is escaped, and the lowest risk on the path is evidence (``below_linear``).
* ``any``: a search on ``½‖∇R‖²`` that reaches saddles as well as minima (Levenberg–Marquardt and
  Newton-MR on ``∇R = 0``); no escape, no path evidence.

Every module asks :func:`descends` or :func:`merit` instead of comparing the name.
"""

from __future__ import annotations

#: The kinds, in the order the CLI and census specs list them.
KINDS = ("minimum", "any")


def descends(kind: str) -> bool:
    """Whether a run of ``kind`` is a descent on ``R`` (``minimum``) rather than a search on ``½‖∇R‖²``."""
    return kind == "minimum"


def merit(kind: str, risk, grad_norm):
    """The merit a run of ``kind`` lowers: ``R`` (``minimum``) or ``½‖∇R‖²`` (``any``); floats or tensors."""
    return risk if descends(kind) else 0.5 * grad_norm**2
