"""FAISS index over item-tower embeddings, aligned with an item feature snapshot.

Index kind is chosen by size: exact inner product (``IndexFlatIP``) below
``IndexConfig.exact_below`` items, else IVF with 8-bit scalar quantisation whose top
``rerank`` hits are re-scored exactly from the float16 embedding store. One index per region
plus a global one; a category filter whose items are few (``selective_below``) is answered by
exact search over that category's rows (a filter inside a global ANN collapses recall).

Listings are added and removed in place (``add`` / ``remove``); a removed (sold) listing can
never be returned: it leaves every FAISS index and its row is masked out of the store.

Folder (``save``): ``index.faiss`` (global), ``index.<region>.faiss``, ``ids.npy`` (int64),
``embeddings.npy`` (float16, rows aligned with ``ids.npy``), ``snapshot.parquet`` (same order),
``manifest.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


class IndexConfig(BaseModel):
    """How the index is built and searched."""

    exact_below: int = Field(default=50_000, description="Exact search below this many items.")
    nlist: int | None = Field(default=None, description="IVF lists; None: sqrt(n).")
    nprobe: int = Field(default=64, description="IVF lists probed per query.")
    rerank: int = Field(default=1000, description="ANN hits re-scored exactly per query.")
    selective_below: int = Field(default=20_000, description="Exact category search below this.")
    train_sample: int = Field(default=50_000, description="Vectors used to train IVF (k-means).")
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


def _faiss():
    import faiss

    return faiss


def make_faiss_index(emb: np.ndarray, ids: np.ndarray, cfg: IndexConfig):
    """A FAISS index over ``emb`` (n, d) float32 with external ``ids`` (n,) int64.

    Exact (``IDMap2(FlatIP)``) below ``cfg.exact_below`` rows, else ``IVF{nlist},SQ8`` (inner
    product). Returns ``(index, kind)``.
    """
    faiss = _faiss()
    n, d = emb.shape
    if n < cfg.exact_below:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        kind = "flat"
    else:
        nlist = cfg.nlist or int(np.sqrt(n))
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(quant, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = emb[rng.choice(n, min(n, max(cfg.train_sample, 39 * nlist)), replace=False)]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = cfg.nprobe
        kind = "ivf_sq8"
    if n:
        index.add_with_ids(np.ascontiguousarray(emb, dtype=np.float32), ids.astype(np.int64))
    return index, kind


class RetrievalIndex:
    """Embeddings + FAISS indexes + snapshot, searchable globally, per region or per category."""

    def __init__(self, ids: np.ndarray, emb: np.ndarray, snapshot: pd.DataFrame,
                 cfg: IndexConfig, indexes: dict[str, Any], manifest: IndexManifest) -> None:
        self.ids = np.asarray(ids, np.int64)
        self.emb = np.asarray(emb, np.float16)  # stored compressed (embeddings.npy)
        self._emb32 = self.emb.astype(np.float32)  # exact re-scoring in memory
        self.snapshot = snapshot.reset_index(drop=True)
        self.cfg = cfg
        self.indexes = indexes  # "" is the global index, else a region
        self.manifest = manifest
        self.alive = np.ones(len(self.ids), bool)
        self._reindex()

    def _reindex(self) -> None:
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids, self._sorted_rows = self.ids[order], order
        self._lookup = None  # dense id → row table when ids are small non-negative integers
        if len(self.ids) and self.ids.min() >= 0 and self.ids.max() < 4 * len(self.ids) + 1024:
            self._lookup = np.full(int(self.ids.max()) + 1, -1, np.int64)
            self._lookup[self.ids] = np.arange(len(self.ids))  # a re-added id: the newest row wins
        self._region = self.snapshot["region"].to_numpy() if "region" in self.snapshot else None
        self._category = (self.snapshot["category_id"].to_numpy()
                          if "category_id" in self.snapshot else None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_embeddings(cls, ids: np.ndarray, emb: np.ndarray, snapshot: pd.DataFrame,
                        cfg: IndexConfig | None = None, version: str = "adhoc",
                        model_version: str | None = None) -> RetrievalIndex:
        """Build every index for ``emb`` (n, d) with ids (n,) and the aligned ``snapshot``."""
        cfg = cfg or IndexConfig()
        t0 = time.perf_counter()
        emb = np.ascontiguousarray(emb, np.float32)
        ids = np.asarray(ids, np.int64)
        indexes: dict[str, Any] = {}
        indexes[""], kind = make_faiss_index(emb, ids, cfg)
        regions: dict[str, int] = {}
        if "region" in snapshot:
            reg = snapshot["region"].to_numpy()
            for r in sorted(pd.unique(reg)):
                m = reg == r
                regions[str(r)] = int(m.sum())
                if cfg.per_region and _SAFE.match(str(r)):
                    indexes[str(r)] = make_faiss_index(emb[m], ids[m], cfg)[0]
        snap_time = None
        time_col = next((c for c in ("snapshot_time", "event_timestamp") if c in snapshot), None)
        if time_col is not None and len(snapshot) and snapshot[time_col].notna().any():
            snap_time = str(pd.to_datetime(snapshot[time_col], utc=True).max())
        manifest = IndexManifest(version=version, kind=kind, n_items=len(ids), dim=emb.shape[1],
                                 regions=regions, built_at=dt.datetime.now(dt.UTC).isoformat(),
                                 snapshot_time=snap_time, model_version=model_version,
                                 build_seconds=time.perf_counter() - t0, config=cfg.model_dump())
        return cls(ids, emb, snapshot, cfg, indexes, manifest)

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int, region: str | None = None,
               category: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k listings by inner product.

        Parameters
        ----------
        queries : float32 (q, d) user-tower vectors.
        k : number of results per query.
        region : restrict to one region's index (None: global).
        category : restrict to one category; exact when the category is selective.

        Returns
        -------
        ids : int64 (q, k), -1 where fewer than k live items match.
        scores : float32 (q, k), inner products, -inf on padding.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if category is not None:
            rows = self._rows(region, category)
            if len(rows) <= self.cfg.selective_below:
                return self._exact(q, rows, k)
            ids, sc = self._ann(q, max(4 * k, self.cfg.rerank), region)
            return self._filter(ids, sc, k, category)
        if region is not None and region not in self.indexes:
            return self._exact(q, self._rows(region, None), k)
        return self._ann(q, k, region)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in the store (the newest row when an id was re-added), -1 if absent."""
        ids = np.asarray(ids, np.int64)
        if len(self._sorted_ids) == 0:
            return np.full(ids.shape, -1, np.int64)
        if self._lookup is not None:
            inside = (ids >= 0) & (ids < len(self._lookup))
            return np.where(inside, self._lookup[np.where(inside, ids, 0)], -1)
        pos = np.searchsorted(self._sorted_ids, ids, side="right") - 1
        pos = np.clip(pos, 0, len(self._sorted_ids) - 1)
        hit = self._sorted_ids[pos] == ids
        return np.where(hit, self._sorted_rows[pos], -1)

    def is_live(self, ids: np.ndarray) -> np.ndarray:
        """bool array: which ``ids`` can be returned (present and not removed)."""
        r = self.rows_of(ids)
        return (r >= 0) & self.alive[np.maximum(r, 0)]

    def _rows(self, region: str | None, category: int | None) -> np.ndarray:
        m = self.alive.copy()
        if region is not None and self._region is not None:
            m &= self._region == region
        if category is not None and self._category is not None:
            m &= self._category == category
        return np.flatnonzero(m)

    def _exact(self, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sc = q @ self._emb32[rows].T  # (q, r)
        kk = min(k, len(rows))
        top = np.argsort(-sc, axis=1, kind="stable")[:, :kk]
        return _pad(self.ids[rows][top], np.take_along_axis(sc, top, 1), k)

    def _ann(self, q: np.ndarray, k: int, region: str | None) -> tuple[np.ndarray, np.ndarray]:
        index = self.indexes[region or ""]
        is_ivf = hasattr(index, "nprobe")
        kk = max(k, self.cfg.rerank) if is_ivf else k
        sc, ids = index.search(q, kk)
        if is_ivf:
            return self._rerank(q, ids, k)
        return _pad(ids, sc, k)

    def _rerank(self, q: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_i = np.full((len(q), k), -1, np.int64)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        for i in range(len(q)):
            cand = ids[i][ids[i] >= 0]
            rows = self.rows_of(cand)
            rows = rows[(rows >= 0) & self.alive[np.maximum(rows, 0)]]
            sc = self._emb32[rows] @ q[i]
            top = _top_k(sc, k)
            out_i[i, : len(top)], out_s[i, : len(top)] = self.ids[rows[top]], sc[top]
        return out_i, out_s

    def _filter(self, ids: np.ndarray, sc: np.ndarray, k: int, category: int) -> tuple[np.ndarray, np.ndarray]:
        if self._category is None:
            raise ValueError("category filter needs a category_id column in the snapshot")
        rows = self.rows_of(ids)
        ok = (rows >= 0) & (self._category[np.maximum(rows, 0)] == category)
        out_i = np.full((len(ids), k), -1, np.int64)
        out_s = np.full((len(ids), k), -np.inf, np.float32)
        for i in range(len(ids)):
            sel = np.flatnonzero(ok[i])[:k]
            out_i[i, : len(sel)], out_s[i, : len(sel)] = ids[i, sel], sc[i, sel]
        return out_i, out_s

    # ------------------------------------------------------------------ updates
    def add(self, ids: np.ndarray, emb: np.ndarray, snapshot_rows: pd.DataFrame) -> None:
        """Add new listings (ids (m,), emb (m, d), their snapshot rows) without a rebuild.

        An id already present is replaced. Raises ValueError on mismatched lengths.
        """
        ids = np.asarray(ids, np.int64)
        if not (len(ids) == len(emb) == len(snapshot_rows)):
            raise ValueError("add: ids, embeddings and snapshot rows must have the same length")
        self.remove(ids[np.isin(ids, self.ids[self.alive])])
        emb32 = np.ascontiguousarray(emb, np.float32)
        self.indexes[""].add_with_ids(emb32, ids)
        reg = snapshot_rows["region"].to_numpy() if "region" in snapshot_rows else None
        for r, index in self.indexes.items():
            if r and reg is not None and (reg == r).any():
                index.add_with_ids(emb32[reg == r], ids[reg == r])
        self.ids = np.concatenate([self.ids, ids])
        self.emb = np.concatenate([self.emb, emb32.astype(np.float16)])
        self._emb32 = np.concatenate([self._emb32, emb32])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), bool)])
        self.snapshot = pd.concat([self.snapshot, snapshot_rows], ignore_index=True)
        self._reindex()

    def remove(self, ids: np.ndarray) -> int:
        """Remove listings (sold, delisted) from every index; returns how many were live."""
        faiss = _faiss()
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            return 0
        sel = faiss.IDSelectorBatch(ids)
        for index in self.indexes.values():
            index.remove_ids(sel)
        n = int(self.is_live(np.unique(ids)).sum())
        # every row of a removed id dies (an id re-added later gets a fresh row)
        self.alive[np.isin(self.ids, ids)] = False
        return n

    @property
    def live_ids(self) -> np.ndarray:
        """Ids of the listings that can be returned, int64 (n_live,)."""
        return self.ids[self.alive]

    # ------------------------------------------------------------------ persistence
    def save(self, out_dir: Path, version: str | None = None) -> IndexManifest:
        """Write the folder (compacting removed rows out of the store and snapshot)."""
        faiss = _faiss()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        keep = self.alive
        np.save(out_dir / "ids.npy", self.ids[keep], allow_pickle=False)
        np.save(out_dir / "embeddings.npy", self.emb[keep], allow_pickle=False)
        self.snapshot[keep].reset_index(drop=True).to_parquet(out_dir / "snapshot.parquet", index=False)
        for r, index in self.indexes.items():
            faiss.write_index(index, str(out_dir / (f"index.{r}.faiss" if r else "index.faiss")))
        m = self.manifest.model_copy(update={"n_items": int(keep.sum())})
        if version:
            m.version = version
        (out_dir / "manifest.json").write_text(m.model_dump_json(indent=2))
        return m

    @classmethod
    def load(cls, index_dir: Path) -> RetrievalIndex:
        """Load a folder written by ``save`` (numpy files read with ``allow_pickle=False``)."""
        faiss = _faiss()
        index_dir = Path(index_dir)
        manifest = IndexManifest(**json.loads((index_dir / "manifest.json").read_text()))
        cfg = IndexConfig(**manifest.config)
        indexes: dict[str, Any] = {"": faiss.read_index(str(index_dir / "index.faiss"))}
        for p in sorted(index_dir.glob("index.*.faiss")):
            indexes[p.name[len("index.") : -len(".faiss")]] = faiss.read_index(str(p))
        for index in indexes.values():
            if hasattr(index, "nprobe"):
                index.nprobe = cfg.nprobe
        return cls(np.load(index_dir / "ids.npy", allow_pickle=False),
                   np.load(index_dir / "embeddings.npy", allow_pickle=False),
                   pd.read_parquet(index_dir / "snapshot.parquet"), cfg, indexes, manifest)


def _top_k(sc: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores of a 1-d array, best first."""
    if len(sc) > k:
        part = np.argpartition(-sc, k - 1)[:k]
        return part[np.argsort(-sc[part], kind="stable")]
    return np.argsort(-sc, kind="stable")


def _pad(ids: np.ndarray, sc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, np.int64)
    sc = np.asarray(sc, np.float32).copy()
    sc[ids < 0] = -np.inf
    if ids.shape[1] < k:
        extra = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, extra)), constant_values=-np.inf)
    return ids, sc


def build_index(model_dir: Path, snapshot: pd.DataFrame | Path, out_dir: Path,
                cfg: IndexConfig | None = None, version: str | None = None) -> IndexManifest:
    """Embed every listing of ``snapshot`` with the item tower and write the index folder.

    Parameters
    ----------
    model_dir : ``train_all`` output (holding ``two_tower/``) or the ``two_tower`` folder.
    snapshot : listing snapshot frame (``models.inputs.listing_snapshot``) or a features folder.
    out_dir : receives the index folder (see module docstring).

    Returns
    -------
    IndexManifest (also written as ``manifest.json``).
    """
    from checkout_recs.models.inputs import listing_snapshot
    from checkout_recs.models.two_tower import TwoTowerModel
    from checkout_recs.storage import new_version

    model_dir = Path(model_dir)
    tt = TwoTowerModel.load(model_dir / "two_tower" if (model_dir / "two_tower").is_dir() else model_dir)
    if not isinstance(snapshot, pd.DataFrame):
        snapshot = listing_snapshot(Path(snapshot))
    snapshot = snapshot.drop_duplicates("listing_id").reset_index(drop=True)
    emb = tt.embed_items(snapshot)
    version = version or new_version("idx-")
    index = RetrievalIndex.from_embeddings(snapshot["listing_id"].to_numpy(), emb, snapshot, cfg,
                                           version=version, model_version=tt.cfg.version)
    return index.save(out_dir)


def publish_index(index_dir: Path, store_root: str, version: str | None = None) -> str:
    """Publish an index folder to the artifact store as kind ``index`` (atomic); returns the URI."""
    from checkout_recs.storage import open_store

    manifest = json.loads((Path(index_dir) / "manifest.json").read_text())
    return open_store(store_root).publish("index", version or manifest["version"], Path(index_dir))
