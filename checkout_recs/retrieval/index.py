"""The retrieval index: FAISS shards over item-tower embeddings, aligned with an item snapshot.

Three parts, each sized for 18M listings (d = 32) on a 2-core, shared box:

* **ANN shards** (``index_build``): one FAISS index per region (IVF with 8-bit codes by default,
  exact below ``IndexConfig.exact_below``); a region's query reads its shard, a query without a
  region reads every shard and merges. The best ``rerank`` hits are re-scored exactly.
* **Row store** (``index_store``): per listing its id, alive flag, region, category and float16
  vector (the exact re-rank reads it); an id → row lookup.
* **Category lists** (``index_categories``): 8-bit codes grouped by (category, region). A
  category filter whose group holds at most ``selective_below`` listings scans that group and
  re-ranks exactly (a filter inside the ANN collapses recall); a larger one falls back to the
  ANN, post-filtered.

Listings are added and removed in place (``add`` / ``remove``, O(listings changed) apart from
FAISS's list scan on removal): nothing is retrained or rebuilt. A removed (sold) listing can never
be returned: it leaves every FAISS index and its row is marked dead.

``build_index`` embeds a listing snapshot with the trained item tower and writes the folder;
``publish_index`` publishes a folder to the artifact store.

Folder (``save``, format 2): ``shard.<i>.faiss`` (manifest ``shards[i]`` names its region),
``ids.npy`` (int64), ``embeddings.npy`` (float16, rows aligned with ``ids.npy``),
``snapshot.parquet`` (same order), ``manifest.json``. A format-1 folder (``index.faiss`` global +
``index.<region>.faiss``) still loads: its region files become the shards.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from checkout_recs.models.inputs import iter_listing_snapshot, listing_snapshot
from checkout_recs.retrieval.index_build import (
    IndexConfig,
    IndexManifest,
    build_faiss,
    faiss_bytes,
    faiss_module,
    flat_index,
    needs_rerank,
    region_codes,
)
from checkout_recs.retrieval.index_categories import CategoryLists
from checkout_recs.retrieval.index_io import read_folder, write_folder
from checkout_recs.retrieval.index_ops import MappedRows, concat_rows, pad, top_per_query
from checkout_recs.retrieval.index_store import RowStore
from checkout_recs.retrieval.snapshot_file import SnapshotParts
from checkout_recs.storage import new_version, open_store

_EMPTY = np.empty(0, np.int64)


class RetrievalIndex:
    """ANN shards + row store + category lists + snapshot (see module docstring)."""

    def __init__(
        self,
        ids: np.ndarray,
        emb: np.ndarray | MappedRows,
        snapshot: pd.DataFrame,
        cfg: IndexConfig,
        indexes: dict[str, Any],
        manifest: IndexManifest,
        categories: CategoryLists | None = None,
    ) -> None:
        """``ids`` int64 (n,), ``emb`` (n, d) float16/float32 (a memory map is copied once, as
        float16), ``snapshot`` aligned rows (shared, never modified in place), ``indexes`` shard
        key → FAISS index holding exactly the rows of that shard, ``categories`` the category
        lists of exactly these rows (read from a folder; None: built here)."""
        plain = (
            isinstance(snapshot.index, pd.RangeIndex)
            and snapshot.index.start == 0
            and snapshot.index.step == 1
        )
        self._snapshot = snapshot if plain else snapshot.reset_index(drop=True)
        self._pending: list[pd.DataFrame] = []  # rows added since: concatenated when read
        self.cfg = cfg
        self.indexes = indexes  # shard key (region, or "" for a one-shard catalogue) → FAISS
        self._needs_rerank = {k: needs_rerank(v) for k, v in indexes.items()}
        self.manifest = manifest
        self._region_names: list[str] = []
        codes = None
        if "region" in snapshot:
            codes, self._region_names = region_codes(snapshot["region"])
        self._region_code = {r: i for i, r in enumerate(self._region_names)}
        category = snapshot["category_id"].to_numpy() if "category_id" in snapshot else None
        self._store = RowStore(ids, emb, codes, category)
        self._cats = categories if categories is not None else self._category_lists()

    def _category_lists(self) -> CategoryLists | None:
        s = self._store
        if not s.has_category:
            return None
        return CategoryLists(
            s.vec.a, s.ids.a, s.category.a, s.region.a, s.alive.a, self.cfg.train_sample
        )

    # ------------------------------------------------------------------ row views
    @property
    def ids(self) -> np.ndarray:
        """int64 (n,) listing id of every row (removed rows included)."""
        return self._store.ids.a

    @property
    def alive(self) -> np.ndarray:
        """bool (n,): which rows can be returned (change only through add / remove)."""
        return self._store.alive.a

    @property
    def emb(self) -> np.ndarray:
        """float16 (n, d) vectors in row order (the store itself: do not modify)."""
        return self._store.vec.a

    @property
    def snapshot(self) -> pd.DataFrame:
        """The snapshot rows aligned with ``ids`` (added listings' rows appended)."""
        if self._pending:
            self._snapshot = concat_rows(self._snapshot, self._pending)
            self._pending = []
        return self._snapshot

    @property
    def live_ids(self) -> np.ndarray:
        """Ids of the listings that can be returned, int64 (n_live,)."""
        return self.ids[self.alive]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_embeddings(
        cls,
        ids: np.ndarray,
        emb: np.ndarray | MappedRows,
        snapshot: pd.DataFrame,
        cfg: IndexConfig | None = None,
        version: str = "adhoc",
        model_version: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> RetrievalIndex:
        """Build every shard for ``emb`` (n, d) float32 (or a memory map) with ids (n,) and the
        aligned ``snapshot``; ``progress`` receives a line per trained shard and added chunk."""
        cfg = cfg or IndexConfig()
        indexes, manifest = build_faiss(ids, emb, snapshot, cfg, version, model_version, progress)
        return cls(ids, emb, snapshot, cfg, indexes, manifest)

    # ------------------------------------------------------------------ search
    def search(
        self, queries: np.ndarray, k: int, region: str | None = None, category: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k listings by inner product.

        Parameters
        ----------
        queries : float32 (q, d) user-tower vectors.
        k : number of results per query.
        region : restrict to one region (None: every shard).
        category : restrict to one category; exact when the category is selective.

        Returns
        -------
        ids : int64 (q, k), -1 where fewer than k live items match.
        scores : float32 (q, k), inner products, -inf on padding.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        if category is not None:
            lists = self._group_lists(category, region)
            if self._cats is not None and self._cats.size(lists) <= self.cfg.selective_below:
                cand = [self._cats.search(v, [lists], self._n_cand(k))[0] for v in q]
                return self._exact_candidates(q, cand, k)
            # not selective: ANN, then keep the category's hits (region checked per row)
            key = region if region in self.indexes else None
            ids, sc = self._ann(q, max(4 * k, self.cfg.rerank), key)
            return self._filter(ids, sc, k, category, region)
        if region is not None and region not in self.indexes:
            rows = np.flatnonzero(self._region_mask(region) & self.alive)
            return self._exact_candidates(q, [self.ids[rows]] * len(q), k)
        return self._ann(q, k, region)

    def search_categories(
        self, query: np.ndarray, k: int, categories: list[int], region: str | None = None
    ) -> list[np.ndarray]:
        """Top-k live ids of each category for one query, the selective ones in one FAISS call.

        Same answer as ``search(query[None], k, region, category=c)`` per category with the -1
        padding dropped.

        Parameters
        ----------
        query : float32 (d,) or (1, d) user-tower vector.
        k : results per category.
        categories : category ids, in the order of the answer.
        region : restrict to one region (None: all).

        Returns
        -------
        One int64 (<= k,) array of listing ids per category, best first.
        """
        q = np.ascontiguousarray(np.atleast_2d(query)[:1], np.float32)
        out: list[np.ndarray] = [_EMPTY] * len(categories)
        slots, groups = [], []
        for i, c in enumerate(categories):
            lists = self._group_lists(c, region)
            if self._cats is not None and self._cats.size(lists) <= self.cfg.selective_below:
                slots.append(i)
                groups.append(lists)
            else:
                ids, _ = self.search(q, k, region, c)
                out[i] = ids[0][ids[0] >= 0]
        if slots and self._cats is not None:
            cand = self._cats.search(q[0], groups, self._n_cand(k))
            ids, _ = self._exact_candidates(np.repeat(q, len(slots), 0), list(cand), k)
            for j, i in enumerate(slots):
                out[i] = ids[j][ids[j] >= 0]
        return out

    def _n_cand(self, k: int) -> int:
        """8-bit category hits re-ranked exactly for a top-k (4k, at least 64)."""
        return max(4 * k, 64)

    def _group_lists(self, category: int, region: str | None) -> list[int]:
        if not self._store.has_category or self._cats is None:
            raise ValueError("category filter needs a category_id column in the snapshot")
        code = -1
        if region is not None and self._region_names:
            if region not in self._region_code:
                return []
            code = self._region_code[region]
        return self._cats.group_lists(category, code)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id (the newest row when an id was re-added), -1 if absent."""
        return self._store.lookup.rows(ids)

    def categories_of(self, ids: np.ndarray) -> np.ndarray:
        """Category of each id (int64, same shape), -1 for ids absent or without a category column."""
        r = self.rows_of(ids)
        if not self._store.has_category:
            return np.full(r.shape, -1, np.int64)
        return np.where(r >= 0, self._store.category.a[np.maximum(r, 0)], -1).astype(np.int64)

    def is_live(self, ids: np.ndarray) -> np.ndarray:
        """bool array: which ``ids`` can be returned (present and not removed)."""
        r = self.rows_of(ids)
        return (r >= 0) & self.alive[np.maximum(r, 0)]

    def category_rows(self, category: int, region: str | None = None) -> np.ndarray:
        """Live rows (int64) of one category, in one region or in all (None); scans every row."""
        if not self._store.has_category:
            raise ValueError("category filter needs a category_id column in the snapshot")
        m = (self._store.category.a == category) & self.alive
        if region is not None:
            m &= self._region_mask(region)
        return np.flatnonzero(m).astype(np.int64)

    def _region_mask(self, region: str) -> np.ndarray:
        if not self._region_names:
            return np.ones(self._store.n, bool)
        return self._store.region.a == self._region_code.get(region, -2)

    def _exact_candidates(
        self, q: np.ndarray, cand: list[np.ndarray], k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query i, the exact top-k of the live listings among ids ``cand[i]``, scored from
        the store (equal scores: lower row first) → ids int64 (q, k), scores float32 (q, k)."""
        out_i = np.full((len(q), k), -1, np.int64)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        for i in range(len(q)):
            c = np.asarray(cand[i], np.int64)
            rows = np.sort(self._store.live_rows(c[c >= 0]))  # distinct: one list holds an id
            if len(rows) == 0:
                continue
            best, sc = self._store.best(rows, q[i], k)
            out_i[i, : len(best)], out_s[i, : len(best)] = self.ids[best], sc
        return out_i, out_s

    def _ann(self, q: np.ndarray, k: int, region: str | None) -> tuple[np.ndarray, np.ndarray]:
        keys = [region] if region is not None and region in self.indexes else list(self.indexes)
        rerank = any(self._needs_rerank[key] for key in keys)
        width = max(k, self.cfg.rerank) if rerank else k
        found = [self.indexes[key].search(q, width) for key in keys]
        ids = np.concatenate([i for _, i in found], axis=1)
        if rerank:
            return self._exact_candidates(q, list(ids), k)
        sc = np.concatenate([s for s, _ in found], axis=1)
        if len(found) > 1:
            ids, sc = top_per_query(ids, sc, k)
        return pad(ids, sc, k)

    def _filter(
        self, ids: np.ndarray, sc: np.ndarray, k: int, category: int, region: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rows_of(ids)
        r0 = np.maximum(rows, 0)
        ok = (rows >= 0) & (self._store.category.a[r0] == category)
        if region is not None and self._region_names:
            ok &= self._store.region.a[r0] == self._region_code.get(region, -2)
        out_i = np.full((len(ids), k), -1, np.int64)
        out_s = np.full((len(ids), k), -np.inf, np.float32)
        for i in range(len(ids)):
            sel = np.flatnonzero(ok[i])[:k]
            out_i[i, : len(sel)], out_s[i, : len(sel)] = ids[i, sel], sc[i, sel]
        return out_i, out_s

    # ------------------------------------------------------------------ updates
    def add(self, ids: np.ndarray, emb: np.ndarray, snapshot_rows: pd.DataFrame) -> None:
        """Add new listings (ids (m,), emb (m, d), their snapshot rows) without a rebuild.

        An id already present is replaced. A listing of a region without a shard gets a new
        exact shard. Raises ValueError on mismatched lengths.
        """
        ids = np.asarray(ids, np.int64)
        if not (len(ids) == len(emb) == len(snapshot_rows)):
            raise ValueError("add: ids, embeddings and snapshot rows must have the same length")
        if len(ids) == 0:
            return
        self.remove(ids[self.is_live(ids)])
        emb32 = np.ascontiguousarray(emb, np.float32)
        names = (
            snapshot_rows["region"].astype(str).to_numpy()
            if "region" in snapshot_rows and self._region_names
            else np.full(len(ids), "", object)
        )
        for r in dict.fromkeys(names.tolist()):
            if self._region_names and r not in self._region_code:
                self._region_code[r] = len(self._region_names)
                self._region_names.append(r)
        codes = np.array([self._region_code.get(r, 0) for r in names], np.int16)
        cat = (
            snapshot_rows["category_id"].to_numpy(np.int32)
            if self._store.has_category
            else np.zeros(len(ids), np.int32)
        )
        self._store.append(ids, emb32, codes, cat)
        one_shard = list(self.indexes) == [""]
        for r in dict.fromkeys(names.tolist()):
            key, m = ("" if one_shard else r), (names == r)
            if key in self.indexes:
                self.indexes[key].add_with_ids(emb32[m], ids[m])
            else:
                self.indexes[key] = flat_index(emb32[m], ids[m])
                self._needs_rerank[key] = False
        if self._cats is not None and not self._cats.add(emb32, ids, cat, codes):
            self._cats = self._category_lists()  # new groups beyond the headroom
        self._pending.append(snapshot_rows.reset_index(drop=True))

    def remove(self, ids: np.ndarray) -> int:
        """Remove listings (sold, delisted) from every index; returns how many were live."""
        ids = np.unique(np.asarray(ids, np.int64))
        rows = self.rows_of(ids)
        live = (rows >= 0) & self.alive[np.maximum(rows, 0)]
        if not live.any():
            return 0
        gone, rows = ids[live], rows[live]
        sel = faiss_module().IDSelectorBatch(gone)
        one_shard = list(self.indexes) == [""]
        regions = self._store.region.a[rows]
        for key, index in self.indexes.items():
            if one_shard or (
                key in self._region_code and (regions == self._region_code[key]).any()
            ):
                index.remove_ids(sel)
        if self._cats is not None:
            self._cats.remove(gone)
        self._store.alive.a[rows] = False
        return int(live.sum())

    # ------------------------------------------------------------------ size and persistence
    def memory_bytes(self) -> dict[str, int]:
        """Bytes held in memory by part: ``faiss`` (ANN shards), ``store`` (row arrays, float16
        vectors, id lookup), ``categories`` (category lists), ``snapshot`` (the frame, deep)."""
        return {
            "faiss": sum(faiss_bytes(ix) for ix in self.indexes.values()),
            "store": self._store.nbytes,
            "categories": self._cats.nbytes if self._cats is not None else 0,
            "snapshot": int(self.snapshot.memory_usage(deep=True).sum()),
        }

    def save(
        self, out_dir: Path, version: str | None = None, snapshot_written: bool = False
    ) -> IndexManifest:
        """Write the folder (format 2), compacting removed rows out of the store and snapshot.

        ``snapshot_written``: ``out_dir/snapshot.parquet`` already holds the full snapshot of
        every row (``build_index`` streamed it; ``self.snapshot`` keeps only the index's own
        columns); it is kept, not rewritten. Nothing may have been removed."""
        keep = np.flatnonzero(self.alive)
        regions = {}
        if self._region_names:
            counts = np.bincount(self._store.region.a[keep], minlength=len(self._region_names))
            regions = {r: int(c) for r, c in zip(self._region_names, counts, strict=True) if c}
        m = self.manifest.model_copy(
            update={
                "n_items": len(keep),
                "shards": list(self.indexes),
                "regions": dict(sorted(regions.items())),
                "format": 2,
            }
        )
        if version:
            m.version = version
        write_folder(
            Path(out_dir),
            self.ids,
            self._store.vec.a,
            keep,
            None if snapshot_written else self.snapshot,
            self.indexes,
            m,
            self._cats if self._store.has_category else None,
        )
        return m

    @classmethod
    def load(cls, index_dir: Path, snapshot: pd.DataFrame | None = None) -> RetrievalIndex:
        """Load a folder written by ``save`` (numpy files read with ``allow_pickle=False``).

        ``snapshot``: the folder's ``snapshot.parquet`` already read by the caller (serving's
        catalogue), shared instead of read twice (~260 MB at 1M listings); used only when its
        ``listing_id`` column equals ``ids.npy``, else the file is read.
        """
        return cls(*read_folder(Path(index_dir), snapshot))


#: Listings per snapshot block of a build from a features folder: a multiple of the item tower's
#: batch (65,536), so every listing is embedded in the batch the whole frame puts it in.
SNAPSHOT_BLOCK_ROWS = 1 << 20


def build_index(
    model_dir: Path,
    snapshot: pd.DataFrame | Path,
    out_dir: Path,
    cfg: IndexConfig | None = None,
    version: str | None = None,
    labels_dir: Path | None = None,
) -> IndexManifest:
    """Embed every listing of ``snapshot`` with the item tower and write the index folder.

    Parameters
    ----------
    model_dir : ``train_all`` output (holding ``two_tower/``) or the ``two_tower`` folder.
    snapshot : listing snapshot frame (``models.inputs.listing_snapshot``), or a features folder:
        then the snapshot is read a block of 2^20 listings at a time
        (``models.inputs.iter_listing_snapshot``, content found next to it or ``labels_dir``),
        each block embedded and written to ``snapshot.parquet`` as it comes, and only the
        index's columns (``listing_id, region, category_id, snapshot_time``) and the float32
        embeddings (a scratch file in ``out_dir``, read through short-lived maps:
        ``index_ops.MappedRows``) are kept for the build. Same folder either way.
    out_dir : receives the index folder (see module docstring).

    Returns
    -------
    IndexManifest (also written as ``manifest.json``).
    """
    from checkout_recs.models.two_tower import (
        TwoTowerModel,
    )  # lazy: keeps torch out of this module's import

    model_dir = Path(model_dir)
    tt = TwoTowerModel.load(
        model_dir / "two_tower" if (model_dir / "two_tower").is_dir() else model_dir
    )
    version = version or new_version("idx-")
    if isinstance(snapshot, pd.DataFrame):
        return _build_from_frame(tt, snapshot, Path(out_dir), cfg, version)
    out_dir = Path(out_dir)
    try:
        manifest = _build_streamed(tt, Path(snapshot), labels_dir, out_dir, cfg, version)
    finally:  # the scratch files never stay in the folder, whatever happened
        (out_dir / ".embeddings.f32").unlink(missing_ok=True)
        shutil.rmtree(out_dir / ".snapshot-parts", ignore_errors=True)
    if manifest is None:  # no listing: the frame path writes the empty folder
        empty = listing_snapshot(Path(snapshot), labels_dir=labels_dir)
        return _build_from_frame(tt, empty, out_dir, cfg, version)
    return manifest


def _build_from_frame(
    tt: Any, snapshot: pd.DataFrame, out_dir: Path, cfg: IndexConfig | None, version: str
) -> IndexManifest:
    """``build_index`` over a snapshot frame held whole."""
    snapshot = snapshot.drop_duplicates("listing_id").reset_index(drop=True)
    emb = tt.embed_items(snapshot)
    index = RetrievalIndex.from_embeddings(
        snapshot["listing_id"].to_numpy(),
        emb,
        snapshot,
        cfg,
        version=version,
        model_version=tt.cfg.version,
    )
    del emb  # the row store holds its float16 copy: free the float32 one before writing
    return index.save(out_dir)


def _build_streamed(
    tt: Any,
    features_dir: Path,
    labels_dir: Path | None,
    out_dir: Path,
    cfg: IndexConfig | None,
    version: str,
) -> IndexManifest | None:
    """``build_index`` over a features folder, the snapshot a block at a time (see there); None
    when the listing view holds no listing (nothing written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = SnapshotParts(out_dir / ".snapshot-parts")
    scratch = out_dir / ".embeddings.f32"
    slim: list[pd.DataFrame] = []
    regions: dict[str, int] = {}
    with open(scratch, "wb") as f:
        blocks = iter_listing_snapshot(
            features_dir, labels_dir=labels_dir, block_rows=SNAPSHOT_BLOCK_ROWS
        )
        for block in blocks:
            f.write(np.ascontiguousarray(tt.embed_items(block), np.float32).tobytes())
            slim.append(_index_columns(block, regions))
            parts.add(block)
            del block
    n = parts.rows
    if n == 0:
        return None
    parts.finish(out_dir / "snapshot.parquet")
    keys = pd.concat(slim, ignore_index=True)  # n > 0: at least one block
    del slim
    if "region" in keys:
        keys["region"] = pd.Categorical.from_codes(keys["region"], list(regions))
    emb = MappedRows(scratch, np.float32, (n, tt.dim))  # read a shard / block at a time
    index = RetrievalIndex.from_embeddings(
        keys["listing_id"].to_numpy(np.int64),
        emb,
        keys,
        cfg,
        version=version,
        model_version=tt.cfg.version,
    )
    del emb
    return index.save(out_dir, snapshot_written=True)


def _index_columns(block: pd.DataFrame, regions: dict[str, int]) -> pd.DataFrame:
    """The columns of a snapshot block the index is built from: ``listing_id``, ``region`` as
    int32 codes into ``regions`` (names in order of first appearance across blocks, grown in
    place: ``pd.factorize`` of the whole column as text), ``category_id``, ``snapshot_time``."""
    out = pd.DataFrame({"listing_id": block["listing_id"].to_numpy(np.int64)})
    if "region" in block:
        text = block["region"].astype(str)
        for r in text.drop_duplicates():
            regions.setdefault(r, len(regions))
        out["region"] = text.map(regions).to_numpy(np.int32)
    for col in ("category_id", "snapshot_time"):
        if col in block:
            out[col] = block[col].to_numpy(copy=True) if col == "category_id" else block[col]
    return out


def publish_index(index_dir: Path, store_root: str, version: str | None = None) -> str:
    """Publish an index folder to the artifact store as kind ``index`` (atomic); returns the URI."""

    manifest = json.loads((Path(index_dir) / "manifest.json").read_text())
    return open_store(store_root).publish("index", version or manifest["version"], Path(index_dir))
