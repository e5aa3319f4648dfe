"""Shared data fixtures: a tiny simulated, ingested and labelled run other areas' tests can use.

from tests.fixtures_data import make_demo_dataset
run = make_demo_dataset(tmp_path)   # run/raw, run/ingested, run/labels
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from checkout_recs.simulate import SimConfig

#: The tiny configuration (about 1 s to simulate).
TINY = SimConfig(seed=11, n_sellers=80, n_listings=1_500, n_users=300, days=5, checkouts_per_day=60)
#: A fixed ingest clock, after every simulated timestamp (ingest is then reproducible).
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def make_demo_dataset(tmp_path: Path, cfg: SimConfig | None = None) -> Path:
    """Simulate + ingest + label at a tiny size; returns the run folder.

    The folder holds ``raw/`` (simulator output), ``ingested/`` (``validated/``, ``quarantine/``,
    ``ingest_report.json``) and ``labels/`` (the label tables).
    """
    from checkout_recs.data.ingest import ingest
    from checkout_recs.data.labels import build_labels
    from checkout_recs.simulate import run_simulation

    run = Path(tmp_path) / "run"
    run_simulation(cfg or TINY, run / "raw")
    ingest(str(run / "raw"), run / "ingested", now=NOW)
    build_labels(run / "ingested", run / "labels")
    return run
