"""The logs of a run's pre-period only: what a team could train on before an experiment starts.

``pre_period_raw(raw_dir, out_dir, days)`` copies a simulated run's raw folder keeping the rows
dated before ``start + days``: events (orders, impressions, clicks, purchases, inventory events)
by ``event_timestamp``, listings by ``listed_at``; seller and user profiles are kept whole (no
outcome in them). ``manifest.json`` and ``_truth/`` are copied unchanged, so
``SimWorld.from_raw(out_dir)`` is still the full world of the run.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from checkout_recs import contract

#: Table -> the timestamp column that dates its rows (tables not listed are copied whole).
DATED = {
    "orders": "event_timestamp",
    "impressions": "event_timestamp",
    "clicks": "event_timestamp",
    "purchases": "event_timestamp",
    "inventory_events": "event_timestamp",
    "listings": "listed_at",
}


def pre_period_raw(raw_dir: Path, out_dir: Path, days: int) -> dict[str, int]:
    """Copy ``raw_dir`` to ``out_dir`` keeping rows dated before the run's start + ``days`` days.

    Returns rows kept per table. Raises ``FileNotFoundError`` without ``manifest.json``.
    """
    raw, out = Path(raw_dir), Path(out_dir)
    manifest = json.loads((raw / "manifest.json").read_text())
    cutoff = dt.datetime.fromisoformat(manifest["config"]["start"]) + dt.timedelta(days=days)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(raw / "manifest.json", out / "manifest.json")
    if (raw / "_truth").exists():
        shutil.copytree(raw / "_truth", out / "_truth", dirs_exist_ok=True)
    kept: dict[str, int] = {}
    for name, schema in contract.RAW_TABLES.items():
        if not (raw / name).exists():
            continue
        table = ds.dataset(raw / name, format="parquet", schema=schema).to_table()
        if name in DATED:
            table = table.filter(pc.less(table[DATED[name]], cutoff))
        (out / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / name / "part-00000.parquet")
        kept[name] = table.num_rows
    return kept
