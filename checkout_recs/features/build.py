"""Stage ``features``: compute the feature tables from validated data and labels.

``build_feature_tables`` writes ``out_dir/<view>.parquet`` for each ``contract.FEATURE_TABLES``
entry (daily end-of-day snapshots with ``event_timestamp``) and ``build_report.json``. By default
the user, listing and seller views are built and written a range of entities at a time
(``view_parts``: memory bounded by the range, not the catalogue); ``per_chunk=None`` builds each
view as one table (``build_user_view`` etc.; the reference the bounded path is tested against).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from checkout_recs import contract
from checkout_recs.features.item_views import build_listing_view, build_seller_view, seller_sales
from checkout_recs.features.tables import (
    LISTING_COLUMNS,
    SELLER_COLUMNS,
    read_labels,
    read_raw,
    snapshot_grid,
    utc,
    write_contract,
    write_contract_parts,
)
from checkout_recs.features.user_view import build_user_view, purchase_events
from checkout_recs.features.view_parts import (
    PER_CHUNK,
    listing_view_parts,
    seller_view_parts,
    user_view_parts,
)

#: Columns of each validated table the views read (the bounded path reads no other).
_COLUMNS: dict[str, list[str]] = {
    "categories": ["category_id", "top_category_id"],
    "sellers": SELLER_COLUMNS,
    "listings": LISTING_COLUMNS,
    "users": ["user_id", "region", "device", "signup_at"],
    "orders": ["user_id", "listing_id", "price", "device", "event_timestamp"],
    "impressions": ["listing_id", "event_timestamp"],
    "clicks": ["listing_id", "event_timestamp"],
    "purchases": ["user_id", "listing_id", "price", "event_timestamp"],
}


def _event_window(tables: dict[str, pd.DataFrame]) -> tuple[pd.Timestamp, pd.Timestamp]:
    stamps = [
        utc(tables[t]["event_timestamp"])
        for t in ("orders", "impressions", "clicks", "purchases")
        if len(tables[t])
    ]
    if not stamps:
        raise ValueError("no events in orders/impressions/clicks/purchases: nothing to snapshot")
    allts = pd.concat(stamps)
    return allts.min(), allts.max()


def _category_pairs(labels_dir: Path) -> tuple[pd.DataFrame, str]:
    df = read_labels(labels_dir, "category_pairs")
    if df is None:
        return contract.empty_table(contract.CATEGORY_PAIR_FEATURES).to_pandas(), "missing"
    df = df.assign(event_timestamp=utc(df["event_timestamp"]))
    return df, "copied from labels/category_pairs.parquet"


def build_feature_tables(
    validated_dir: Path, labels_dir: Path, out_dir: Path, per_chunk: int | None = PER_CHUNK
) -> dict:
    """Compute the ``user``, ``listing``, ``seller`` and ``category_pair`` feature tables.

    Parameters
    ----------
    validated_dir : Path
        ``ingested/`` or ``ingested/validated/`` (one folder per raw table).
    labels_dir : Path
        Output of ``build_labels`` (``category_pairs.parquet`` is copied from there).
    out_dir : Path
        Receives ``<view>.parquet`` (contract schemas) and ``build_report.json``.
    per_chunk : int or None
        Entities (users, listings, sellers) per written range: peak memory grows with it, not
        with the catalogue. None: each view built whole in memory (same files, same rows).

    Returns
    -------
    dict
        ``{"views": {view: {"rows", "entities", "path"}}, "window": [first, last snapshot ISO],
        "snapshots": D, "category_pair_source": str}``. Raises ``ValueError`` when there are
        no events at all.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if per_chunk is None:
        t = {name: read_raw(validated_dir, name) for name in contract.RAW_TABLES}
    else:
        t = {name: read_raw(validated_dir, name, cols) for name, cols in _COLUMNS.items()}
        pa.default_memory_pool().release_unused()  # the arrow buffers the frames were made from
    for name in ("orders", "impressions", "clicks", "purchases"):
        t[name] = t[name].assign(event_timestamp=utc(t[name]["event_timestamp"]))
    grid = snapshot_grid(*_event_window(t))
    cats = t["categories"].set_index("category_id")["top_category_id"]
    listing_cats = t["listings"][["listing_id", "category_id"]].assign(
        top_category_id=lambda d: d["category_id"].map(cats).fillna(d["category_id"])
    )
    buys = purchase_events(t["orders"], t["purchases"], listing_cats)
    sales = seller_sales(t["orders"], t["purchases"], t["listings"])
    del listing_cats, t["orders"]  # no view reads them again
    report: dict = {"views": {}, "snapshots": len(grid)}
    if per_chunk is None:
        events = (t["listings"], t["categories"], t["impressions"], t["clicks"], t["purchases"])
        views = {
            "user": build_user_view(t["users"], buys, grid),
            "listing": build_listing_view(*events, grid),
            "seller": build_seller_view(t["sellers"], sales, grid),
        }
    else:
        # each table is handed over (popped): the generator that takes it holds the only
        # reference, so e.g. the listings frame is freed once the listing view has its copy
        listing_parts = listing_view_parts(
            t.pop("listings"),
            t["categories"],
            t.pop("impressions"),
            t.pop("clicks"),
            t.pop("purchases"),
            grid,
            per_chunk,
            spill_dir=out_dir,
        )
        for name, parts in (
            ("user", user_view_parts(t.pop("users"), buys, grid, per_chunk)),
            ("listing", listing_parts),
            ("seller", seller_view_parts(t.pop("sellers"), sales, grid, per_chunk)),
        ):
            path = out_dir / f"{name}.parquet"
            key = contract.field_names(contract.FEATURE_TABLES[name])[0]
            rows, entities = write_contract_parts(parts, contract.FEATURE_TABLES[name], path, key)
            report["views"][name] = {"rows": rows, "entities": entities, "path": str(path)}
        views = {}
    pairs, pair_source = _category_pairs(labels_dir)
    views["category_pair"] = pairs
    report |= {
        "category_pair_source": pair_source,
        "window": [grid[0].isoformat(), grid[-1].isoformat()],
    }
    for name, df in views.items():
        path = out_dir / f"{name}.parquet"
        rows = write_contract(df, contract.FEATURE_TABLES[name], path)
        key = contract.field_names(contract.FEATURE_TABLES[name])[0]
        report["views"][name] = {
            "rows": rows,
            "entities": int(df[key].nunique()),
            "path": str(path),
        }
    report["views"] = {
        n: report["views"][n] for n in ("user", "listing", "seller", "category_pair")
    }
    (out_dir / "build_report.json").write_text(json.dumps(report, indent=2))
    return report
