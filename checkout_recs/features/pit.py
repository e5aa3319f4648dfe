"""Point-in-time joins in pure pandas (the reference the Feast retrieval is checked against).

For each entity row at time ``t`` the join takes the entity's feature row with the greatest
``event_timestamp <= t`` (and, with a TTL, ``>= t - ttl``): never a value from after ``t``.
Rows are returned in the input order, one per input row; a row with no eligible feature row is
kept with NaN features and flagged, never dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.features.sla import FEATURE_SLAS
from checkout_recs.features.tables import utc

#: Entity key of each feature view.
VIEW_KEYS: dict[str, str] = {"user": "user_id", "listing": "listing_id", "seller": "seller_id"}


def view_feature_names(view: str) -> list[str]:
    """Feature columns of ``view`` as stored (contract order, without keys and timestamp)."""
    schema = contract.FEATURE_TABLES[view]
    drop = {VIEW_KEYS[view], "event_timestamp", "seller_id"}
    return [n for n in contract.field_names(schema) if n not in drop]


def training_column(view: str, name: str) -> str:
    """Name of feature ``name`` of ``view`` in the training set (``<view>_`` prefixed once)."""
    return name if name.startswith(f"{view}_") else f"{view}_{name}"


def point_in_time_join(
    entity_df: pd.DataFrame,
    features: pd.DataFrame,
    key: str,
    columns: list[str],
    ttl: pd.Timedelta | None = None,
    prefix: str = "",
) -> tuple[pd.DataFrame, np.ndarray]:
    """As-of join of ``features`` onto ``entity_df`` by ``key`` and ``event_timestamp``.

    Parameters
    ----------
    entity_df : pd.DataFrame
        ``n`` rows with ``key`` and ``event_timestamp`` (UTC).
    features : pd.DataFrame
        Feature rows with ``key``, ``event_timestamp`` and ``columns``.
    ttl : pd.Timedelta, optional
        Feature rows older than ``t - ttl`` are not eligible (Feast's TTL semantics).
    prefix : str
        Prepended to each joined column name.

    Returns
    -------
    (pd.DataFrame, np.ndarray)
        ``n`` rows: ``entity_df``'s columns plus the joined ones (NaN where no row is eligible),
        in the input order; and ``found``, bool of shape ``(n,)``.
    """
    left = entity_df.assign(_row=np.arange(len(entity_df)), _t=utc(entity_df["event_timestamp"]))
    right = features[[key, "event_timestamp", *columns]].rename(
        columns={"event_timestamp": "_ft", **{c: prefix + c for c in columns}}
    )
    right = right.assign(_ft=utc(right["_ft"])).sort_values("_ft", kind="stable")
    right[key] = right[key].astype(left[key].dtype)
    out = pd.merge_asof(
        left.sort_values("_t", kind="stable"),
        right,
        left_on="_t",
        right_on="_ft",
        by=key,
        allow_exact_matches=True,
        tolerance=ttl,
    )
    out = out.sort_values("_row").reset_index(drop=True)
    found = out["_ft"].notna().to_numpy()
    return out.drop(columns=["_row", "_t", "_ft"]), found


def pit_join_views(features_dir: Path, ttls: dict[str, pd.Timedelta] | None = None):
    """A ``join`` for ``build_training_set`` that reads ``features_dir/<view>.parquet``.

    ``ttls`` defaults to the views' staleness SLAs (``sla.FEATURE_SLAS``, also the Feast TTLs):
    a value older than its SLA is not used, as serving would not use it.

    Returns
    -------
    Callable[[pd.DataFrame], pd.DataFrame]
        Takes entity rows (``user_id, listing_id, seller_id, event_timestamp``) and returns them,
        in order, with every view's feature columns (named by :func:`training_column`), NaN
        where a view has no eligible row.
    """
    ttls = {v: pd.Timedelta(t) for v, t in FEATURE_SLAS.items()} if ttls is None else ttls
    tables = {v: pd.read_parquet(Path(features_dir) / f"{v}.parquet") for v in VIEW_KEYS}

    def join(entity_df: pd.DataFrame) -> pd.DataFrame:
        out = entity_df
        for view, key in VIEW_KEYS.items():
            cols = view_feature_names(view)
            feat = tables[view].rename(columns={c: training_column(view, c) for c in cols})
            out, _ = point_in_time_join(
                out, feat, key, [training_column(view, c) for c in cols], ttl=ttls.get(view)
            )
        return out

    return join
