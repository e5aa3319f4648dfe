"""The retrieval index at scale → ``benchmarks/results/faiss_<size>.json`` and ``.html``.

    taskset -c 0 python benchmarks/faiss_scale.py --listings 1000000 --work /tmp/faiss1m
    taskset -c 0 python benchmarks/faiss_scale.py --listings 18000000 --work /tmp/faiss18m

(``taskset -c 0``: the benchmark on a core of its own, other jobs on the other one; ``--config``
benchmarks other ``IndexConfig`` fields, e.g. the earlier ``'{"nlist_factor": 1, "nprobe": 48,
"rerank": 500, "train_per_list": 4}'``, into ``--out``; the file of record keeps the runs it
replaces under ``previous_runs``.)

Inputs (``benchmarks/retrieval_scale.py``): the demo simulation's trained item tower, a catalogue
of ``--listings`` (the demo's 5,000 + simulator-drawn listings, embedded chunk by chunk; reused
from ``--work`` when present) and ``--queries`` user-tower vectors of demo users with their region.
Every query is answered as served: in its own region's shard (``RetrievalIndex.search(q, 300,
region)``), one query at a time on one thread.

Per size: build wall and CPU seconds (shards + row store + category lists, 2 threads), peak RSS,
the index + snapshot bytes in memory (by part, and the RSS a fresh process adds when loading the
saved folder), recall@300 against exact float32 search per region (an nprobe sweep and the
configured one), single-query latency p50/p95/p99, the query without a region (all shards
merged), exact category search, add and remove of 10,000 listings (wall, recall afterwards, sold
listings returned). The 1-min load average is recorded next to every timed step: the 2-core box
is shared, so wall times move with other jobs; CPU seconds and recalls do not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from benchmarks import retrieval_scale as rs  # noqa: E402
from benchmarks.faiss_report import report, targets  # noqa: E402
from checkout_recs.retrieval.index_ops import MappedRows  # noqa: E402

K = 300
CHANGED = 10_000


def _progress(msg: str) -> None:
    print(f"[bench faiss {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def label(n: int) -> str:
    """``1m`` for 1,000,000 listings, ``18m`` for 18,000,000, else the count."""
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else str(n)


def region_codes(snap: Any) -> tuple[np.ndarray, dict[str, int]]:
    """int codes (n,) of the catalogue's categorical region column and name → code."""
    col = snap["region"].astype("category")
    return col.cat.codes.to_numpy(), {str(c): i for i, c in enumerate(col.cat.categories)}


def exact_top(emb: Any, rows: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    """Row numbers (q, k) of the exact top-k inner products of ``q`` over float32 ``emb[rows]``."""
    return exact_scored(emb, rows, q, k)[0]


def exact_scored(
    emb: Any, rows: np.ndarray, q: np.ndarray, k: int = K, block: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """``exact_top`` with its scores: rows int64 (q, k), inner products float32 (q, k); ``rows``
    are scored ``block`` at a time (float32 copies of at most 256 MB at d = 32)."""
    import faiss

    q = np.ascontiguousarray(q, np.float32)
    best_r = np.empty((len(q), 0), np.int64)
    best_s = np.empty((len(q), 0), np.float32)
    for a in range(0, len(rows), block):
        part = rows[a : a + block]
        x = np.ascontiguousarray(emb[part], np.float32)
        sc, top = faiss.knn(q, x, min(k, len(part)), metric=faiss.METRIC_INNER_PRODUCT)
        best_r = np.concatenate([best_r, part[top]], 1)
        best_s = np.concatenate([best_s, sc], 1)
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_r = np.take_along_axis(best_r, order, 1)
        best_s = np.take_along_axis(best_s, order, 1)
    return best_r, best_s


def _recall(got: Any, ref: Any) -> float:
    return float(
        np.mean([len(np.intersect1d(g, r)) / len(r) for g, r in zip(got, ref, strict=True)])
    )


def _pcts(times: list[float]) -> dict[str, float]:
    t = np.asarray(times) * 1e3
    return {f"p{p}_ms": float(np.percentile(t, p)) for p in (50, 95, 99)}


def timed_searches(
    index: Any, q: np.ndarray, regions: list[str | None], passes: int = 3
) -> tuple[np.ndarray, dict]:
    """Every query alone, one thread, ``passes`` times → ids (q, K) and latency percentiles."""
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    times, out = [], np.empty((len(q), K), np.int64)
    with threadpool_limits(1):
        for _ in range(passes):
            for i in range(len(q)):
                t = time.perf_counter()
                ids, _ = index.search(q[i : i + 1], K, region=regions[i])
                times.append(time.perf_counter() - t)
                out[i] = ids[0]
    faiss.omp_set_num_threads(2)
    return out, _pcts(times) | {"load_1m": _load()}


def set_nprobe(index: Any, nprobe: int) -> None:
    """Set ``nprobe`` on every IVF shard."""
    for ix in index.indexes.values():
        if hasattr(ix, "nprobe"):
            ix.nprobe = nprobe


def loaded_rss(index_dir: Path) -> dict[str, int]:
    """RSS a fresh process adds by ``RetrievalIndex.load(index_dir)``, and its ``memory_bytes``."""
    code = (
        "import json,re,sys; from pathlib import Path; import faiss, numpy, pandas, pyarrow\n"
        "from checkout_recs.retrieval.index import RetrievalIndex\n"
        "rss=lambda: int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))*1024\n"
        "a=rss(); ix=RetrievalIndex.load(Path(sys.argv[1])); b=rss()\n"
        "print(json.dumps({'rss_added': b-a, **ix.memory_bytes()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(index_dir)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(
    n: int,
    work: Path,
    n_queries: int,
    nprobes: tuple[int, ...],
    out: dict,
    config: dict | None = None,
) -> dict:
    """Fill ``out`` with every figure of the module docstring for an ``n``-listing catalogue;
    ``config``: ``IndexConfig`` fields that differ from the shipped defaults (None: the defaults)."""
    import faiss

    from checkout_recs.retrieval.index import RetrievalIndex
    from checkout_recs.retrieval.index_build import IndexConfig

    faiss.omp_set_num_threads(2)
    t = time.perf_counter()
    paths = rs.demo_tower(work / "tower")
    cat_dir = work / f"catalogue_{label(n)}"
    cached = (cat_dir / "embeddings.npy").exists()
    t = time.perf_counter()
    c0 = time.process_time()
    snap, mapped = rs.embedded_catalogue(paths, n, cat_dir)
    del mapped
    emb = MappedRows.npy(cat_dir / "embeddings.npy")
    out["catalogue"] = {
        "rows": len(snap),
        "dim": int(emb.shape[1]),
        "reused_from_work": cached,
        "wall_s": time.perf_counter() - t,
        "cpu_s": time.process_time() - c0,
        "load_1m_end": _load(),
        "columns": list(snap.columns),
    }
    _progress(f"catalogue {len(snap):,} x {emb.shape[1]} ({'reused' if cached else 'generated'})")
    reqs = rs.user_requests(paths["model"], paths["features"], n_queries)
    q = np.stack([r["vector"] for r in reqs]).astype(np.float32)
    qreg = [str(r["region"]) for r in reqs]
    ids_all = snap["listing_id"].to_numpy(np.int64)
    reg, code = region_codes(snap)
    cfg = IndexConfig(**(config or {}))
    out["config"] = cfg.model_dump()
    out["nlist_rule"] = (
        f"per shard {cfg.nlist}"
        if cfg.nlist
        else f"per shard {cfg.nlist_factor:g} * sqrt(listings in the shard)"
    )

    gc.collect()
    rss0, load0, t, c0 = _peak_rss(), _load(), time.perf_counter(), time.process_time()
    index = RetrievalIndex.from_embeddings(ids_all, emb, snap, cfg, progress=_progress)  # type: ignore[arg-type]  # rows read like an array
    out["build"] = {
        "wall_s": time.perf_counter() - t,
        "cpu_s": time.process_time() - c0,
        "threads": 2,
        "load_1m_start_end": [load0, _load()],
        "peak_rss_before_bytes": rss0,
        "peak_rss_after_bytes": _peak_rss(),
        "shards": {k: int(ix.ntotal) for k, ix in index.indexes.items()},
        "nlist": {k: int(getattr(ix, "nlist", 0)) for k, ix in index.indexes.items()},
    }
    _progress(f"build {out['build']['wall_s']:.0f}s wall, {out['build']['cpu_s']:.0f} CPU-s")
    out["memory_bytes"] = index.memory_bytes()
    _progress(
        f"memory by part (GB): { {k: round(v / 1e9, 2) for k, v in out['memory_bytes'].items()} }"
    )

    t = time.perf_counter()
    ref = np.empty((len(q), K), np.int64)
    region_rows = {r: np.flatnonzero(reg == code[r]) for r in sorted(set(qreg))}
    for r, rows in region_rows.items():
        sel = [i for i, x in enumerate(qreg) if x == r]
        ref[sel] = ids_all[exact_top(emb, rows, q[sel])]
    ref_global = ids_all[exact_top(emb, np.arange(len(ids_all)), q)]
    out["exact_reference_s"] = time.perf_counter() - t
    _progress(f"exact references {out['exact_reference_s']:.0f}s")

    sweep = []
    for nprobe in nprobes:
        set_nprobe(index, nprobe)
        got, lat = timed_searches(index, q, list(qreg))
        sweep.append({"nprobe": nprobe, f"recall@{K}": _recall(got, ref)} | lat)
        _progress(f"  nprobe {nprobe}: {sweep[-1]}")
    out["sweep_region"] = sweep
    set_nprobe(index, cfg.nprobe)
    got, lat = timed_searches(index, q, list(qreg))
    out["at_config"] = {"nprobe": cfg.nprobe, f"recall@{K}": _recall(got, ref)} | lat
    out["at_config"]["per_region"] = {
        r: _recall(
            got[[i for i, x in enumerate(qreg) if x == r]],
            ref[[i for i, x in enumerate(qreg) if x == r]],
        )
        for r in region_rows
    }
    _progress(f"at config: {out['at_config']}")
    got, lat = timed_searches(index, q, [None] * len(q), passes=1)
    out["no_region"] = {f"recall@{K}": _recall(got, ref_global)} | lat
    out["category"] = _bench_category(index, snap, emb, q, qreg)
    _progress(f"category: {out['category']}")
    out["candidates"] = _bench_candidates(index, paths)
    _progress(f"candidates: {out['candidates']}")
    out["add_remove"] = _bench_add_remove(index, paths, emb, snap, q, qreg, ref)
    _progress(f"add/remove: {out['add_remove']}")

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        t = time.perf_counter()
        index.save(Path(tmp))
        out["save_s"] = time.perf_counter() - t
        out["disk_bytes"] = {p.name: p.stat().st_size for p in sorted(Path(tmp).iterdir())}
        del index
        gc.collect()
        t = time.perf_counter()
        out["loaded"] = loaded_rss(Path(tmp)) | {"load_s": time.perf_counter() - t}
    out["loaded"]["index_plus_snapshot_bytes"] = sum(
        out["loaded"][k] for k in ("faiss", "store", "categories", "snapshot")
    )
    _progress(f"loaded in a fresh process: {out['loaded']}")
    out["snapshot_full_frame_note"] = (
        "the index keeps the columns it serves from (listing id, category, region, age, decayed "
        "counts); the full contract snapshot (title, prices, seller features) is the serving "
        "catalogue's, measured separately (full_snapshot_bytes_per_row)"
    )
    from checkout_recs.models.inputs import listing_snapshot

    demo = listing_snapshot(paths["features"], labels_dir=paths["labels"])
    out["full_snapshot_bytes_per_row"] = float(demo.memory_usage(deep=True).sum() / len(demo))
    return out


def _bench_category(
    index: Any, snap: Any, emb: Any, q: np.ndarray, qreg: list[str], k: int = 60
) -> dict:
    """Exact (category, region) search for a random category per query vs float32 brute force."""
    import faiss
    from threadpoolctl import threadpool_limits

    cat = snap["category_id"].to_numpy(np.int64)
    reg, code = region_codes(snap)
    ids = snap["listing_id"].to_numpy(np.int64)
    rng = np.random.default_rng(2)
    cats = rng.choice(np.unique(cat), len(q))
    faiss.omp_set_num_threads(1)
    got, exact, times, sizes = [], [], [], []
    with threadpool_limits(1):
        for v, r, c in zip(q, qreg, cats, strict=True):
            t = time.perf_counter()
            a, _ = index.search(v[None, :], k, region=r, category=int(c))
            times.append(time.perf_counter() - t)
            rows = np.flatnonzero((cat == c) & (reg == code[r]))
            sizes.append(len(rows))
            top = exact_top(emb, rows, v[None, :], min(k, len(rows)))[0]
            exact.append(ids[top])
            got.append(a[0][: len(top)])
    faiss.omp_set_num_threads(2)
    return (
        {
            "k": k,
            "n_queries": len(q),
            "median_listings_in_group": float(np.median(sizes)),
            "max_listings_in_group": int(np.max(sizes)),
            "recall_vs_exact": _recall(got, exact),
        }
        | _pcts(times)
        | {"load_1m": _load()}
    )


def _bench_candidates(index: Any, paths: dict, n: int = 300) -> dict:
    """``CandidateGenerator.generate`` over this index (the demo's candidate tables and user
    tower; ANN in the request's shard + complement categories + popular + cold start): ms per
    request on one thread after 20 warm-up calls, candidates per request by source."""
    import pandas as pd

    from benchmarks.models import generate_timings
    from checkout_recs.models.two_tower import TwoTowerModel
    from checkout_recs.retrieval.candidates import CandidateGenerator, CandidateRequest
    from checkout_recs.serving.bundle_layout import CANDIDATE_TABLES, candidate_table_path

    t = time.perf_counter()
    tabs = {
        k: pd.read_parquet(candidate_table_path(paths["candidates"], k)) for k in CANDIDATE_TABLES
    }
    tt = TwoTowerModel.load(paths["model"] / "two_tower")
    gen = CandidateGenerator(
        index, tt, tabs["co_purchase_items"], tabs["category_pairs"], item_knn=tabs["item_knn"]
    )
    init_s = time.perf_counter() - t
    reqs = [
        CandidateRequest(
            region=r["region"],
            basket=r["basket"],
            recent_listing_ids=r["recent_listing_ids"],
            hour=r["hour"],
        )
        for r in rs.user_requests(paths["model"], paths["features"], n, seed=1)
    ]
    times, sizes, sources = generate_timings(gen, reqs)
    return (
        {"n_requests": n, "generator_init_s": init_s, "mean_candidates": float(np.mean(sizes))}
        | _pcts(times)
        | {"load_1m": _load(), "by_source": {k: v / n for k, v in sorted(sources.items())}}
    )


def _bench_add_remove(
    index: Any, paths: dict, emb: Any, snap: Any, q: np.ndarray, qreg: list[str], ref: np.ndarray
) -> dict:
    """Remove 10,000 listings that the queries' exact top-300 hold, add 10,000 new simulated
    listings (content-embedded), in place; recall@300 afterwards against exact search over the
    changed catalogue, and how many removed listings any answer returns."""
    from checkout_recs.models.two_tower import TwoTowerModel

    sold = np.unique(ref.ravel())
    sold = np.random.default_rng(5).permutation(sold)[:CHANGED]
    new = rs.new_listings(paths, CHANGED, first_id=int(snap["listing_id"].max()) + 1)
    tt = TwoTowerModel.load(paths["model"] / "two_tower")
    t = time.perf_counter()
    new_emb = tt.embed_items(new)
    embed_s = time.perf_counter() - t
    load0 = _load()
    t = time.perf_counter()
    removed = index.remove(sold)
    remove_s = time.perf_counter() - t
    t = time.perf_counter()
    index.add(new["listing_id"].to_numpy(np.int64), new_emb, new[list(rs.INDEX_COLUMNS)])
    add_s = time.perf_counter() - t
    _progress(f"removed {removed} in {remove_s:.2f}s, added {len(new)} in {add_s:.2f}s")
    ids_all = snap["listing_id"].to_numpy(np.int64)
    reg, code = region_codes(snap)
    live = ~np.isin(ids_all, sold)
    new_ids, new_reg = new["listing_id"].to_numpy(np.int64), new["region"].astype(str).to_numpy()
    ref2 = np.empty_like(ref)
    for r in sorted(set(qreg)):
        sel = [i for i, x in enumerate(qreg) if x == r]
        rows, sc = exact_scored(emb, np.flatnonzero(live & (reg == code[r])), q[sel])
        extra = np.flatnonzero(new_reg == r)
        cand = np.concatenate([ids_all[rows], np.tile(new_ids[extra], (len(sel), 1))], 1)
        score = np.concatenate([sc, q[sel] @ new_emb[extra].T], 1)
        order = np.argsort(-score, axis=1, kind="stable")[:, :K]
        ref2[sel] = np.take_along_axis(cand, order, 1)
    got, lat = timed_searches(index, q, list(qreg), passes=1)
    return {
        "removed": removed,
        "added": len(new),
        "remove_wall_s": remove_s,
        "add_wall_s": add_s,
        "embed_new_s": embed_s,
        "load_1m_start_end": [load0, _load()],
        f"recall@{K}_after": _recall(got, ref2),
        "removed_returned": int(np.isin(got, sold).sum()),
        "added_in_answers": int(np.isin(got, new["listing_id"].to_numpy()).sum()),
    } | {f"after_{k}": v for k, v in lat.items()}


#: Keys of an earlier run kept in ``previous_runs`` (its headline figures, not every detail).
PREVIOUS_KEYS = (
    "note",
    "cpu_note",
    "command",
    "started",
    "cpu_affinity",
    "load_1m_start",
    "config",
    "nlist_rule",
    "build",
    "memory_bytes",
    "sweep_region",
    "at_config",
    "no_region",
    "targets",
)


def previous_runs(path: Path) -> list[dict]:
    """The runs an existing ``faiss_<size>.json`` records, newest first: its own headline figures
    (``PREVIOUS_KEYS``, when it finished) followed by its ``previous_runs``; [] without a file."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    runs = list(old.get("previous_runs", []))
    if old.get("status") == "done":
        runs.insert(0, {k: old[k] for k in PREVIOUS_KEYS if k in old})
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run ``bench`` for ``--listings``; write ``faiss_<size>.json`` (the command first, then the
    figures) and ``faiss_scale.html`` over every size's JSON; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", type=Path, default=None, help="Cache of tower + catalogue.")
    ap.add_argument("--nprobe", type=int, nargs="*", default=[32, 48, 64, 80, 96, 128])
    ap.add_argument(
        "--config",
        type=json.loads,
        default=None,
        help='IndexConfig fields as JSON, e.g. \'{"nlist_factor": 1, "nprobe": 48}\' '
        "(default: the shipped IndexConfig()).",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON to write (default benchmarks/results/faiss_<size>.json, which also "
        "rewrites faiss_scale.html).",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = RESULTS / f"faiss_{label(args.listings)}.json"
    path = args.out or record
    out: dict = {
        "command": "python benchmarks/faiss_scale.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "status": "running",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        # the CPUs this process may run on (``taskset``): one core of its own gives the latency a
        # serving pod with dedicated CPU sees; a shared core adds other tasks' time slices
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "load_1m_start": _load(),
    }
    earlier = previous_runs(path)  # kept at the end of the file, through this run's writes
    path.write_text(json.dumps(out | {"previous_runs": earlier}, indent=2))
    work = args.work or Path(tempfile.mkdtemp(prefix="faiss_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    bench(args.listings, work, args.queries, tuple(args.nprobe), out, args.config)
    out |= {
        "status": "done",
        "wall_s": time.perf_counter() - t,
        "peak_rss_bytes": _peak_rss(),
        "load_1m_end": _load(),
    }
    out["targets"] = targets(out)
    out["previous_runs"] = earlier
    path.write_text(json.dumps(out, indent=2, default=float))
    if path == record:
        sizes = {
            p.stem.removeprefix("faiss_"): json.loads(p.read_text())
            for p in sorted(RESULTS.glob("faiss_*.json"))
        }
        sizes = {k: v for k, v in sizes.items() if v.get("status") == "done"}
        report(sizes, RESULTS / "faiss_scale.html")
    html = " and faiss_scale.html" if path == record else ""
    _progress(f"wrote {path}{html}; targets {out['targets']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
