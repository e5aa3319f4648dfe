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
import pyarrow as pa
import pyarrow.dataset as ds

from checkout_recs import contract
from checkout_recs.features.sla import FEATURE_SLAS
from checkout_recs.features.tables import scan, utc

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


#: Entity rows per chunk of ``pit_join_views``' join (each reads only its entities' rows).
JOIN_CHUNK_ROWS = 50_000


def pit_join_views(
    features_dir: Path,
    ttls: dict[str, pd.Timedelta] | None = None,
    chunk_rows: int = JOIN_CHUNK_ROWS,
):
    """A ``join`` for ``build_training_set`` that reads ``features_dir/<view>.parquet``.

    ``ttls`` defaults to the views' staleness SLAs (``sla.FEATURE_SLAS``, also the Feast TTLs):
    a value older than its SLA is not used, as serving would not use it.

    Each view is joined ``chunk_rows`` entity rows at a time, in the order of the view's key,
    reading only the feature rows of that chunk's entities within the chunk's time span (TTL
    included): a parquet scan with the filter pushed down (a chunk is a key range, so the row
    groups outside it are skipped), so the feature rows in memory follow the chunk, not the
    view's size (``n_entities * D`` rows). Each entity row's result depends only on its own
    entity's rows, so the answer is the whole-table join's.

    Returns
    -------
    Callable[[pd.DataFrame], pd.DataFrame]
        Takes entity rows (``user_id, listing_id, seller_id, event_timestamp``) and returns them,
        in order, with every view's feature columns (named by :func:`training_column`), NaN
        where a view has no eligible row.
    """
    ttls = {v: pd.Timedelta(t) for v, t in FEATURE_SLAS.items()} if ttls is None else ttls

    def join_view(entity_df: pd.DataFrame, view: str, key: str) -> pd.DataFrame:
        """The view's columns for every entity row (same index), ``chunk_rows`` rows at a time
        in the order of ``key`` (a chunk is a range of keys: the file's row groups outside it
        are skipped, the views being sorted by key)."""
        cols = [training_column(view, c) for c in view_feature_names(view)]
        keys = entity_df[key].to_numpy()
        order = np.argsort(keys, kind="stable")
        t = utc(entity_df["event_timestamp"])
        pieces = []
        for a in range(0, len(order), max(1, chunk_rows)):
            rows = order[a : a + chunk_rows]
            chunk = entity_df.iloc[rows][[key, "event_timestamp"]]
            feat = view_rows(
                Path(features_dir) / f"{view}.parquet",
                key,
                chunk[key].unique(),
                t.iloc[rows].min() - ttls[view] if view in ttls else None,
                t.iloc[rows].max(),
            )
            feat = feat.rename(columns=dict(zip(view_feature_names(view), cols, strict=True)))
            joined, _ = point_in_time_join(chunk, feat, key, cols, ttl=ttls.get(view))
            pieces.append(joined[cols].set_axis(entity_df.index[rows]))
        if not pieces:  # no entity rows
            return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        return pd.concat(pieces).loc[entity_df.index]

    def join(entity_df: pd.DataFrame) -> pd.DataFrame:
        out = entity_df.reset_index(drop=True)
        views = [join_view(out, view, key) for view, key in VIEW_KEYS.items()]
        return pd.concat([out, *views], axis=1)

    return join


def view_rows(
    path: Path,
    key: str,
    keys: np.ndarray,
    since: pd.Timestamp | None,
    until: pd.Timestamp,
) -> pd.DataFrame:
    """The rows of a feature view file whose ``key`` is in ``keys`` (shape ``(k,)``) and whose
    ``event_timestamp`` is in ``[since, until]`` (no lower bound when ``since`` is None), in file
    order; the filter is applied while the file is scanned."""
    key_type = pa.int64()
    where = ds.field(key).isin(pa.array(keys, type=key_type))
    if len(keys):  # a range too: the row groups outside it are skipped (min/max statistics)
        lo, hi = pa.scalar(int(keys.min()), key_type), pa.scalar(int(keys.max()), key_type)
        where = (ds.field(key) >= lo) & (ds.field(key) <= hi) & where
    where = where & (ds.field("event_timestamp") <= pa.scalar(until, pa.timestamp("us", "UTC")))
    if since is not None:
        where = where & (ds.field("event_timestamp") >= pa.scalar(since, pa.timestamp("us", "UTC")))
    return scan(path, where).to_pandas()
