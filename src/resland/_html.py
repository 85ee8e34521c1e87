"""Shared pieces of resland's HTML reports (the paper's and the census's): CSS, PNG, data URIs."""

from __future__ import annotations

import base64
import io

#: The one style sheet of every report.
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:2em auto;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.reproduced{color:#17692b;font-weight:600}.not_reproduced{color:#a30d0d;font-weight:600}
.inconclusive{color:#8a5a00;font-weight:600}code,pre{background:#f6f6f6;padding:.1em .3em;border-radius:3px}
pre{padding:.6em;overflow-x:auto;font-size:.85em}img{max-width:100%;border:1px solid #eee}.alert{background:#fde8e8;border:1px solid #e0a0a0;padding:.6em}
"""


def png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes (110 dpi) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png_bytes: bytes) -> str:
    """``data:image/png;base64,…`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")
