"""A self-contained HTML report: the claims table first, then one section per claim."""

from __future__ import annotations

import html
import json

from .._html import CSS, data_uri
from .claims import Claim

def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return html.escape(json.dumps(v, default=str, ensure_ascii=False)[:400])
    return html.escape(str(v))


def render(claims: list[Claim], *, title: str, meta: dict) -> str:
    """Return the report as one HTML string (plots embedded as base64 PNG)."""
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    out.append("<p>" + " · ".join(f"{html.escape(k)}: {_fmt(v)}" for k, v in meta.items()) + "</p>")
    for c in [c for c in claims if c.details.get("worse_no_negative")]:
        out.append(f"<p class='alert'><b>{c.id}: {len(c.details['worse_no_negative'])} ResNet critical point(s) worse "
                   "than linear without a negative eigenvalue</b> (case (ii) fails as stated). Their parameters are in "
                   "claims.json and records.jsonl for replay.</p>")
    papers = list(dict.fromkeys(c.paper for c in claims))
    out.append("<h2 id='claims'>Claims</h2>")
    out.append(_claims_table(claims, with_paper=len(papers) > 1))
    for paper in papers:
        mine = [c for c in claims if c.paper == paper]
        if len(papers) > 1:
            out.append(f"<h2 id='paper-{html.escape(paper)}'>{html.escape(_citation(paper))}</h2>")
            out.append(_claims_table(mine, with_paper=False))
        else:
            out.append(f"<p id='paper-{html.escape(paper)}'>{html.escape(_citation(paper))}</p>")
        _sections(out, mine)
    out.append("</body></html>")
    return "\n".join(out)


def _claims_table(claims: list[Claim], *, with_paper: bool) -> str:
    head = ("<th>paper</th>" if with_paper else "") + "<th>id</th><th>claim</th><th>status</th><th>why</th>"
    rows = [f"<tr>{f'<td>{html.escape(c.paper)}</td>' if with_paper else ''}<td><a href='#{c.id}'>{c.id}</a></td>"
            f"<td>{html.escape(c.title)}</td><td class='{c.status}'>{c.status}</td><td>{html.escape(c.reason)}</td></tr>"
            for c in claims]
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _citation(paper: str) -> str:
    from ..known.papers import PAPERS

    return PAPERS[paper].citation if paper in PAPERS else paper


def _sections(out: list[str], claims: list[Claim]) -> None:
    for c in claims:
        out.append(f"<h3 id='{c.id}'>{c.id}. {html.escape(c.title)}</h3><p>{html.escape(c.statement)}</p>")
        out.append(f"<p>Status: <span class='{c.status}'>{c.status}</span>: {html.escape(c.reason)}</p>")
        if isinstance(c.paper_value, dict):
            out.append("<p>Paper:</p>" + _measured_table(c.paper_value))
        elif c.paper_value is not None:
            out.append(f"<p>Paper: {_fmt(c.paper_value)}</p>")
        out.append("<p>Measured:</p>" + _measured_table(c.measured))
        for name, img in c.figures.items():
            out.append(f"<p><img alt='{c.id} {html.escape(name)}' src='{data_uri(img)}'></p>")
        out.append("<p>Rerun:</p><pre>" + html.escape("\n".join(c.commands)) + "</pre>")


def _measured_table(measured) -> str:
    if isinstance(measured, dict):
        rows = []
        for k, v in measured.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                rows.append(f"<tr><th>{html.escape(k)}</th><td>{_records_table(v)}</td></tr>")
            else:
                rows.append(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>")
        return "<table>" + "".join(rows) + "</table>"
    return f"<p>{_fmt(measured)}</p>"


def _records_table(rows: list[dict]) -> str:
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
