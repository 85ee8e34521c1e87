"""``resland reproduce``: re-derive every claim of the paper (docs/theory.md §2) and write the evidence.

Writes into ``out``: ``report.html`` (self-contained), ``claims.json`` (one entry per claim:
id, statement, paper_value, measured, status, details), one PNG per plot and
``records.jsonl`` (raw per-run records) and ``census.db``, the census store of C3, C4 and C5
(a rerun into the same ``out`` resumes from it; every C3/C4/C5 record names its ``resland
replay`` command). ``quick`` keeps the structure with fewer seeds and grid points.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from .._json import jsonable
from .claims import Claim
from .report import render

CLAIMS = ("C1", "C2", "C3", "C4", "C5")
#: The census store of C3, C4 and C5 inside ``out`` (a rerun resumes from it; replay commands read it).
STORE = "census.db"


def _runner(cid: str, store: Path):
    """Claim ``cid``'s function ``(quick, progress) -> Claim``; C3, C4 and C5 run census specs into ``store``."""
    from functools import partial

    from . import dichotomy, example1, example2, near_identity

    return {"C1": example1.run, "C2": example2.run, "C3": partial(dichotomy.run_c3, store=store),
            "C4": partial(near_identity.run, store=store), "C5": partial(dichotomy.run_c5, store=store)}[cid]


def reproduce(out: str | Path = "results/reproduce", *, quick: bool = False, only: tuple[str, ...] = (),
              progress=lambda *_: None, claim_done=lambda *_: None) -> list[Claim]:
    """Run the claims (all, or ``only``), write the report files, and return the claims.

    ``progress(message)`` is called as runs go; ``claim_done(claim)`` after each claim.

    Raises:
        ValidationError: an unknown claim id in ``only``.
    """
    from .. import __version__
    from .._checks import check_choice

    for cid in only:
        check_choice("only", cid, CLAIMS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1 if torch.get_num_threads() < 2 else 2)
    start = time.perf_counter()
    claims, timing = [], {}
    for cid in only or CLAIMS:
        t = time.perf_counter()
        claims.append(_runner(cid, out / STORE)(quick, progress))
        timing[cid] = time.perf_counter() - t
        progress(f"{cid}: {claims[-1].status}")
        claim_done(claims[-1])
    meta = {"resland": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "mode": "quick" if quick else "full", "seconds": round(time.perf_counter() - start, 1)}
    with open(out / "records.jsonl", "w") as fh:  # raw records first: they survive any later failure
        for c in claims:
            for r in c.records:
                fh.write(json.dumps(jsonable(r)) + "\n")
    (out / "claims.json").write_text(json.dumps([c.to_dict() for c in claims], indent=2))
    for c in claims:
        for name, img in c.figures.items():
            (out / f"{c.id}_{name}.png").write_bytes(img)
    (out / "timing.json").write_text(json.dumps({**timing, "total": meta["seconds"]}, indent=2))
    (out / "report.html").write_text(render(claims, title="resland: are deep ResNets better than linear predictors?",
                                            meta=meta))
    return claims
