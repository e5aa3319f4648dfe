"""The project's two-stage model (checkout_recs/evaluation/next_item/project.py) on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_recs.evaluation.next_item.components import ease_scores
from checkout_recs.evaluation.next_item.project import (
    DEFAULT_CHOICE,
    RANKING_GRID,
    RETRIEVAL_GRID,
    blend,
    one_se_pick,
    pick_project,
    project_scores,
    project_test,
    sequential_used,
    tune_project,
    two_stage,
)
from checkout_recs.evaluation.next_item.protocol import Split


def _split(n_users: int = 30, n_items: int = 25, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for _ in range(n_users):
        s = rng.choice(n_items, rng.integers(5, 12), replace=False)
        train.append(s[:-2])
        val.append(s[-2])
        test.append(s[-1])
    return Split(np.arange(n_items), train, np.array(val), np.array(test), np.zeros(n_users, bool))


def test_blend_weights_components_on_sasrec():
    comp = {"sasrec_ce": np.ones((1, 3), np.float32), "knn": np.array([[0, 1, 2]], np.float32)}
    np.testing.assert_allclose(blend(comp, {"knn": 0.5}), [[1.0, 1.5, 2.0]])
    np.testing.assert_allclose(blend(comp, {"knn": 0.0, "gsasrec": 0.0}), [[1, 1, 1]])


def test_two_stage_reorders_only_inside_the_candidates():
    retr = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    rank = np.array([[0.0, 1.0, 9.0, 9.0, 0.5]])
    out = two_stage(retr, rank, [np.array([0])], k=2)
    order = list(np.argsort(-out[0]))
    assert order[:2] == [2, 1]  # candidates (1, 2: item 0 is a fit item) by rank
    assert order[2:4] == [3, 4]  # the rest by retrieval, below every candidate


def test_one_se_rule_prefers_the_simplest_point_within_noise():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    noisy_best = base + rng.normal(0, 0.05, 400) + 0.001  # best mean, inside noise
    clear = base + 0.2  # far above: no simpler point is within one standard error
    assert one_se_pick([base, noisy_best], [0.0, 1.0]) == 0
    assert one_se_pick([base, clear], [0.0, 1.0]) == 1
    assert one_se_pick([base, base.copy()], [1.0, 1.0]) == 0  # ties: grid order


def test_ease_recovers_item_item_structure():
    seqs = [np.array([0, 1]), np.array([0, 1]), np.array([2, 3]), np.array([0])]
    s = ease_scores(seqs, 4, lam=0.5)
    assert s.shape == (4, 4) and s.dtype == np.float32
    assert s[3, 1] > s[3, 2] and s[3, 1] > s[3, 3]  # 0 goes with 1, not with 2 or 3


def test_tune_and_pick_choose_on_validation_and_score_the_test():
    split = _split()
    rng = np.random.default_rng(1)
    seq_val = {
        n: rng.standard_normal((30, 25)).astype(np.float32) for n in ("sasrec_ce", "gsasrec")
    }
    tuned = [tune_project(split, seq_val, d) for d in (0.7, 0.9)]
    assert set(tuned[0]["retrieval"]) == set(RETRIEVAL_GRID)
    assert len(tuned[0]["ranking"]) == np.prod([len(v) for v in RANKING_GRID.values()])
    picked = pick_project(tuned)
    best = max(r["val"]["ndcg@6"] for t in tuned for r in t["ranking"])
    assert picked["argmax"]["val_ndcg@6"] == best and picked["val"]["ndcg@6"] <= best
    assert set(picked["choice"]) == {"knn_decay", "ease_lambda", "retrieval", "ranking"}
    assert "ndcg_users" not in str(picked)  # JSON-ready
    out = project_test(split, picked["choice"], seq_val)
    for stage in ("retrieval", "two_stage"):
        assert out[stage]["ranks"].shape == (30,) and 0 <= out[stage]["hr@300"] <= 1
    comp = {**seq_val, "knn": seq_val["gsasrec"], "markov": seq_val["sasrec_ce"]}
    comp["ease"] = comp["knn"]
    retr, final = project_scores(comp, split.fit_seqs("val"), picked["choice"])
    assert retr.shape == final.shape == (30, 25)


def test_sequential_used_drops_components_weighted_zero_in_both_blends():
    names = ("sasrec_ce", "gsasrec")
    zero = {"retrieval": {"gsasrec": 0.0, "knn": 0.5}, "ranking": {"gsasrec": 0.0, "knn": 0.25}}
    assert sequential_used(zero, names) == ["sasrec_ce"]  # SASRec-CE: weight 1 in both
    assert sequential_used(DEFAULT_CHOICE, names) == ["sasrec_ce"]
    in_ranking = {**zero, "ranking": {"gsasrec": 0.5, "knn": 0.25}}
    assert sequential_used(in_ranking, names) == ["sasrec_ce", "gsasrec"]
    in_retrieval = {**zero, "retrieval": {"gsasrec": 1.0}}
    assert sequential_used(in_retrieval, names) == ["sasrec_ce", "gsasrec"]


def test_project_test_without_an_unused_component_gives_the_same_scores():
    split = _split()
    rng = np.random.default_rng(2)
    seq = {n: rng.standard_normal((30, 25)).astype(np.float32) for n in ("sasrec_ce", "gsasrec")}
    choice = {**DEFAULT_CHOICE, "knn_decay": 0.7, "ease_lambda": 100.0}
    used = sequential_used(choice, tuple(seq))
    assert used == ["sasrec_ce"]
    full = project_test(split, choice, seq)
    only = project_test(split, choice, {n: seq[n] for n in used})
    for stage in ("retrieval", "two_stage"):
        np.testing.assert_array_equal(full[stage]["ranks"], only[stage]["ranks"])
        assert full[stage]["ndcg@6"] == only[stage]["ndcg@6"]
    weighted = {**choice, "ranking": {**choice["ranking"], "gsasrec": 0.5}}
    with pytest.raises(KeyError):  # a weighted component cannot be left out
        project_test(split, weighted, {n: seq[n] for n in used})
