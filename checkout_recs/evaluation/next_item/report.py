"""The JSON rows of ``evaluate-offline``: seed aggregation, the summary table, and the paired
comparisons of the project against every baseline (``paired.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from checkout_recs.evaluation.next_item.paired import LEVEL, N_BOOT, paired_difference
from checkout_recs.evaluation.next_item.published import PUBLISHED, versus_published
from checkout_recs.evaluation.next_item.runner import TaskResult

#: The headline metrics of the summary table.
SUMMARY_KEYS = ("hr@6", "ndcg@6", "mrr@6", "hr@50", "hr@100", "hr@300", "coverage@6", "tail@6")
#: What the project is compared on: (project row, metric).
COMPARISONS = (("project_two_stage", "ndcg@6"), ("project_retrieval", "hr@300"))


def aggregate(runs: list[dict]) -> dict:
    """One row from the runs of one model (one per seed): the mean of every float metric,
    ``std`` (over seeds), ``untied`` means, ``seeds``, ``fit_score_seconds`` (mean) and
    ``per_seed`` headline figures."""
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    agg: dict[str, Any] = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    agg["std"] = {k: float(np.std([r[k] for r in runs])) for k in keys}
    agg["untied"] = {
        k: float(np.mean([r["untied"][k] for r in runs])) for k in keys if k in runs[0]["untied"]
    }
    agg["untied_std"] = {
        k: float(np.std([r["untied"][k] for r in runs])) for k in keys if k in runs[0]["untied"]
    }
    agg["seeds"] = len(runs)
    agg["fit_score_seconds"] = float(np.mean([r["seconds"] for r in runs]))
    agg["per_seed"] = [{k: r[k] for k in ("hr@6", "ndcg@6", "hr@300")} for r in runs]
    return agg


def summary_table(result: dict) -> dict[str, dict[str, float]]:
    """model → headline metrics (means over seeds)."""
    rows = {name: {k: r[k] for k in SUMMARY_KEYS} for name, r in result["baselines"].items()}
    if "project" not in result:
        return rows
    p = result["project"]
    rows["project_retrieval"] = {k: p["retrieval"][k] for k in SUMMARY_KEYS}
    rows["project_two_stage"] = {k: p["two_stage"][k] for k in SUMMARY_KEYS}
    return rows


def paired_comparisons(ranks: dict[str, np.ndarray], tied: np.ndarray) -> dict[str, Any]:
    """The project's rows against every baseline, per user, on all users and on untied ones.

    ``ranks``: model → (seeds, U) test target ranks (baselines and the two project rows);
    ``tied`` (U,) bool. Returns ``{"method", "<row> <metric>": {baseline: {"all", "untied"}}}``
    where each entry is ``paired.paired_difference`` (project − baseline)."""
    out: dict[str, Any] = {
        "method": (
            f"per-user paired difference (project − baseline) of the seed-mean per-user metric; "
            f"{LEVEL:.0%} percentile bootstrap over users ({N_BOOT} resamples, the same for every "
            "comparison); p_le_0 = share of resamples with a difference ≤ 0"
        )
    }
    baselines = [n for n in ranks if not n.startswith("project_")]
    for row, metric in COMPARISONS:
        if row not in ranks:
            continue
        out[f"{row} {metric}"] = {
            b: {
                "all": paired_difference(ranks[row], ranks[b], metric),
                "untied": paired_difference(ranks[row], ranks[b], metric, mask=~tied),
            }
            for b in baselines
        }
    return out


def _row(values: list[dict], seconds: list[float], choice: dict) -> dict:
    row = aggregate([{**v, "seconds": s} for v, s in zip(values, seconds, strict=True)])
    row["choice"] = choice
    return row


def baseline_rows(
    classic: dict[str, list[TaskResult]],
    sequential: dict[str, list[TaskResult]],
    choices: dict[str, dict],
    published: bool,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """The baselines' test rows (``aggregate`` + ``choice``; ``versus_published`` when
    ``published``, i.e. on MovieLens-100K) and their ranks (name → (seeds, U)), from each
    model's test tasks (one per seed)."""
    rows: dict[str, dict] = {}
    ranks: dict[str, np.ndarray] = {}
    for n, res in {**classic, **sequential}.items():
        vals = [r.value for r in res]
        rows[n] = _row(vals, [r.wall_s for r in res], choices[n])
        if published and n in PUBLISHED:
            rows[n]["versus_published"] = versus_published(n, rows[n], choices[n])
        if vals and "snapshot_ensemble" in vals[0]:  # the project's component, for reference
            rows[n]["snapshot_ensemble"] = {
                **{
                    k: float(np.mean([v["snapshot_ensemble"][k] for v in vals]))
                    for k in SUMMARY_KEYS
                },
                "untied": {
                    k: float(np.mean([v["snapshot_ensemble_untied"][k] for v in vals]))
                    for k in SUMMARY_KEYS
                },
            }
        ranks[n] = np.stack([v["ranks"] for v in vals])
    return rows, ranks


def project_rows(
    results: list[TaskResult],
    sequential: dict[str, list[TaskResult]],
    choice: dict,
    unused: tuple[str, ...] | list[str] = (),
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The project's rows (retrieval, two_stage, choice, sequential_components) from its
    per-seed ``project_test`` tasks, and their ranks. ``sequential``: the runs of the sequential
    components the project uses (``project.sequential_used``); a seed's seconds include their
    fits. ``unused``: the sequential baselines whose chosen weight is 0 in both blends: not
    passed to the project, not counted in its seconds, and listed as such in
    ``sequential_components`` (their runs are their baseline rows' only)."""
    secs = [
        r.wall_s + sum(sequential[n][s].wall_s for n in sequential) for s, r in enumerate(results)
    ]
    retr = [r.value["retrieval"] for r in results]
    final = [r.value["two_stage"] for r in results]
    rows = {
        "retrieval": _row(retr, secs, choice),
        "two_stage": _row(final, secs, choice),
        "choice": choice,
        "sequential_components": {
            **{n: "used: the runs of its baseline row, seed for seed" for n in sequential},
            **{
                n: "not used: weight 0 in both blends; trained for its baseline row only, "
                "not counted in the project's seconds"
                for n in unused
            },
        },
    }
    ranks = {
        "project_retrieval": np.stack([r["ranks"] for r in retr]),
        "project_two_stage": np.stack([r["ranks"] for r in final]),
    }
    return rows, ranks
