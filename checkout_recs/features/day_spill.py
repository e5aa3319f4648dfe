"""Per-snapshot feature columns spilled to disk, read back by ranges of entities.

The daily views are computed one snapshot at a time over every entity (a prior or a median needs
the whole catalogue of the day) but written one range of entities at a time (the tables are
sorted by entity, then time). ``DaySpill`` sits between the two: ``put`` stores a day's column of
every entity (float64, ``n`` values, 8 bytes each) as a ``.npy`` file, already in the write
order; ``block`` reads one range of entities of every day back as an ``(rows, D)`` array through
a read-only memory map, so only that range is loaded. Disk use: ``8 * n * D`` bytes per column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class DaySpill:
    """Columns ``name`` x day ``d`` of ``n`` entities in a folder (``<name>.<d>.npy``).

    Parameters
    ----------
    folder : Path
        Where the files go (the caller removes it, e.g. a ``TemporaryDirectory``).
    order : np.ndarray
        Shape ``(n,)``, int: the write order; ``put`` stores ``values[order]``, so ``block(a, b)``
        is rows ``order[a:b]`` of the computed columns.
    days : int
        ``D``, the number of snapshots.
    """

    def __init__(self, folder: Path, order: np.ndarray, days: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.order = np.asarray(order)
        self.days = days

    def _path(self, name: str, day: int) -> Path:
        return self.folder / f"{name}.{day}.npy"

    def put(self, name: str, day: int, values: np.ndarray) -> None:
        """Store column ``name`` of snapshot ``day``: ``values`` of shape ``(n,)``, float64."""
        np.save(self._path(name, day), np.asarray(values, dtype=np.float64)[self.order])

    def block(self, name: str, start: int, stop: int) -> np.ndarray:
        """Entities ``order[start:stop]`` of column ``name``: float64 ``(stop - start, D)``."""
        out = np.empty((stop - start, self.days), dtype=np.float64)
        for d in range(self.days):
            col = np.load(self._path(name, d), mmap_mode="r")
            out[:, d] = col[start:stop]
            del col  # unmaps the file: only this range was read
        return out
