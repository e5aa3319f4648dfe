"""Served traffic against the training reference: feature, score and outcome drift, and the flag.

``traffic_table`` turns impressions (the decision log or the simulator's impressions, with labels
when they have arrived) plus the listing/seller/category tables into one row per shown slot with
the columns serving decided on. ``traffic_drift`` compares a current window with the reference
window in three sections:

* **features** (Evidently): log price, take rate, top category, seller cohort, region, device;
* **scores** (Evidently): the policy's propensity and, when the decision log carries it, the
  ranker's ``score``;
* **outcomes** (once labels arrive): CTR and post-click conversion, as a relative change with a
  two-proportion z-test (Evidently's distances are blind to a 0.03 -> 0.02 CTR move).

Drift is *confirmed* when the features or the scores drift (their table verdicts) or an outcome
moves by more than ``OutcomeThresholds.max_relative_change`` with ``p < p_value``. The monitoring
job then sets the drift flag (``monitoring.flag``) and serving falls back until a person or a
retrain clears it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy import stats

from monitoring.drift import DriftSummary, drift_report
from monitoring.flag import DRIFT_FLAG_KEY, set_drift_flag
from monitoring.thresholds import DriftThresholds

FEATURE_COLUMNS = ["log_price", "take_rate", "top_category", "seller_cohort", "region", "device"]
SCORE_COLUMNS = ["propensity", "score"]
NEW_SELLER_DAYS = 30.0


class OutcomeThresholds(BaseModel):
    """When an outcome rate has moved enough to call it drift."""

    max_relative_change: float = Field(
        default=0.25, gt=0, description="|cur/ref - 1| above this..."
    )
    p_value: float = Field(
        default=0.01, gt=0, lt=1, description="...with a z-test p-value below this."
    )
    min_events: int = Field(
        default=30, ge=1, description="Fewer clicks on a side: outcome not judged."
    )


class OutcomeDrift(BaseModel):
    """One outcome rate, reference vs current."""

    metric: str
    reference: float
    current: float
    relative_change: float
    p_value: float
    drifted: bool
    judged: bool = Field(description="False when too few events to judge.")


class TrafficDriftSummary(BaseModel):
    """The monitoring job's verdict over the three sections."""

    confirmed: bool
    reasons: list[str]
    features: DriftSummary
    scores: DriftSummary | None
    outcomes: list[OutcomeDrift]
    report_dir: str
    created_at: str


def traffic_table(
    impressions: pd.DataFrame,
    listings: pd.DataFrame,
    sellers: pd.DataFrame | None = None,
    categories: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per shown slot with the drift-monitored columns.

    Parameters
    ----------
    impressions
        ``contract.IMPRESSIONS`` rows (or ``LABELLED_IMPRESSIONS``: then ``clicked`` and
        ``purchased`` are kept as outcomes); an optional ``score`` column is kept.
    listings, sellers, categories
        ``contract.LISTINGS``, ``SELLERS`` and ``CATEGORIES`` rows; sellers give the cohort
        (``new`` when joined < 30 days before the impression), categories the top category.

    Returns
    -------
    pd.DataFrame
        Columns ``event_timestamp``, ``FEATURE_COLUMNS``, ``propensity`` (+ ``score``,
        ``clicked``, ``purchased`` when present). Impressions of unknown listings are dropped.
    """
    lst = listings[["listing_id", "seller_id", "category_id", "price", "take_rate"]]
    imp = impressions.drop(columns=[c for c in ("price", "take_rate") if c in impressions.columns])
    df = imp.merge(lst, on="listing_id", how="inner")
    df["log_price"] = np.log(df["price"].astype(float).clip(lower=0.01))
    df["top_category"] = _top_category(df["category_id"], categories)
    df["seller_cohort"] = _seller_cohort(df, sellers)
    keep = ["event_timestamp", *FEATURE_COLUMNS, "propensity"]
    keep += [c for c in ("score", "clicked", "purchased") if c in df.columns]
    return df[keep].reset_index(drop=True)


def impressions_from_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """Explode decision-log rows (``checkout_recs.contract.DECISIONS``) into one row per slot.

    Returns
    -------
    pd.DataFrame
        ``contract.IMPRESSIONS`` columns (``order_id`` null) plus ``score`` (the slot's expected
        revenue, currency units) and ``fallback_reason``; empty when ``decisions`` is empty.
    """
    cols = [
        "request_id",
        "user_id",
        "region",
        "device",
        "event_timestamp",
        "policy",
        "fallback_reason",
    ]
    if decisions.empty:
        return pd.DataFrame(
            columns=[*cols, "listing_id", "slot", "propensity", "score", "order_id"]
        )
    d = decisions[[*cols, "item_ids", "scores", "propensities"]].copy()
    d["slot"] = d["item_ids"].map(lambda ids: list(range(len(ids))))
    long = d.explode(["item_ids", "scores", "propensities", "slot"], ignore_index=True)
    long = long.rename(
        columns={"item_ids": "listing_id", "scores": "score", "propensities": "propensity"}
    )
    return long.astype(
        {"listing_id": "int64", "slot": "int8", "score": float, "propensity": float}
    ).assign(order_id=None)


def _top_category(category_id: pd.Series, categories: pd.DataFrame | None) -> pd.Series:
    if categories is None:
        return category_id.astype(str)
    top = categories.set_index("category_id")["top_category_id"]
    return category_id.map(top).fillna(-1).astype(int).astype(str)


def _seller_cohort(df: pd.DataFrame, sellers: pd.DataFrame | None) -> pd.Series:
    if sellers is None:
        return pd.Series("unknown", index=df.index)
    joined = df["seller_id"].map(sellers.set_index("seller_id")["joined_at"])
    age_days = (df["event_timestamp"] - joined).dt.total_seconds() / 86400.0
    return pd.Series(np.where(age_days < NEW_SELLER_DAYS, "new", "established"), index=df.index)


def window(df: pd.DataFrame, start: pd.Timestamp | dt.datetime, days: float) -> pd.DataFrame:
    """Rows with ``start <= event_timestamp < start + days``."""
    start = pd.Timestamp(start)
    end = start + pd.Timedelta(days=days)
    return df[(df["event_timestamp"] >= start) & (df["event_timestamp"] < end)]


def outcome_drift(
    reference: pd.DataFrame, current: pd.DataFrame, t: OutcomeThresholds
) -> list[OutcomeDrift]:
    """CTR (clicks / impressions) and conversion (purchases / clicks), reference vs current.

    Returns an empty list when the tables have no labels yet.
    """
    if "clicked" not in reference.columns or "clicked" not in current.columns:
        return []
    pairs = (
        ("ctr", reference["clicked"], current["clicked"]),
        ("conversion", reference.loc[reference["clicked"] == 1, "purchased"],
         current.loc[current["clicked"] == 1, "purchased"]),
    )  # fmt: skip
    return [_two_proportions(name, r.to_numpy(float), c.to_numpy(float), t) for name, r, c in pairs]


def _two_proportions(
    name: str, ref: np.ndarray, cur: np.ndarray, t: OutcomeThresholds
) -> OutcomeDrift:
    p1, p2 = (ref.mean() if ref.size else 0.0), (cur.mean() if cur.size else 0.0)
    pooled = (ref.sum() + cur.sum()) / max(ref.size + cur.size, 1)
    se = np.sqrt(pooled * (1 - pooled) * (1 / max(ref.size, 1) + 1 / max(cur.size, 1)))
    p = float(2 * stats.norm.sf(abs(p2 - p1) / se)) if se > 0 else 1.0
    rel = float(p2 / p1 - 1) if p1 > 0 else 0.0
    judged = bool(min(ref.sum(), cur.sum()) >= t.min_events)
    drifted = judged and abs(rel) > t.max_relative_change and p < t.p_value
    return OutcomeDrift(
        metric=name,
        reference=float(p1),
        current=float(p2),
        relative_change=rel,
        p_value=p,
        drifted=drifted,
        judged=judged,
    )


def traffic_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: Path,
    thresholds: DriftThresholds | None = None,
    outcome_thresholds: OutcomeThresholds | None = None,
) -> TrafficDriftSummary:
    """Feature, score and outcome drift of ``current`` traffic against ``reference``.

    Both tables come from ``traffic_table``. Writes ``out_dir/features/`` and ``out_dir/scores/``
    (Evidently HTML + JSON each), ``out_dir/traffic_summary.json`` and ``out_dir/index.html``.
    Raises ``monitoring.drift.DriftInputError`` on empty or unusable tables.
    """
    out_dir = Path(out_dir)
    t = thresholds or DriftThresholds()
    features = drift_report(
        reference, current, out_dir / "features", t, FEATURE_COLUMNS, "features"
    )
    score_cols = [c for c in SCORE_COLUMNS if c in reference.columns and c in current.columns]
    scores = (
        drift_report(reference, current, out_dir / "scores", t, score_cols, "scores")
        if score_cols
        else None
    )
    outcomes = outcome_drift(reference, current, outcome_thresholds or OutcomeThresholds())
    reasons = [s.reason for s in (features, scores) if s is not None and s.drift_detected]
    reasons += [
        f"{o.metric} {o.reference:.4f} -> {o.current:.4f} ({o.relative_change:+.0%}, p={o.p_value:.1e})"
        for o in outcomes
        if o.drifted
    ]
    summary = TrafficDriftSummary(
        confirmed=bool(reasons),
        reasons=reasons,
        features=features,
        scores=scores,
        outcomes=outcomes,
        report_dir=str(out_dir),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    (out_dir / "traffic_summary.json").write_text(summary.model_dump_json(indent=2))
    (out_dir / "index.html").write_text(_index_html(summary))
    return summary


def monitor_and_flag(
    summary: TrafficDriftSummary, client: Any, who: str = "monitoring-job", key: str | None = None
) -> bool:
    """Set the drift flag when ``summary.confirmed``; returns whether it was set.

    Never clears the flag (a person or a retrain does). Raises ``DriftFlagUnavailable`` when
    Redis fails, so the job fails loudly instead of silently leaving serving on a drifted model.
    """

    if not summary.confirmed:
        return False
    why = "; ".join(summary.reasons)[:500]
    set_drift_flag(
        client,
        who=who,
        why=why,
        report=str(Path(summary.report_dir) / "index.html"),
        key=key or DRIFT_FLAG_KEY,
    )
    return True


def _index_html(s: TrafficDriftSummary) -> str:
    colour = "#b00020" if s.confirmed else "#1b7f3b"
    verdict = "DRIFT CONFIRMED: serving falls back" if s.confirmed else "no drift"
    rows = "".join(
        f"<tr><td>{o.metric}</td><td>{o.reference:.4f}</td><td>{o.current:.4f}</td>"
        f"<td>{o.relative_change:+.1%}</td><td>{o.p_value:.2g}</td><td>{'yes' if o.drifted else 'no'}</td></tr>"
        for o in s.outcomes
    )
    links = "".join(
        f'<li><a href="{name}/drift_report.html">{name}</a>: {sec.reason}</li>'
        for name, sec in (("features", s.features), ("scores", s.scores))
        if sec is not None
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Served traffic drift</title></head>"
        "<body style='font-family:sans-serif;max-width:60em;margin:2em auto'>"
        f"<h1>Served traffic vs training reference</h1><p style='font-size:1.4em;color:{colour}'>"
        f"<b>{verdict}</b></p><ul>{''.join(f'<li>{r}</li>' for r in s.reasons)}</ul>"
        f"<h2>Sections</h2><ul>{links}</ul><h2>Outcomes</h2><table border=1 cellpadding=4>"
        "<tr><th>metric</th><th>reference</th><th>current</th><th>change</th><th>p</th><th>drift</th></tr>"
        f"{rows}</table><p>Generated {s.created_at}. JSON: traffic_summary.json</p>"
        f"<script type='application/json' id='summary'>{json.dumps({'confirmed': s.confirmed})}</script>"
        "</body></html>"
    )
