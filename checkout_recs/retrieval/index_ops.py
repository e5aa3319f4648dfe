"""Array helpers of the retrieval index: padding, merging, row-sliced writes, mapped reads
(the exact top-k of one query is ``index_store.best_first``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def pad(ids: np.ndarray, sc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS results (q, <=k) → ids int64 (q, k) with -1 padding, scores float32 with -inf."""
    ids = np.asarray(ids, np.int64)
    sc = np.asarray(sc, np.float32).copy()
    sc[ids < 0] = -np.inf
    if ids.shape[1] < k:
        extra = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, extra)), constant_values=-np.inf)
    return ids, sc


def top_per_query(ids: np.ndarray, sc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge exact results of several shards: per row of ids / scores (q, m), the k best
    (missing ids, -1, last; equal scores: earlier column first) → (q, min(k, m)) each."""
    sc = np.where(ids >= 0, sc, -np.inf).astype(np.float32)
    order = np.argsort(-sc, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, 1), np.take_along_axis(sc, order, 1)


def save_rows(path: Path, arr: np.ndarray, rows: np.ndarray, block: int = 1 << 20) -> None:
    """Write ``arr[rows]`` (rows int64, increasing) as an ``.npy`` file, ``block`` rows at a time
    (no copy of the whole selection in memory)."""
    shape = (len(rows), *arr.shape[1:])
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f,
            {
                "descr": np.lib.format.dtype_to_descr(arr.dtype),
                "fortran_order": False,
                "shape": shape,
            },
        )
        for a in range(0, len(rows), block):
            f.write(np.ascontiguousarray(arr[rows[a : a + block]]).tobytes())


def save_frame_rows(
    path: Path, frame: pd.DataFrame, rows: np.ndarray | None = None, block: int = 1 << 20
) -> None:
    """Write ``frame``'s rows ``rows`` (int64, increasing; None: all) as one parquet file,
    ``block`` rows converted to Arrow at a time (one block's copy in memory, not the frame's).

    The file reads back as ``frame.iloc[rows].reset_index(drop=True).to_parquet(path,
    index=False)`` would have written it: every column's Arrow type follows from its dtype, the
    schema (with its pandas metadata) is the selection's, and ``block`` (2^20) is pyarrow's
    default row-group size. A frame with an ``object`` column (its Arrow type is inferred from
    the values it holds) is written that way, whole.
    """
    import pyarrow as pa  # lazy: pyarrow is already loaded wherever a frame is written
    import pyarrow.parquet as pq

    if any(pd.api.types.is_object_dtype(t) for t in frame.dtypes):
        sel = frame if rows is None else frame.iloc[rows]
        sel.reset_index(drop=True).to_parquet(path, index=False)
        return
    n = len(frame) if rows is None else len(rows)
    schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:
        if n == 0:
            writer.write_table(schema.empty_table())
        for a in range(0, n, block):
            part = frame.iloc[a : a + block] if rows is None else frame.iloc[rows[a : a + block]]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


def concat_rows(base: pd.DataFrame, added: list[pd.DataFrame]) -> pd.DataFrame:
    """``base`` with the ``added`` frames' rows appended (index 0..n-1); a categorical column of
    ``base`` stays categorical (categories united) instead of turning into Python objects, and a
    numeric column keeps ``base``'s dtype (float32 stays float32)."""
    added = [
        f.astype(
            {
                c: base[c].dtype
                for c in f.columns
                if c in base
                and pd.api.types.is_numeric_dtype(base[c].dtype)
                and pd.api.types.is_numeric_dtype(f[c].dtype)
                and not f[c].isna().any()
            }
        )
        for f in added
    ]
    frames = [base, *added]
    for c in base.columns:
        if isinstance(base[c].dtype, pd.CategoricalDtype):
            cats = pd.Index(base[c].cat.categories)
            for f in added:
                if c in f:
                    cats = cats.union(pd.Index(pd.unique(f[c].dropna())), sort=False)
            dtype = pd.CategoricalDtype(cats)
            frames = [f.assign(**{c: f[c].astype(dtype)}) if c in f else f for f in frames]
    return pd.concat(frames, ignore_index=True)


class MappedRows:
    """Rows of an array in a file, each access through a short-lived memory map: once the map
    is dropped the pages read are page cache, not the process's resident memory (a map held
    while an index is built over 18M float32 vectors would add the whole 2.3 GB file to its
    RSS). Indexes like an ndarray of ``shape`` (a slice or an int array of rows gives a copy)."""

    def __init__(self, path: Path, dtype: Any, shape: tuple[int, ...], offset: int = 0) -> None:
        """``path``: raw C-order array of ``dtype`` and ``shape`` starting at byte ``offset``."""
        self.path, self.dtype, self.shape, self.offset = Path(path), np.dtype(dtype), shape, offset

    @classmethod
    def npy(cls, path: Path) -> MappedRows:
        """The rows of an ``.npy`` file (C order)."""
        m = np.load(path, mmap_mode="r", allow_pickle=False)
        return cls(path, m.dtype, m.shape, m.offset)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, idx: Any) -> np.ndarray:
        m = np.memmap(self.path, self.dtype, "r", self.offset, self.shape)
        out = np.array(m[idx])
        del m
        return out
