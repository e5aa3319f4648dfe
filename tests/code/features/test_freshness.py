"""Freshness against the staleness SLAs (the pure part the Feast adapter and serving share)."""

from __future__ import annotations

import datetime as dt

from checkout_recs.features.freshness import FreshnessReport, view_freshness
from checkout_recs.features.sla import FEATURE_SLAS

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


def test_fresh_view_is_ok_with_its_age():
    v = view_freshness("user", NOW - dt.timedelta(hours=13), NOW - dt.timedelta(hours=12), NOW)
    assert v.ok and v.age_s == 13 * 3600 and v.sla_s == FEATURE_SLAS["user"].total_seconds()


def test_stale_never_materialized_and_empty_views_break_the_sla():
    stale = view_freshness(
        "listing", NOW - FEATURE_SLAS["listing"] - dt.timedelta(seconds=1), NOW, NOW
    )
    assert not stale.ok and "SLA" in stale.reason
    assert not view_freshness("seller", None, None, NOW).ok
    assert view_freshness("seller", None, None, NOW).reason == "never materialized"
    empty = view_freshness("category_pair", None, NOW, NOW)
    assert not empty.ok and empty.reason == "no rows online"


def test_report_is_ok_only_when_every_view_is():
    good = view_freshness("user", NOW, NOW, NOW)
    bad = view_freshness("seller", NOW - dt.timedelta(days=9), NOW, NOW)
    assert FreshnessReport(now=NOW.isoformat(), views=[good]).ok
    report = FreshnessReport(now=NOW.isoformat(), views=[good, bad])
    assert not report.ok and report.broken == ["seller"]
    assert report.to_dict()["broken"] == ["seller"] and report.to_dict()["ok"] is False


def test_naive_times_are_utc():
    naive = NOW.replace(tzinfo=None)
    assert view_freshness("user", naive - dt.timedelta(hours=1), naive, NOW).age_s == 3600
