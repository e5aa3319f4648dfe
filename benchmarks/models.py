"""Model benchmarks → ``benchmarks/results/models.json`` (and one JSON per section).

Sections (``--only`` runs a subset):

``sim``      demo-size simulation → ingest → labels → features → training set → bundle; AUC per
             head vs a logistic regression per segment; expected revenue per request from the
             hidden truth vs the logged heuristic (same requests); student AUC and latency.
``faiss``    1M synthetic listings (clustered 32-d unit vectors): IVF-SQ8 + exact re-rank vs
             exact search: build time, recall@300, single-query latency, memory; category filter;
             add/remove without rebuild.
``ml100k``   the shared next-item protocol (``checkout-recs evaluate-offline``), baselines only
             here by default (``--ml100k-project`` adds the project's model: SASRec training is
             slow on a busy 2-core CPU; ``docs/models.md`` says where the project figures came from).

Every figure is measured in the run that writes it; baselines are computed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _progress(msg: str) -> None:
    print(f"[bench models {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_sim(work: Path, days: int = 14) -> dict:
    """Simulator pipeline at demo size, ranker + student, revenue from the hidden truth."""
    import pandas as pd

    from checkout_recs.data.ingest import ingest
    from checkout_recs.data.labels import build_labels
    from checkout_recs.evaluation.offline import evaluate_simulator, head_auc_vs_logistic
    from checkout_recs.features.build import build_feature_tables
    from checkout_recs.features.training import build_training_set
    from checkout_recs.models.ranker import RankerModel
    from checkout_recs.models.ranker_features import ranker_matrix
    from checkout_recs.models.student import NumpyScorer, median_latency_ms, quantized_scorer
    from checkout_recs.models.train import TrainConfig, build_bundle, split_by_time
    from checkout_recs.simulate import run_simulation
    from checkout_recs.simulate.config import SimConfig

    cfg = SimConfig(days=days)
    run = work / "sim"
    t0 = time.perf_counter()
    run_simulation(cfg, run / "raw")
    import datetime as dt

    ingest(str(run / "raw"), run / "ingested", now=cfg.start + dt.timedelta(days=days + 1))
    build_labels(run / "ingested", run / "labels")
    build_feature_tables(run / "ingested", run / "labels", run / "features")
    build_training_set(run / "labels", run / "features", run / "ingested", run / "train.parquet")
    _progress(f"sim pipeline {time.perf_counter() - t0:.0f}s")
    t1 = time.perf_counter()
    bundle = build_bundle(run / "train.parquet", run / "labels", run / "features", run / "bundle", TrainConfig())
    train_s = time.perf_counter() - t1
    metrics = json.loads((bundle / "model" / "metrics.json").read_text())
    _progress(f"bundle {train_s:.0f}s: {metrics}")
    df = pd.read_parquet(run / "train.parquet")
    tr, te = split_by_time(df, 0.2)
    teacher = RankerModel.load(bundle / "model" / "ranker")
    student = RankerModel.load(bundle / "model" / "student")
    aucs = head_auc_vs_logistic(teacher, tr, te)
    student_aucs = head_auc_vs_logistic(student, tr, te)["all"]
    X = ranker_matrix(te, teacher.feature_names)
    X300 = np.resize(X, (300, X.shape[1])).astype(np.float32)
    import torch

    torch.set_num_threads(1)
    qnet = quantized_scorer(student)

    def q(x: np.ndarray) -> object:
        with torch.inference_mode():
            return qnet(torch.from_numpy(x))

    latency = {"teacher_torch_ms": median_latency_ms(teacher.predict, X300),
               "student_torch_ms": median_latency_ms(student.predict, X300),
               "student_numpy_ms": median_latency_ms(NumpyScorer(student).predict, X300),
               "student_int8_torch_ms": median_latency_ms(q, X300)}
    cand = bench_candidates(bundle)
    _progress(f"candidates: {cand}")
    last = list(range(max(0, days - 3), days))
    revenue = evaluate_simulator(bundle, run / "raw", last)
    _progress(f"revenue ratio vs heuristic {revenue['ratio_vs_heuristic']:.2f}")
    return {"sim_config": cfg.model_dump(mode="json"), "train_metrics": metrics, "train_seconds": train_s,
            "auc_vs_logistic": aucs, "student": {"auc": student_aucs, "latency_300_candidates": latency,
                                                  "n_params": student.metrics.get("n_params")},
            "candidates": cand, "revenue_days": last, "revenue": revenue}


def bench_candidates(bundle: Path, n: int = 300) -> dict:
    """Per-request cost and size of ``CandidateGenerator.generate`` on the bundle (one thread)."""
    import faiss
    import pandas as pd

    from checkout_recs.retrieval.candidates import CandidateGenerator, CandidateRequest

    faiss.omp_set_num_threads(1)
    gen = CandidateGenerator.from_bundle(bundle)
    users = pd.read_parquet(bundle / "features" / "user.parquet")
    live = gen.index.live_ids
    rng = np.random.default_rng(0)
    reqs = []
    for i in range(n):
        u = users.iloc[i % len(users)]
        reqs.append(CandidateRequest(region=str(u["region"]), basket=rng.choice(live, 2).tolist(),
                                     recent_listing_ids=list(u["recent_listing_ids"]), hour=float(i % 24)))
    for r in reqs[:20]:
        gen.generate(r)
    times, sizes, sources = [], [], {}
    for r in reqs:
        t = time.perf_counter()
        c = gen.generate(r)
        times.append(time.perf_counter() - t)
        sizes.append(len(c))
        for k, v in c.counts().items():
            sources[k] = sources.get(k, 0) + v
    return {"median_ms": float(np.median(times) * 1e3), "p95_ms": float(np.percentile(times, 95) * 1e3),
            "mean_candidates": float(np.mean(sizes)), "by_source": {k: v / n for k, v in sources.items()}}


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(2000, d)).astype(np.float32)
    x = centers[rng.integers(0, 2000, n)] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_faiss(n: int = 1_000_000, d: int = 32, n_queries: int = 200) -> dict:
    """IVF-SQ8 + exact re-rank at ``n`` items vs exact search (see module docstring)."""
    import faiss
    import pandas as pd

    from checkout_recs.models.metrics import overlap_recall
    from checkout_recs.retrieval.index import IndexConfig, RetrievalIndex

    emb = _clustered(n, d)
    ids = np.arange(n, dtype=np.int64) + 1
    rng = np.random.default_rng(1)
    snap = pd.DataFrame({"listing_id": ids, "region": rng.choice(["north", "south", "east"], n),
                         "category_id": rng.integers(0, 2000, n).astype(np.int32),
                         "price": rng.uniform(1, 500, n).round(2)})
    faiss.omp_set_num_threads(2)
    t0 = time.perf_counter()
    index = RetrievalIndex.from_embeddings(ids, emb, snap, IndexConfig(per_region=False))
    build_s = time.perf_counter() - t0
    _progress(f"faiss build {build_s:.1f}s kind={index.manifest.kind}")
    q = _clustered(n_queries, d, seed=9)
    exact = faiss.IndexFlatIP(d)
    exact.add(emb)
    _, ex_rows = exact.search(q, 300)
    ex_ids = ids[ex_rows]
    faiss.omp_set_num_threads(1)
    out = {"n_items": n, "dim": d, "kind": index.manifest.kind, "build_seconds": build_s, "sweep": []}
    for nprobe, rerank in ((16, 600), (32, 600), (48, 600), (64, 600), (64, 1000), (96, 1000)):
        index.indexes[""].nprobe = nprobe
        index.cfg.rerank = rerank
        times, res = [], []
        for i in range(n_queries):
            t = time.perf_counter()
            r, _ = index.search(q[i : i + 1], 300)
            times.append(time.perf_counter() - t)
            res.append(r[0])
        row = {"nprobe": nprobe, "rerank": rerank, "recall@300": overlap_recall(np.array(res), ex_ids),
               "median_ms": float(np.median(times) * 1e3), "p95_ms": float(np.percentile(times, 95) * 1e3)}
        out["sweep"].append(row)
        _progress(f"nprobe={nprobe}: {row}")
    ok = [r for r in out["sweep"] if r["recall@300"] >= 0.95]
    out["chosen"] = min(ok, key=lambda r: r["median_ms"]) if ok else max(out["sweep"], key=lambda r: r["recall@300"])
    index.indexes[""].nprobe = out["chosen"]["nprobe"]
    index.cfg.rerank = out["chosen"]["rerank"]
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp))
        out["disk_bytes"] = sum(p.stat().st_size for p in Path(tmp).iterdir())
    out["memory_bytes_estimate"] = int(index.emb.nbytes + index._emb32.nbytes + faiss.serialize_index(index.indexes[""]).nbytes
                                       + snap.memory_usage(deep=True).sum())
    t = time.perf_counter()
    cat_ids, _ = index.search(q[:20], 300, category=7)
    out["category_filter_ms_per_query"] = (time.perf_counter() - t) / 20 * 1e3
    out["category_filter_all_match"] = bool(np.isin(cat_ids[cat_ids >= 0], ids[snap["category_id"].to_numpy() == 7]).all())
    t = time.perf_counter()
    sold = ex_ids[:, :5].ravel()
    index.remove(sold)
    new = _clustered(1000, d, seed=3)
    index.add(np.arange(1000, dtype=np.int64) + n + 10, new, snap.iloc[:1000].assign(listing_id=np.arange(1000) + n + 10))
    out["add_1000_remove_1000_seconds"] = time.perf_counter() - t
    after, _ = index.search(q, 300)
    out["sold_returned_after_removal"] = int(np.isin(sold, after).sum())
    return out


def bench_ml100k(project: bool, seeds: int) -> dict:
    """The shared protocol on MovieLens-100K (``run_protocol``)."""
    from checkout_recs.evaluation.next_item import run_protocol

    dataset = ROOT / "data" / "external" / "ml-100k"
    return run_protocol(dataset, RESULTS / "ml100k.json", n_seeds=seeds, tune=False, project=project)


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections; write ``benchmarks/results/models.json``; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=["sim", "faiss", "ml100k"])
    ap.add_argument("--faiss-n", type=int, default=1_000_000)
    ap.add_argument("--ml100k-project", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "models.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        if "sim" in args.only:
            results["sim"] = bench_sim(Path(tmp))
        if "faiss" in args.only:
            results["faiss"] = bench_faiss(args.faiss_n)
        if "ml100k" in args.only:
            r = bench_ml100k(args.ml100k_project, args.seeds)
            results["ml100k"] = {"summary": r["summary"], "data": r["data"], "machine": r["machine"],
                                 "diff_vs_published": {k: v.get("max_abs_diff_vs_published")
                                                       for k, v in r["baselines"].items()}}
    results["command"] = "python benchmarks/models.py " + " ".join(sys.argv[1:] if argv is None else argv)
    path.write_text(json.dumps(results, indent=2, default=float))
    _progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
