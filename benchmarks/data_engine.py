"""Out-of-core engine benchmark: the labelling of impressions, whole-table pandas vs the engine.

Each catalogue size (default 1M listings; traffic from ``scale_steps.TrafficModel``: at 1M,
420k impressions and 100k users) is simulated and ingested once into ``--work/<size>`` (reused
when present). Then each runner labels the same ingested folder in its own child process, run under
``/usr/bin/time -v``:

* ``pandas``: ``read_validated`` of impressions, clicks, purchases and listings (whole tables,
  as ``build_labels`` reads them), ``labels.label_impressions``, one parquet file;
* ``local``: ``engine.run_step(label_step())``, the in-process streaming runner;
* ``ray``: the same on an embedded local Ray (2 CPUs, 512 MB object store).

Reported per runner: wall seconds (``time -v``, the child's start and imports included), the
child's peak RSS (``time -v``: the driver only), and the peak summed RSS of the process tree
sampled every 0.2 s with psutil (Ray's GCS, raylet and workers are children of the driver; shared
object-store pages count once per process, so this is an upper bound). The outputs are compared
(sorted by request and slot): ``identical`` must be true.

    .venv/bin/python benchmarks/data_engine.py [--listings 1000000 5000000] [--buckets 16]

Writes ``benchmarks/results/data_engine.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.scale_steps import TrafficModel  # noqa: E402 - the repository root first

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

CHILD = r"""
import json, sys, time
from pathlib import Path
runner, ingested, out, buckets = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
import pyarrow as pa, pyarrow.parquet as pq
from checkout_recs import contract
from checkout_recs.data.engine import EngineConfig, label_step, run_step
from checkout_recs.data.ingest import read_validated
from checkout_recs.data.labels import label_impressions
t0 = time.perf_counter()
if runner == "pandas":
    t = {n: read_validated(Path(ingested), n)
         for n in ("impressions", "clicks", "purchases", "listings")}
    lab = label_impressions(t["impressions"], t["clicks"], t["purchases"], t["listings"], 86_400)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(lab, schema=contract.LABELLED_IMPRESSIONS, preserve_index=False)
    pq.write_table(table, out / "part-00000.parquet")
    rows = table.num_rows
else:
    cfg = EngineConfig(runner=runner, buckets=buckets, num_cpus=2, object_store_mb=512)
    rows = run_step(label_step(), ingested, out, cfg).rows
print(json.dumps({"rows": rows, "step_seconds": time.perf_counter() - t0}))
"""


def prepare(listings: int, work: Path) -> dict:
    """Simulate and ingest ``listings``' traffic into ``work`` once; the traffic figures."""
    from checkout_recs.data.ingest import ingest
    from checkout_recs.simulate import SimConfig, run_simulation

    t = TrafficModel().for_listings(listings)
    if not (work / "ingested" / "ingest_report.json").exists():
        cfg = SimConfig(
            seed=7,
            n_listings=t["listings"],
            n_users=t["users"],
            n_sellers=t["sellers"],
            days=t["days"],
            checkouts_per_day=t["checkouts_per_day"],
        )
        run_simulation(cfg, work / "raw")
        ingest(str(work / "raw"), work / "ingested", now=NOW)
    return t


def _tree_rss(proc: psutil.Process) -> int:
    """Summed RSS (bytes) of ``proc`` and its descendants; 0 for those already gone."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def measure(runner: str, ingested: Path, out: Path, buckets: int) -> dict:
    """One runner in a child under ``/usr/bin/time -v``: wall, peak RSS, peak tree RSS, rows."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", CHILD, runner]
    proc = subprocess.Popen(
        [*cmd, str(ingested), str(out), str(buckets)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak, root = [0], psutil.Process(proc.pid)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(root))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{runner} failed:\n{stderr[-3000:]}")
    res = json.loads(stdout.strip().splitlines()[-1])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr)
    parts = [float(x) for x in wall.group(1).split(":")]
    return {
        "rows": res["rows"],
        "wall_s": round(sum(v * 60**i for i, v in enumerate(reversed(parts))), 2),
        "step_s": round(res["step_seconds"], 2),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "peak_tree_rss_mb": round(peak[0] / 2**20, 1),
    }


def identical(outs: dict[str, Path]) -> bool:
    """Whether every runner's output has the same rows (sorted by request and slot)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from checkout_recs import contract

    frames = [
        pq.read_table(p, schema=contract.LABELLED_IMPRESSIONS)
        .to_pandas()
        .sort_values(["request_id", "slot"])
        .reset_index(drop=True)
        for p in outs.values()
    ]
    for f in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], f)
    return True


def main() -> None:
    """Prepare, measure each runner, compare, write the JSON (one entry per catalogue size)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--listings", type=int, nargs="+", default=[1_000_000], help="catalogue sizes")
    ap.add_argument("--buckets", type=int, default=16, help="engine partitions")
    ap.add_argument("--runners", nargs="+", default=["pandas", "local", "ray"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/checkout-recs-data-engine"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/data_engine.json")
    args = ap.parse_args()
    sizes = {}
    for n in args.listings:
        work = args.work / str(n)
        traffic = prepare(n, work)
        outs = {r: work / f"out-{r}" for r in args.runners}
        load = round(psutil.getloadavg()[0], 2)
        results = {r: measure(r, work / "ingested", outs[r], args.buckets) for r in args.runners}
        sizes[str(n)] = {
            "traffic": traffic,
            "load_1m_before": load,
            "identical": identical(outs),
            "results": results,
        }
        for r, v in results.items():
            print(f"{n:>9} {r:7s} {v}", flush=True)
    report = {
        "benchmark": "data_engine",
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": platform.platform(),
        "cpus": psutil.cpu_count(),
        "command": " ".join([".venv/bin/python benchmarks/data_engine.py", *sys.argv[1:]]),
        "step": "labelling of impressions (contract.LABELLED_IMPRESSIONS)",
        "buckets": args.buckets,
        "note": (
            "wall_s: /usr/bin/time -v of the child (start and imports included); step_s: the "
            "step itself; peak_rss_mb: time -v's maximum RSS of the child (the driver); "
            "peak_tree_rss_mb: summed RSS of the child's process tree sampled every 0.2 s "
            "(Ray's GCS, raylet, workers; shared pages counted per process). Shared 2-core box; "
            "identical: the runners' outputs have the same rows (sorted by request and slot)."
        ),
        "sizes": sizes,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
