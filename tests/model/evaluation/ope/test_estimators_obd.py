"""Our OPE estimators against Open Bandit Pipeline on the Open Bandit Dataset sample.

The sample ships inside the installed ``obp`` package (``obp/dataset/obd``); ``data_path`` points
there, so nothing is downloaded.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from checkout_recs.evaluation.ope.estimators import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedIPS,
    tabular_reward_model,
)

pytestmark = pytest.mark.slow  # importing obp (sklearn, torch-free) and a 10k-draw BTS: ~10-40 s


@pytest.fixture(scope="module")
def obd() -> dict:
    obp = pytest.importorskip("obp")
    from obp.dataset import OpenBanditDataset
    from obp.policy import BernoulliTS

    path = Path(obp.__file__).parent / "dataset" / "obd"
    assert (path / "random" / "all" / "all.csv").is_file()
    ds = OpenBanditDataset(behavior_policy="random", campaign="all", data_path=path)
    bf = ds.obtain_batch_bandit_feedback()
    bts = BernoulliTS(
        n_actions=ds.n_actions,
        len_list=ds.len_list,
        is_zozotown_prior=True,
        campaign="all",
        random_state=12345,
    )
    action_dist = bts.compute_batch_action_dist(n_sim=10_000, n_rounds=bf["n_rounds"])
    q_hat = tabular_reward_model(
        bf["reward"], bf["action"], bf["position"], ds.n_actions, ds.len_list
    )
    truth = OpenBanditDataset.calc_on_policy_policy_value_estimate(
        behavior_policy="bts", campaign="all", data_path=path
    )
    data = dict(
        reward=bf["reward"],
        action=bf["action"],
        position=bf["position"],
        pscore=bf["pscore"],
        action_dist=action_dist,
        estimated_rewards_by_reg_model=q_hat,
    )
    return {"data": data, "truth": truth}


def _obp_estimators() -> dict:
    from obp.ope import DirectMethod as ODM
    from obp.ope import DoublyRobust as ODR
    from obp.ope import InverseProbabilityWeighting as OIPW
    from obp.ope import SelfNormalizedInverseProbabilityWeighting as OSNIPW

    return {"ipw": OIPW(), "snipw": OSNIPW(), "dm": ODM(), "dr": ODR()}


OURS = {
    "ipw": InverseProbabilityWeighting(),
    "snipw": SelfNormalizedIPS(),
    "dm": DirectMethod(),
    "dr": DoublyRobust(),
}


@pytest.mark.parametrize("name", list(OURS))
def test_equals_obp_to_relative_1e6(obd: dict, name: str) -> None:
    theirs = _obp_estimators()[name]
    accepted = inspect.signature(theirs.estimate_policy_value).parameters
    expected = theirs.estimate_policy_value(
        **{k: v for k, v in obd["data"].items() if k in accepted}
    )
    got = OURS[name].estimate_policy_value(**obd["data"])
    assert expected > 0
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["ipw", "snipw", "dr"])
def test_bts_value_from_random_logs_covers_on_policy_truth(obd: dict, name: str) -> None:
    iv = OURS[name].estimate_interval(n_bootstrap_samples=500, random_state=1, **obd["data"])
    print(
        f"{name}: estimate {iv.estimate:.5f} CI [{iv.lower:.5f}, {iv.upper:.5f}] truth {obd['truth']:.5f}"
    )
    assert iv.lower < iv.estimate < iv.upper
    assert iv.covers(obd["truth"])


def test_clipping_matches_obp(obd: dict) -> None:
    from obp.ope import InverseProbabilityWeighting as OIPW

    d = obd["data"]
    args = {k: d[k] for k in ("reward", "action", "position", "pscore", "action_dist")}
    ours = InverseProbabilityWeighting(lambda_=5.0).estimate_policy_value(**args)
    assert ours == pytest.approx(OIPW(lambda_=5.0).estimate_policy_value(**args), rel=1e-6)
    assert ours < InverseProbabilityWeighting().estimate_policy_value(**args) or np.isclose(ours, 0)
