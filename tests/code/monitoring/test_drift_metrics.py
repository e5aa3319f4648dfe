"""The monitoring job's figures as Prometheus metrics: the text file, and the exporter serving the
newest published one."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from checkout_recs.storage import LocalArtifactStore
from monitoring.drift import ColumnDrift, DriftSummary
from monitoring.drift_metrics import METRIC_NAMES, TEXTFILE_NAME, write_drift_metrics
from monitoring.exporter import DriftMetrics, make_server
from monitoring.traffic import OutcomeDrift, TrafficDriftSummary


def _table(drifted: bool, when: str = "2026-11-02T00:00:00+00:00") -> DriftSummary:
    cols = [
        ColumnDrift(
            column="log_price",
            kind="numerical",
            method="Wasserstein distance (normed)",
            score=0.31 if drifted else 0.02,
            threshold=0.1,
            drifted=drifted,
        ),
        ColumnDrift(
            column="region",
            kind="categorical",
            method="Jensen-Shannon distance",
            score=0.01,
            threshold=0.1,
            drifted=False,
        ),
    ]
    return DriftSummary(
        drift_detected=drifted,
        reason="r",
        drifted_share=0.5 if drifted else 0.0,
        share_threshold=0.3,
        n_columns=2,
        n_drifted=int(drifted),
        drifted_columns=["log_price"] if drifted else [],
        columns=cols,
        reference_rows=10,
        current_rows=10,
        report_html="x.html",
        created_at=when,
    )


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_a_table_run_writes_one_gauge_per_column_and_the_verdict(tmp_path: Path) -> None:
    path = write_drift_metrics(_table(True), tmp_path)
    assert path == tmp_path / TEXTFILE_NAME
    got = _samples(path.read_text())
    key = (
        "checkout_recs_drift_score",
        (
            ("feature", "log_price"),
            ("method", "Wasserstein distance (normed)"),
            ("section", "table"),
        ),
    )
    assert got[key] == 0.31
    assert (
        got[
            ("checkout_recs_drift_column_drifted", (("feature", "log_price"), ("section", "table")))
        ]
        == 1
    )
    assert got[("checkout_recs_drift_share", (("section", "table"),))] == 0.5
    assert got[("checkout_recs_drift_detected", ())] == 1
    assert got[("checkout_recs_drift_last_run_timestamp_seconds", ())] == 1793577600.0


def test_a_traffic_run_has_sections_and_outcomes(tmp_path: Path) -> None:
    t = TrafficDriftSummary(
        confirmed=False,
        reasons=[],
        features=_table(False),
        scores=_table(True),
        outcomes=[
            OutcomeDrift(
                metric="ctr",
                reference=0.1,
                current=0.12,
                relative_change=0.2,
                p_value=0.2,
                drifted=False,
                judged=True,
            )
        ],
        report_dir=str(tmp_path),
        created_at="2026-11-02T00:00:00+00:00",
    )
    got = _samples(write_drift_metrics(t, tmp_path / "x" / "m.prom").read_text())
    assert {dict(k[1]).get("section") for k in got if k[0] == "checkout_recs_drift_share"} == {
        "features",
        "scores",
    }
    assert got[("checkout_recs_drift_outcome_relative_change", (("metric", "ctr"),))] == 0.2
    assert got[("checkout_recs_drift_detected", ())] == 0
    names = {
        fam.name for fam in text_string_to_metric_families((tmp_path / "x" / "m.prom").read_text())
    }
    assert names == set(METRIC_NAMES)


def test_the_exporter_serves_the_newest_published_run(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    clock = [0.0]
    server = make_server(DriftMetrics(store, refresh_s=60, clock=lambda: clock[0]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"

    def scrape() -> dict:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
            return _samples(r.read().decode())

    try:
        before = scrape()
        assert before == {("checkout_recs_drift_exporter_reports", (("version", ""),)): 0}
        for version, drifted in (("drift-1", False), ("drift-2", True)):
            folder = tmp_path / version
            folder.mkdir()
            write_drift_metrics(_table(drifted), folder)
            store.publish("drift", version, folder)
        assert scrape() == before  # cached for refresh_s
        clock[0] = 61
        after = scrape()
        assert after[("checkout_recs_drift_detected", ())] == 1  # drift-2, the newest
        assert after[("checkout_recs_drift_exporter_reports", (("version", "drift-2"),))] == 1
    finally:
        server.shutdown()
        server.server_close()
