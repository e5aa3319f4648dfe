"""The retrieval index's folder (format 2): what ``RetrievalIndex.save`` writes and ``load`` reads.

``shard.<i>.faiss`` (manifest ``shards[i]`` names its region), ``ids.npy`` (int64),
``embeddings.npy`` (float16, rows aligned with ``ids.npy``), ``snapshot.parquet`` (same order),
``categories.faiss`` + ``category_keys.npy`` (the category lists and their (category, region)
keys: read back at their exact size instead of re-encoded), ``manifest.json``. A format-1 folder (``index.faiss`` global + ``index.<region>.faiss``) still
loads: its region files become the shards (the global one when a region has no file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from checkout_recs.retrieval.index_build import IndexConfig, IndexManifest, faiss_module
from checkout_recs.retrieval.index_categories import CategoryLists
from checkout_recs.retrieval.index_ops import save_frame_rows, save_rows


def write_folder(
    out_dir: Path,
    ids: np.ndarray,
    vectors: np.ndarray,
    keep: np.ndarray,
    snapshot: pd.DataFrame | None,
    indexes: dict[str, Any],
    manifest: IndexManifest,
    categories: CategoryLists | None = None,
) -> None:
    """Write rows ``keep`` (int64, increasing) of ``ids`` (n,), float16 ``vectors`` (n, d) and
    ``snapshot``, every shard of ``indexes`` (in their order) and ``manifest``; shard files of an
    earlier save in ``out_dir`` are deleted first. ``snapshot`` None: ``snapshot.parquet`` was
    written already (every row kept; ``retrieval.snapshot_file``) and is left as it is."""
    faiss = faiss_module()
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "ids.npy", ids[keep], allow_pickle=False)
    save_rows(out_dir / "embeddings.npy", vectors, keep)
    if snapshot is None:
        if len(keep) != len(ids) or not (out_dir / "snapshot.parquet").exists():
            raise ValueError("snapshot.parquet must already hold every row when no frame is given")
    else:
        save_frame_rows(  # a block at a time: the whole frame is never copied to Arrow
            out_dir / "snapshot.parquet", snapshot, None if len(keep) == len(snapshot) else keep
        )
    for p in out_dir.glob("*.faiss"):
        p.unlink()
    for i, index in enumerate(indexes.values()):
        faiss.write_index(index, str(out_dir / f"shard.{i}.faiss"))
    keys = out_dir / "category_keys.npy"
    keys.unlink(missing_ok=True)
    if categories is not None:
        faiss.write_index(categories.index, str(out_dir / "categories.faiss"))
        np.save(keys, categories.keys_by_list, allow_pickle=False)
    (out_dir / "manifest.json").write_text(manifest.model_dump_json(indent=2))


def read_folder(
    index_dir: Path, snapshot: pd.DataFrame | None = None
) -> tuple[
    np.ndarray,
    np.ndarray,
    pd.DataFrame,
    IndexConfig,
    dict[str, Any],
    IndexManifest,
    CategoryLists | None,
]:
    """(ids int64 (n,), float16 embeddings (n, d) memory-mapped, snapshot, config, shards,
    manifest, category lists or None when the folder has none) of a folder; ``snapshot`` is
    used instead of the file when its ``listing_id`` column equals ``ids.npy``. The Arrow
    buffers of the parquet read are handed back to the system once converted."""
    faiss = faiss_module()
    manifest = IndexManifest(**json.loads((index_dir / "manifest.json").read_text()))
    cfg = IndexConfig(**manifest.config)
    indexes: dict[str, Any] = {}
    if manifest.shards:
        for i, key in enumerate(manifest.shards):
            indexes[key] = faiss.read_index(str(index_dir / f"shard.{i}.faiss"))
    else:
        files = {r: index_dir / f"index.{r}.faiss" for r in manifest.regions}
        if files and all(p.exists() for p in files.values()):
            indexes = {r: faiss.read_index(str(p)) for r, p in files.items()}
        else:
            indexes = {"": faiss.read_index(str(index_dir / "index.faiss"))}
    for index in indexes.values():
        if hasattr(index, "nprobe"):
            index.nprobe = cfg.nprobe
    ids = np.load(index_dir / "ids.npy", allow_pickle=False)
    if (
        snapshot is None
        or "listing_id" not in snapshot
        or not np.array_equal(snapshot["listing_id"].to_numpy(np.int64), ids)
    ):
        snapshot = pq.read_table(index_dir / "snapshot.parquet").to_pandas(self_destruct=True)
        pa.default_memory_pool().release_unused()
    emb = np.load(index_dir / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    cats = None
    if (index_dir / "categories.faiss").exists() and (index_dir / "category_keys.npy").exists():
        cats = CategoryLists.from_index(
            faiss.read_index(str(index_dir / "categories.faiss")),
            np.load(index_dir / "category_keys.npy", allow_pickle=False),
        )
    return ids, emb, snapshot, cfg, indexes, manifest, cats
