"""Does the drift monitor trip on the simulator's seasonal shift and stay quiet on a quiet week?

For each seed two marketplaces are simulated: a *seasonal* one (``seasonality=1``: tastes and
demand rotate over a 28-day cycle) and a *quiet* one (``seasonality=0``). In both, the first
week is the training reference and the third week (half a season later) the served traffic.
The seasonal world must confirm drift; the quiet one must not. Over several seeds this gives
the detection rate and the false-alarm rate printed by ``checkout-recs drift-check``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from checkout_recs.simulate import SimConfig, run_simulation
from monitoring.thresholds import DriftThresholds
from monitoring.traffic import (
    TrafficDriftSummary,
    impressions_from_decisions,
    traffic_drift,
    traffic_table,
    window,
)

REFERENCE_DAY, CURRENT_DAY, WINDOW_DAYS = 0, 14, 7


class SimCheckResult(BaseModel):
    """Detection and false-alarm rates over seeds."""

    seeds: list[int]
    seasonal_confirmed: list[bool]
    quiet_confirmed: list[bool]
    detection_rate: float
    false_alarm_rate: float
    reasons_seasonal: list[list[str]]
    reasons_quiet: list[list[str]]


def load_traffic(run_dir: Path, decisions: Path | None = None) -> pd.DataFrame:
    """``traffic_table`` of a run folder holding raw tables (``raw/<table>`` or ``<table>``).

    Uses ``labels/impressions_labelled.parquet`` for the impressions when it exists, so outcomes
    are monitored too. With ``decisions`` (a folder of decision-log parquet parts, e.g. the
    artifact store's ``decisions/`` kind), the served slots come from the decision log instead
    (with the ranker's ``score``), and ``run_dir`` only supplies listings, sellers, categories.
    Raises ``FileNotFoundError`` when impressions (or decisions) or listings are missing.
    """
    run_dir = Path(run_dir)
    if decisions is not None:
        parts = sorted(p for p in Path(decisions).rglob("*.parquet") if not p.name.startswith("."))
        if not parts:
            raise FileNotFoundError(f"no decision-log parquet under {decisions}")
        log = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        return _with_tables(run_dir, impressions_from_decisions(log))

    labelled = run_dir / "labels" / "impressions_labelled.parquet"
    imp_path = labelled if labelled.exists() else _find(run_dir, "impressions")
    if imp_path is None:
        raise FileNotFoundError(f"no impressions under {run_dir}")
    return _with_tables(run_dir, pd.read_parquet(imp_path))


def _find(run_dir: Path, table: str) -> Path | None:
    for base in (
        run_dir,
        run_dir / "raw",
        run_dir / "ingested" / "validated",
        run_dir / "validated",
    ):
        if (base / table).exists():
            return base / table
    return None


def _with_tables(run_dir: Path, impressions: pd.DataFrame) -> pd.DataFrame:
    lst_path = _find(run_dir, "listings")
    if lst_path is None:
        raise FileNotFoundError(f"no listings under {run_dir}")
    optional = [_find(run_dir, t) for t in ("sellers", "categories")]
    return traffic_table(
        impressions,
        pd.read_parquet(lst_path),
        *(pd.read_parquet(p) if p is not None else None for p in optional),
    )


def check_world(
    seed: int, seasonality: float, work: Path, thresholds: DriftThresholds | None = None
) -> TrafficDriftSummary:
    """Simulate 21 days at ``seasonality``; compare week 3 with week 1. Writes under ``work``."""

    cfg = SimConfig(
        seed=seed, n_sellers=600, n_listings=20_000, n_users=1_500, days=CURRENT_DAY + WINDOW_DAYS,
        checkouts_per_day=100, seasonality=seasonality,
    )  # fmt: skip
    run_simulation(cfg, work / "raw")
    traffic = load_traffic(work)
    start = pd.Timestamp(cfg.start)
    ref = window(traffic, start + pd.Timedelta(days=REFERENCE_DAY), WINDOW_DAYS)
    cur = window(traffic, start + pd.Timedelta(days=CURRENT_DAY), WINDOW_DAYS)
    return traffic_drift(ref, cur, work / "drift", thresholds)


def false_alarm_study(
    seeds: list[int],
    out_dir: Path | None = None,
    on_seed: Callable[[int, bool, bool], None] | None = None,
) -> SimCheckResult:
    """Run ``check_world`` for a seasonal and a quiet world per seed.

    Reports go to ``out_dir/<seasonal|quiet>-<seed>/drift``; with ``out_dir=None`` a temporary
    folder is used and removed. ``on_seed(seed, seasonal_confirmed, quiet_confirmed)`` is called
    after each seed (progress display).
    """
    base = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="drift-check-"))
    seasonal, quiet = [], []
    try:
        for seed in seeds:
            seasonal.append(check_world(seed, 1.0, base / f"seasonal-{seed}"))
            quiet.append(check_world(seed, 0.0, base / f"quiet-{seed}"))
            if on_seed is not None:
                on_seed(seed, seasonal[-1].confirmed, quiet[-1].confirmed)
    finally:
        if out_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    n = max(len(seeds), 1)
    return SimCheckResult(
        seeds=list(seeds),
        seasonal_confirmed=[s.confirmed for s in seasonal],
        quiet_confirmed=[q.confirmed for q in quiet],
        detection_rate=sum(s.confirmed for s in seasonal) / n,
        false_alarm_rate=sum(q.confirmed for q in quiet) / n,
        reasons_seasonal=[s.reasons for s in seasonal],
        reasons_quiet=[q.reasons for q in quiet],
    )
