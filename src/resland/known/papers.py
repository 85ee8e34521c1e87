"""The papers ``resland reproduce --paper`` knows: the paper itself (claims C1–C5) and the five neighbouring papers
whose landscapes are proved (docs/theory.md §10 of the paper notes), each with its claim ids and its runner."""

from __future__ import annotations

from dataclasses import dataclass

from ..paper.claims import MAIN_PAPER


@dataclass(frozen=True)
class Paper:
    """One paper: its id (``--paper``), citation, the ids of its claims, and ``module:function`` of its runner
    ``(quick, progress, store, done) -> list[Claim]`` (``done``: the claims already run in this call, by id; None
    for the main paper, whose claims run one by one)."""

    id: str
    citation: str
    claims: tuple[str, ...]
    runner: str | None = None


PAPERS = {p.id: p for p in (
    Paper(MAIN_PAPER, "C. Yun, S. Sra, A. Jadbabaie, Are deep ResNets provably better than linear predictors? "
          "NeurIPS 2019", ("C1", "C2", "C3", "C4", "C5")),
    Paper("safran-shamir-2018", "I. Safran, O. Shamir, Spurious local minima are common in two-layer ReLU neural "
          "networks. ICML 2018", ("SS18-1", "SS18-2", "SS18-3"), "claims_safran_shamir:run"),
    Paper("kawaguchi-2016", "K. Kawaguchi, Deep learning without poor local minima. NeurIPS 2016",
          ("K16-1", "K16-2"), "claims_linear:run_kawaguchi"),
    Paper("hardt-ma-2017", "M. Hardt, T. Ma, Identity matters in deep learning. ICLR 2017", ("HM17-1", "HM17-2"),
          "claims_linear:run_hardt_ma"),
    Paper("shamir-2018", "O. Shamir, Are ResNets provably better than linear predictors? NeurIPS 2018", ("S18-1",),
          "claims_networks:run_shamir"),
    Paper("yun-sra-jadbabaie-2019-iclr", "C. Yun, S. Sra, A. Jadbabaie, Small nonlinearities in activation functions "
          "create bad local minima in neural networks. ICLR 2019", ("YSJ19-1", "YSJ19-2"), "claims_networks:run_ysj"),
)}
#: ``--paper all``: every paper, the main one first.
ALL = "all"


def runner(paper: Paper):
    """The paper's runner function (imported on demand)."""
    import importlib

    module, name = paper.runner.split(":")
    return getattr(importlib.import_module(f"resland.known.{module}"), name)


__all__ = ["ALL", "PAPERS", "Paper", "runner"]
