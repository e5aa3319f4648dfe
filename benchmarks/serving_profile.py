"""Where the transformer's CPU goes: per-stage CPU ms / request, in-process, no HTTP.

Builds the transformer exactly as ``python -m inference.transformer`` would (same flags), then
drives ``preprocess -> predict -> postprocess`` for N requests one at a time on one event loop
and reports, per stage, wall and CPU milliseconds per request (``time.process_time``: CPU of
this process, all threads, so the Feast worker thread counts), the mean candidates per source
(``ann``, ``cf_residual``, ... when the bundle carries an index and a two-tower model) and the
answers' policies (``answers``: how many had six distinct items, per policy / fallback reason). ``--cprofile K`` also prints the
K most expensive functions (cumulative). The predictor hop needs a running predictor; by default
the ranker is scored in-process (``--scoring inprocess``).

    .venv/bin/python benchmarks/serving_profile.py --workdir /tmp/crbench-ann [-n 400] [--cprofile 30 [--cprofile_sort tottime]]
        [--bundle DIR] [-- extra transformer flags, e.g. --users feast]

Reads the bundle and Feast store built by ``benchmarks/serving.py`` (same ``--workdir``; the
bundle defaults to ``bundle-ann-<listings>`` when built, else the synthetic ``bundle-<listings>``)
and the bundle's own requests (``requests.json``) when it has them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("features", "retrieval", "inventory", "rank_input", "rank", "policy")


def default_bundle(workdir: Path, listings: int) -> Path:
    """The ANN bundle under ``workdir`` when built, else the synthetic one."""
    from benchmarks.serving_bundle_1m import ann_bundle_dir

    ann = ann_bundle_dir(workdir, listings)
    return ann if ann.is_dir() else workdir / f"bundle-{listings}"


def transformer_flags(workdir: Path, bundle: Path, redis_url: str, extra: list[str]) -> list[str]:
    """The benchmark's design-path transformer flags for ``bundle`` (Feast store under ``workdir``)."""
    from checkout_recs.serving.bundle_layout import BundleLayout

    feast_work = workdir / f"feast-{bundle.name}"
    project = (feast_work / "bench_project.txt").read_text().strip()
    return [
        "--bundle",
        str(bundle),
        "--users",
        "feast",
        "--feast_features",
        str(BundleLayout(bundle).features_dir),
        "--feast_work_dir",
        str(feast_work),
        "--feast_timeout_ms",
        "200",
        "--feast_project",
        project,
        "--inventory",
        "redis",
        "--redis_url",
        redis_url,
        "--redis_prefix",
        "crprofile",
        "--switches",
        "none",
        "--candidates",
        "auto",
        "--scoring",
        "inprocess",
        *extra,
    ]


async def drive(model: Any, bodies: list[dict], n: int) -> dict[str, Any]:
    """Run ``n`` requests through the model's three stages; per-stage wall and CPU ms (mean, p50)."""
    wall: dict[str, list[float]] = {
        k: [] for k in ("preprocess", "predict", "postprocess", "total")
    }
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    stage_cpu: dict[str, list[float]] = {k: [] for k in STAGES}
    sources: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    for i in range(n):
        body = bodies[i % len(bodies)]
        c0, w0 = time.process_time(), time.perf_counter()
        job = await model.preprocess(body)
        c1, w1 = time.process_time(), time.perf_counter()
        job = await model.predict(job)
        c2, w2 = time.process_time(), time.perf_counter()
        resp = await model.postprocess(job)
        c3, w3 = time.process_time(), time.perf_counter()
        for k, a, b, x, y in (
            ("preprocess", c0, c1, w0, w1),
            ("predict", c1, c2, w1, w2),
            ("postprocess", c2, c3, w2, w3),
            ("total", c0, c3, w0, w3),
        ):
            cpu[k].append((b - a) * 1e3)
            wall[k].append((y - x) * 1e3)
        p = job.prepared[0]
        for k in STAGES:
            stages[k].append(p.timings.get(k, job.rank_ms[0] if k == "rank" else 0.0))
            stage_cpu[k].append(p.cpu_ms.get(k, 0.0))
        sources.update(str(x) for x in p.cand_sources)
        for pred in resp["predictions"]:
            six = len({it["listing_id"] for it in pred["items"]}) == 6
            answers[
                f"{pred['policy']}/{pred.get('fallback_reason') or '-'}{'' if six else '/not-six'}"
            ] += 1
    out: dict[str, Any] = {"requests": n}
    out["cpu_ms_mean"] = {k: float(np.mean(v)) for k, v in cpu.items()}
    out["wall_ms_p50"] = {k: float(np.median(v)) for k, v in wall.items()}
    out["stage_wall_ms_mean"] = {k: float(np.mean(v)) for k, v in stages.items()}
    out["stage_cpu_ms_mean"] = {k: float(np.mean(v)) for k, v in stage_cpu.items()}
    # CPU of the three kserve stages outside the request-path stages (parsing, encoding, metrics)
    out["stage_cpu_ms_mean"]["other"] = out["cpu_ms_mean"]["total"] - sum(
        out["stage_cpu_ms_mean"].values()
    )
    out["candidates_per_source_mean"] = {k: v / n for k, v in sorted(sources.items())}
    out["answers"] = dict(answers)
    return out


def main() -> None:
    """Parse flags, build the transformer, warm it up, measure, print JSON."""
    # one OpenMP / MKL thread, as the servers run (inference/launch.py): without it FAISS's idle
    # threads spin and the CPU per request reads 12.5 ms instead of 2.3 at 100k listings
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/crbench-1m"))
    ap.add_argument("--listings", type=int, default=1_000_000)
    ap.add_argument(
        "--bundle", type=Path, default=None, help="bundle folder (default: see module docstring)"
    )
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--redis_url", default="redis://127.0.0.1:6379/11")
    ap.add_argument(
        "--cprofile", type=int, default=0, help="print the top K functions by --cprofile_sort"
    )
    ap.add_argument("--cprofile_sort", default="cumulative", choices=["cumulative", "tottime"])
    args, extra = ap.parse_known_args()
    sys.argv = sys.argv[:1]
    from benchmarks.serving import make_requests
    from benchmarks.serving_bundle_1m import bundle_requests
    from inference.transformer import build_parser, build_transformer

    bundle = args.bundle or default_bundle(args.workdir, args.listings)
    targs, _ = build_parser().parse_known_args(
        transformer_flags(args.workdir, bundle, args.redis_url, [e for e in extra if e != "--"])
    )
    t0 = time.perf_counter()
    model = build_transformer(targs)
    print(f"transformer built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    bodies = bundle_requests(bundle) or make_requests(4000, args.users, args.listings)

    async def run() -> dict[str, Any]:
        await drive(model, bodies, 50)  # warm-up
        if args.cprofile:
            prof = cProfile.Profile()
            prof.enable()
            res = await drive(model, bodies, args.n)
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats(args.cprofile_sort).print_stats(
                args.cprofile
            )
            return res
        return await drive(model, bodies, args.n)

    print(json.dumps(asyncio.run(run()), indent=1))


if __name__ == "__main__":
    main()
