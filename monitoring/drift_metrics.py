"""The monitoring job's verdicts as Prometheus metrics, so drift has a history on the dashboard.

Every run writes ``drift_metrics.prom`` (Prometheus text format, the node-exporter textfile
collector's format) into its report folder, which the monitoring pipeline publishes with the
report (artifact kind ``drift``); ``--metrics-textfile PATH`` on ``checkout-recs drift`` /
``monitor`` writes a copy where a textfile collector reads. Prometheus scrapes the newest
published file through ``checkout-recs drift-exporter`` (``monitoring.exporter``): no
Pushgateway, and a job that has exited still has its last figures scraped, stamped with the run's
time (``checkout_recs_drift_last_run_timestamp_seconds``).

Metrics (``section``: ``table`` for ``drift``, ``features`` / ``scores`` for ``monitor``):

* ``checkout_recs_drift_score{section,feature,method}`` — the column's drift score (a distance);
* ``checkout_recs_drift_threshold{section,feature}`` — the score above which the column drifts;
* ``checkout_recs_drift_column_drifted{section,feature}`` — 1 when the column drifted;
* ``checkout_recs_drift_share{section}`` — share of drifted columns (the table verdict's input);
* ``checkout_recs_drift_detected`` — the run's verdict, 1 = drift (``monitor``: confirmed);
* ``checkout_recs_drift_outcome_relative_change{metric}`` — CTR / conversion change (``monitor``);
* ``checkout_recs_drift_last_run_timestamp_seconds`` — when the compared report was made.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from monitoring.drift import DriftSummary
from monitoring.traffic import TrafficDriftSummary

TEXTFILE_NAME = "drift_metrics.prom"
METRIC_NAMES = (
    "checkout_recs_drift_score",
    "checkout_recs_drift_threshold",
    "checkout_recs_drift_column_drifted",
    "checkout_recs_drift_share",
    "checkout_recs_drift_detected",
    "checkout_recs_drift_outcome_relative_change",
    "checkout_recs_drift_last_run_timestamp_seconds",
)


class _DriftGauges:
    """The gauges of one run, in their own registry (nothing process-wide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.score = Gauge(
            METRIC_NAMES[0],
            "Drift score of a column (a distance)",
            ["section", "feature", "method"],
            registry=r,
        )
        self.threshold = Gauge(
            METRIC_NAMES[1],
            "Drift score above which the column drifts",
            ["section", "feature"],
            registry=r,
        )
        self.drifted = Gauge(
            METRIC_NAMES[2], "1 when the column drifted", ["section", "feature"], registry=r
        )
        self.share = Gauge(METRIC_NAMES[3], "Share of drifted columns", ["section"], registry=r)
        self.detected = Gauge(
            METRIC_NAMES[4], "Drift verdict of the last run (1 = drift)", registry=r
        )
        self.outcome = Gauge(
            METRIC_NAMES[5],
            "Relative change of an outcome rate, current vs reference",
            ["metric"],
            registry=r,
        )
        self.last_run = Gauge(METRIC_NAMES[6], "Unix time of the last monitoring run", registry=r)

    def add_table(self, section: str, s: DriftSummary) -> None:
        for c in s.columns:
            self.score.labels(section=section, feature=c.column, method=c.method).set(c.score)
            self.threshold.labels(section=section, feature=c.column).set(c.threshold)
            self.drifted.labels(section=section, feature=c.column).set(int(c.drifted))
        self.share.labels(section=section).set(s.drifted_share)


def _timestamp(created_at: str) -> float:
    """Unix seconds of an ISO time (UTC when it names no zone)."""
    t = dt.datetime.fromisoformat(created_at)
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def drift_registry(summary: DriftSummary | TrafficDriftSummary) -> CollectorRegistry:
    """A registry holding the gauges of one run (``drift`` table summary or ``monitor`` traffic summary)."""
    g = _DriftGauges()
    if isinstance(summary, TrafficDriftSummary):
        g.add_table("features", summary.features)
        if summary.scores is not None:
            g.add_table("scores", summary.scores)
        for o in summary.outcomes:
            if o.judged:
                g.outcome.labels(metric=o.metric).set(o.relative_change)
        g.detected.set(int(summary.confirmed))
    else:
        g.add_table("table", summary)
        g.detected.set(int(summary.drift_detected))
    g.last_run.set(_timestamp(summary.created_at))
    return g.registry


def write_drift_metrics(summary: DriftSummary | TrafficDriftSummary, path: Path) -> Path:
    """Write the run's gauges to ``path`` in Prometheus text format (atomically: a scrape never
    reads half a file); an existing folder gets ``drift_metrics.prom`` inside it. Returns the file."""
    path = Path(path)
    if path.is_dir():
        path = path / TEXTFILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), drift_registry(summary))
    return path
