"""pre_period_raw: only rows dated before the cut-off, the world itself unchanged."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from checkout_recs.simulate import SimWorld, run_simulation
from checkout_recs.simulate.pre_period import DATED, pre_period_raw
from tests.fixtures_data import TINY


def test_pre_period_keeps_rows_before_the_cutoff(tmp_path: Path) -> None:
    run_simulation(TINY, tmp_path / "raw")
    kept = pre_period_raw(tmp_path / "raw", tmp_path / "pre", 2)
    cutoff = pd.Timestamp(TINY.start + dt.timedelta(days=2))
    for name, col in DATED.items():
        full = pd.read_parquet(tmp_path / "raw" / name)
        pre = pd.read_parquet(tmp_path / "pre" / name)
        assert len(pre) == kept[name] == int((full[col] < cutoff).sum())
        assert 0 < len(pre) < len(full)
        assert (pre[col] < cutoff).all()
    assert len(pd.read_parquet(tmp_path / "pre" / "sellers")) == TINY.n_sellers
    world = SimWorld.from_raw(tmp_path / "pre")
    assert world.cfg == TINY
