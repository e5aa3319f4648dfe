"""Head AUC vs logistic regression per segment (counts, paired intervals) and the ranker ablation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from fixtures_models import SLATE_FEATURES, make_slates  # noqa: E402

from checkout_recs.evaluation.ranking.head_auc import head_auc_vs_logistic  # noqa: E402
from checkout_recs.models.ranker import RankerConfig, train_ranker  # noqa: E402
from checkout_recs.studies.ranker_ablation import ABLATION, run_ablation  # noqa: E402


def _with_segments(frame, seed):
    rng = np.random.default_rng(seed)
    return frame.assign(
        age_days=rng.uniform(0, 30, len(frame)),
        seller_is_new=(rng.uniform(size=len(frame)) < 0.2).astype(int),
        n_purchases=rng.integers(0, 3, len(frame)),
    )


def test_head_auc_reports_counts_intervals_per_segment():
    train, test = (
        _with_segments(make_slates(400, 0, True), 0),
        _with_segments(make_slates(200, 1, True), 1),
    )
    model = train_ranker(train, RankerConfig(epochs=10), SLATE_FEATURES)
    out = head_auc_vs_logistic(model, train, test, n_boot=50)
    assert set(out) == {"all", "new_listings", "new_sellers", "new_users"}
    a = out["all"]
    assert a["n"] == len(test) and a["n_click"] == int(test["clicked"].sum())
    assert out["new_sellers"]["n"] == int((test["seller_is_new"] == 1).sum())
    ci = a["click_ci"]
    assert (
        ci["auc_lo"] <= a["auc_click"] <= ci["auc_hi"]
        and ci["diff_lo"] <= ci["diff"] <= ci["diff_hi"]
    )
    assert a["auc_click"] > a["lr_auc_click"]  # the product signal: only the deep part sees it


def test_ablation_runs_every_config_on_every_run():
    runs = [(make_slates(150, s, False), make_slates(60, s + 10, False)) for s in (0, 1)]
    runs[0] = (
        runs[0][0],
        runs[0][1].assign(p_true_clicked=0.2, p_true_purchased=0.05),
    )  # one run with truth
    configs = {
        k: ABLATION[k]
        for k in ("procedure/default (warm start + early stopping)", "shared_bottom/listwise")
    }
    out = run_ablation(runs, configs, progress=lambda _: None)
    assert out["n_runs"] == 2 and set(out["configs"]) == set(configs)
    row = out["configs"]["shared_bottom/listwise"]
    assert row["deep_epochs"] == [6.0, 6.0]  # fixed epochs: the deep part is trained
    seg = row["segments"]["all"]
    assert 0 <= seg["wins_click"] <= 2 and 0.5 < seg["auc_click"] <= 1
    assert abs(seg["auc_click"] - seg["diff_click"] - out["logistic"]["all"]["auc_click"]) < 1e-9
    assert (
        "truth_diff_click" in seg and "truth_wins_purchase" in seg
    )  # expected AUC where the truth is known
    assert abs(seg["truth_auc_click"] - 0.5) < 1e-9  # a constant truth: every order is a coin flip


def test_expected_auc_equals_pairwise_definition_with_ties():
    from checkout_recs.evaluation.ranking.head_auc import expected_auc

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.6, 80)
    s = np.round(p + rng.normal(0, 0.1, 80), 1)  # many ties
    w = p[:, None] * (1 - p[None, :])
    np.fill_diagonal(w, 0.0)
    cmp = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    assert abs(expected_auc(p, s) - (w * cmp).sum() / w.sum()) < 1e-12
    assert expected_auc(p, p) > expected_auc(p, -p)


def test_truth_auc_ranks_the_true_probability_highest():
    from checkout_recs.evaluation.ranking.head_auc import truth_auc_vs_logistic

    train, test = (
        _with_segments(make_slates(400, 0, False), 0),
        _with_segments(make_slates(200, 1, False), 1),
    )
    test = test.assign(slot=np.tile(np.arange(6), len(test) // 6))
    p = 1 / (
        1 + np.exp(-(1.5 * test["ctr_lift"] - test["seller_rating"] - 1.5))
    )  # make_slates' truth
    truth = test[["request_id", "slot"]].assign(p_click=p, p_purchase=0.3)
    model = train_ranker(train, RankerConfig(), SLATE_FEATURES)
    out = truth_auc_vs_logistic(model, train, test, truth, n_boot=20)
    a = out["all"]
    assert (
        a["truth_click"] >= a["click_ci"]["auc"] - 1e-9
        and a["truth_click"] >= a["click_ci"]["base_auc"] - 1e-9
    )
    assert (
        abs(a["click_ci"]["diff"]) < 0.02
    )  # linear truth: the ranker ties the logistic regression
