"""Building the retrieval index's FAISS part: one shard per region, its kind, training and filling.
``RetrievalIndex`` (``retrieval.index``) builds on it; ``build_index`` / ``publish_index`` live
there, the exact-scoring row store in ``retrieval.index_store``.

A catalogue is split into **shards**, one per region (one shard ``""`` without a region column or
with ``per_region=False``); every listing is in exactly one shard, so a region's query reads one
shard and a query without a region reads them all and merges. A shard below
``IndexConfig.exact_below`` listings is exact (``IDMap2(FlatIP)``); above it an inverted file
(IVF) with ``nlist`` k-means lists (default ``4 * sqrt(listings in the shard)``, ~9,800 lists of
~615 listings at 18M: a probe scans a quarter of the codes ``sqrt(n)`` lists would, so the same
recall costs ~40% less per query), trained on a sample of the shard (``max(train_sample,
train_per_list * nlist)`` vectors):

``ivf_sq8`` (default)  lists hold 8-bit scalar-quantised codes (d bytes + an 8-byte id a
                       listing); the best ``rerank`` hits are re-scored exactly from the row
                       store's float16 vectors. At 18M listings, d = 32: 0.72 GB of lists.
``ivf_flat``           lists hold the float32 vectors (4·d bytes + id): every scanned listing is
                       scored exactly, nothing is re-ranked; 2.6 GB of lists at 18M.

FAISS ids are listing ids, so ``remove`` is ``remove_ids`` and ``add`` is ``add_with_ids`` on the
listing's shard: neither retrains nor rebuilds anything.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from checkout_recs.retrieval.index_ops import MappedRows

#: Rows handed to FAISS per ``add_with_ids`` call while a shard is filled (progress granularity).
ADD_CHUNK = 1_000_000


class IndexConfig(BaseModel):
    """How the index is built and searched."""

    exact_below: int = Field(
        default=50_000, description="A shard below this many items is exact (flat)."
    )
    kind: Literal["ivf_sq8", "ivf_flat"] = Field(
        default="ivf_sq8", description="ANN kind of a shard above exact_below."
    )
    nlist: int | None = Field(
        default=None, description="IVF lists per shard; None: nlist_factor * sqrt(n)."
    )
    nlist_factor: float = Field(
        default=4.0,
        gt=0,
        description="Lists per sqrt(listings in the shard) when nlist is None (FAISS's guidance: "
        "4-16; more lists scan fewer codes per probe at the same recall, k-means costs more).",
    )
    nprobe: int = Field(default=112, ge=1, description="IVF lists probed per query.")
    rerank: int = Field(
        default=400, ge=1, description="ivf_sq8: ANN hits per shard re-scored exactly."
    )
    selective_below: int = Field(
        default=1_000_000,
        description="Category search scans the 8-bit codes of a (category, region) group of up to "
        "this many items, then re-ranks exactly (~1 ms per 150k at d=32); above it: filtered ANN.",
    )
    train_sample: int = Field(
        default=100_000, description="Vectors of a shard used to train its lists (k-means)."
    )
    train_per_list: int = Field(
        default=32,
        ge=1,
        description="k-means sample of a shard: at least this many vectors per list (so the "
        "sample is max(train_sample, train_per_list * nlist), capped at the shard's size).",
    )
    kmeans_iters: int = Field(
        default=10, ge=1, description="k-means iterations when training the lists."
    )
    per_region: bool = Field(default=True, description="One shard per region (else one shard).")


class IndexManifest(BaseModel):
    """What an index folder holds (``manifest.json``)."""

    version: str
    kind: str
    n_items: int
    dim: int
    regions: dict[str, int]
    built_at: str
    snapshot_time: str | None = None
    model_version: str | None = None
    build_seconds: float = 0.0
    config: dict = Field(default_factory=dict)
    shards: list[str] = Field(
        default_factory=list, description="Shard keys (region, or '') in file order."
    )
    format: int = Field(default=2, description="2: one FAISS file per shard (shard.<i>.faiss).")


def faiss_module() -> Any:
    """The ``faiss`` module (imported on first use: importing it costs ~0.3 s)."""
    import faiss  # lazy: faiss is loaded only where an index is built or searched

    return faiss


def needs_rerank(index: Any) -> bool:
    """True for an index whose scores are approximate (8-bit scalar quantised lists)."""
    return isinstance(index, faiss_module().IndexIVFScalarQuantizer)


def shard_keys(snapshot: pd.DataFrame, cfg: IndexConfig) -> tuple[np.ndarray, list[str]]:
    """The shard of every snapshot row: int codes (n,) into the returned keys (region names, or
    ``[""]`` when the catalogue is one shard)."""
    if not cfg.per_region or "region" not in snapshot:
        return np.zeros(len(snapshot), np.int32), [""]
    codes, names = region_codes(snapshot["region"])
    return codes, names


def region_codes(region: pd.Series) -> tuple[np.ndarray, list[str]]:
    """int32 codes (n,) of a region column and the names they index (categorical: its codes)."""
    if isinstance(region.dtype, pd.CategoricalDtype):
        return region.cat.codes.to_numpy(np.int32), [str(c) for c in region.cat.categories]
    codes, names = pd.factorize(region.astype(str))
    return codes.astype(np.int32), [str(r) for r in names]


def shard_nlist(n: int, cfg: IndexConfig) -> int:
    """IVF lists of a shard of ``n`` listings: ``cfg.nlist``, else ``nlist_factor * sqrt(n)``
    (at least 1, at most ``n``)."""
    if cfg.nlist:
        return cfg.nlist
    return max(1, min(n, int(cfg.nlist_factor * np.sqrt(n))))


def train_ivf(emb: np.ndarray | MappedRows, rows: np.ndarray, cfg: IndexConfig) -> Any:
    """A trained, empty IVF index (inner product) for the shard ``emb[rows]`` (``emb`` (n, d)
    float32 or a memory map, ``rows`` int64): ``shard_nlist`` lists, k-means on
    ``max(train_sample, train_per_list * nlist)`` rows drawn without replacement (only the sample
    is copied)."""
    faiss = faiss_module()
    d = emb.shape[1]
    nlist = shard_nlist(len(rows), cfg)
    quant = faiss.IndexFlatIP(d)
    if cfg.kind == "ivf_flat":
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFScalarQuantizer(
            quant, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    index.cp.niter = cfg.kmeans_iters
    index.cp.min_points_per_centroid = 1  # a small sample per list is enough to place the lists
    rng = np.random.default_rng(0)
    sample = max(cfg.train_sample, cfg.train_per_list * nlist)
    pick = rng.choice(len(rows), min(len(rows), sample), replace=False)
    index.train(np.ascontiguousarray(emb[rows[np.sort(pick)]], dtype=np.float32))
    index.nprobe = cfg.nprobe
    return index


def flat_index(emb: np.ndarray, ids: np.ndarray) -> Any:
    """Exact inner-product index over ``emb`` (n, d) with external ``ids`` (n,)."""
    faiss = faiss_module()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(emb.shape[1]))
    if len(emb):
        index.add_with_ids(np.ascontiguousarray(emb, np.float32), np.asarray(ids, np.int64))
    return index


def build_shard(
    emb: np.ndarray | MappedRows,
    rows: np.ndarray,
    ids: np.ndarray,
    cfg: IndexConfig,
    progress: Callable[[str], None] | None = None,
    name: str = "",
) -> Any:
    """One shard over ``emb[rows]`` (``emb`` (n, d) float32 or a memory map, ``rows`` int64
    (m,)) with listing ``ids`` (m,): exact below ``cfg.exact_below`` rows, else a trained IVF
    filled ``ADD_CHUNK`` rows at a time (no float32 copy of the whole shard)."""
    if len(rows) < cfg.exact_below:
        return flat_index(np.asarray(emb[rows], np.float32), ids)
    t0 = time.perf_counter()
    index = train_ivf(emb, rows, cfg)
    if progress:
        progress(f"shard {name!r}: {index.nlist} lists trained in {time.perf_counter() - t0:.1f}s")
    for a in range(0, len(rows), ADD_CHUNK):
        b = min(len(rows), a + ADD_CHUNK)
        index.add_with_ids(np.ascontiguousarray(emb[rows[a:b]], np.float32), ids[a:b])
        if progress:
            progress(
                f"shard {name!r}: {b:,} / {len(rows):,} added ({time.perf_counter() - t0:.0f}s)"
            )
    return index


def build_faiss(
    ids: np.ndarray,
    emb: np.ndarray | MappedRows,
    snapshot: pd.DataFrame,
    cfg: IndexConfig,
    version: str = "adhoc",
    model_version: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], IndexManifest]:
    """Every shard of a catalogue (see module docstring) and its manifest.

    ``emb`` float32 (n, d) unit vectors (a memory map is read shard by shard), ``ids`` int64
    (n,), ``snapshot`` aligned rows (its ``region`` column picks the shards; ``snapshot_time`` /
    ``event_timestamp`` dates it); ``progress`` receives a line per trained shard and added chunk.
    """
    t0 = time.perf_counter()
    ids = np.asarray(ids, np.int64)
    codes, keys = shard_keys(snapshot, cfg)
    indexes: dict[str, Any] = {}
    kinds = set()
    for i, key in enumerate(keys):
        rows = np.flatnonzero(codes == i) if len(keys) > 1 else np.arange(len(ids))
        shard = build_shard(emb, rows, ids[rows], cfg, progress, key)
        indexes[key] = shard
        kinds.add("flat" if isinstance(shard, faiss_module().IndexIDMap2) else cfg.kind)
    regions: dict[str, int] = {}
    if "region" in snapshot:
        rc, names = region_codes(snapshot["region"])
        counts = np.bincount(rc[rc >= 0], minlength=len(names))
        regions = {n: int(c) for n, c in sorted(zip(names, counts.tolist(), strict=True)) if c}
    snap_time = None
    time_col = next((c for c in ("snapshot_time", "event_timestamp") if c in snapshot), None)
    if time_col is not None and len(snapshot) and snapshot[time_col].notna().any():
        snap_time = str(pd.to_datetime(snapshot[time_col], utc=True).max())
    manifest = IndexManifest(
        version=version,
        kind=cfg.kind if cfg.kind in kinds else "flat",
        n_items=len(ids),
        dim=int(emb.shape[1]),
        regions=regions,
        built_at=dt.datetime.now(dt.UTC).isoformat(),
        snapshot_time=snap_time,
        model_version=model_version,
        build_seconds=time.perf_counter() - t0,
        config=cfg.model_dump(),
        shards=list(indexes),
    )
    return indexes, manifest


def faiss_bytes(index: Any) -> int:
    """Bytes an index holds in memory: its lists' codes and ids plus the coarse centroids (IVF),
    or its vectors and ids (flat)."""
    faiss = faiss_module()
    if isinstance(index, faiss.IndexIVF):
        inv = faiss.extract_index_ivf(index).invlists
        n = sum(inv.list_size(i) for i in range(inv.nlist))
        return int(n * (inv.code_size + 8) + index.nlist * index.d * 4)
    return int(index.ntotal * (index.d * 4 + 8))


def group_order(
    category: np.ndarray | None, region: np.ndarray | None, n: int
) -> tuple[np.ndarray, dict[tuple[int, int], tuple[int, int]]]:
    """Rows sorted by (category, region) as int32 (n,), and each group's [start, end) in it.

    Keys: (category, region code), and (category, -1) for the category in every region. Without
    a category column the order is the identity and there are no groups.
    """
    if category is None or n == 0:
        return np.arange(n, dtype=np.int32), {}
    reg = region if region is not None else np.zeros(n, np.int32)
    order = np.lexsort((reg, category)).astype(np.int32)
    c, r = category[order], reg[order]
    new_c = np.r_[True, c[1:] != c[:-1]]
    groups: dict[tuple[int, int], tuple[int, int]] = {}
    for key_starts, by_region in ((new_c, False), (new_c | np.r_[True, r[1:] != r[:-1]], True)):
        if by_region and region is None:
            continue
        starts = np.flatnonzero(key_starts)
        for a, b in zip(starts.tolist(), np.r_[starts[1:], n].tolist(), strict=True):
            groups[(int(c[a]), int(r[a]) if by_region else -1)] = (a, b)
    return order, groups
