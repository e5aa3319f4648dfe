"""Point-in-time training set: one row per labelled impression, with the features serving saw.

Columns: ``contract.LABELLED_IMPRESSIONS`` + ``TRAINING_FEATURE_COLUMNS``. View features (user,
listing, seller) are joined as of the impression time by ``join`` (pure pandas by default, Feast
``get_historical_features`` through ``feature_repo.store``); request and interaction features are
computed by ``on_demand`` exactly as serving computes them, with lookup tables as of the start of
the impression's UTC day (the newest labels snapshot serving had that day). Rows whose entity has no feature row at or before the
impression are counted per view and filled with ``VIEW_DEFAULTS``; no row is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from checkout_recs import contract
from checkout_recs.features.item_views import DEFAULT_RATING, NEW_SELLER_DAYS
from checkout_recs.features.on_demand import (
    INTERACTION_FEATURES,
    REQUEST_FEATURES,
    Basket,
    InteractionTables,
    interaction_features,
    request_features,
)
from checkout_recs.features.pit import (
    VIEW_KEYS,
    pit_join_views,
    training_column,
    view_feature_names,
)
from checkout_recs.features.priors import DEFAULT_CTR_PRIOR, DEFAULT_CVR_PRIOR
from checkout_recs.features.tables import epoch_us, read_labels, read_raw, utc
from checkout_recs.features.user_view import USER_DEFAULTS

#: Columns of ``labels/co_purchase_items.parquet`` (written by the labels stage).
CO_PURCHASE_COLUMNS = ("listing_a", "listing_b", "strength", "event_timestamp")
#: Values used when an entity has no feature row at or before the impression time.
VIEW_DEFAULTS: dict[str, dict[str, object]] = {
    "user": USER_DEFAULTS,
    "listing": {
        "views_decayed": 0.0,
        "clicks_decayed": 0.0,
        "purchases_decayed": 0.0,
        "ctr_smoothed": DEFAULT_CTR_PRIOR.mean,
        "cvr_smoothed": DEFAULT_CVR_PRIOR.mean,
        "ctr_lift": 0.0,
        "cvr_lift": 0.0,
        "category_ctr_lift": 0.0,
        "price_vs_category": 0.0,
        "age_days": 0.0,
        "region": "unknown",
        "price": 0.0,
        "take_rate": 0.0,
        "category_id": -1,
        "top_category_id": -1,
    },
    "seller": {
        "seller_age_days": 0.0,
        "seller_rating": DEFAULT_RATING,
        "seller_is_new": 1,
        "seller_linked_history": 0,
        "seller_sales_velocity": 0.0,
    },
}
#: View feature columns of the training set, in order (``<view>_`` prefixed once).
VIEW_FEATURE_COLUMNS: tuple[str, ...] = tuple(
    training_column(v, c) for v in VIEW_KEYS for c in view_feature_names(v)
)
#: Every feature column of the training set, in order.
TRAINING_FEATURE_COLUMNS: tuple[str, ...] = (
    VIEW_FEATURE_COLUMNS + REQUEST_FEATURES + INTERACTION_FEATURES
)
#: The non-numeric ones (lists of ids, region strings): for sequence models, not for a tabular ranker.
NON_NUMERIC_FEATURE_COLUMNS: tuple[str, ...] = (
    "user_recent_listing_ids",
    "user_recent_category_ids",
    "user_region",
    "listing_region",
)
#: The numeric feature columns (float or integer) a tabular ranker can take as is.
NUMERIC_FEATURE_COLUMNS: tuple[str, ...] = tuple(
    c for c in TRAINING_FEATURE_COLUMNS if c not in NON_NUMERIC_FEATURE_COLUMNS
)


@dataclass
class TrainingSetReport:
    """What ``build_training_set`` did. ``rows_in == rows_out`` always (nothing is dropped).

    ``missing_by_view``: rows whose entity had no feature row at or before the impression time
    (within the view's TTL), filled with defaults. ``returned_by_join``: distinct rows the join
    gave back. ``dropped_by_join``: per view, rows the join's backend dropped (Feast's file
    offline store; they are among ``missing_by_view`` and were restored, not lost).
    """

    rows_in: int
    rows_out: int
    missing_by_view: dict[str, int] = field(default_factory=dict)
    returned_by_join: int = 0
    dropped_by_join: dict[str, int] = field(default_factory=dict)
    path: str = ""
    feature_columns: list[str] = field(default_factory=list)


def _entity_rows(imp: pd.DataFrame, listings: pd.DataFrame) -> pd.DataFrame:
    seller = listings.set_index("listing_id")["seller_id"]
    return pd.DataFrame(
        {
            "row_id": np.arange(len(imp)),
            "user_id": imp["user_id"].to_numpy(),
            "listing_id": imp["listing_id"].to_numpy(),
            "seller_id": imp["listing_id"].map(seller).fillna(-1).astype(np.int64).to_numpy(),
            "event_timestamp": utc(imp["event_timestamp"]).to_numpy(),
        }
    )


def _static_fallback(entities: pd.DataFrame, validated_dir: Path) -> pd.DataFrame:
    """Attributes known without any event (from the validated entity tables), per entity row.

    Used before the constant defaults when a view has no row at the impression time, so a
    listing listed today still carries its own price, category and age.
    """
    t = utc(pd.Series(entities["event_timestamp"]))
    lst = read_raw(validated_dir, "listings").set_index("listing_id")
    top = read_raw(validated_dir, "categories").set_index("category_id")["top_category_id"]
    sel = read_raw(validated_dir, "sellers").set_index("seller_id")
    users = read_raw(validated_dir, "users").set_index("user_id")
    lid, sid = entities["listing_id"], entities["seller_id"]
    cat = lid.map(lst["category_id"])
    age = (t - utc(lid.map(lst["listed_at"]))) / pd.Timedelta(days=1)
    s_age = (t - utc(sid.map(sel["joined_at"]))) / pd.Timedelta(days=1)
    return pd.DataFrame(
        {
            "user_region": entities["user_id"].map(users["region"]),
            "listing_category_id": cat,
            "listing_top_category_id": cat.map(top).fillna(cat),
            "listing_region": lid.map(lst["region"]),
            "listing_price": lid.map(lst["price"]),
            "listing_take_rate": lid.map(lst["take_rate"]),
            "listing_age_days": age.clip(lower=0),
            "seller_age_days": s_age.clip(lower=0),
            "seller_rating": sid.map(sel["rating"]),
            "seller_is_new": (s_age < NEW_SELLER_DAYS).astype(float).where(s_age.notna()),
            "seller_linked_history": sid.map(sel["linked_history"]).astype(float),
        }
    ).reset_index(drop=True)


def _fill_defaults(
    joined: pd.DataFrame, entities: pd.DataFrame, static: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Reindex ``joined`` to one row per entity row and fill missing views: static attributes
    first, then ``VIEW_DEFAULTS``; integer columns get their contract dtype back."""
    joined = joined.drop_duplicates("row_id").set_index("row_id").reindex(entities["row_id"])
    joined = joined.reset_index(drop=True)
    missing: dict[str, int] = {}
    for view in VIEW_KEYS:
        cols = [training_column(view, c) for c in view_feature_names(view)]
        absent = joined[cols].isna().all(axis=1).to_numpy()
        missing[view] = int(absent.sum())
        schema = contract.FEATURE_TABLES[view]
        for c in view_feature_names(view):
            col, default = training_column(view, c), VIEW_DEFAULTS[view][c]
            if isinstance(default, list):
                joined[col] = [v if isinstance(v, list | np.ndarray) else [] for v in joined[col]]
                continue
            if col in static.columns:
                joined[col] = joined[col].where(joined[col].notna(), static[col])
            joined[col] = joined[col].fillna(default)
            if pa.types.is_integer(schema.field(c).type):
                joined[col] = joined[col].astype(schema.field(c).type.to_pandas_dtype())
    return joined, missing


def _as_of_snapshot(ts: pd.Series) -> pd.Series:
    """Cut-off for the lookup tables of an impression at ``ts``: the start of its UTC day.

    The labels' snapshots are stamped at midnight (events up to then), so the newest snapshot at
    or before this cut-off is the one serving has on that day; never one from after ``ts``.
    """
    return ts.dt.floor("D")


def _labels_or_empty(labels_dir: Path, name: str, columns: list[str]) -> pd.DataFrame:
    df = read_labels(labels_dir, name)
    return df if df is not None else pd.DataFrame({c: [] for c in columns})


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of equal consecutive ``keys``; shapes ``(r,)``."""
    if len(keys) == 0:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.r_[0, cut], np.r_[cut, len(keys)]


def _baskets(orders: pd.DataFrame) -> dict[str, Basket]:
    """One ``Basket`` per order id (its order lines)."""
    o = orders.sort_values("order_id", kind="stable")
    cols = (
        o["listing_id"].to_numpy(np.int64),
        o["category_id"].to_numpy(np.int64),
        o["top_category_id"].to_numpy(np.int64),
        o["price"].to_numpy(np.float64),
    )
    keys = o["order_id"].to_numpy()
    starts, ends = _runs(keys)
    return {keys[a]: Basket(*(c[a:b] for c in cols)) for a, b in zip(starts, ends, strict=True)}


def _request_rows(
    imp: pd.DataFrame,
    validated_dir: Path,
    labels_dir: Path,
    listings: pd.DataFrame,
    categories: pd.DataFrame,
) -> pd.DataFrame:
    """Request and interaction features for each impression row (same functions as serving).

    Impressions are grouped by request (one basket, one time, one device); lookup tables are
    rebuilt when the cut-off day changes.
    """
    top = categories.set_index("category_id")["top_category_id"]
    lst = listings.set_index("listing_id")
    lst = lst.assign(top_category_id=lst["category_id"].map(top).fillna(lst["category_id"]))
    orders = read_raw(validated_dir, "orders").assign(
        category_id=lambda d: d["listing_id"].map(lst["category_id"]).fillna(-1),
        top_category_id=lambda d: d["listing_id"].map(lst["top_category_id"]).fillna(-1),
    )
    baskets = _baskets(orders)
    empty = Basket(
        np.array([], np.int64), np.array([], np.int64), np.array([], np.int64), np.array([])
    )
    cat_pairs = _labels_or_empty(
        labels_dir, "category_pairs", list(contract.field_names(contract.CATEGORY_PAIR_FEATURES))
    )
    co_items = _labels_or_empty(labels_dir, "co_purchase_items", list(CO_PURCHASE_COLUMNS))
    ts = utc(imp["event_timestamp"])
    order = np.lexsort((imp["request_id"].to_numpy(), epoch_us(ts)))
    as_of = epoch_us(_as_of_snapshot(ts))[order]
    req_ids, order_ids = imp["request_id"].to_numpy()[order], imp["order_id"].to_numpy()[order]
    devices, when = imp["device"].to_numpy()[order], ts.iloc[order].tolist()
    lids = imp["listing_id"].to_numpy(np.int64)[order]
    cats = imp["listing_id"].map(lst["category_id"]).fillna(-1).to_numpy(np.int64)[order]
    tops = imp["listing_id"].map(lst["top_category_id"]).fillna(-1).to_numpy(np.int64)[order]
    prices = imp["price"].to_numpy(np.float64)[order]
    out = np.zeros((len(imp), len(REQUEST_FEATURES) + len(INTERACTION_FEATURES)))
    n_req, tables, tables_as_of = len(REQUEST_FEATURES), None, None
    for a, b in zip(*_runs(req_ids), strict=True):
        if tables is None or as_of[a] != tables_as_of:
            tables_as_of = as_of[a]
            tables = InteractionTables.from_frames(
                cat_pairs, co_items, as_of=pd.Timestamp(int(tables_as_of), unit="us", tz="UTC")
            )
        basket = baskets.get(order_ids[a], empty)
        r = request_features(basket.prices, basket.category_ids, when[a], devices[a])
        x = interaction_features(basket, lids[a:b], cats[a:b], tops[a:b], prices[a:b], tables)
        rows = order[a:b]
        out[rows, :n_req] = [r[k] for k in REQUEST_FEATURES]
        out[rows, n_req:] = np.column_stack([x[k] for k in INTERACTION_FEATURES])
    return pd.DataFrame(out, columns=list(REQUEST_FEATURES + INTERACTION_FEATURES))


def build_training_set(
    labels_dir: Path,
    features_dir: Path,
    validated_dir: Path,
    out_path: Path,
    join: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> TrainingSetReport:
    """Write the point-in-time training set to ``out_path`` (parquet).

    Parameters
    ----------
    labels_dir : Path
        Holds ``impressions_labelled.parquet`` (and ``category_pairs.parquet``).
    features_dir : Path
        Output of ``build_feature_tables``.
    validated_dir : Path
        Validated tables (orders give the baskets; listings the seller and category).
    join : callable, optional
        ``join(entity_df) -> DataFrame``: entity rows ``row_id, user_id, listing_id, seller_id,
        event_timestamp`` in, the same rows with ``VIEW_FEATURE_COLUMNS`` out (rows may be
        missing or have NaN features: both are counted and defaulted). Defaults to the pure
        pandas ``pit_join_views(features_dir)``; ``feature_repo.store`` gives a Feast one.

    Returns
    -------
    TrainingSetReport
        Rows in and out (equal), rows defaulted per view, rows the join returned.
    """
    imp = read_labels(labels_dir, "impressions_labelled")
    if imp is None:
        raise FileNotFoundError(f"{labels_dir}/impressions_labelled.parquet not found")
    imp = imp.reset_index(drop=True)
    listings, categories = (
        read_raw(validated_dir, "listings"),
        read_raw(validated_dir, "categories"),
    )
    entities = _entity_rows(imp, listings)
    joined = (join or pit_join_views(features_dir))(entities)
    returned = int(joined["row_id"].nunique())
    dropped = dict(joined.attrs.get("feast_dropped", {}))
    joined, missing = _fill_defaults(joined, entities, _static_fallback(entities, validated_dir))
    req = _request_rows(imp, validated_dir, labels_dir, listings, categories)
    out = pd.concat(
        [
            imp[contract.field_names(contract.LABELLED_IMPRESSIONS)],
            joined[list(VIEW_FEATURE_COLUMNS)],
            req,
        ],
        axis=1,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(out_path, index=False)
    report = TrainingSetReport(
        rows_in=len(imp),
        rows_out=len(out),
        missing_by_view=missing,
        returned_by_join=returned,
        dropped_by_join=dropped,
        path=str(out_path),
        feature_columns=list(TRAINING_FEATURE_COLUMNS),
    )
    out_path.with_suffix(".report.json").write_text(json.dumps(asdict(report), indent=2))
    return report
