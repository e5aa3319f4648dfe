"""``snapshot.parquet`` written from blocks of a catalogue too large to hold as one frame.

``models.inputs.iter_listing_snapshot`` yields the listing snapshot a block at a time; a column
of a left join is float64 (an integer column) or object (a boolean one) only in the blocks where a
listing misses its joined row, while ``listing_snapshot``'s whole frame has that dtype in every
row. ``SnapshotParts`` writes each block to a part file as it comes, then writes the one file the
whole frame would have given: the parts' Arrow types unified (int64 + double → double, a
column that is all null in one part takes the others' type) and each part cast to them, with
the pandas metadata of the whole frame's dtypes. Read back (``pq.read_table(...).to_pandas()``)
it equals ``listing_snapshot(...)`` written with ``to_parquet`` (``tests/code/retrieval/
test_snapshot_file.py``). Memory: one block, then one part at a time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class SnapshotParts:
    """Collects blocks (``add``) in a scratch folder and writes them as one file (``finish``)."""

    def __init__(self, scratch: Path) -> None:
        """``scratch``: a folder for the part files (created; removed by ``finish``)."""
        self.scratch = Path(scratch)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        self._parts: list[Path] = []
        self._heads: list[pd.DataFrame] = []
        self.rows = 0

    def add(self, block: pd.DataFrame) -> None:
        """Write ``block`` (m rows, index ignored) as the next part; blocks must share columns."""
        if self._heads and list(block.columns) != list(self._heads[0].columns):
            raise ValueError("snapshot blocks must have the same columns in the same order")
        path = self.scratch / f"part-{len(self._parts):05d}.parquet"
        block.to_parquet(path, index=False)
        self._parts.append(path)
        self._heads.append(block.iloc[:1].reset_index(drop=True))
        self.rows += len(block)

    def whole_dtypes(self) -> pd.Series:
        """The dtype of each column in the blocks' concatenation (the whole frame's)."""
        heads = [h for h in self._heads if len(h)] or self._heads[:1]
        return pd.concat(heads, ignore_index=True).dtypes

    def finish(self, path: Path) -> int:
        """Write every part, in order, as one parquet file ``path`` (row groups of pyarrow's
        default 2^20 rows: a part of ``2^20`` rows is one); remove the scratch folder; returns
        the rows written. No block added: an empty file is not written (ValueError)."""
        if not self._parts:
            raise ValueError("no snapshot block was added")
        schemas = [pq.read_schema(p) for p in self._parts]
        types = pa.unify_schemas(
            [s.remove_metadata() for s in schemas], promote_options="permissive"
        )
        dtypes = self.whole_dtypes()
        meta = pa.Schema.from_pandas(
            pd.concat(self._heads, ignore_index=True).astype(dtypes), preserve_index=False
        ).metadata
        schema = types.with_metadata(meta)
        with pq.ParquetWriter(path, schema) as writer:
            for part in self._parts:
                writer.write_table(pq.read_table(part).cast(schema))
        shutil.rmtree(self.scratch, ignore_errors=True)
        return self.rows
