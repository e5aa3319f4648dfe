"""Stage ``features``: compute the feature tables from validated data and labels.

``build_feature_tables`` writes ``out_dir/<view>.parquet`` for each ``contract.FEATURE_TABLES``
entry (daily end-of-day snapshots with ``event_timestamp``) and ``build_report.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from checkout_recs import contract
from checkout_recs.features.item_views import build_listing_view, build_seller_view, seller_sales
from checkout_recs.features.tables import read_labels, read_raw, snapshot_grid, utc, write_contract
from checkout_recs.features.user_view import build_user_view, purchase_events


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


def build_feature_tables(validated_dir: Path, labels_dir: Path, out_dir: Path) -> dict:
    """Compute the ``user``, ``listing``, ``seller`` and ``category_pair`` feature tables.

    Parameters
    ----------
    validated_dir : Path
        ``ingested/`` or ``ingested/validated/`` (one folder per raw table).
    labels_dir : Path
        Output of ``build_labels`` (``category_pairs.parquet`` is copied from there).
    out_dir : Path
        Receives ``<view>.parquet`` (contract schemas) and ``build_report.json``.

    Returns
    -------
    dict
        ``{"views": {view: {"rows", "entities", "path"}}, "window": [first, last snapshot ISO],
        "snapshots": D, "category_pair_source": str}``. Raises ``ValueError`` when there are
        no events at all.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = {name: read_raw(validated_dir, name) for name in contract.RAW_TABLES}
    for name in ("orders", "impressions", "clicks", "purchases"):
        t[name] = t[name].assign(event_timestamp=utc(t[name]["event_timestamp"]))
    grid = snapshot_grid(*_event_window(t))
    cats = t["categories"].set_index("category_id")["top_category_id"]
    listing_cats = t["listings"][["listing_id", "category_id"]].assign(
        top_category_id=lambda d: d["category_id"].map(cats).fillna(d["category_id"])
    )
    views = {
        "user": build_user_view(
            t["users"], purchase_events(t["orders"], t["purchases"], listing_cats), grid
        ),
        "listing": build_listing_view(
            t["listings"], t["categories"], t["impressions"], t["clicks"], t["purchases"], grid
        ),
        "seller": build_seller_view(
            t["sellers"], seller_sales(t["orders"], t["purchases"], t["listings"]), grid
        ),
    }
    pairs, pair_source = _category_pairs(labels_dir)
    views["category_pair"] = pairs
    report: dict = {
        "views": {},
        "snapshots": len(grid),
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
    (out_dir / "build_report.json").write_text(json.dumps(report, indent=2))
    return report
