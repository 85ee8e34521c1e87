"""``resland reproduce``: re-derive every claim of the paper (docs/theory.md §2) and write the evidence.

Writes into ``out``: ``report.html`` (self-contained), ``claims.json`` (one entry per claim:
id, statement, paper_value, measured, status, details), one PNG per plot and
``records.jsonl`` (raw per-run records; each claim's records carry its id) and ``census.db``, the census store of C3, C4 and C5
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
from .claims import MAIN_PAPER, Claim
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


def papers_for(paper: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """The paper ids a ``--paper`` value selects (None: the main paper; ``all``: every paper, main first).

    Raises:
        ValidationError: an unknown paper id.
    """
    from .._checks import check_choice
    from ..known.papers import ALL, PAPERS

    chosen = (MAIN_PAPER,) if not paper else (paper,) if isinstance(paper, str) else tuple(paper)
    if ALL in chosen:
        return tuple(PAPERS)
    for p in chosen:
        check_choice("paper", p, PAPERS)
    return tuple(dict.fromkeys(chosen))


def claim_count(papers: tuple[str, ...], only: tuple[str, ...] = ()) -> int:
    """How many claims a run of ``papers`` (and ``only``, for the main paper) makes."""
    from ..known.papers import PAPERS

    return sum(len(only) if p == MAIN_PAPER and only else len(PAPERS[p].claims) for p in papers)


def reproduce(out: str | Path = "results/reproduce", *, quick: bool = False, only: tuple[str, ...] = (),
              paper: str | tuple[str, ...] | None = None, progress=lambda *_: None,
              claim_done=lambda *_: None) -> list[Claim]:
    """Run the claims of ``paper`` (default the main paper, C1–C5, or ``only`` some of them; ``"all"``: every
    paper of :data:`resland.known.papers.PAPERS`), write the report files, and return the claims.

    ``progress(message)`` is called as runs go; ``claim_done(claim)`` after each claim. The report has one
    section per paper; ``claims.json`` names each claim's paper.

    Raises:
        ValidationError: an unknown claim id in ``only`` or an unknown paper.
    """
    from .. import __version__
    from .._checks import check_choice
    from ..known.papers import PAPERS, runner

    for cid in only:
        check_choice("only", cid, CLAIMS)
    papers = papers_for(paper)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1 if torch.get_num_threads() < 2 else 2)
    start = time.perf_counter()
    claims, timing = [], {}
    for pid in papers:
        if pid == MAIN_PAPER:
            for cid in only or CLAIMS:
                t = time.perf_counter()
                claims.append(_runner(cid, out / STORE)(quick, progress))
                timing[cid] = time.perf_counter() - t
                progress(f"{cid}: {claims[-1].status}")
                claim_done(claims[-1])
            continue
        t = time.perf_counter()
        # the claims already run go along: a paper whose claim rests on one of them (S18-1 on C5) reuses it
        for c in runner(PAPERS[pid])(quick, progress, store=out / STORE, done={c.id: c for c in claims}):
            claims.append(c)
            progress(f"{c.id}: {c.status}")
            claim_done(c)
        timing[pid] = time.perf_counter() - t
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
    title = ("resland: are deep ResNets better than linear predictors?" if papers == (MAIN_PAPER,) else
             "resland: the paper and its neighbours, reproduced")
    meta["papers"] = ", ".join(papers)
    (out / "report.html").write_text(render(claims, title=title, meta=meta))
    return claims
