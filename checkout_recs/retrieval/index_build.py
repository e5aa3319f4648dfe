"""Building the retrieval index's FAISS part: which FAISS index a catalogue gets, how it is trained
and filled, and the (category, region) layout of the exact store. ``RetrievalIndex``
(``retrieval.index``) builds on it; ``build_index`` / ``publish_index`` live there.

Exact inner product (``IDMap2(FlatIP)``) below ``IndexConfig.exact_below`` items; above it an
inverted file (IVF) with ``nlist`` k-means lists:

``ivf_flat`` (default)  lists hold the float32 vectors: every scanned item is scored exactly,
                        so nothing needs re-ranking; 4·d bytes an item.
``ivf_sq8``             lists hold 8-bit scalar-quantised vectors (d bytes an item); the top
                        ``rerank`` hits are re-scored exactly from the float32 store. For
                        catalogues whose float32 vectors would not fit in memory.

The coarse quantiser is trained once (k-means on a sample) and every IVF index of a build (the
global one and one per region) is a copy of that trained empty index, filled from one shared
list assignment: a region index costs no second k-means and no second assignment.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")  # region names that may become file names


class IndexConfig(BaseModel):
    """How the index is built and searched."""

    exact_below: int = Field(default=50_000, description="Exact search below this many items.")
    kind: Literal["ivf_flat", "ivf_sq8"] = Field(
        default="ivf_flat", description="ANN kind above exact_below."
    )
    nlist: int | None = Field(default=None, description="IVF lists; None: sqrt(n).")
    nprobe: int = Field(default=32, ge=1, description="IVF lists probed per query.")
    rerank: int = Field(default=1000, description="ivf_sq8: ANN hits re-scored exactly per query.")
    selective_below: int = Field(
        default=100_000,
        description="Exact category search up to this many items (~0.5 ms at 100k, d=32).",
    )
    train_sample: int = Field(
        default=100_000, description="Vectors used to train the IVF lists (k-means)."
    )
    kmeans_iters: int = Field(
        default=10, ge=1, description="k-means iterations when training the lists."
    )
    per_region: bool = Field(default=True, description="Build one index per region too.")


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


def faiss_module() -> Any:
    """The ``faiss`` module (imported on first use: importing it costs ~0.3 s)."""
    import faiss  # lazy: faiss is loaded only where an index is built or searched

    return faiss


def needs_rerank(index: Any) -> bool:
    """True for an index whose scores are approximate (8-bit scalar quantised lists)."""
    return isinstance(index, faiss_module().IndexIVFScalarQuantizer)


def train_ivf(emb: np.ndarray, cfg: IndexConfig) -> Any:
    """A trained, empty IVF index (inner product) for ``emb`` (n, d) float32; see module docstring."""
    faiss = faiss_module()
    n, d = emb.shape
    nlist = cfg.nlist or max(1, int(np.sqrt(n)))
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
    sample = emb[np.sort(rng.choice(n, min(n, max(cfg.train_sample, 4 * nlist)), replace=False))]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.nprobe = cfg.nprobe
    return index


def assign_lists(trained: Any, emb: np.ndarray) -> np.ndarray:
    """List of every row of ``emb`` (n, d) in ``trained``'s coarse quantiser → int64 (n,)."""
    _, lists = trained.quantizer.search(np.ascontiguousarray(emb, np.float32), 1)
    return lists[:, 0].astype(np.int64)


def fill_ivf(trained: Any, emb: np.ndarray, ids: np.ndarray, lists: np.ndarray) -> Any:
    """A copy of ``trained`` holding ``emb`` (m, d) with external ``ids`` (m,) in ``lists`` (m,)."""
    faiss = faiss_module()
    index = faiss.clone_index(trained)
    x = np.ascontiguousarray(emb, np.float32)
    xid = np.ascontiguousarray(ids, np.int64)
    lst = np.ascontiguousarray(lists, np.int64)
    if len(x):
        index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(xid), faiss.swig_ptr(lst))
    index.nprobe = trained.nprobe
    return index


def flat_index(emb: np.ndarray, ids: np.ndarray) -> Any:
    """Exact inner-product index over ``emb`` (n, d) with external ``ids`` (n,)."""
    faiss = faiss_module()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(emb.shape[1]))
    if len(emb):
        index.add_with_ids(np.ascontiguousarray(emb, np.float32), np.asarray(ids, np.int64))
    return index


def make_faiss_indexes(
    emb: np.ndarray, ids: np.ndarray, groups: dict[str, np.ndarray], cfg: IndexConfig
) -> tuple[dict[str, Any], str]:
    """The global index (key ``""``) and one index per entry of ``groups`` (name → bool mask (n,)).

    Parameters
    ----------
    emb : float32 (n, d) unit vectors; ids : int64 (n,) external ids.
    groups : region name → row mask; each gets its own index (exact when it is small).

    Returns
    -------
    (indexes, kind) with kind ``"flat"``, ``"ivf_flat"`` or ``"ivf_sq8"`` for the global index.
    """
    emb = np.ascontiguousarray(emb, np.float32)
    ids = np.asarray(ids, np.int64)
    if len(emb) < cfg.exact_below:
        out = {"": flat_index(emb, ids)}
        out.update({g: flat_index(emb[m], ids[m]) for g, m in groups.items()})
        return out, "flat"
    trained = train_ivf(emb, cfg)
    lists = assign_lists(trained, emb)
    out = {"": fill_ivf(trained, emb, ids, lists)}
    for g, m in groups.items():
        out[g] = (
            fill_ivf(trained, emb[m], ids[m], lists[m])
            if m.sum() >= cfg.exact_below
            else flat_index(emb[m], ids[m])
        )
    return out, cfg.kind


def build_faiss(
    ids: np.ndarray,
    emb: np.ndarray,
    snapshot: pd.DataFrame,
    cfg: IndexConfig,
    version: str = "adhoc",
    model_version: str | None = None,
) -> tuple[dict[str, Any], IndexManifest]:
    """Every FAISS index of a catalogue (global ``""`` + one per region) and its manifest.

    ``emb`` float32 (n, d) unit vectors, ``ids`` int64 (n,), ``snapshot`` aligned rows (its
    ``region`` column picks the region indexes; ``snapshot_time`` / ``event_timestamp`` dates it).
    """
    t0 = time.perf_counter()
    emb = np.ascontiguousarray(emb, np.float32)
    ids = np.asarray(ids, np.int64)
    regions: dict[str, int] = {}
    groups: dict[str, np.ndarray] = {}
    if "region" in snapshot:
        reg = snapshot["region"].astype(str).to_numpy()
        for r in sorted(pd.unique(reg)):
            m = reg == r
            regions[str(r)] = int(m.sum())
            if cfg.per_region and _SAFE.match(str(r)):
                groups[str(r)] = m
    indexes, kind = make_faiss_indexes(emb, ids, groups, cfg)
    snap_time = None
    time_col = next((c for c in ("snapshot_time", "event_timestamp") if c in snapshot), None)
    if time_col is not None and len(snapshot) and snapshot[time_col].notna().any():
        snap_time = str(pd.to_datetime(snapshot[time_col], utc=True).max())
    manifest = IndexManifest(
        version=version,
        kind=kind,
        n_items=len(ids),
        dim=emb.shape[1],
        regions=regions,
        built_at=dt.datetime.now(dt.UTC).isoformat(),
        snapshot_time=snap_time,
        model_version=model_version,
        build_seconds=time.perf_counter() - t0,
        config=cfg.model_dump(),
    )
    return indexes, manifest


def group_order(
    category: np.ndarray | None, region: np.ndarray | None, n: int
) -> tuple[np.ndarray, dict[tuple[int, int], tuple[int, int]]]:
    """Rows sorted by (category, region), and each group's [start, end) in that order.

    Keys: (category, region code), and (category, -1) for the category in every region. Without
    a category column the order is the identity and there are no groups.
    """
    if category is None or n == 0:
        return np.arange(n, dtype=np.int64), {}
    reg = region if region is not None else np.zeros(n, np.int32)
    order = np.lexsort((reg, category)).astype(np.int64)
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
