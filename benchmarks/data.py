"""Data benchmark: simulate and ingest throughput (rows/s) and peak RSS at 100k and 1M listings.

Each step runs in its own child process so that its peak RSS is its own. The baseline, measured
in the same run on the same files, is a plain parquet round trip (read every raw table, write it
back) — the I/O floor that ingest's validation adds to.

    .venv/bin/python benchmarks/data.py [--sizes 100000 1000000] [--out benchmarks/results/data.json]

Writes ``benchmarks/results/data.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
step, size, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
import pandas, pyarrow.parquet as pq  # imports are not timed
t0, c0 = time.perf_counter(), time.process_time()
if step == "simulate":
    from checkout_recs.simulate import SimConfig, run_simulation
    s = run_simulation(SimConfig(n_listings=size), work / "raw")
    rows = sum(s.rows.values())
elif step == "ingest":
    import datetime as dt
    from checkout_recs.data.ingest import ingest
    r = ingest(str(work / "raw"), work / "ingested", now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    rows = sum(t.read for t in r.tables.values())
    assert all(t.read == t.accepted + t.quarantined for t in r.tables.values())
else:  # baseline: parquet round trip of the same raw tables
    rows = 0
    for folder in sorted(p for p in (work / "raw").iterdir() if p.is_dir() and not p.name.startswith("_")):
        t = pq.read_table(folder)
        pq.write_table(t, work / f"copy-{folder.name}.parquet")
        rows += t.num_rows
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_step(step: str, size: int, work: Path) -> dict:
    """Run one step in a child process; returns rows, seconds, rows_per_s, peak_rss_mb."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, step, str(size), str(work)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["rows_per_s"] = res["rows"] / res["seconds"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="catalogue sizes (listings)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "data.json",
        help="JSON result file",
    )
    args = ap.parse_args()
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    results: dict[str, dict] = {}
    steps = [
        (size, step)
        for size in args.sizes
        for step in ("simulate", "ingest", "baseline_parquet_roundtrip")
    ]
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        for size, step in track(steps, description="data benchmark"):
            work = Path(tmp) / str(size)
            work.mkdir(exist_ok=True)
            results.setdefault(str(size), {})[step] = run_step(step, size, work)
    table = Table(
        "listings", "step", "rows", "wall s", "CPU s", "rows/s (wall)", "peak RSS MB", "vs baseline"
    )
    for size, steps_ in results.items():
        base = steps_["baseline_parquet_roundtrip"]["seconds"]
        for step, r in steps_.items():
            r["x_baseline_seconds"] = r["seconds"] / base
            table.add_row(
                size,
                step,
                f"{r['rows']:,}",
                f"{r['seconds']:.1f}",
                f"{r['cpu_seconds']:.1f}",
                f"{r['rows_per_s']:,.0f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['x_baseline_seconds']:.1f}x",
            )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "data",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": platform.platform(),
                "python": platform.python_version(),
                "baseline": "parquet read+write of the same raw tables, same run",
                "note": "seconds = wall clock of the step (imports excluded) on a shared machine; "
                "cpu_seconds = its process CPU time",
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
