"""``evaluate-offline``: the shared next-item protocol with public baselines and the project's
two-stage model (``project``), all computed in one run.

Stages (each timed, wall and CPU, in the JSON's ``timing``):

1. ``split``: read the atomic file, split by the protocol.
2. ``tuning`` (validation target only): every baseline's grid (``baselines.GRIDS``, tuned on
   this data set) and the project's SASRec points with early stopping (``project``);
3. ``blend``: the project's blend weights on validation, for the kept SASRec models. Both
   tunings are cached per data set (``tuning.Cache``): a second run on the same data and code
   skips stages 2-3.
4. ``test``: each chosen configuration refit on train + validation and evaluated once on test;
   stochastic models (ALS, BPR, the project) over ``n_seeds`` seeds.

Tasks run on worker processes (``runner``); a progress bar shows fits and epochs.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import checkout_recs.evaluation.next_item.baselines as _baselines
import checkout_recs.evaluation.next_item.project as _project
import checkout_recs.evaluation.next_item.protocol as _protocol
from checkout_recs.evaluation.next_item.baselines import STOCHASTIC
from checkout_recs.evaluation.next_item.project import (
    BC_GRID,
    DEFAULT_CHOICE,
    KNN_DECAYS,
    RETRIEVAL_K,
    SASREC_BASE,
    SASREC_GRID,
    TUNING_SEEDS,
    blend_grid,
    pick_project,
    project_scores,
    refit_seed,
    train_sasrec,
    two_stage,
    zscore,
)
from checkout_recs.evaluation.next_item.protocol import read_atomic, split_protocol
from checkout_recs.evaluation.next_item.runner import (
    Runner,
    StageClock,
    children_cpu_s,
    default_workers,
)
from checkout_recs.evaluation.next_item.tuning import (
    TABLE_CHOICE,
    Cache,
    baselines_fingerprint,
    choose,
    code_fingerprint,
    default_cache_dir,
    fit_score,
    grid_tasks,
    split_hash,
)
from checkout_recs.models import attention as _attention
from checkout_recs.models import optim as _optim
from checkout_recs.models import sequence as _sequence

#: The protocol's MovieLens-100K table (test): deterministic rows, and the five-seed mean of the
#: stochastic ones (ALS, BPR) at the table's configuration (``tuning.TABLE_CHOICE``).
PUBLISHED = {
    "popularity": {
        "hr@6": 0.036,
        "ndcg@6": 0.021,
        "hr@50": 0.143,
        "hr@300": 0.501,
        "coverage@6": 0.040,
    },
    "item_knn": {
        "hr@6": 0.102,
        "ndcg@6": 0.064,
        "hr@50": 0.371,
        "hr@300": 0.726,
        "coverage@6": 0.433,
    },
    "markov1": {
        "hr@6": 0.108,
        "ndcg@6": 0.069,
        "hr@50": 0.319,
        "hr@300": 0.591,
        "coverage@6": 0.463,
    },
    "als": {"hr@6": 0.054, "ndcg@6": 0.030, "hr@50": 0.279, "hr@300": 0.638, "coverage@6": 0.402},
    "bpr": {"hr@6": 0.066, "ndcg@6": 0.038, "hr@50": 0.308, "hr@300": 0.719, "coverage@6": 0.491},
}
#: The table's standard deviation over seeds 0-4 (stochastic rows).
PUBLISHED_SD = {
    "als": {"hr@6": 0.002, "ndcg@6": 0.001, "hr@50": 0.008, "hr@300": 0.006, "coverage@6": 0.003},
    "bpr": {"hr@6": 0.004, "ndcg@6": 0.003, "hr@50": 0.001, "hr@300": 0.004, "coverage@6": 0.006},
}
#: The protocol's reproduction tolerance: each figure of a deterministic row; the five-seed
#: mean of a stochastic row.
TOLERANCE = {"deterministic": 0.005, "stochastic": 0.01}
#: ``split_hash`` of MovieLens-100K: the published table applies to this split only.
ML100K_SPLIT_SHA256 = "8f8f56d55c848a8b4ae154b5eaa4270b349fb184d1f49cbd8f9e421c2c0d5fe9"

__all__ = [
    "PUBLISHED",
    "PUBLISHED_SD",
    "TOLERANCE",
    "DEFAULT_CHOICE",
    "RETRIEVAL_K",
    "run_protocol",
    "summary_table",
    "project_scores",
    "two_stage",
    "zscore",
]


def _log(msg: str) -> None:
    print(f"[evaluate-offline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _baseline_names() -> list[str]:
    names = ["popularity", "item_knn", "markov1"]
    try:
        import implicit  # noqa: F401

        names += ["als", "bpr"]
    except ImportError:
        _log("implicit is not installed here: ALS and BPR skipped")
    return names


def _aggregate(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    agg: dict[str, Any] = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    agg["std"] = {k: float(np.std([r[k] for r in runs])) for k in keys}
    agg["untied"] = {
        k: float(np.mean([r["untied"][k] for r in runs])) for k in keys if k in runs[0]["untied"]
    }
    agg["seeds"] = len(runs)
    agg["fit_score_seconds"] = float(np.mean([r["seconds"] for r in runs]))
    agg["per_seed"] = [{k: r[k] for k in ("hr@6", "ndcg@6", "hr@300")} for r in runs]
    return agg


def _versus_published(name: str, row: dict, choice: dict) -> dict:
    pub = PUBLISHED[name]
    tol = TOLERANCE["stochastic" if name in STOCHASTIC else "deterministic"]
    diff = {k: row[k] - v for k, v in pub.items()}
    return {
        "published": pub,
        "diff": diff,
        "tolerance": tol,
        "table_configuration": choice == TABLE_CHOICE[name],
        "within_tolerance": all(abs(d) <= tol + 1e-9 for d in diff.values()),
    }


def run_protocol(
    dataset: Path,
    out: Path,
    n_seeds: int = 5,
    tune: bool = True,
    device: str = "cpu",
    project: bool = True,
    workers: int | None = None,
    threads: int | None = None,
    cache_dir: Path | None | bool = True,
    progress: bool = True,
    sasrec: dict[str, Any] | None = None,
) -> dict:
    """Run the whole protocol and write ``out`` (JSON).

    Parameters
    ----------
    n_seeds : seeds of the stochastic models (the protocol: 5).
    tune : tune on validation (else the protocol table's baselines and ``DEFAULT_CHOICE``).
    device : torch device of SASRec.
    project : also the project's model (else baselines only).
    workers, threads : worker processes and threads each (default: ``runner.default_workers``).
    cache_dir : tuning cache folder; True = ``tuning.default_cache_dir()``, None/False = no cache.
    sasrec : overrides of ``project.SASREC_BASE`` (e.g. ``{"epochs": 2}`` for a smoke run).

    Returns
    -------
    dict with ``data``, ``baselines`` (test rows; ``published`` comparison on MovieLens-100K),
    ``project`` (retrieval, two_stage, choice), ``tuning`` (baselines, project), ``timing``
    (per stage wall / CPU seconds), ``summary`` (one line per model) and ``machine``.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    c_children0 = children_cpu_s()
    clock = StageClock()
    workers, t_default = default_workers(workers)
    threads = threads or t_default
    cache = Cache(
        default_cache_dir() if cache_dir is True else (Path(cache_dir) if cache_dir else None)
    )
    with clock.stage("split"):
        split = split_protocol(read_atomic(dataset))
        data_key = split_hash(split)
    _log(
        f"{len(split.train)} users, {split.n_items} items, tied share {split.tied.mean():.3f}; "
        f"{workers} worker(s) x {threads} thread(s)"
    )
    result: dict[str, Any] = {
        "dataset": str(dataset),
        "data": {
            "users": len(split.train),
            "items": split.n_items,
            "tied_share": float(split.tied.mean()),
            "split_sha256": data_key,
        },
    }
    names = _baseline_names()
    base_key = baselines_fingerprint(names)
    base = {**SASREC_BASE, **(sasrec or {})}
    proj_key = code_fingerprint(
        _project,
        _sequence,
        _attention,
        _optim,
        _baselines,
        _protocol,
        extra={"base": base, "grid": SASREC_GRID, "seeds": TUNING_SEEDS, "device": device},
    )

    with Runner(split, workers, threads, progress) as runner:
        # ---- tuning (validation only) ----
        base_tuning = proj_tuning = None
        sas_jobs: list[tuple[int, int]] = []
        with clock.stage("tuning", in_workers=runner.in_workers) as st:
            if tune:
                base_tuning = cache.get("baselines", data_key, base_key)
                proj_tuning = cache.get("project", data_key, proj_key) if project else None
                st["cached"] = {
                    "baselines": base_tuning is not None,
                    "project": proj_tuning is not None if project else None,
                }
                if project and proj_tuning is None:
                    sas_jobs = [(i, seed) for i in range(len(SASREC_GRID)) for seed in TUNING_SEEDS]
                tasks: list = [
                    (train_sasrec, (SASREC_GRID[i], device, seed, base)) for i, seed in sas_jobs
                ]
                points = grid_tasks(names) if base_tuning is None else []
                tasks += [(fit_score, (n, p, "val", 0)) for n, p in points]
                n_sas = len(sas_jobs)
                res = (
                    runner.run(tasks, n_sas * base["epochs"] + len(points), "tuning")
                    if tasks
                    else []
                )
                st["task_cpu_s"] = sum(r.cpu_s for r in res)
                st["project_task_cpu_s"] = sum(r.cpu_s for r in res[:n_sas])
                st["baselines_task_cpu_s"] = sum(r.cpu_s for r in res[n_sas:])
                trained = [
                    [res[j].value for j, (k, _) in enumerate(sas_jobs) if k == i]
                    for i in range(len(SASREC_GRID))
                ]
                sas_seconds = [res[j].wall_s for j in range(n_sas)]
                if base_tuning is None:
                    base_tuning = choose(
                        names,
                        points,
                        [r.value for r in res[n_sas:]],
                        [r.wall_s for r in res[n_sas:]],
                    )
                    cache.put("baselines", data_key, base_key, base_tuning)
        if sas_jobs:  # the project's blend, on the kept SASRec models' validation scores
            with clock.stage("blend", in_workers=runner.in_workers) as st:
                jobs_b = [(i, d) for i in range(len(SASREC_GRID)) for d in KNN_DECAYS]
                res_b = runner.run(
                    [(blend_grid, ([r["scores"] for r in trained[i]], d)) for i, d in jobs_b],
                    len(jobs_b) * len(BC_GRID) ** 2,
                    "blend",
                )
                st["task_cpu_s"] = sum(r.cpu_s for r in res_b)
                blends = [
                    [r.value for (k, _), r in zip(jobs_b, res_b, strict=True) if k == i]
                    for i in range(len(SASREC_GRID))
                ]
                for runs in trained:
                    for r in runs:
                        r.pop("scores")
                proj_tuning = pick_project(SASREC_GRID, trained, blends, base)
                proj_tuning["sasrec_fit_wall_seconds"] = sas_seconds
                cache.put("project", data_key, proj_key, proj_tuning)
        if tune:
            result["tuning"] = {
                "baselines": base_tuning,
                "project": proj_tuning,
                "cache": str(cache.folder) if cache.folder else None,
            }
        base_choice = {
            n: (base_tuning[n]["choice"] if base_tuning else TABLE_CHOICE[n]) for n in names
        }
        proj_choice = proj_tuning["choice"] if proj_tuning else DEFAULT_CHOICE
        for n in names:
            _log(f"{n}: chosen {base_choice[n]}")
        if project:
            _log(f"project: chosen {proj_choice}")

        # ---- test (refit on train + validation) ----
        with clock.stage("test", in_workers=runner.in_workers) as st:
            tasks = (
                [(refit_seed, (proj_choice, device, s)) for s in range(n_seeds)] if project else []
            )
            n_proj = len(tasks)
            jobs = [
                (n, s)
                for n in sorted(names, key=lambda n: n not in STOCHASTIC)
                for s in range(n_seeds if n in STOCHASTIC else 1)
            ]
            tasks += [(fit_score, (n, base_choice[n], "test", s)) for n, s in jobs]
            res = runner.run(
                tasks, n_proj * int(proj_choice["sasrec"]["epochs"]) + len(jobs), "test"
            )
            st["task_cpu_s"] = sum(r.cpu_s for r in res)
            st["project_task_cpu_s"] = sum(r.cpu_s for r in res[:n_proj])
            st["baselines_task_cpu_s"] = sum(r.cpu_s for r in res[n_proj:])

    result["baselines"] = {}
    for n in names:
        runs = [
            {**r.value, "seconds": r.wall_s}
            for (m, _), r in zip(jobs, res[n_proj:], strict=True)
            if m == n
        ]
        row = _aggregate(runs)
        row["choice"] = base_choice[n]
        if data_key == ML100K_SPLIT_SHA256 and n in PUBLISHED:
            row["versus_published"] = _versus_published(n, row, base_choice[n])
        result["baselines"][n] = row
        _log(f"{n}: NDCG@6={row['ndcg@6']:.4f} HR@300={row['hr@300']:.4f}")
    if project:
        retr = [{**r.value["retrieval"], "seconds": r.wall_s} for r in res[:n_proj]]
        final = [{**r.value["two_stage"], "seconds": r.wall_s} for r in res[:n_proj]]
        result["project"] = {
            "retrieval": _aggregate(retr),
            "two_stage": _aggregate(final),
            "choice": proj_choice,
        }
        p = result["project"]
        _log(
            f"project: NDCG@6={p['two_stage']['ndcg@6']:.4f} ± {p['two_stage']['std']['ndcg@6']:.4f} "
            f"HR@300={p['retrieval']['hr@300']:.4f} ± {p['retrieval']['std']['hr@300']:.4f}"
        )
    result["summary"] = summary_table(result)
    total_cpu = (time.process_time() - c0) + (children_cpu_s() - c_children0)
    result["timing"] = {
        **clock.stages,
        "total": {"wall_s": time.perf_counter() - t0, "cpu_s": total_cpu},
    }
    result["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    result["machine"] = {
        "platform": platform.platform(),
        "device": device,
        "workers": workers,
        "threads_per_worker": threads,
        "seconds_total": time.perf_counter() - t0,
        "cpu_seconds_total": total_cpu,
    }
    _log(f"done in {result['timing']['total']['wall_s']:.0f} s wall, {total_cpu:.0f} s CPU")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2, default=float))
    return result


def summary_table(result: dict) -> dict[str, dict[str, float]]:
    """model → headline metrics (means over seeds)."""
    keys = ("hr@6", "ndcg@6", "mrr@6", "hr@50", "hr@100", "hr@300", "coverage@6", "tail@6")
    rows = {name: {k: r[k] for k in keys} for name, r in result["baselines"].items()}
    if "project" not in result:
        return rows
    p = result["project"]
    rows["project_retrieval"] = {k: p["retrieval"][k] for k in keys}
    rows["project_two_stage"] = {k: p["two_stage"][k] for k in keys}
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m checkout_recs.evaluation.next_item.evaluate`` (for machines without the CLI)."""
    import argparse

    ap = argparse.ArgumentParser(description="Offline next-item protocol (see module docstring).")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--no-tune", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--baselines-only", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    res = run_protocol(
        Path(a.dataset),
        Path(a.out),
        a.seeds,
        not a.no_tune,
        a.device,
        not a.baselines_only,
        workers=a.workers,
        cache_dir=not a.no_cache,
        progress=not a.no_progress,
    )
    print(json.dumps(res["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
