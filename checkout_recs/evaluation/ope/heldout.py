"""Off-policy estimates of a ranker's greedy policy on held-out logged impressions.

The evaluation policy re-orders each logged slate by the model's score (greedy, deterministic):
the best-scored listing goes to the top position. Actions are the listings shown in a request,
indexed by their logged slot order; positions are that same order (0 = top). A logged round
(one impression) gets weight ``1 / propensity`` when the greedy order puts its listing where the
logging policy did, 0 otherwise. The reward model for DR is the ranker's own prediction
(position-independent), so DR = the model's predicted value of its order, corrected by the
importance-weighted residuals.

Caveat: the greedy policy only re-orders the listings the logging policy showed; listings it
would have pulled from the wider candidate set are not valued (the logs hold no reward for them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from checkout_recs.evaluation.ope.estimators import DoublyRobust, SelfNormalizedIPS

#: reward name -> labelled-impression column.
REWARDS = {"click": "clicked", "purchase": "purchased"}


def greedy_ope(
    frame: pd.DataFrame, rank_score: np.ndarray, predicted: dict[str, np.ndarray]
) -> dict[str, float]:
    """SNIPS and DR values of "order each logged slate by ``rank_score``" vs the logged policy.

    Parameters
    ----------
    frame : held-out labelled impressions, one row per shown slot, with ``request_id``, ``slot``,
        ``propensity`` in (0, 1] and the reward columns ``clicked`` / ``purchased``.
    rank_score : (n,) the evaluation policy's score per row (higher goes first).
    predicted : reward name (``click``, ``purchase``) -> (n,) predicted reward per row, the DR
        reward model. A name missing here or from ``frame`` is skipped.

    Returns
    -------
    dict with, per reward ``r`` (rewards per impression): ``ope_logged_r`` (on-policy mean),
    ``ope_snips_r`` and ``ope_dr_r``; plus ``ope_n_rounds`` and ``ope_match_share`` (share of
    rounds where the greedy order agrees with the logged slot) and ``ope_ess`` (effective sample
    size of the importance weights, ``(sum w)^2 / sum w^2``: few effective rounds = a noisy
    estimate). Empty for an empty frame.
    Raises ``ValueError`` when a propensity is outside (0, 1] or lengths disagree.
    """
    n = len(frame)
    if n == 0:
        return {}
    if len(rank_score) != n:
        raise ValueError(f"rank_score has {len(rank_score)} rows, frame {n}")
    pscore_all = frame["propensity"].to_numpy(float)
    if not np.all((pscore_all > 0) & (pscore_all <= 1)):
        raise ValueError("pscore (propensity) must be in (0, 1] on every row")
    df = pd.DataFrame(
        {
            "req": frame["request_id"].to_numpy(),
            "slot": frame["slot"].to_numpy(),
            "score": np.asarray(rank_score, float),
            "row": np.arange(n),
        }
    )
    df = df.sort_values(["req", "slot"], kind="stable")
    req_idx = pd.factorize(df["req"])[0]
    action = df.groupby("req", sort=False).cumcount().to_numpy()  # logged order = logged position
    greedy = df.groupby("req", sort=False)["score"].rank(method="first", ascending=False)
    greedy = greedy.to_numpy().astype(int) - 1
    n_req, m = req_idx.max() + 1, int(action.max()) + 1
    pi_req = np.zeros((n_req, m, m))
    pi_req[req_idx, action, greedy] = 1.0
    rows = df["row"].to_numpy()
    data = {
        "action": action,
        "position": action,
        "action_dist": pi_req[req_idx],
        "pscore": pscore_all[rows],
    }
    w = np.where(action == greedy, 1.0 / data["pscore"], 0.0)
    out = {
        "ope_n_rounds": float(n),
        "ope_match_share": float(np.mean(action == greedy)),
        "ope_ess": float(w.sum() ** 2 / (w**2).sum()) if w.any() else 0.0,
    }
    for name, col in REWARDS.items():
        if col not in frame or name not in predicted:
            continue
        reward = frame[col].to_numpy(float)[rows]
        q_req = np.zeros((n_req, m))
        q_req[req_idx, action] = np.asarray(predicted[name], float)[rows]
        q = np.repeat(q_req[req_idx][:, :, None], m, axis=2)
        data_r = {**data, "reward": reward, "estimated_rewards_by_reg_model": q}
        out[f"ope_logged_{name}"] = float(reward.mean())
        out[f"ope_snips_{name}"] = SelfNormalizedIPS().estimate_policy_value(**data_r)
        out[f"ope_dr_{name}"] = DoublyRobust().estimate_policy_value(**data_r)
    return out


def ranker_greedy_ope(model, frame: pd.DataFrame) -> dict[str, float]:  # noqa: ANN001 - RankerModel
    """``greedy_ope`` for a trained ``RankerModel``: ranks by expected revenue
    (P(click)·P(purchase|click)·price·take_rate, as ``evaluation.offline`` does) and uses
    P(click) and P(click)·P(purchase|click) as the DR reward models. Whole requests with a
    propensity outside (0, 1] are left out and counted in ``ope_dropped_rows`` (the pipeline
    must not fail on them). Returns ``{}`` when ``frame`` is empty or lacks ``propensity``.
    """
    if len(frame) == 0 or "propensity" not in frame:
        return {}
    p = frame["propensity"].to_numpy(float)
    bad_req = frame["request_id"][~((p > 0) & (p <= 1))].unique()  # NaN or out of range
    keep = ~frame["request_id"].isin(bad_req).to_numpy()
    frame = frame[keep]
    if len(frame) == 0:
        return {"ope_dropped_rows": float((~keep).sum())}
    p_click, p_cvr = model.predict_frame(frame)
    take = frame["take_rate"].to_numpy(float) if "take_rate" in frame else np.full(len(frame), 0.1)
    value = frame["price"].to_numpy(float) * take
    out = greedy_ope(
        frame, p_click * p_cvr * value, {"click": p_click, "purchase": p_click * p_cvr}
    )
    return {**out, "ope_dropped_rows": float((~keep).sum())}
