"""Point-in-time training set: one row per labelled impression, with the features serving saw.

Columns: ``contract.LABELLED_IMPRESSIONS`` + ``TRAINING_FEATURE_COLUMNS``. View features (user,
listing, seller) are joined as of the impression time by ``join`` (pure pandas by default, Feast
``get_historical_features`` through ``feature_repo.store``); request and interaction features are
computed by ``on_demand`` exactly as serving computes them, with lookup tables as of the start of
the impression's UTC day (the newest labels snapshot serving had that day). Rows whose entity has no feature row at or before the
impression are counted per view and filled with ``VIEW_DEFAULTS``; no row is dropped.

The labelled impressions are processed ``TRAINING_CHUNK_ROWS`` at a time (whole requests), each
chunk reading only its own listings, sellers, users and orders and written as soon as it is
built, so memory follows the chunk, not the traffic or the catalogue; every row depends only on
its own impression, request and entities, so the file equals the one built at once
(``tests/code/features/test_pit_chunks.py``). The cost: each chunk's join scans the view files
once (``pit.view_rows``), so fewer, larger chunks are faster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

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
from checkout_recs.features.tables import (
    LISTING_COLUMNS,
    SELLER_COLUMNS,
    epoch_us,
    read_labels,
    read_raw,
    read_raw_rows,
    scan,
    utc,
    write_frames,
)
from checkout_recs.features.user_view import USER_DEFAULTS

#: Labelled impressions per chunk of ``build_training_set`` (a training row is ~1 KB in pandas).
TRAINING_CHUNK_ROWS = 200_000
#: Columns of the validated orders the training set reads (listings: ``tables.LISTING_COLUMNS``).
_ORDER_COLUMNS = ["order_id", "listing_id", "price"]
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
#: Arrow types of the list columns (a chunk whose users have no purchase cannot tell them).
_LIST_TYPES: dict[str, pa.DataType] = {
    training_column(v, f.name): f.type
    for v in VIEW_KEYS
    for f in contract.FEATURE_TABLES[v]
    if pa.types.is_list(f.type) and f.name in view_feature_names(v)
}
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


def _static_fallback(
    entities: pd.DataFrame, validated_dir: Path, listings: pd.DataFrame
) -> pd.DataFrame:
    """Attributes known without any event (from the validated entity tables), per entity row.

    Used before the constant defaults when a view has no row at the impression time, so a
    listing listed today still carries its own price, category and age. ``listings``: at least
    the rows of ``entities``' listings (:data:`LISTING_COLUMNS`); the users and sellers are read
    for ``entities``' keys only.
    """
    t = utc(pd.Series(entities["event_timestamp"]))
    lst = listings.set_index("listing_id")
    top = read_raw(validated_dir, "categories").set_index("category_id")["top_category_id"]
    sel = read_raw_rows(
        validated_dir,
        "sellers",
        SELLER_COLUMNS,
        "seller_id",
        entities["seller_id"],
    ).set_index("seller_id")
    users = read_raw_rows(
        validated_dir, "users", ["user_id", "region"], "user_id", entities["user_id"]
    ).set_index("user_id")
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


class _CoPurchase:
    """``labels/co_purchase_items.parquet`` read a chunk at a time: only the rows the chunk's
    baskets can look up (``InteractionTables.co_purchase_sum`` looks up basket listings as
    ``listing_a``), plus every row of one ``listing_a`` per snapshot (its smallest), so each
    snapshot is still there and ``InteractionTables.from_frames`` picks the same one for each
    day as with the whole file; the rows of a listing no basket asks for change nothing."""

    def __init__(self, labels_dir: Path) -> None:
        self.path = Path(labels_dir) / "co_purchase_items.parquet"
        self.keep = np.array([], dtype=np.int64)
        if self.path.exists() and "event_timestamp" in pq.read_schema(self.path).names:
            snaps = pq.read_table(self.path, columns=["listing_a", "event_timestamp"])
            firsts = snaps.group_by("event_timestamp").aggregate([("listing_a", "min")])
            self.keep = firsts.column("listing_a_min").to_numpy()

    def rows_for(self, basket_listings: pd.Series) -> pd.DataFrame:
        """The rows whose ``listing_a`` is one of ``basket_listings`` (or a snapshot's kept
        head), in file order; an empty frame when there is no file."""
        if not self.path.exists():
            return pd.DataFrame({c: [] for c in CO_PURCHASE_COLUMNS})
        heads = np.union1d(basket_listings.to_numpy(np.int64), self.keep)
        return scan(
            self.path, ds.field("listing_a").isin(pa.array(heads, type=pa.int64()))
        ).to_pandas()


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
    orders: pd.DataFrame,
    listings: pd.DataFrame,
    categories: pd.DataFrame,
    lookups: tuple[pd.DataFrame, pd.DataFrame],
) -> pd.DataFrame:
    """Request and interaction features for each impression row (same functions as serving).

    Impressions are grouped by request (one basket, one time, one device); lookup tables are
    rebuilt when the cut-off day changes. ``orders``: at least the order lines of ``imp``'s
    orders (:data:`_ORDER_COLUMNS`); ``listings``: at least the rows of the impressions' and
    those orders' listings; ``lookups``: the labels' category pairs and co-purchase items
    (at least the rows of those orders' listings, :class:`_CoPurchase`).
    """
    top = categories.set_index("category_id")["top_category_id"]
    lst = listings.set_index("listing_id")
    lst = lst.assign(top_category_id=lst["category_id"].map(top).fillna(lst["category_id"]))
    orders = orders.assign(
        category_id=lambda d: d["listing_id"].map(lst["category_id"]).fillna(-1),
        top_category_id=lambda d: d["listing_id"].map(lst["top_category_id"]).fillna(-1),
    )
    baskets = _baskets(orders)
    empty = Basket(
        np.array([], np.int64), np.array([], np.int64), np.array([], np.int64), np.array([])
    )
    cat_pairs, co_items = lookups
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


def _request_chunks(path: Path, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """The labelled impressions in file order, about ``chunk_rows`` rows at a time (all at once
    when None), never splitting a run of rows of one request; at least one (maybe empty) frame,
    each indexed ``0..k-1``."""
    pf = pq.ParquetFile(path)
    rows = pf.metadata.num_rows
    carry: pd.DataFrame | None = None
    for batch in pf.iter_batches(batch_size=max(1, chunk_rows or rows or 1)):
        df = pa.Table.from_batches([batch]).to_pandas()
        df = df if carry is None else pd.concat([carry, df], ignore_index=True)
        cut = _runs(df["request_id"].to_numpy())[0][-1]  # the last request may go on
        if cut == 0:
            carry = df
            continue
        yield df.iloc[:cut].reset_index(drop=True)
        carry = df.iloc[cut:].reset_index(drop=True)
    if carry is not None or not rows:
        yield carry if carry is not None else pf.schema_arrow.empty_table().to_pandas()


def _training_rows(
    imp: pd.DataFrame,
    first_row: int,
    validated_dir: Path,
    categories: pd.DataFrame,
    lookups: tuple[pd.DataFrame, _CoPurchase],
    join: Callable[[pd.DataFrame], pd.DataFrame],
    report: TrainingSetReport,
) -> pd.DataFrame:
    """The training set's rows of the labelled impressions ``imp`` (rows ``first_row`` on of the
    file): only their listings, sellers, users and orders are read. Adds to ``report``'s
    counts."""
    orders = read_raw_rows(validated_dir, "orders", _ORDER_COLUMNS, "order_id", imp["order_id"])
    listings = read_raw_rows(
        validated_dir,
        "listings",
        LISTING_COLUMNS,
        "listing_id",
        pd.concat([imp["listing_id"], orders["listing_id"]]),
    )
    entities = _entity_rows(imp, listings).assign(row_id=lambda d: d["row_id"] + first_row)
    joined = join(entities)
    report.returned_by_join += int(joined["row_id"].nunique())
    for view, n in joined.attrs.get("feast_dropped", {}).items():
        report.dropped_by_join[view] = report.dropped_by_join.get(view, 0) + n
    static = _static_fallback(entities, validated_dir, listings)
    joined, missing = _fill_defaults(joined, entities, static)
    for view, n in missing.items():
        report.missing_by_view[view] = report.missing_by_view.get(view, 0) + n
    cat_pairs, co_purchase = lookups
    co_items = co_purchase.rows_for(orders["listing_id"])
    req = _request_rows(imp, orders, listings, categories, (cat_pairs, co_items))
    report.rows_in += len(imp)
    return pd.concat(
        [
            imp[contract.field_names(contract.LABELLED_IMPRESSIONS)],
            joined[list(VIEW_FEATURE_COLUMNS)],
            req,
        ],
        axis=1,
    )


def build_training_set(
    labels_dir: Path,
    features_dir: Path,
    validated_dir: Path,
    out_path: Path,
    join: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    chunk_rows: int | None = TRAINING_CHUNK_ROWS,
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
    chunk_rows : int or None
        Labelled impressions per chunk (whole requests): each chunk is read, joined (``join`` is
        called once per chunk) and written on its own, reading only its listings, sellers, users
        and orders, so peak memory follows the chunk, not the traffic or the catalogue. None:
        one chunk. The file is the same either way.

    Returns
    -------
    TrainingSetReport
        Rows in and out (equal), rows defaulted per view, rows the join returned.
    """
    path = Path(labels_dir) / "impressions_labelled.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{labels_dir}/impressions_labelled.parquet not found")
    join = join or pit_join_views(features_dir)
    categories = read_raw(validated_dir, "categories")
    cat_pairs = _labels_or_empty(
        labels_dir, "category_pairs", list(contract.field_names(contract.CATEGORY_PAIR_FEATURES))
    )
    lookups = (cat_pairs, _CoPurchase(labels_dir))
    report = TrainingSetReport(
        rows_in=0, rows_out=0, feature_columns=list(TRAINING_FEATURE_COLUMNS)
    )
    first = 0

    def parts() -> Iterator[pd.DataFrame]:
        nonlocal first
        for imp in _request_chunks(path, chunk_rows):
            yield _training_rows(imp, first, validated_dir, categories, lookups, join, report)
            first += len(imp)

    out_path = Path(out_path)
    report.rows_out = write_frames(parts(), out_path, _LIST_TYPES)
    report.path = str(out_path)
    report.missing_by_view = {v: report.missing_by_view.get(v, 0) for v in VIEW_KEYS}
    out_path.with_suffix(".report.json").write_text(json.dumps(asdict(report), indent=2))
    return report
