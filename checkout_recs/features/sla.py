"""Staleness SLAs of the feature views (also their Feast TTLs) and the snapshot age check.

A feature view's SLA is the greatest age its newest value may have before serving stops
trusting it. Snapshots are written daily at the end of the UTC day, so one day of age is normal
and the SLAs below leave one day of slack for a late pipeline run.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

FEATURE_SLAS: dict[str, dt.timedelta] = {
    "user": dt.timedelta(days=2),
    "listing": dt.timedelta(days=2),
    "seller": dt.timedelta(days=3),
    "category_pair": dt.timedelta(days=8),
}
#: The listing snapshot that ships with the index carries listing and seller features: the
#: stricter of the two SLAs applies.
SNAPSHOT_SLA: dt.timedelta = min(FEATURE_SLAS["listing"], FEATURE_SLAS["seller"])


def snapshot_age_ok(
    snapshot_time: dt.datetime, now: dt.datetime, sla: dt.timedelta = SNAPSHOT_SLA
) -> bool:
    """Whether a feature snapshot taken at ``snapshot_time`` is still within ``sla`` at ``now``.

    Parameters
    ----------
    snapshot_time, now : datetime
        UTC (naive values are taken as UTC).
    sla : timedelta
        Greatest acceptable age.

    Returns
    -------
    bool
        True when ``0 <= now - snapshot_time <= sla`` within one second of clock skew; False
        when stale (serving then falls back with reason ``stale_features``) or from the future.
    """
    age = (
        pd.Timestamp(now).tz_localize("UTC")
        if pd.Timestamp(now).tzinfo is None
        else pd.Timestamp(now)
    )
    snap = pd.Timestamp(snapshot_time)
    snap = snap.tz_localize("UTC") if snap.tzinfo is None else snap
    delta = age - snap
    return pd.Timedelta(seconds=-1) <= delta <= pd.Timedelta(sla)
