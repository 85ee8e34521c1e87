"""Resource guards: when a dense Hessian is allowed, with the memory estimate shown.

A dense Hessian of ``n`` float64 parameters holds ``8n²`` bytes; ``eigh`` needs about two more
copies (eigenvectors and workspace), so the estimate is ``3 · 8n²`` bytes (the closed form's working
tensors are summed over chunks of samples and stay within ``closed_form.CHUNK_FLOATS`` besides). Above either limit
the iterative solvers on Hessian-vector products are used instead (Lanczos for the extremes,
Krylov steps in the finder), whose memory is ``O(n)`` per vector.
"""

from __future__ import annotations

import re
import sys

from ._checks import ValidationError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(text: str) -> int:
    """Bytes in ``"512MiB"``, ``"4GB"``, ``"1e9"``… (decimal and binary units).

    Raises:
        ValidationError: a value that is not a positive size such as 512MiB or 4GB.
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise ValidationError(f"The 'max_memory' parameter must be a positive size such as 512MiB or 4GB. Got {text!r}.")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def dense_hessian_bytes(n: int) -> int:
    """Estimated peak bytes of a dense float64 Hessian and its ``eigh``."""
    return 3 * 8 * n * n


def dense_limit(n: int, max_params: int, max_memory: int, *, note=None) -> int:
    """The ``dense_max_params`` to use for a model of ``n`` parameters under both limits.

    When the dense path is refused for memory, one line with the estimate goes to ``note``
    (stderr by default) and the iterative path is taken.
    """
    if n <= max_params and dense_hessian_bytes(n) > max_memory:
        msg = (f"note: a dense Hessian of {n} parameters needs about {dense_hessian_bytes(n) / 2**30:.3g} GiB "
               f"> max_memory {max_memory / 2**30:.3g} GiB; using Lanczos / Krylov methods on HVPs")
        (note or (lambda s: print(s, file=sys.stderr)))(msg)
        return n - 1
    return max_params
