"""``evaluate-offline``: the shared next-item protocol with public baselines and the project's
two-stage model (``project``), all computed in one run.

Stages (each timed, wall and CPU, in the JSON's ``timing``):

1. ``split``: read the atomic file, split by the protocol.
2. ``tuning`` (validation target only): every baseline's grid, tuned on this data set: the
   classic ones (``baselines.GRIDS``) and the sequential ones (``sequential.SEQ_GRIDS``, early
   stopping on validation).
3. ``blend``: the project's weights on validation, on the sequential baselines' chosen
   configurations. The three tunings are cached per data set (``tuning.Cache``): a second run on
   the same data and code skips stages 2-3.
4. ``test``: each chosen configuration refit on train + validation and evaluated once on test;
   stochastic models (ALS, BPR, SASRec-CE, gSASRec) over ``n_seeds`` seeds.
5. ``project``: seed ``s`` of the project from seed ``s`` of the sequential baselines its
   chosen blend weighs (``project.sequential_used``; the others are listed as not used in
   ``project.sequential_components`` and not counted in its seconds); then the paired per-user
   comparisons (``report.paired_comparisons``).

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
import checkout_recs.evaluation.next_item.components as _components
import checkout_recs.evaluation.next_item.project as _project
import checkout_recs.evaluation.next_item.protocol as _protocol
import checkout_recs.evaluation.next_item.sequential as _sequential
from checkout_recs.evaluation.next_item.baselines import STOCHASTIC
from checkout_recs.evaluation.next_item.project import (
    DEFAULT_CHOICE,
    KNN_DECAYS,
    RANKING_GRID,
    RETRIEVAL_GRID,
    RETRIEVAL_K,
    pick_project,
    project_test,
    sequential_used,
    tune_project,
    tune_units,
    two_stage,
    zscore,
)
from checkout_recs.evaluation.next_item.protocol import read_atomic, split_protocol
from checkout_recs.evaluation.next_item.published import (
    ML100K_SPLIT_SHA256,
    PUBLISHED,
    PUBLISHED_SD,
    TOLERANCE,
)
from checkout_recs.evaluation.next_item.report import (
    baseline_rows,
    paired_comparisons,
    project_rows,
    summary_table,
)
from checkout_recs.evaluation.next_item.runner import (
    Runner,
    StageClock,
    children_cpu_s,
    default_workers,
)
from checkout_recs.evaluation.next_item.sequential import (
    DEFAULT_SEQ_CHOICE,
    SEQ_BASE,
    SEQ_GRIDS,
    SEQ_NAMES,
    choose_seq,
    refit_seq,
    tune_seq,
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
from checkout_recs.models import sequence_loss as _sequence_loss

__all__ = [
    "PUBLISHED",
    "PUBLISHED_SD",
    "TOLERANCE",
    "ML100K_SPLIT_SHA256",
    "DEFAULT_CHOICE",
    "RETRIEVAL_K",
    "run_protocol",
    "summary_table",
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
    n_seeds : seeds of the stochastic models (ALS, BPR, SASRec-CE, gSASRec; the project).
    tune : tune on validation (else the recorded choices: ``tuning.TABLE_CHOICE``,
        ``sequential.DEFAULT_SEQ_CHOICE``, ``project.DEFAULT_CHOICE``).
    device : torch device of the sequential models.
    project : also the project's model (else baselines only).
    workers, threads : worker processes and threads each (default: ``runner.default_workers``).
    cache_dir : tuning cache folder; True = ``tuning.default_cache_dir()``, None/False = no cache.
    sasrec : overrides of ``sequential.SEQ_BASE`` (e.g. ``{"epochs": 2}`` for a smoke run).

    Returns
    -------
    dict with ``data``, ``baselines`` (test rows; ``versus_published`` on MovieLens-100K),
    ``project`` (retrieval, two_stage, choice), ``paired`` (project − each baseline per user,
    with intervals, all and untied users), ``tuning``, ``timing`` (per stage wall / CPU
    seconds), ``summary`` (one line per model) and ``machine``.
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
    base = {**SEQ_BASE, **(sasrec or {})}
    base_key = baselines_fingerprint(names)
    seq_key = code_fingerprint(
        _sequential,
        _sequence,
        _sequence_loss,
        _attention,
        _optim,
        _protocol,
        extra={"base": base, "grids": SEQ_GRIDS, "device": device},
    )
    proj_key = code_fingerprint(
        _project,
        _components,
        _baselines,
        _protocol,
        extra={
            "seq": seq_key,
            "decays": KNN_DECAYS,
            "retrieval": RETRIEVAL_GRID,
            "ranking": RANKING_GRID,
        },
    )

    with Runner(split, workers, threads, progress) as runner:
        base_tuning = seq_tuning = proj_tuning = None
        seq_val: dict[str, np.ndarray] | None = None
        # ---- tuning (validation only) ----
        with clock.stage("tuning", in_workers=runner.in_workers) as st:
            if tune:
                base_tuning = cache.get("baselines", data_key, base_key)
                seq_tuning = cache.get("sequential", data_key, seq_key)
                seq_val = cache.get_arrays("sequential", data_key, seq_key)
                if project:
                    proj_tuning = cache.get("project", data_key, proj_key)
                if seq_val is None and project and proj_tuning is None:
                    seq_tuning = None  # the project's blend needs the validation scores
                st["cached"] = {
                    "baselines": base_tuning is not None,
                    "sequential": seq_tuning is not None,
                    "project": proj_tuning is not None if project else None,
                }
                seq_points = (
                    []
                    if seq_tuning is not None
                    else [(n, p) for n in SEQ_NAMES for p in SEQ_GRIDS[n]]
                )
                tasks: list = [(tune_seq, (n, p, device, base)) for n, p in seq_points]
                points = grid_tasks(names) if base_tuning is None else []
                tasks += [(fit_score, (n, p, "val", 0)) for n, p in points]
                n_seq = len(seq_points)
                units = n_seq * int(base["epochs"]) + len(points)
                res = runner.run(tasks, units, "tuning") if tasks else []
                st["task_cpu_s"] = sum(r.cpu_s for r in res)
                st["sequential_task_cpu_s"] = sum(r.cpu_s for r in res[:n_seq])
                st["baselines_task_cpu_s"] = sum(r.cpu_s for r in res[n_seq:])
                if base_tuning is None:
                    base_tuning = choose(
                        names,
                        points,
                        [r.value for r in res[n_seq:]],
                        [r.wall_s for r in res[n_seq:]],
                    )
                    cache.put("baselines", data_key, base_key, base_tuning)
                if seq_tuning is None:
                    seq_tuning, seq_val = {}, {}
                    for n in SEQ_NAMES:
                        runs = [
                            r.value for (m, _), r in zip(seq_points, res, strict=False) if m == n
                        ]
                        seq_tuning[n] = choose_seq(n, runs, base)
                        kept = runs[seq_tuning[n]["grid_index"]]
                        seq_val[n] = kept["scores"]
                    cache.put("sequential", data_key, seq_key, seq_tuning)
                    cache.put_arrays("sequential", data_key, seq_key, seq_val)
        if project and tune and proj_tuning is None:
            assert seq_val is not None
            with clock.stage("blend", in_workers=runner.in_workers) as st:
                res_b = runner.run(
                    [(tune_project, (seq_val, d)) for d in KNN_DECAYS],
                    len(KNN_DECAYS) * tune_units(),
                    "blend",
                )
                st["task_cpu_s"] = sum(r.cpu_s for r in res_b)
                proj_tuning = pick_project([r.value for r in res_b])
                cache.put("project", data_key, proj_key, proj_tuning)
        if tune:
            result["tuning"] = {
                "baselines": base_tuning,
                "sequential": seq_tuning,
                "project": proj_tuning,
                "cache": str(cache.folder) if cache.folder else None,
            }
        base_choice = {
            n: (base_tuning[n]["choice"] if base_tuning else TABLE_CHOICE[n]) for n in names
        }
        seq_choice = {
            n: (seq_tuning[n]["choice"] if seq_tuning else {**base, **DEFAULT_SEQ_CHOICE[n]})
            for n in SEQ_NAMES
        }
        proj_choice = proj_tuning["choice"] if proj_tuning else DEFAULT_CHOICE
        for n, c in {**base_choice, **seq_choice}.items():
            _log(f"{n}: chosen {c}")
        if project:
            _log(f"project: chosen {proj_choice}")

        # ---- test (refit on train + validation) ----
        with clock.stage("test", in_workers=runner.in_workers) as st:
            seq_jobs = [(n, s) for n in SEQ_NAMES for s in range(n_seeds)]
            tasks = [(refit_seq, (n, seq_choice[n], device, s)) for n, s in seq_jobs]
            jobs = [
                (n, s)
                for n in sorted(names, key=lambda n: n not in STOCHASTIC)
                for s in range(n_seeds if n in STOCHASTIC else 1)
            ]
            tasks += [(fit_score, (n, base_choice[n], "test", s)) for n, s in jobs]
            units = sum(int(seq_choice[n]["epochs"]) for n, _ in seq_jobs) + len(jobs)
            res = runner.run(tasks, units, "test")
            n_seq = len(seq_jobs)
            st["task_cpu_s"] = sum(r.cpu_s for r in res)
            st["sequential_task_cpu_s"] = sum(r.cpu_s for r in res[:n_seq])
            st["baselines_task_cpu_s"] = sum(r.cpu_s for r in res[n_seq:])
        seq_res = {
            n: [r for (m, _), r in zip(seq_jobs, res, strict=False) if m == n] for n in SEQ_NAMES
        }
        base_res = {
            n: [r for (m, _), r in zip(jobs, res[n_seq:], strict=True) if m == n] for n in names
        }

        if project:
            used = sequential_used(proj_choice, SEQ_NAMES)
            with clock.stage("project", in_workers=runner.in_workers) as st:
                res_p = runner.run(
                    [
                        (
                            project_test,
                            (proj_choice, {n: seq_res[n][s].value["scores"] for n in used}),
                        )
                        for s in range(n_seeds)
                    ],
                    n_seeds,
                    "project",
                )
                st["task_cpu_s"] = sum(r.cpu_s for r in res_p)

    result["baselines"], ranks = baseline_rows(
        {n: base_res[n] for n in names},
        {n: seq_res[n] for n in SEQ_NAMES},
        {**base_choice, **seq_choice},
        data_key == ML100K_SPLIT_SHA256,
    )
    for n, row in result["baselines"].items():
        _log(f"{n}: NDCG@6={row['ndcg@6']:.4f} HR@300={row['hr@300']:.4f}")
    if project:
        result["project"], proj_ranks = project_rows(
            res_p,
            {n: seq_res[n] for n in used},
            proj_choice,
            [n for n in SEQ_NAMES if n not in used],
        )
        ranks.update(proj_ranks)
        p = result["project"]
        _log(
            f"project: NDCG@6={p['two_stage']['ndcg@6']:.4f} ± {p['two_stage']['std']['ndcg@6']:.4f} "
            f"HR@300={p['retrieval']['hr@300']:.4f} ± {p['retrieval']['std']['hr@300']:.4f}"
        )
        with clock.stage("paired"):
            result["paired"] = paired_comparisons(ranks, split.tied)
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
