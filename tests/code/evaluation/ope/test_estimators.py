"""OPE estimators on tiny hand-checkable inputs: formulas, shapes, bad input, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_recs.evaluation.ope.estimators import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedIPS,
    bootstrap_ratio_interval,
    tabular_reward_model,
)
from checkout_recs.evaluation.ope.estimators_slate import (
    IndependentIPS,
    PositionBasedIPS,
    estimate_examination,
)


def _toy() -> dict:
    # 4 rounds, 2 actions, 1 position; evaluation policy always plays action 1
    action_dist = np.zeros((4, 2, 1))
    action_dist[:, 1, 0] = 1.0
    return dict(
        reward=np.array([1.0, 0.0, 1.0, 0.0]),
        action=np.array([1, 1, 0, 0]),
        pscore=np.array([0.5, 0.25, 0.5, 0.5]),
        action_dist=action_dist,
        estimated_rewards_by_reg_model=np.tile(np.array([[0.2], [0.6]]), (4, 1, 1)),
    )


def test_formulas_by_hand() -> None:
    d = _toy()
    # weights: 2, 4, 0, 0 -> IPS = (2*1 + 4*0)/4 = 0.5; SNIPS = 2/6
    assert InverseProbabilityWeighting().estimate_policy_value(**d) == pytest.approx(0.5)
    assert SelfNormalizedIPS().estimate_policy_value(**d) == pytest.approx(2 / 6)
    assert DirectMethod().estimate_policy_value(**d) == pytest.approx(0.6)
    # DR = 0.6 + mean(w * (r - q(a))) = 0.6 + (2*0.4 + 4*(-0.6))/4 = 0.2
    assert DoublyRobust().estimate_policy_value(**d) == pytest.approx(0.2)
    assert InverseProbabilityWeighting(lambda_=3.0).estimate_policy_value(**d) == pytest.approx(0.5)
    assert InverseProbabilityWeighting(lambda_=1.0).estimate_policy_value(**d) == pytest.approx(
        0.25
    )


def test_bad_input_is_refused() -> None:
    d = _toy()
    with pytest.raises(ValueError, match="pscore"):
        InverseProbabilityWeighting().estimate_policy_value(
            **{**d, "pscore": np.array([0.5, 0, 0.5, 0.5])}
        )
    with pytest.raises(ValueError, match="action_dist"):
        SelfNormalizedIPS().estimate_policy_value(**{**d, "action_dist": d["action_dist"][:2]})
    with pytest.raises(ValueError, match="shape"):
        DirectMethod().estimate_policy_value(
            **{**d, "estimated_rewards_by_reg_model": np.zeros((4, 3, 1))}
        )
    with pytest.raises(ValueError):
        bootstrap_ratio_interval(np.array([]))


def test_bootstrap_interval_contains_estimate_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_ratio_interval(rng.normal(1, 1, 200), random_state=0)
    large = bootstrap_ratio_interval(rng.normal(1, 1, 5_000), random_state=0)
    assert small.lower < small.estimate < small.upper
    assert (large.upper - large.lower) < 0.5 * (small.upper - small.lower)
    assert large.covers(1.0)


def test_grouped_bootstrap_keeps_clusters_together() -> None:
    # 100 clusters of 6 identical rows: resampling rows would understate the spread 2.4x
    rng = np.random.default_rng(1)
    values = np.repeat(rng.normal(0, 1, 100), 6)
    groups = np.repeat(np.arange(100), 6)
    rows = bootstrap_ratio_interval(values, random_state=0)
    clusters = bootstrap_ratio_interval(values, groups=groups, random_state=0)
    assert (clusters.upper - clusters.lower) > 2 * (rows.upper - rows.lower)


def test_slate_estimators_on_policy_equal_the_mean_slate_reward() -> None:
    rng = np.random.default_rng(2)
    n, L = 300, 6
    slate = np.repeat(np.arange(n), L)
    reward = rng.random(n * L) < 0.1
    p = rng.uniform(0.05, 1.0, n * L)
    on_policy = dict(slate_id=slate, reward=reward, pscore=p, evaluation_policy_pscore=p)
    assert IndependentIPS().estimate_policy_value(**on_policy) == pytest.approx(reward.sum() / n)
    marg = rng.uniform(0.01, 0.2, (n * L, L))
    pbm = dict(
        slate_id=slate,
        reward=reward,
        pscore_item_position=marg,
        evaluation_policy_pscore_item_position=marg,
        examination=np.linspace(1, 0.4, L),
    )
    assert PositionBasedIPS().estimate_policy_value(**pbm) == pytest.approx(reward.sum() / n)
    iv = IndependentIPS().estimate_interval(n_bootstrap_samples=200, random_state=0, **on_policy)
    assert iv.lower < reward.sum() / n < iv.upper


def test_examination_recovered_from_random_placement() -> None:
    rng = np.random.default_rng(3)
    theta = np.array([1.0, 0.8, 0.6, 0.5, 0.45, 0.4])
    pos = rng.integers(0, 6, 200_000)
    clicks = rng.random(pos.size) < 0.2 * theta[pos]
    assert estimate_examination(pos, clicks, 6) == pytest.approx(theta, abs=0.03)


def test_tabular_reward_model_shrinks_rare_cells() -> None:
    action = np.array([0, 0, 0, 0, 1])
    reward = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    q = tabular_reward_model(reward, action, None, n_actions=3, len_list=1, prior_strength=1.0)
    assert q.shape == (5, 3, 1)
    assert q[0, 0, 0] == pytest.approx((2 + 0.6) / 5)  # 4 rows, mean 0.5, pulled to 0.6
    assert q[0, 2, 0] == pytest.approx(0.6)  # unseen action gets the prior mean
