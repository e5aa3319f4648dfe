"""Per-head AUC of a ranker beside a logistic-regression baseline, per segment, with paired
request-level bootstrap intervals.

The simulator target says each head's AUC must be above a logistic regression's on the same
features, in every segment. Segments hold from a few hundred to a few thousand impressions and
a few to a few hundred positives, so every figure comes with its counts and a 95% interval:
requests (whole slates, the unit the data is drawn in) are resampled with replacement, and the
*difference* ranker − LR is computed on the same resample (paired), which is what decides "above".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from checkout_recs.models.metrics import auc
from checkout_recs.models.ranker import RankerModel
from checkout_recs.models.ranker_features import _col, ranker_matrix


def numeric_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Feature ``name`` of ``frame`` as float (n,) (prefixed training-set column accepted); NaN when absent."""
    return _col(frame, name, default=np.nan)


#: Simulator segments: boolean (n,) masks of a labelled frame.
SIM_SEGMENTS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "all": lambda f: np.ones(len(f), bool),
    "new_listings": lambda f: numeric_column(f, "age_days") <= 7,
    "new_sellers": lambda f: numeric_column(f, "seller_is_new") == 1,
    "new_users": lambda f: numeric_column(f, "n_purchases") == 0,
}


def logistic_baseline(
    train: pd.DataFrame, test: pd.DataFrame, names: list[str]
) -> dict[str, np.ndarray]:
    """Scores (n_test,) of two standardised logistic regressions on ``ranker_matrix`` features:
    ``{"clicked": P(click), "purchased": P(purchase)}`` (purchase over every impression, the
    ESMM target)."""
    from sklearn.linear_model import (
        LogisticRegression,  # lazy: scikit-learn costs ~1 s and only baselines need it
    )
    from sklearn.pipeline import (
        make_pipeline,
    )  # lazy: scikit-learn costs ~1 s and only baselines need it
    from sklearn.preprocessing import (
        StandardScaler,  # lazy: scikit-learn costs ~1 s and only baselines need it
    )

    Xtr, Xte = ranker_matrix(train, names), ranker_matrix(test, names)
    out = {}
    for y in ("clicked", "purchased"):
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
            Xtr, train[y].to_numpy()
        )
        out[y] = lr.predict_proba(Xte)[:, 1]
    return out


def paired_auc_bootstrap(
    y: np.ndarray,
    s_model: np.ndarray,
    s_base: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 300,
    seed: int = 0,
    metric: Callable[[np.ndarray, np.ndarray], float] = auc,
) -> dict[str, float]:
    """AUC of two scores on the same rows and bootstrap 95% intervals, resampling ``groups``.

    Parameters
    ----------
    y : (n,) 0/1 labels (or true probabilities with ``metric=expected_auc``);
    s_model, s_base : (n,) scores; groups : (n,) request codes; metric : ``metric(y, score)``.

    Returns
    -------
    ``{"auc", "auc_lo", "auc_hi", "base_auc", "base_lo", "base_hi", "diff", "diff_lo",
    "diff_hi", "p_model_better"}``: point estimates, 2.5/97.5 percentiles, and the share of
    resamples where the model's AUC is higher. NaN where a class is missing.
    """
    a, b = metric(y, s_model), metric(y, s_base)
    codes, inv = np.unique(groups, return_inverse=True)
    rows_of = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[rows_of], np.arange(len(codes)))
    sizes = np.bincount(inv, minlength=len(codes))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot if np.isfinite(a) and np.isfinite(b) else 0):
        pick = rng.integers(0, len(codes), len(codes))
        idx = np.concatenate([rows_of[starts[g] : starts[g] + sizes[g]] for g in pick])
        boots.append((metric(y[idx], s_model[idx]), metric(y[idx], s_base[idx])))
    arr = np.array(boots, dtype=np.float64).reshape(-1, 2)
    arr = arr[np.isfinite(arr).all(1)]

    def pct(v: np.ndarray, q: float) -> float:
        return float(np.percentile(v, q)) if len(v) else float("nan")

    d = arr[:, 0] - arr[:, 1]
    return {
        "auc": a,
        "auc_lo": pct(arr[:, 0], 2.5),
        "auc_hi": pct(arr[:, 0], 97.5),
        "base_auc": b,
        "base_lo": pct(arr[:, 1], 2.5),
        "base_hi": pct(arr[:, 1], 97.5),
        "diff": a - b,
        "diff_lo": pct(d, 2.5),
        "diff_hi": pct(d, 97.5),
        "p_model_better": float((d > 0).mean()) if len(d) else float("nan"),
    }


def expected_auc(p_true: np.ndarray, score: np.ndarray) -> float:
    """AUC in expectation over the labels: rows are positive with their true probability.

    ``Σ_{i≠j} p_i (1 − p_j) [s_i > s_j] / Σ_{i≠j} p_i (1 − p_j)`` (ties count half), i.e. the AUC
    averaged over every draw of the labels from ``p_true`` (n,) given these rows — the label
    noise of one draw removed. ``score`` (n,). NaN for fewer than 2 rows.
    """
    p = np.asarray(p_true, np.float64)
    s = np.asarray(score, np.float64)
    if len(p) < 2:
        return float("nan")
    order = np.argsort(s, kind="stable")
    p, s = p[order], s[order]
    _, start = np.unique(s, return_index=True)  # first row of each tie group (sorted scores)
    neg = 1.0 - p
    below = np.concatenate([[0.0], np.cumsum(neg)])[start]  # Σ (1 − p_j) over strictly lower scores
    tie_neg = np.add.reduceat(neg, start)
    tie_pos = np.add.reduceat(p, start)
    tie_self = np.add.reduceat(p * neg, start)  # i = j pairs inside a tie group, to remove
    num = float((tie_pos * below).sum() + 0.5 * (tie_pos * tie_neg - tie_self).sum())
    den = float(p.sum() * neg.sum() - (p * neg).sum())
    return num / den if den > 0 else float("nan")


def head_auc_vs_logistic(
    model: RankerModel, train: pd.DataFrame, test: pd.DataFrame, n_boot: int = 300, seed: int = 0
) -> dict[str, dict[str, float]]:
    """AUC per head of ``model`` beside a logistic regression on the same features, per segment.

    Click head: ``p_click`` against clicks; purchase head: ``p_click · p_purchase|click`` against
    purchases, every impression. Returns ``{segment: {"n", "n_click", "n_purchase",
    "auc_click", "lr_auc_click", "auc_purchase", "lr_auc_purchase", and per head
    "<head>_ci": paired_auc_bootstrap(...)}}``.
    """
    base = logistic_baseline(train, test, model.feature_names)
    p_click, p_cvr = model.predict(ranker_matrix(test, model.feature_names))
    heads = {"click": ("clicked", p_click), "purchase": ("purchased", p_click * p_cvr)}
    groups = pd.factorize(test["request_id"])[0] if "request_id" in test else np.arange(len(test))
    out: dict[str, dict] = {}
    for seg, sel in SIM_SEGMENTS.items():
        m = np.asarray(sel(test), bool)
        row: dict = {
            "n": int(m.sum()),
            "n_click": int(test["clicked"].to_numpy()[m].sum()),
            "n_purchase": int(test["purchased"].to_numpy()[m].sum()),
        }
        for head, (y, s) in heads.items():
            ci = paired_auc_bootstrap(
                test[y].to_numpy()[m], s[m], base[y][m], groups[m], n_boot, seed
            )
            row[f"auc_{head}"], row[f"lr_auc_{head}"], row[f"{head}_ci"] = (
                ci["auc"],
                ci["base_auc"],
                ci,
            )
        out[seg] = row
    return out


def attach_truth(test: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """``test`` with ``p_true_clicked`` (the truth's P(click)) and ``p_true_purchased``
    (P(click)·P(purchase | click)) joined on ``request_id, slot`` from ``truth``
    (``simulate.evaluate.logged_expectations``). Raises ValueError when a row has no truth."""
    t = test[["request_id", "slot"]].merge(
        truth[["request_id", "slot", "p_click", "p_purchase"]],
        on=["request_id", "slot"],
        how="left",
    )
    if t["p_click"].isna().any():
        raise ValueError("truth lacks some test impressions (request_id, slot)")
    return test.assign(
        p_true_clicked=t["p_click"].to_numpy(),
        p_true_purchased=(t["p_click"] * t["p_purchase"]).to_numpy(),
    )


def truth_auc_vs_logistic(
    model: RankerModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Expected AUC (``expected_auc``) of each head against the simulator's hidden truth, beside
    the logistic regression's and the truth's own (the ceiling), per segment.

    ``truth`` holds ``request_id, slot, p_click, p_purchase`` (``simulate.evaluate.
    logged_expectations``); the purchase head is scored against ``p_click · p_purchase``.
    Returns ``{segment: {"n", "<head>_ci": paired_auc_bootstrap(..., metric=expected_auc),
    "truth_<head>": ceiling}}``.
    """
    t = attach_truth(test, truth)
    p_true = {"click": t["p_true_clicked"].to_numpy(), "purchase": t["p_true_purchased"].to_numpy()}
    base = logistic_baseline(train, test, model.feature_names)
    p_click, p_cvr = model.predict(ranker_matrix(test, model.feature_names))
    heads = {"click": (p_click, base["clicked"]), "purchase": (p_click * p_cvr, base["purchased"])}
    groups = pd.factorize(test["request_id"])[0]
    out: dict[str, dict] = {}
    for seg, sel in SIM_SEGMENTS.items():
        m = np.asarray(sel(test), bool)
        row: dict = {"n": int(m.sum())}
        for head, (s_model, s_base) in heads.items():
            row[f"{head}_ci"] = paired_auc_bootstrap(
                p_true[head][m], s_model[m], s_base[m], groups[m], n_boot, seed, metric=expected_auc
            )
            row[f"truth_{head}"] = expected_auc(p_true[head][m], p_true[head][m])
        out[seg] = row
    return out
