"""Small helpers for the measurement HTML reports: figures as embedded PNG, tables, one page.

Reports are single self-contained files (no network, no external assets) so on-call can open
them from an artifact store or attach them to a ticket.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import pandas as pd

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f3f3f3}.ok{color:#1b7f3b}.bad{color:#b00020}"
    ".note{color:#555;font-size:.9em}img{max-width:100%}"
)


def figure_tag(fig: Any, alt: str) -> str:
    """A matplotlib figure as an ``<img>`` tag with the PNG embedded (base64); closes the figure."""
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~0.5 s and only the HTML reports need it

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A DataFrame as an HTML table, floats formatted with ``float_format``."""
    return df.to_html(index=False, float_format=float_format.format, border=0, escape=True)


def page(
    title: str, sections: list[tuple[str, str]], verdict: str | None = None, ok: bool = True
) -> str:
    """A whole HTML page: a title, an optional coloured verdict line, then (heading, html) sections."""
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    head += f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    if verdict:
        head += f"<p class='{'ok' if ok else 'bad'}' style='font-size:1.3em'><b>{html.escape(verdict)}</b></p>"
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return head + body + "</body></html>"
