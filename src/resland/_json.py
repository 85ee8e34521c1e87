"""The one JSON encoding of resland's records: certificates, census rows and claims.

Tensors and arrays become lists, NumPy scalars Python numbers, and non-finite floats the
strings ``"inf"``, ``"-inf"``, ``"nan"`` (strict JSON has no such numbers).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def jsonable(v):
    """``v`` with every value JSON-ready (recursively through dicts, lists and tuples)."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().tolist()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else str(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    return v
