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
        (1, 10, 1),
        (1, 5, 2),
        (1, 7, 2),
        (1, 3, 3),  # ties at t=2 broken by item id: 5 then 7
        (2, 5, 1),
        (2, 5, 2),
        (2, 10, 3),
        (2, 11, 3),  # repeated (2, 5): first kept; last two tied
        (3, 4, 1),
        (3, 5, 2),  # fewer than 3 distinct items: dropped
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


def test_markov_beta_damps_popular_successors():
    seqs = [
        np.array([0, 1]),
        np.array([0, 1]),
        np.array([0, 2]),
        np.array([3, 1]),
        np.array([3, 1]),
    ]
    raw = Markov1().fit(seqs, 4).score([np.array([0])])[0]
    assert list(raw) == [0, 2, 1, 0]  # 0 → 1 twice, 0 → 2 once
    lift = Markov1(beta=1.0).fit(seqs, 4).score([np.array([0])])[0]
    assert lift[2] > lift[1]  # item 1 is popular (4 interactions), item 2 is not (1)
    assert lift[1] == pytest.approx(2 / 4) and lift[2] == pytest.approx(1 / 1)


def test_every_grid_holds_the_table_choice_and_builds():
    from checkout_recs.evaluation.next_item.baselines import GRIDS, make_baseline
    from checkout_recs.evaluation.next_item.tuning import TABLE_CHOICE

    assert set(GRIDS) == set(TABLE_CHOICE)
    for name, grid in GRIDS.items():
        assert TABLE_CHOICE[name] in grid, name
        for params in grid:
            make_baseline(name, params)
    with pytest.raises(ValueError):
        make_baseline("nope", {})


def test_choose_takes_the_best_validation_ndcg_first_on_ties():
    from checkout_recs.evaluation.next_item.tuning import choose

    points = [("m", {"x": 1}), ("m", {"x": 2}), ("m", {"x": 3}), ("p", {})]
    res = [
        {"ndcg@6": 0.1, "hr@300": 0.5},
        {"ndcg@6": 0.2, "hr@300": 0.4},
        {"ndcg@6": 0.2, "hr@300": 0.9},
        {"ndcg@6": 0.0, "hr@300": 0.0},
    ]
    out = choose(["m", "p"], points, res, [1.0, 1.0, 1.0, 1.0])
    assert out["m"]["choice"] == {"x": 2} and out["p"]["choice"] == {}
    assert [g["val_ndcg@6"] for g in out["m"]["grid"]] == [0.1, 0.2, 0.2]


def test_cache_round_trip_and_keys(tmp_path):
    from checkout_recs.evaluation.next_item.tuning import Cache, split_hash

    s = split_protocol(_inter(tmp_path))
    key = split_hash(s)
    assert key == split_hash(split_protocol(_inter(tmp_path)))  # same data, same key
    s.val[0] = s.val[1]
    assert split_hash(s) != key  # the split's content is the key
    cache = Cache(tmp_path / "c")
    assert cache.get("baselines", key, "code") is None
    cache.put("baselines", key, "code", {"a": {"choice": {"k": 1}}})
    assert cache.get("baselines", key, "code") == {"a": {"choice": {"k": 1}}}
    assert cache.get("baselines", key, "other code") is None
    assert Cache(None).get("baselines", key, "code") is None


def test_sasrec_early_stopping_keeps_the_best_checkpoint():
    torch = pytest.importorskip("torch")
    from checkout_recs.models.sequence import SASRec, SASRecConfig

    rng = np.random.default_rng(0)
    seqs = [rng.choice(12, 6, replace=False) for _ in range(20)]
    values = iter([0.1, 0.3, 0.2, 0.25, 0.9])  # best at the 2nd check, then 2 without a new best
    states = []

    def monitor(m):
        states.append({k: v.clone() for k, v in m.net.state_dict().items()})
        return next(values)

    cfg = SASRecConfig(
        dim=8, max_len=6, epochs=10, eval_every=1, patience=2, batch_size=8, smooth=1
    )
    m = SASRec(cfg).fit(seqs, 12, seed=0, monitor=monitor)
    assert m.epochs_run == 4 and m.best_epoch == 2 and [e for e, _ in m.history] == [1, 2, 3, 4]
    for k, v in m.net.state_dict().items():
        assert torch.equal(v, states[1][k]), k
    assert m.score(seqs).shape == (20, 12)
    # smoothed over 3 calls: the plateau (epochs 4-6) wins over the lone spike at epoch 2
    values = iter([0.1, 0.4, 0.1, 0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0])
    states.clear()
    m = SASRec(SASRecConfig(**{**cfg.__dict__, "smooth": 3})).fit(seqs, 12, seed=0, monitor=monitor)
    assert m.epochs_run == 8 and m.best_epoch == 5
    for k, v in m.net.state_dict().items():
        assert torch.equal(v, states[4][k]), k
    fixed = SASRec(SASRecConfig(dim=8, max_len=6, epochs=3, batch_size=8)).fit(seqs, 12, seed=0)
    assert fixed.epochs_run == fixed.best_epoch == 3 and fixed.history == []


def _tiny_dataset(path, n_users: int = 40, n_items: int = 30):
    rng = np.random.default_rng(1)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, rng.integers(4, 12), replace=False)):
            rows.append((u, int(i) + 1, t))
    path.mkdir()
    pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "timestamp:float"]).to_csv(
        path / "tiny.inter", sep="\t", index=False
    )
    return path


#: Sequential models small enough for tiny data and a unit test's time.
TINY_SEQ = {"dim": 8, "epochs": 2, "eval_every": 1, "patience": 1, "batch_tokens": 64}


def test_run_protocol_baselines_tuned_per_data_set_timed_and_cached(tmp_path):
    from checkout_recs.evaluation.next_item.evaluate import run_protocol
    from checkout_recs.evaluation.next_item.sequential import SEQ_NAMES

    data = _tiny_dataset(tmp_path / "tiny")
    kw = {
        "n_seeds": 2,
        "project": False,
        "workers": 1,
        "cache_dir": tmp_path / "cache",
        "progress": False,
        "sasrec": TINY_SEQ,
    }
    first = run_protocol(data, tmp_path / "a.json", **kw)
    tuned = {**first["tuning"]["baselines"], **first["tuning"]["sequential"]}
    assert set(tuned) >= {"popularity", "item_knn", "markov1", *SEQ_NAMES}
    for name, row in first["baselines"].items():
        assert row["choice"] == tuned[name]["choice"]  # the test row uses this data set's choice
        assert "versus_published" not in row  # the table is MovieLens-100K's only
    for name in SEQ_NAMES:
        assert first["baselines"][name]["seeds"] == 2
        assert 1 <= tuned[name]["choice"]["epochs"] <= 2  # early-stopped epoch count
        assert len(tuned[name]["grid"]) >= 2
    for stage in ("split", "tuning", "test", "total"):
        assert first["timing"][stage]["wall_s"] >= 0 and first["timing"][stage]["cpu_s"] >= 0
    assert first["timing"]["tuning"]["cached"] == {
        "baselines": False,
        "sequential": False,
        "project": None,
    }
    second = run_protocol(data, tmp_path / "b.json", **kw)
    assert second["timing"]["tuning"]["cached"]["baselines"] is True
    assert second["timing"]["tuning"]["cached"]["sequential"] is True
    assert second["summary"] == first["summary"]
    assert (tmp_path / "b.json").exists()


@pytest.mark.slow
def test_run_protocol_with_the_project_on_two_worker_processes(tmp_path):
    pytest.importorskip("torch")
    from checkout_recs.evaluation.next_item.evaluate import run_protocol

    data = _tiny_dataset(tmp_path / "tiny")
    res = run_protocol(
        data,
        tmp_path / "p.json",
        n_seeds=2,
        workers=2,
        cache_dir=tmp_path / "cache",
        progress=False,
        sasrec=TINY_SEQ,
    )
    p = res["project"]
    assert p["two_stage"]["seeds"] == 2 and p["retrieval"]["seeds"] == 2
    assert set(p["choice"]) == {"knn_decay", "ease_lambda", "retrieval", "ranking"}
    # every sequential baseline is either used by the chosen blend or listed as not used
    comps = p["sequential_components"]
    assert set(comps) == {"sasrec_ce", "gsasrec"} and comps["sasrec_ce"].startswith("used")
    weighted = p["choice"]["retrieval"]["gsasrec"] or p["choice"]["ranking"]["gsasrec"]
    assert comps["gsasrec"].startswith("used" if weighted else "not used")
    assert res["machine"]["workers"] == 2 and res["timing"]["test"]["task_cpu_s"] > 0
    assert res["timing"]["project"]["wall_s"] >= 0
    paired = res["paired"]
    for key in ("project_two_stage ndcg@6", "project_retrieval hr@300"):
        for name in ("sasrec_ce", "gsasrec", "item_knn"):
            d = paired[key][name]
            assert d["all"]["lo"] <= d["all"]["diff"] <= d["all"]["hi"]
            assert d["untied"]["users"] == int((~_tied(data)).sum())
    # a second run finds all three tunings cached and gives the same figures
    again = run_protocol(
        data,
        tmp_path / "q.json",
        n_seeds=2,
        workers=1,
        cache_dir=tmp_path / "cache",
        progress=False,
        sasrec=TINY_SEQ,
    )
    assert all(again["timing"]["tuning"]["cached"].values())
    assert "blend" not in again["timing"]
    assert again["summary"] == res["summary"]


def _tied(data):
    return split_protocol(read_atomic(data)).tied
