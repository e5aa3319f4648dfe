"""Materialization in key ranges (``feature_repo.online_writes``, the adapter's default) leaves the
same rows in the SQLite online store as Feast's ``materialize`` (``range_rows=None``), in one
window and incrementally, and logs the same windows; ``newest_rows`` is the newest row of each
entity in the window, whatever the range size."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from feature_repo.online_writes import newest_rows
from feature_repo.store import VIEWS
from tests.fixtures_features import START, open_test_store, synthetic_features  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAY3 = (START + pd.Timedelta(days=3)).to_pydatetime()
DAY6 = (START + pd.Timedelta(days=6)).to_pydatetime()
KEYS = {"user": ["user_id"], "listing": ["listing_id"], "seller": ["seller_id"]}


def _online_rows(work_dir: Path) -> dict[str, list[tuple]]:
    """Every online row per table, the project prefix dropped (each store has its own)."""
    with sqlite3.connect(work_dir / "online_store.db") as con:
        names = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        cols = "entity_key, feature_name, value, event_ts, created_ts"
        return {
            n.split("_", 2)[-1]: sorted(con.execute(f'select {cols} from "{n}"').fetchall())
            for n in names
        }


@pytest.fixture(scope="module")
def both_stores(synthetic_features, tmp_path_factory):  # noqa: F811
    """The synthetic views materialized to day 3 then day 6, by Feast and in ranges of 7 rows."""
    out = {}
    for name, range_rows in (("feast", None), ("ranges", 7)):
        work = tmp_path_factory.mktemp(f"online_{name}")
        store = open_test_store("embedded", synthetic_features["features"], work)
        store.apply()
        first = store.materialize(None, DAY3, range_rows=range_rows)
        second = store.materialize(None, DAY6, range_rows=range_rows)
        out[name] = {"store": store, "work": work, "records": first + second}
    yield out
    for s in out.values():
        s["store"].teardown()


def test_ranges_leave_the_online_rows_feast_materialize_leaves(both_stores):
    want, got = (_online_rows(both_stores[n]["work"]) for n in ("feast", "ranges"))
    assert sorted(got) == sorted(want) and len(want) == len(VIEWS)
    for table, rows in want.items():
        assert rows, table
        assert got[table] == rows, table


def test_ranges_log_the_same_windows(both_stores):
    feast, ranges = both_stores["feast"]["store"], both_stores["ranges"]["store"]
    for view in VIEWS:
        assert ranges.materialized_until(view) == feast.materialized_until(view) == DAY6
    strip = [{k: r[k] for k in ("view", "start", "end")} for r in both_stores["ranges"]["records"]]
    assert strip == [
        {k: r[k] for k in ("view", "start", "end")} for r in both_stores["feast"]["records"]
    ]
    assert all(r["rows"] > 0 for r in both_stores["ranges"]["records"])


@pytest.mark.parametrize("range_rows", [1, 5, 10_000])
def test_newest_rows_is_each_entitys_newest_row_in_the_window(synthetic_features, range_rows):  # noqa: F811
    start, end = dt.datetime(2026, 3, 2, tzinfo=dt.UTC), DAY6
    for view, keys in KEYS.items():
        path = synthetic_features["features"] / f"{view}.parquet"
        df = pd.read_parquet(path)
        inside = df[(df["event_timestamp"] >= start) & (df["event_timestamp"] <= end)]
        want = inside.sort_values("event_timestamp").groupby(keys).tail(1)
        frames = list(newest_rows(str(path), keys, start, end, range_rows))
        got = pd.concat(frames, ignore_index=True)
        assert not got.duplicated(keys).any()  # no entity in two frames
        got, want = (
            d.sort_values(keys).reset_index(drop=True)[list(df.columns)] for d in (got, want)
        )
        assert len(want) > 0
        pd.testing.assert_frame_equal(got, want)
