"""Greedy-policy off-policy estimates on logged slates (``evaluation.ope_heldout``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checkout_recs.evaluation.ope.heldout import greedy_ope


def _logs(n_req: int = 4000, k: int = 6, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Uniformly random slates of k listings; click prob = quality x position bias."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0.02, 0.4, size=(n_req, k))
    bias = 1.0 / (1.0 + np.arange(k))
    order = np.argsort(rng.random((n_req, k)), axis=1)  # order[r, s] = item shown at slot s
    q_shown = np.take_along_axis(quality, order, axis=1)
    clicked = rng.random((n_req, k)) < q_shown * bias
    frame = pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(n_req)], k),
            "slot": np.tile(np.arange(k), n_req),
            "propensity": 1.0 / k,  # a random permutation puts an item at a slot with prob 1/k
            "clicked": clicked.ravel().astype(int),
            "purchased": (clicked & (rng.random((n_req, k)) < 0.3)).ravel().astype(int),
            "quality": q_shown.ravel(),
        }
    )
    true_greedy = float((np.sort(quality, axis=1)[:, ::-1] * bias).mean())
    return frame.sample(frac=1.0, random_state=1), true_greedy  # shuffled rows: order-free input


def test_greedy_by_true_quality_is_valued_near_truth_and_above_logging():
    frame, truth = _logs()
    q = frame["quality"].to_numpy()
    bias_mean = float((1.0 / (1.0 + np.arange(6))).mean())
    got = greedy_ope(frame, q, {"click": q * bias_mean})
    assert got["ope_snips_click"] == pytest.approx(truth, rel=0.1)
    assert got["ope_dr_click"] == pytest.approx(truth, rel=0.1)
    assert got["ope_snips_click"] > got["ope_logged_click"] * 1.2
    assert 0 < got["ope_match_share"] < 0.5 and got["ope_n_rounds"] == len(frame)
    # equal weights 1/p = 6 on the matched rounds: the ESS is exactly their number
    assert got["ope_ess"] == pytest.approx(got["ope_match_share"] * len(frame))
    assert "ope_snips_purchase" not in got  # no reward model given for purchases


def test_reproducing_the_logged_order_gives_the_logged_value():
    frame, _ = _logs(n_req=300)
    got = greedy_ope(
        frame,
        -frame["slot"].to_numpy(float),
        {"click": np.full(len(frame), 0.1), "purchase": np.zeros(len(frame))},
    )
    assert got["ope_match_share"] == 1.0 and got["ope_ess"] == pytest.approx(len(frame))
    for r in ("click", "purchase"):
        assert got[f"ope_snips_{r}"] == pytest.approx(got[f"ope_logged_{r}"])
        # DR with weight 1/p = 6 on every round: DM + 6 (r - q), a different but finite value
        assert np.isfinite(got[f"ope_dr_{r}"])


def test_bad_input_is_refused_and_empty_gives_nothing():
    frame, _ = _logs(n_req=10)
    assert greedy_ope(frame.iloc[:0], np.array([]), {}) == {}
    with pytest.raises(ValueError, match="rows"):
        greedy_ope(frame, np.zeros(3), {})
    bad = frame.assign(propensity=0.0)
    with pytest.raises(ValueError, match="pscore"):
        greedy_ope(bad, bad["quality"].to_numpy(), {"click": bad["quality"].to_numpy()})
