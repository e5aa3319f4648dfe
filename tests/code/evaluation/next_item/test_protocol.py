"""The offline next-item protocol: split, tie rules, metrics (tiny hand-made data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checkout_recs.evaluation.next_item.baselines import ItemKNN, Markov1, Popularity
from checkout_recs.evaluation.next_item.evaluate import two_stage, zscore
from checkout_recs.evaluation.next_item.protocol import (
    evaluate_scores,
    metrics_from_ranks,
    rank_and_top,
    read_atomic,
    split_protocol,
)


def _inter(tmp_path) -> pd.DataFrame:
    rows = [  # user, item, timestamp
        (1, 10, 1), (1, 5, 2), (1, 7, 2), (1, 3, 3),  # ties at t=2 broken by item id: 5 then 7
        (2, 5, 1), (2, 5, 2), (2, 10, 3), (2, 11, 3),  # repeated (2, 5): first kept; last two tied
        (3, 4, 1), (3, 5, 2),  # fewer than 3 distinct items: dropped
    ]
    df = pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "timestamp:float"])
    path = tmp_path / "tiny.inter"
    df.to_csv(path, sep="\t", index=False)
    return read_atomic(tmp_path)


def test_split_orders_by_time_then_item_and_drops_short_users(tmp_path):
    s = split_protocol(_inter(tmp_path))
    ids = s.item_ids
    assert list(ids) == [3, 4, 5, 7, 10, 11]  # catalogue: every item in the file, user 3's too
    assert len(s.train) == 2
    assert list(ids[s.train[0]]) == [10, 5] and ids[s.val[0]] == 7 and ids[s.test[0]] == 3
    assert list(ids[s.train[1]]) == [5] and ids[s.val[1]] == 10 and ids[s.test[1]] == 11
    assert list(s.tied) == [False, True]
    assert list(ids[s.fit_seqs("test")[0]]) == [10, 5, 7]


def test_ties_break_by_count_then_item_id():
    scores = np.zeros((1, 5), np.float32)  # every score tied
    counts = np.array([1, 3, 3, 0, 2])
    seqs = [np.array([4])]  # item 4 is excluded
    ranks, tops = rank_and_top(scores, seqs, np.array([2]), counts, top=4)
    assert list(tops[0]) == [1, 2, 0, 3]  # count desc (3, 3, 1, 0), then index asc
    assert ranks[0] == 2


def test_metrics_from_known_ranks():
    ranks = np.array([1, 3, 7, 400])
    tops = np.array([[0, 1, 2, 3, 4, 5]] * 4)
    counts = np.array([10, 10, 10, 1, 1, 1, 0])
    m = metrics_from_ranks(ranks, tops, counts, n_items=7)
    assert m["hr@6"] == 0.5 and m["hr@300"] == 0.75
    assert m["ndcg@6"] == pytest.approx((1 + 1 / np.log2(4)) / 4)
    assert m["mrr@6"] == pytest.approx((1 + 1 / 3) / 4)
    assert m["coverage@6"] == pytest.approx(6 / 7) and m["tail@6"] == pytest.approx(0.5)


def test_baselines_score_shapes_and_markov_counts(tmp_path):
    s = split_protocol(_inter(tmp_path))
    seqs = s.fit_seqs("val")
    for model in (Popularity(), ItemKNN(2, 0.5), Markov1()):
        sc = model.fit(seqs, s.n_items).score(seqs)
        assert sc.shape == (2, s.n_items) and np.isfinite(sc).all()
    mk = Markov1().fit(seqs, s.n_items).score(seqs)
    assert mk[0, list(s.item_ids).index(5)] == 0  # user 1's last train item is 5: nothing follows 5
    res = evaluate_scores(s, "val", Popularity().fit(seqs, s.n_items).score(seqs))
    assert res["users"] == 2 and "untied" in res


def test_two_stage_keeps_retrieval_set_and_reorders_inside():
    retr = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    rank = np.array([[0.0, 1.0, 9.0, 8.0, 7.0]])
    final = two_stage(retr, rank, [np.array([0])], k=2)  # item 0 excluded; top-2 = items 1, 2
    order = np.argsort(-final[0])
    assert list(order[:2]) == [2, 1]  # reordered by the ranker inside the retrieved set
    assert list(order[2:4]) == [3, 4]  # the rest keep retrieval order, below every candidate
    z = zscore(np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]))
    assert z[0].mean() == pytest.approx(0, abs=1e-6) and (z[1] == 0).all()
