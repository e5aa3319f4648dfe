"""The scale ladder's report: growth exponents, ``scale.json`` and ``scale.html`` (log-log plots).

The growth exponent of a figure between two rungs is ``log(f2 / f1) / log(n2 / n1)`` with ``n``
the listings: 1 is linear, 2 quadratic, 0 flat (a fixed cost such as imports dominates).
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

FIGURES = {"wall_s": "wall", "cpu_s": "cpu", "peak_rss_mb": "rss"}


def exponent(f1: float, f2: float, n1: int, n2: int) -> float | None:
    """``log(f2/f1) / log(n2/n1)``; None when a figure is not positive or the sizes are equal."""
    if f1 <= 0 or f2 <= 0 or n1 <= 0 or n2 <= 0 or n1 == n2:
        return None
    return round(math.log(f2 / f1) / math.log(n2 / n1), 3)


def exponents(rungs: dict[str, dict]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per pair of consecutive measured rungs (by listings) and per step measured in both:
    ``{"1M->5M": {step: {"wall": e, "cpu": e, "rss": e}}}``."""
    done = sorted(
        ((r["listings"], name) for name, r in rungs.items() if r.get("steps")), key=lambda t: t[0]
    )
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for (n1, a), (n2, b) in zip(done, done[1:], strict=False):
        s1, s2 = rungs[a]["steps"], rungs[b]["steps"]
        out[f"{a}->{b}"] = {
            step: {k: exponent(s1[step][f], s2[step][f], n1, n2) for f, k in FIGURES.items()}
            for step in s1
            if step in s2
        }
    return out


def _plot(rungs: dict[str, dict], steps: list[str], field: str, ylabel: str) -> str:
    """One log-log plot (one line per step) as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    order = sorted((r for r in rungs.values() if r.get("steps")), key=lambda r: r["listings"])
    for step in steps:
        pts = [(r["listings"], r["steps"][step][field]) for r in order if step in r["steps"]]
        pts = [(x, y) for x, y in pts if y > 0]
        line = ax.plot(*zip(*pts, strict=True), marker="o", label=step) if pts else None
        bad = [
            (r["listings"], r["failed"][step]["figures"].get(field, 0))
            for r in order
            if step in r.get("failed", {})
        ]
        bad = [(x, y) for x, y in bad if y and y > 0]
        if bad:  # a failed (e.g. killed) step: what it had reached, a lower bound
            color = line[0].get_color() if line else None
            ax.scatter(*zip(*bad, strict=True), marker="x", s=60, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("listings")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(rows: list[list[Any]], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _num(x: float | None, fmt: str = ",.1f") -> str:
    return "–" if x is None else format(x, fmt)


def report_html(result: dict) -> str:
    """``scale.html``: the traffic model, per-rung tables, exponents and three log-log plots."""
    rungs, steps = result["rungs"], result["steps"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>scale ladder</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style>",
        "<h1>Scale ladder: simulate → serve</h1>",
        f"<p>{html.escape(result['command'])} (commit {result['commit']})<br>steps measured "
        f"{result['measured_at']} – {result['finished_at']}, host "
        f"{html.escape(result['host']['machine'])}, {result['host']['cpus']} CPUs, 1-minute load "
        f"average at the steps' starts {result['host']['load_1m_steps_min_max']} (per step in "
        "the tables).</p>",
        "<h2>Traffic model</h2>",
        _table([[k, v] for k, v in result["traffic_model"].items()], ["field", "value"]),
    ]
    for name, r in sorted(rungs.items(), key=lambda kv: kv[1]["listings"]):
        t = r["traffic"]
        parts.append(
            f"<h2>{html.escape(name)}: {r['listings']:,} listings — {html.escape(r['status'])}</h2>"
            f"<p>{t['checkouts_per_day']:,} checkouts/day × {t['days']} days, {t['users']:,} "
            f"buyers, {t['sellers']:,} sellers; observed {html.escape(str(r.get('observed')))}</p>"
        )
        rows = [
            [
                s,
                _num(f["wall_s"]),
                _num(f["cpu_s"]),
                _num(f["peak_rss_mb"], ",.0f"),
                _num(f["tree_rss_mb"], ",.0f"),
                f"{f['rows_in']:,}",
                f"{f['rows_out']:,}",
                _num(f["rows_per_s"], ",.0f"),
                _num(f.get("load_1m"), ".2f"),
            ]
            for s, f in r["steps"].items()
        ]
        head = ["step", "wall s", "CPU s", "peak RSS MB", "tree RSS MB", "rows in", "rows out"]
        parts.append(_table(rows, [*head, "rows/s", "load 1m"]))
        if r.get("failed"):
            parts.append(f"<pre>{html.escape(str(r['failed']))}</pre>")
    for pair, per_step in result["exponents"].items():
        parts.append(f"<h2>Growth exponents {html.escape(pair)}</h2>")
        rows = [
            [s, _num(e["wall"], ".2f"), _num(e["cpu"], ".2f"), _num(e["rss"], ".2f")]
            for s, e in per_step.items()
        ]
        parts.append(_table(rows, ["step", "wall", "CPU", "peak RSS"]))
    if result["not_run"]:
        parts.append("<h2>Rungs not run</h2>")
        parts.append(_table([[k, v] for k, v in result["not_run"].items()], ["rung", "why"]))
    for field, label in (("wall_s", "wall s"), ("cpu_s", "CPU s"), ("peak_rss_mb", "peak RSS MB")):
        png = _plot(rungs, steps, field, label)
        parts.append(
            f"<h2>{label} vs listings (log-log)</h2><img src='data:image/png;base64,{png}'>"
        )
    return "\n".join(parts)
