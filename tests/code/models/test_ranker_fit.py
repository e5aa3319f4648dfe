"""The ranker's training procedure: linear warm start, early stopping, pairwise loss; and the
paired bootstrap of the head-AUC comparison."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_models import SLATE_FEATURES as NAMES  # noqa: E402
from fixtures_models import make_slates as _slates  # noqa: E402

from checkout_recs.evaluation.ranking.head_auc import logistic_baseline, paired_auc_bootstrap  # noqa: E402
from checkout_recs.models import ranker_fit as fit  # noqa: E402
from checkout_recs.models.metrics import auc  # noqa: E402
from checkout_recs.models.ranker import RankerConfig, train_ranker  # noqa: E402


def test_holdout_mask_takes_whole_latest_requests():
    f = _slates(200, 0, False)
    m = fit.holdout_mask(f, 0.25)
    assert 0.2 < m.mean() < 0.3
    held = f[m]
    assert held["event_timestamp"].min() >= f[~m]["event_timestamp"].max()
    assert (held.groupby("request_id").size() == 6).all()  # whole slates
    assert not fit.holdout_mask(f.drop(columns="event_timestamp"), 0.25).any()
    assert not fit.holdout_mask(f.iloc[:60], 0.25).any()  # under 10 requests held out: none


def test_fit_linear_matches_logistic_regression():
    f = _slates(600, 1, False)
    X = f[NAMES].to_numpy(np.float32)
    yc, yb = fit.labels(f)
    z = torch.from_numpy((X - X.mean(0)) / X.std(0))
    lin = fit.fit_linear(z, torch.from_numpy(yc), torch.from_numpy(yb), ctcvr_weight=0.0)
    ours = (z @ lin.weight[0].detach()).numpy()
    lr = logistic_baseline(f, f, NAMES)["clicked"]
    assert np.corrcoef(ours, np.log(lr / (1 - lr)))[0, 1] > 0.999


def test_cvr_l2_shrinks_the_cvr_logit_only():
    f = _slates(600, 1, False)
    X = f[NAMES].to_numpy(np.float32)
    yc, yb = (torch.from_numpy(a) for a in fit.labels(f))
    z = torch.from_numpy((X - X.mean(0)) / X.std(0))
    base, strong = fit.fit_linear(z, yc, yb), fit.fit_linear(z, yc, yb, cvr_l2=1e4)
    assert float(strong.weight[1].norm()) < 0.2 * float(base.weight[1].norm())
    assert float((strong.weight[0] - base.weight[0]).norm()) < 0.1 * float(base.weight[0].norm())
    m1 = train_ranker(f, RankerConfig(epochs=0, early_stopping_share=0.0, spline_knots=0), NAMES)
    m_strong = train_ranker(
        f, RankerConfig(epochs=0, early_stopping_share=0.0, spline_knots=0, cvr_l2=1e4), NAMES
    )  # the config reaches the warm start
    assert m1.net.wide is not None and m_strong.net.wide is not None
    assert float(m_strong.net.wide.weight[1].norm()) < 0.2 * float(m1.net.wide.weight[1].norm())


def test_linear_data_keeps_linear_model_and_ties_logistic_regression():
    train, test = _slates(800, 2, False), _slates(400, 3, False)
    m = train_ranker(train, RankerConfig(seed=1), NAMES)
    assert m.metrics["deep_epochs"] <= 6 and "heldout_loss_epoch_0" in m.metrics
    zero = train_ranker(
        train, RankerConfig(epochs=0, early_stopping_share=0.0, spline_knots=0), NAMES
    )
    assert zero.metrics["deep_epochs"] == 0
    p_lin = zero.predict_frame(test)[0]
    lr = logistic_baseline(train, test, NAMES)["clicked"]
    y = test["clicked"].to_numpy()
    assert abs(auc(y, p_lin) - auc(y, lr)) < 0.002  # 0 deep epochs: the linear model itself
    assert auc(y, m.predict_frame(test)[0]) > auc(y, lr) - 0.005


def test_interaction_data_uses_deep_part_and_beats_logistic_regression():
    train, test = _slates(1500, 4, True), _slates(500, 5, True)
    m = train_ranker(train, RankerConfig(epochs=15, seed=0), NAMES)
    assert m.metrics["deep_epochs"] > 0
    y = test["clicked"].to_numpy()
    lr = logistic_baseline(train, test, NAMES)["clicked"]
    assert auc(y, m.predict_frame(test)[0]) > auc(y, lr) + 0.1  # LR sees no signal in a product


def test_pairwise_loss_prefers_positive_above_negative():
    g = torch.tensor([0, 0, 1, 1])
    yc, yb = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4)
    good = fit.pairwise_loss(torch.tensor([3.0, -3.0, 0.0, 0.0]), torch.zeros(4), yb, yc, g)
    bad = fit.pairwise_loss(torch.tensor([-3.0, 3.0, 0.0, 0.0]), torch.zeros(4), yb, yc, g)
    assert float(good) < float(bad)
    none = fit.pairwise_loss(torch.zeros(4), torch.zeros(4), yb, torch.zeros(4), g)
    assert float(none) == 0.0


def test_paired_bootstrap_interval_and_direction():
    rng = np.random.default_rng(0)
    y = rng.uniform(size=3000) < 0.2
    good = y + rng.normal(0, 1.0, 3000)
    groups = np.repeat(np.arange(500), 6)
    same = paired_auc_bootstrap(y, good, good, groups, n_boot=50)
    assert same["diff"] == 0 and same["diff_lo"] == 0 and same["diff_hi"] == 0
    r = paired_auc_bootstrap(y, good, good + rng.normal(0, 2.0, 3000), groups, n_boot=100)
    assert r["diff"] > 0 and r["diff_lo"] > 0 and r["p_model_better"] > 0.95
    assert r["auc_lo"] < r["auc"] < r["auc_hi"]


def test_factorization_machine_term_is_the_pairwise_sum_and_survives_save_load(tmp_path):
    from checkout_recs.models.ranker import FactorizationMachine, RankerModel

    fm = FactorizationMachine(3, 2)
    z = torch.randn(5, 3)
    want = torch.stack(
        [
            sum(
                (fm.v[h, i] @ fm.v[h, j]) * z[:, i] * z[:, j]
                for i in range(3)
                for j in range(i + 1, 3)
            )
            for h in range(2)
        ],
        1,
    )
    assert torch.allclose(fm(z), want, atol=1e-6)
    train, test = _slates(1500, 4, True), _slates(500, 5, True)
    m = train_ranker(train, RankerConfig(epochs=15, seed=0, fm_factors=2), NAMES)
    X = test[NAMES].to_numpy(np.float32)
    again = RankerModel.load(m.save(tmp_path / "fm"))
    assert np.allclose(again.predict(X)[0], m.predict(X)[0])
    y = test["clicked"].to_numpy()
    lr = logistic_baseline(train, test, NAMES)["clicked"]
    assert (
        auc(y, m.predict(X)[0]) > auc(y, lr) + 0.1
    )  # a product of two features: one FM factor pair


def _additive(n_requests: int, seed: int) -> pd.DataFrame:
    """Slates whose click logit is ``2 x0² − 3``: additive per feature, not linear (U-shaped)."""
    f = _slates(n_requests, seed, False)
    rng = np.random.default_rng(seed + 100)
    x0 = f[NAMES[0]].to_numpy()
    clicked = rng.uniform(size=len(f)) < 1 / (1 + np.exp(-(2.0 * x0**2 - 3.0)))
    return f.assign(
        clicked=clicked.astype(np.int8),
        purchased=(clicked & (rng.uniform(size=len(f)) < 0.3)).astype(np.int8),
    )


def test_piecewise_ramps_are_piecewise_linear_and_skip_empty_bins():
    from checkout_recs.models.piecewise import PiecewiseLinear

    pl = PiecewiseLinear(2, 4, scale=1.0)
    X = np.stack(
        [np.arange(101, dtype=np.float32), np.r_[np.zeros(90), np.ones(11)].astype(np.float32)], 1
    )
    pl.fit(X)
    r = pl.ramps(torch.from_numpy(X)).numpy()
    assert np.allclose(pl.edges[0].numpy(), [0, 25, 50, 75, 100])
    assert np.allclose(r[:, :4].sum(1), X[:, 0] / 25)  # ramps of one feature add up to x (linear)
    assert np.allclose(r[30, :4], [1, 0.2, 0, 0])
    assert (r[:, 4:7] == 0).all()  # zero-width bins of a 0/1 feature: no ramp
    z = pl(torch.from_numpy(X)).numpy()
    assert np.allclose(z[:, :4].mean(0), 0, atol=1e-5)


def test_spline_wide_part_beats_logistic_regression_on_additive_curve_without_deep_part(tmp_path):
    from checkout_recs.models.ranker import RankerModel

    train, test = _additive(1500, 6), _additive(500, 7)
    cfg = RankerConfig(epochs=0, early_stopping_share=0.0, spline_scale=1.0)
    m = train_ranker(train, cfg, NAMES)
    y = test["clicked"].to_numpy()
    lr = logistic_baseline(train, test, NAMES)["clicked"]
    assert auc(y, m.predict_frame(test)[0]) > auc(y, lr) + 0.1  # LR sees no signal in a symmetric U
    again = RankerModel.load(m.save(tmp_path / "spline"))
    assert np.allclose(again.predict_frame(test)[0], m.predict_frame(test)[0])


def test_model_saved_before_splines_loads_as_linear_wide(tmp_path):
    import json

    from checkout_recs.models.ranker import RankerModel

    train = _slates(300, 8, False)
    m = train_ranker(train, RankerConfig(epochs=1, spline_knots=0), NAMES)
    d = m.save(tmp_path / "old")
    meta = json.loads((d / "config.json").read_text())
    for key in ("spline_knots", "spline_scale"):
        meta["config"].pop(key)  # config.json as written before the field existed
    (d / "config.json").write_text(json.dumps(meta))
    old = RankerModel.load(d)
    assert old.cfg.spline_knots == 0 and old.net.spline is None
    assert np.allclose(old.predict_frame(train)[0], m.predict_frame(train)[0])
