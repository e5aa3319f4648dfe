"""The JSON rows of evaluate-offline (checkout_recs/evaluation/next_item/report.py)."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_recs.evaluation.next_item.report import project_rows
from checkout_recs.evaluation.next_item.runner import TaskResult


def _metrics(ndcg: float, n_users: int = 4) -> dict:
    m = {"hr@6": 0.5, "ndcg@6": ndcg, "hr@300": 0.9}
    return {**m, "untied": dict(m), "ranks": np.arange(1, n_users + 1)}


def test_project_rows_count_only_the_sequential_components_used():
    results = [
        TaskResult({"retrieval": _metrics(0.1), "two_stage": _metrics(0.2)}, 1.0, 1.0),
        TaskResult({"retrieval": _metrics(0.3), "two_stage": _metrics(0.4)}, 2.0, 2.0),
    ]
    sasrec = [TaskResult({}, 10.0, 10.0), TaskResult({}, 20.0, 20.0)]
    rows, ranks = project_rows(results, {"sasrec_ce": sasrec}, {"k": 1}, ["gsasrec"])
    # seed s: its project task + the SASRec-CE run of seed s; gSASRec (weight 0) not counted
    assert rows["two_stage"]["fit_score_seconds"] == pytest.approx((11.0 + 22.0) / 2)
    assert rows["retrieval"]["ndcg@6"] == pytest.approx(0.2)
    assert rows["sequential_components"]["sasrec_ce"].startswith("used")
    assert rows["sequential_components"]["gsasrec"].startswith("not used: weight 0")
    assert ranks["project_two_stage"].shape == (2, 4)
    both, _ = project_rows(
        results, {"sasrec_ce": sasrec, "gsasrec": sasrec}, {"k": 1}
    )  # both weighted: both counted
    assert both["two_stage"]["fit_score_seconds"] == pytest.approx((21.0 + 42.0) / 2)
    assert set(both["sequential_components"]) == {"sasrec_ce", "gsasrec"}
