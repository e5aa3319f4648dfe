"""Hourly index refresh of the serving bundle: new listings embedded and added, sold ones removed.

The two-tower model is not retrained: new listings are embedded by the item tower from their
content (id embedding masked, as for any cold-start listing), added to the FAISS index and the
snapshot; listings whose latest inventory event is ``sold`` or ``delisted`` are removed. The
result is a new bundle folder (same model, new ``index/``), published as a new version; serving's
live inventory filter still drops sold/locked items between refreshes. The bundle writer
(``serving.bundle_writer.write_refreshed_bundle``) copies the rest of the bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from checkout_recs.retrieval.index import RetrievalIndex
from checkout_recs.serving.bundle_layout import BundleLayout
from checkout_recs.serving.bundle_writer import write_refreshed_bundle
from checkout_recs.storage import new_version

GONE_EVENTS = ("sold", "delisted")


class RefreshSummary(BaseModel):
    """What one refresh changed."""

    added: int
    removed: int
    n_items_before: int
    n_items_after: int
    index_version: str


def gone_listings(events: pd.DataFrame) -> np.ndarray:
    """Listing ids whose latest event (by ``sequence``) is sold or delisted; int64 (m,)."""
    if events.empty:
        return np.empty(0, np.int64)
    last = events.sort_values(["listing_id", "sequence"]).groupby("listing_id").tail(1)
    return last.loc[last["event_type"].isin(GONE_EVENTS), "listing_id"].to_numpy(np.int64)


def new_listings(listings: pd.DataFrame, known: np.ndarray, gone: np.ndarray) -> pd.DataFrame:
    """Rows of ``listings`` not in the index (``known``) and not gone."""
    ids = listings["listing_id"].to_numpy(np.int64)
    keep = ~np.isin(ids, known) & ~np.isin(ids, gone)
    return listings.loc[keep].drop_duplicates("listing_id").reset_index(drop=True)


def refresh_bundle(
    bundle_dir: Path, ingested_dir: Path, out_dir: Path, version: str | None = None
) -> RefreshSummary:
    """Write to ``out_dir`` a copy of ``bundle_dir`` whose index reflects the ingested inventory.

    Parameters
    ----------
    bundle_dir : Path
        A published bundle (layout: ``serving.bundle_layout``).
    ingested_dir : Path
        An ingest output with recent ``listings`` and ``inventory_events``.
    out_dir : Path
        Receives the refreshed bundle (must not exist).
    version : str, optional
        New index version; default ``idx-<timestamp>``.

    Returns
    -------
    RefreshSummary
        Counts added/removed. Raises ``FileNotFoundError`` when an input is missing.
    """
    from checkout_recs.data.ingest import (
        read_validated,
    )  # lazy: keeps boto3 out of this module's import
    from checkout_recs.models.two_tower import (
        TwoTowerModel,
    )  # lazy: keeps torch out of this module's import

    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    layout = BundleLayout(bundle_dir)
    index = RetrievalIndex.load(layout.index_dir)
    before = int(len(index.live_ids))
    gone = gone_listings(read_validated(ingested_dir, "inventory_events"))
    removed = index.remove(gone)
    fresh = new_listings(read_validated(ingested_dir, "listings"), index.live_ids, gone)
    if len(fresh):
        rows = snapshot_rows(fresh, index.snapshot, read_validated(ingested_dir, "categories"))
        tt = TwoTowerModel.load(layout.two_tower_dir)
        index.add(rows["listing_id"].to_numpy(np.int64), tt.embed_items(rows), rows)
    info = write_refreshed_bundle(bundle_dir, out_dir, index, version or new_version("idx-"))
    return RefreshSummary(
        added=int(len(fresh)),
        removed=removed,
        n_items_before=before,
        n_items_after=int(info.n_items or 0),
        index_version=str(info.index_version),
    )


def snapshot_rows(
    fresh: pd.DataFrame, snapshot: pd.DataFrame, categories: pd.DataFrame
) -> pd.DataFrame:
    """Snapshot-shaped rows for new listings (same columns and dtypes as ``snapshot``).

    Content columns come from the listing; ``top_category_id`` from the category table; seller
    columns from the seller's existing snapshot row when there is one; any other numeric feature
    gets the snapshot's median (a neutral prior for a listing with no history yet), text "".
    """
    rows = pd.DataFrame(index=range(len(fresh)))
    top = categories.set_index("category_id")["top_category_id"]
    seller_cols = [c for c in snapshot.columns if c.startswith("seller_") and c != "seller_id"]
    sellers = (
        snapshot.drop_duplicates("seller_id").set_index("seller_id")[seller_cols]
        if seller_cols
        else None
    )
    for c in snapshot.columns:
        if c in fresh:
            rows[c] = fresh[c].to_numpy()
        elif c == "top_category_id":
            rows[c] = fresh["category_id"].map(top).fillna(-1).to_numpy()
        elif sellers is not None and c in seller_cols:
            rows[c] = fresh["seller_id"].map(sellers[c]).to_numpy()
        if c not in rows or rows[c].isna().any():
            fill = snapshot[c].median() if pd.api.types.is_numeric_dtype(snapshot[c]) else ""
            rows[c] = rows[c].fillna(fill) if c in rows else fill
    return rows.astype(snapshot.dtypes.to_dict())
