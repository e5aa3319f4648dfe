"""GMV per session per serving arm, from the decision log joined with outcome events."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from checkout_recs.deploy.attribution import (
    DecisionLogGmv,
    arm_sessions,
    bundle_arm,
    decision_impressions,
    gmv_reading,
    mismatched,
    served_pairs,
    with_pairs,
)
from checkout_recs.storage import LocalArtifactStore

T0 = pd.Timestamp("2026-11-01 12:00", tz="UTC")


def _decisions(arms: list[str]) -> pd.DataFrame:
    rows = []
    for i, arm in enumerate(arms):
        rows.append(
            {
                "request_id": f"r{i}",
                "event_timestamp": T0 + pd.Timedelta(seconds=i),
                "user_id": 100 + i,
                "region": "eu",
                "device": "web",
                "policy": "ranker",
                "model_version": "m-" + arm,
                "index_version": arm,
                "item_ids": [10 + k for k in range(6)],
                "propensities": [0.5] * 6,
            }
        )
    return pd.DataFrame(rows)


LISTINGS = pd.DataFrame(
    {"listing_id": np.arange(10, 16), "price": [10.0, 20, 30, 40, 50, 60], "take_rate": 0.1}
)


def test_decisions_explode_to_six_slots_with_their_arm():
    imp = decision_impressions(_decisions(["new", "old"]))
    assert len(imp) == 12
    assert imp.groupby("request_id")["slot"].apply(list).tolist() == [list(range(6))] * 2
    assert imp.loc[imp["request_id"] == "r0", "arm"].unique().tolist() == ["new"]
    assert imp["propensity"].eq(0.5).all() and imp["listing_id"].dtype == np.int64


def test_purchase_counts_only_after_a_click_of_the_same_request_within_the_window():
    dec = _decisions(["new", "old", "new", "other"])
    clicks = pd.DataFrame(
        {
            "request_id": ["r0", "r1", "r3"],
            "user_id": [100, 101, 103],
            "listing_id": [11, 12, 10],
            "event_timestamp": [T0 + pd.Timedelta(minutes=1)] * 3,
        }
    )
    purchases = pd.DataFrame(
        {
            "purchase_id": ["a", "b", "c", "d"],
            "user_id": [100, 101, 102, 103],
            "listing_id": [11, 12, 13, 10],
            "price": [20.0, 30, 40, 10],
            # r1's purchase comes 2 days after its click: outside the 1-day window
            "event_timestamp": [
                T0 + pd.Timedelta(minutes=5),
                T0 + pd.Timedelta(days=2),
                T0,
                T0 + pd.Timedelta(minutes=5),
            ],
        }
    )
    s = arm_sessions(dec, clicks, purchases, LISTINGS, canary="new", champion="old").set_index(
        "request_id"
    )
    assert set(s.index) == {"r0", "r1", "r2"}  # the third bundle's answer is not in either arm
    assert s.loc["r0", "gmv"] == 20.0 and s.loc["r0", "arm"] == "treatment"
    assert s.loc["r1", "gmv"] == 0.0 and s.loc["r1", "arm"] == "control"  # late purchase
    assert s.loc["r2", "gmv"] == 0.0  # bought without clicking the recommendation: not attributed


def test_reading_gives_the_ratio_of_gmv_per_session_with_an_interval():
    rng = np.random.default_rng(0)
    n = 4000
    arm = np.where(np.arange(n) < n // 2, "treatment", "control")
    gmv = rng.exponential(10.0, n) * (rng.uniform(size=n) < np.where(arm == "treatment", 0.2, 0.4))
    sessions = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "arm": arm,
            "sessions": 1,
            "gmv": gmv,
            "impressions": 6,
            "clicks": 1,
            "purchases": (gmv > 0).astype(int),
            "revenue": gmv / 10,
        }
    )
    r = gmv_reading(sessions)
    exact = gmv[arm == "treatment"].mean() / gmv[arm == "control"].mean()
    assert r.ratio == pytest.approx(exact)
    assert r.ratio_lower < r.ratio < r.ratio_upper < 0.97  # confidently below a 3% margin
    assert r.canary_sessions == r.champion_sessions == n // 2 and "CI" in r.note
    few = gmv_reading(sessions.iloc[:2010])  # 2000 treatment, 10 control
    assert few.ratio is None and "too few sessions" in few.note


def test_bundle_arm_reads_the_index_version_of_a_published_bundle(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    src = tmp_path / "b"
    src.mkdir()
    (src / "bundle.json").write_text(json.dumps({"index_version": "idx-7", "ranker_version": "r"}))
    uri = store.publish("bundle", "bundle-1", src)
    assert bundle_arm(store, uri) == "idx-7"
    with pytest.raises(FileNotFoundError, match="not a bundle"):
        bundle_arm(store, "s3://elsewhere/bundle/x")


def test_decision_log_source_reads_published_parts_since_the_ramp_started(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from checkout_recs import contract

    store = LocalArtifactStore(tmp_path / "store")
    dec = _decisions(["new", "old"] * 60)
    full = {f.name: None for f in contract.DECISIONS}
    rows = [
        {
            **full,
            "basket_ids": [],
            "fallback_reason": None,
            "session_class": "known",
            "scores": [0.0] * 6,
            "sources": ["a"] * 6,
            "reasons": ["r"] * 6,
            "explored": False,
            "exploration_cost": 0.0,
            "n_candidates": 6,
            "n_filtered_out": 0,
            "snapshot_ids": [],
            "snapshot_scores": [],
            "latency_ms": 1.0,
            "timings_json": "{}",
            **r,
        }
        for r in dec.to_dict("records")
    ]
    part = tmp_path / "part"
    part.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=contract.DECISIONS), part / "part-0.parquet")
    store.publish("decisions", "d1", part)
    clicks = pd.DataFrame(
        {
            "request_id": dec["request_id"],
            "user_id": dec["user_id"],
            "listing_id": 12,
            "event_timestamp": T0 + pd.Timedelta(hours=1),
        }
    )
    buy = dec["index_version"].eq(
        "new"
    )  # every canary session buys listing 12 (30.0), no champion one
    purchases = pd.DataFrame(
        {
            "purchase_id": dec["request_id"][buy],
            "user_id": dec["user_id"][buy],
            "listing_id": 12,
            "price": 30.0,
            "event_timestamp": T0 + pd.Timedelta(hours=2),
        }
    )
    src = DecisionLogGmv(
        store,
        lambda: {"clicks": clicks, "purchases": purchases, "listings": LISTINGS},
        resolve_arm={"uri-new": "new", "uri-old": "old"}.__getitem__,
        min_sessions=50,
    )
    r = src.compare("uri-new", "uri-old", since=T0.to_pydatetime())
    assert r.canary_sessions == r.champion_sessions == 60
    assert (
        r.canary_gmv_per_session == pytest.approx(30.0) and r.ratio is None
    )  # the champion has no GMV
    later = src.compare("uri-new", "uri-old", since=(T0 + pd.Timedelta(days=1)).to_pydatetime())
    assert later.canary_sessions == 0 and later.ratio is None and "too few" in later.note


def _served(pairs: list[tuple[str, str | None]]) -> pd.DataFrame:
    """Decision rows answered by (transformer bundle, ranker bundle) pairs, in order."""
    dec = _decisions([t for t, _ in pairs])
    return dec.assign(predictor_version=[r for _, r in pairs])


def test_answers_scored_by_another_bundles_ranker_belong_to_neither_arm():
    dec = _served([("new", "new"), ("new", "old"), ("old", "old"), ("old", "new"), ("old", None)])
    assert mismatched(dec).tolist() == [
        False,
        True,
        False,
        True,
        False,
    ]  # None: the fallback, no ranker
    assert not mismatched(
        dec.drop(columns="predictor_version")
    ).any()  # logs from before the column
    clicks = pd.DataFrame(
        {
            "request_id": ["r0"],
            "user_id": [100],
            "listing_id": [10],
            "event_timestamp": [T0 + pd.Timedelta(minutes=1)],
        }
    )
    purchases = pd.DataFrame(
        {
            "purchase_id": ["a"],
            "user_id": [100],
            "listing_id": [10],
            "price": [10.0],
            "event_timestamp": [T0 + pd.Timedelta(minutes=2)],
        }
    )
    s = arm_sessions(dec, clicks, purchases, LISTINGS, canary="new", champion="old").set_index(
        "request_id"
    )
    assert s["arm"].to_dict() == {"r0": "treatment", "r2": "control", "r4": "control"}
    assert served_pairs(dec) == {
        "new -> new": 1,
        "new -> old": 1,
        "old -> old": 1,
        "old -> new": 1,
        "old -> -": 1,
    }
    r = with_pairs(gmv_reading(s, min_sessions=1), dec, "new", "old")
    assert r.mismatched_answers == 2 and r.served_pairs["new -> old"] == 1
    assert "2 answers left out" in r.note and "new -> old 1" in r.note and "old -> new 1" in r.note


def test_a_split_canary_hides_a_ranker_drop_that_the_served_pair_shows():
    """Transformer and ranker split independently at 25 % (the split layout): a canary whose ranker
    sells a third as much looks like the champion when answers are keyed on the transformer's
    bundle alone; keyed on the served pair, the drop is there."""
    rng = np.random.default_rng(5)
    n = 8000
    front, ranker = (np.where(rng.uniform(size=n) < 0.25, "new", "old") for _ in range(2))
    dec = _served(list(zip(front, ranker, strict=True)))
    clicks = pd.DataFrame(
        {
            "request_id": dec["request_id"],
            "user_id": dec["user_id"],
            "listing_id": 10,
            "event_timestamp": T0 + pd.Timedelta(hours=1),
        }
    )
    buys = rng.uniform(size=n) < np.where(
        ranker == "new", 0.1, 0.3
    )  # the ranker decides what sells
    purchases = pd.DataFrame(
        {
            "purchase_id": dec["request_id"][buys],
            "user_id": dec["user_id"][buys],
            "listing_id": 10,
            "price": 10.0,
            "event_timestamp": T0 + pd.Timedelta(hours=2),
        }
    )
    args = (clicks, purchases, LISTINGS, "new", "old")
    by_transformer = gmv_reading(arm_sessions(dec.drop(columns="predictor_version"), *args))
    by_pair = with_pairs(gmv_reading(arm_sessions(dec, *args)), dec, "new", "old")
    assert by_transformer.ratio_lower < 1.0 < by_transformer.ratio_upper  # no drop seen
    assert by_pair.ratio_upper < 0.5 and by_pair.ratio == pytest.approx(1 / 3, abs=0.1)
    assert by_pair.mismatched_answers == int((front != ranker).sum()) > 0.3 * n  # 2p(1-p) = 37.5 %
