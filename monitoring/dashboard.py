"""The Grafana dashboards of ``monitoring/dashboards/``: their panel queries and the metric names
those queries use, for the test that checks every name against a live Prometheus.

``metric_names(expr)`` parses PromQL roughly: it drops strings, label matchers (``{...}``), ranges
(``[...]``), grouping lists (``by (...)``, ``on (...)``, ...) and Grafana variables, then keeps the
identifiers that are not followed by ``(`` (functions, aggregations) and are not keywords.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"
DASHBOARD = DASHBOARDS / "checkout-recs.json"

KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
    }
)
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    """A dashboard's JSON model."""
    return dict(json.loads(Path(path).read_text()))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every target of every panel, and of the query variables."""
    out = [
        (p.get("title", ""), t["expr"])
        for p in panels(dashboard)
        for t in p.get("targets", [])
        if t.get("expr")
    ]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else query or ""
        if var.get("type") == "query" and text:
            out.append((f"variable {var['name']}", _variable_query(text)))
    return out


def _variable_query(text: str) -> str:
    """The PromQL inside ``label_values(expr, label)`` / ``query_result(expr)``, or ``text``."""
    m = re.fullmatch(r"\s*(?:label_values|query_result)\((.*?)(?:,\s*\w+)?\)\s*", text, re.S)
    return m.group(1) if m else text


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (see the module docstring for how roughly)."""
    text = _VARIABLES.sub(" ", _STRINGS.sub('""', expr))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in KEYWORDS}
