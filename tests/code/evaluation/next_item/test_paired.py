"""Paired per-user comparisons (checkout_recs/evaluation/next_item/paired.py, report.py)."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_recs.evaluation.next_item.paired import paired_difference, per_user
from checkout_recs.evaluation.next_item.report import aggregate, paired_comparisons


def test_per_user_metrics_from_ranks():
    r = np.array([1, 3, 7, 300, 301])
    np.testing.assert_allclose(per_user(r, "ndcg@6"), [1.0, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(per_user(r, "mrr@6"), [1.0, 1 / 3, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(per_user(r, "hr@300"), [1, 1, 1, 1, 0])
    with pytest.raises(ValueError):
        per_user(r, "auc")


def test_paired_difference_means_seeds_then_users_and_masks():
    a = np.array([[1, 1, 400, 400], [1, 400, 400, 400]])  # two seeds
    b = np.array([[400, 400, 400, 1]])  # deterministic
    d = paired_difference(a, b, "hr@6", n_boot=200)
    assert d["a"] == pytest.approx((1 + 0.5 + 0 + 0) / 4) and d["b"] == pytest.approx(0.25)
    assert d["diff"] == pytest.approx(0.125) and d["lo"] <= d["diff"] <= d["hi"]
    assert d["users"] == 4
    sub = paired_difference(a, b, "hr@6", mask=np.array([True, True, False, False]), n_boot=200)
    assert sub["diff"] == pytest.approx(0.75) and sub["users"] == 2


def test_a_clear_gain_has_an_interval_above_zero_and_none_has_one_around_it():
    rng = np.random.default_rng(0)
    b = rng.integers(1, 20, (1, 500))
    better = paired_difference(np.maximum(b - 5, 1), b, "ndcg@6")
    assert better["lo"] > 0 and better["p_le_0"] == 0.0
    same = paired_difference(rng.permutation(b[0])[None], b, "ndcg@6")
    assert same["lo"] < 0 < same["hi"]


def test_paired_comparisons_cover_both_project_rows_and_every_baseline():
    ranks = {
        "markov1": np.array([[1, 5, 9]]),
        "sasrec_ce": np.array([[2, 4, 8], [3, 4, 9]]),
        "project_retrieval": np.array([[1, 2, 3], [1, 2, 4]]),
        "project_two_stage": np.array([[1, 1, 3], [1, 2, 3]]),
    }
    out = paired_comparisons(ranks, np.array([True, False, False]))
    assert set(out) == {"method", "project_two_stage ndcg@6", "project_retrieval hr@300"}
    assert set(out["project_two_stage ndcg@6"]) == {"markov1", "sasrec_ce"}
    assert out["project_retrieval hr@300"]["sasrec_ce"]["untied"]["users"] == 2


def test_aggregate_means_and_spreads_over_seeds():
    runs = [
        {"ndcg@6": 0.1, "hr@6": 0.2, "hr@300": 0.8, "untied": {"ndcg@6": 0.05}, "seconds": 1.0},
        {"ndcg@6": 0.3, "hr@6": 0.4, "hr@300": 0.9, "untied": {"ndcg@6": 0.15}, "seconds": 3.0},
    ]
    row = aggregate(runs)
    assert row["ndcg@6"] == pytest.approx(0.2) and row["std"]["ndcg@6"] == pytest.approx(0.1)
    assert row["untied"]["ndcg@6"] == pytest.approx(0.1) and row["seeds"] == 2
    assert row["fit_score_seconds"] == pytest.approx(2.0)
