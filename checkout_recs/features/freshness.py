"""Freshness of feature views against their staleness SLAs (pure; the Feast adapter feeds it).

For each view: the time of the newest value that serving can read (newest source row at or
before the end of the last materialization), its age at ``now``, and the SLA. A view never
materialized, or whose newest value is older than its SLA, breaks the SLA.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import pandas as pd

from checkout_recs.features.sla import FEATURE_SLAS


@dataclass(frozen=True)
class ViewFreshness:
    """One view's freshness. ``age_s`` is None when nothing was materialized."""

    view: str
    newest_value: str | None
    materialized_until: str | None
    age_s: float | None
    sla_s: float
    ok: bool
    reason: str


@dataclass
class FreshnessReport:
    """Freshness of every view at ``now``; ``ok`` only when every view meets its SLA."""

    now: str
    views: list[ViewFreshness] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every view is within its SLA."""
        return all(v.ok for v in self.views)

    @property
    def broken(self) -> list[str]:
        """Names of the views whose SLA is broken."""
        return [v.view for v in self.views if not v.ok]

    def to_dict(self) -> dict:
        """JSON-ready form, with ``ok`` and ``broken``."""
        return {
            "now": self.now,
            "ok": self.ok,
            "broken": self.broken,
            "views": [asdict(v) for v in self.views],
        }


def _ts(value: dt.datetime | None) -> pd.Timestamp | None:
    if value is None:
        return None
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _iso(t: pd.Timestamp | None) -> str | None:
    return t.isoformat() if t is not None else None


def view_freshness(
    view: str,
    newest_value: dt.datetime | None,
    materialized_until: dt.datetime | None,
    now: dt.datetime,
    sla: dt.timedelta | None = None,
) -> ViewFreshness:
    """Freshness of one view.

    Parameters
    ----------
    newest_value : datetime or None
        ``event_timestamp`` of the newest row readable online; None when none.
    materialized_until : datetime or None
        End of the last materialization window; None when never materialized.
    now : datetime
        The clock to judge by (UTC).
    sla : timedelta, optional
        Defaults to ``FEATURE_SLAS[view]``.

    Returns
    -------
    ViewFreshness
        ``ok`` False with a reason when never materialized, empty, or older than the SLA.
    """
    sla = sla or FEATURE_SLAS[view]
    now_t, newest, until = _ts(now), _ts(newest_value), _ts(materialized_until)
    if until is None:
        return ViewFreshness(
            view, _iso(newest), None, None, sla.total_seconds(), False, "never materialized"
        )
    if newest is None:
        return ViewFreshness(
            view, None, _iso(until), None, sla.total_seconds(), False, "no rows online"
        )
    age = (now_t - newest).total_seconds()
    ok = age <= sla.total_seconds()
    reason = (
        "ok"
        if ok
        else f"newest value is {age / 3600:.1f} h old, SLA {sla.total_seconds() / 3600:.0f} h"
    )
    return ViewFreshness(view, _iso(newest), _iso(until), age, sla.total_seconds(), ok, reason)
