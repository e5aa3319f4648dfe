"""Ranker ablation on simulated data: architecture × loss, and the training procedure.

Every configuration is trained on the same time-ordered training part of several simulation
runs and scored on each run's held-out latest requests; the per-head AUC per segment is reported
beside a logistic regression on the same features (``head_auc.logistic_baseline``), as means over
runs, so that one run's noise does not decide.

Configurations (``ABLATION``):

* ``procedure/...``: the default training procedure (spline wide part fitted first, deep epochs
  chosen on a hold-out), the same with a linear wide part (``spline_knots=0``, the default
  before issue #4's second round) and the first one (no warm start, 6 fixed epochs);
* ``shared_bottom/<pointwise|listwise>``: the loss with the linear
  warm start and a fixed 6 deep epochs, so that the deep part is actually trained in every row
  (with early stopping it is often switched off, which would make the rows identical);
* ``cross/fm2``: the default procedure plus a rank-2 factorisation-machine term per head
  (``RankerConfig.fm_factors``): pairwise feature interactions a logistic regression lacks;
* ``purchase/...``: the default procedure with the cvr logit's wide weights shrunk 9x harder
  than the click logit's (``RankerConfig.cvr_l2``), alone and with 16 spline knots at scale 0.02.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from checkout_recs.evaluation.ranking.head_auc import SIM_SEGMENTS, expected_auc, logistic_baseline
from checkout_recs.models.metrics import auc
from checkout_recs.models.ranker import RankerConfig, train_ranker
from checkout_recs.models.ranker_features import available_features

_FIXED = {"early_stopping_share": 0.0, "epochs": 6}
_LOSSES = {"pointwise": {}, "listwise": {"listwise_weight": 0.5}}

#: name → RankerConfig overrides.
ABLATION: dict[str, dict] = {
    "procedure/default (warm start + early stopping)": {},
    "procedure/linear wide (no spline)": {"spline_knots": 0},
    "procedure/previous (no warm start, 6 epochs)": {"linear_warm_start": False, **_FIXED},
    **{
        f"shared_bottom/{loss}": {"architecture": "shared_bottom", **_FIXED, **extra}
        for loss, extra in _LOSSES.items()
    },
    "cross/fm2": {"fm_factors": 2},
    "purchase/cvr_l2=9": {"cvr_l2": 9.0},
    "purchase/cvr_l2=9 + 16 knots (scale 0.02)": {
        "cvr_l2": 9.0,
        "spline_knots": 16,
        "spline_scale": 0.02,
    },
}


def segment_aucs(test: pd.DataFrame, scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """AUC per segment of ``scores`` ``{"clicked": (n,), "purchased": (n,)}`` on ``test``; also
    the expected AUC against the truth (``truth_<y>``) when ``test`` carries ``p_true_<y>``
    (``head_auc.attach_truth``)."""
    out = {}
    for seg, sel in SIM_SEGMENTS.items():
        m = np.asarray(sel(test), bool)
        out[seg] = {y: auc(test[y].to_numpy()[m], s[m]) for y, s in scores.items()}
        out[seg].update(
            {
                f"truth_{y}": expected_auc(test[f"p_true_{y}"].to_numpy()[m], s[m])
                for y, s in scores.items()
                if f"p_true_{y}" in test
            }
        )
    return out


def run_ablation(
    runs: Sequence[tuple[pd.DataFrame, pd.DataFrame]],
    configs: dict[str, dict] | None = None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Train every configuration on every ``(train, test)`` pair; AUCs vs logistic regression.

    Parameters
    ----------
    runs : (train, test) frames of labelled impressions, one pair per simulation run; a test
        frame with ``head_auc.attach_truth`` columns also gets expected AUCs against the truth.
    configs : name → ``RankerConfig`` overrides (default ``ABLATION``).

    Returns
    -------
    ``{"n_runs", "configs": {name: {"overrides", "seconds", "deep_epochs": [per run],
    "segments": {segment: {"auc_click", "auc_purchase", "diff_click", "diff_purchase",
    "wins_click", "wins_purchase"; with truth also "truth_auc_*", "truth_diff_*", "truth_wins_*"}}}},
    "logistic": {segment: {"auc_click", "auc_purchase"}}}``:
    AUCs and differences vs the logistic regression are means over runs; ``wins_*`` counts the
    runs where the configuration is strictly above it.
    """
    configs = configs if configs is not None else ABLATION
    lr_per_run = []
    for tr, te in runs:
        names = train_ranker_names(tr)
        lr_per_run.append(segment_aucs(te, logistic_baseline(tr, te, names)))
    out: dict = {
        "n_runs": len(runs),
        "configs": {},
        "logistic": _mean_segments(
            [
                {
                    s: {
                        f"{k}_{h}": r[s][f"{t}{y}"]
                        for k, t in (("auc", ""), ("truth_auc", "truth_"))
                        for h, y in (("click", "clicked"), ("purchase", "purchased"))
                        if f"{t}{y}" in r[s]
                    }
                    for s in r
                }
                for r in lr_per_run
            ]
        ),
    }
    for name, overrides in configs.items():
        t0 = time.perf_counter()
        per_run, epochs = [], []
        for (tr, te), lr in zip(runs, lr_per_run, strict=True):
            model = train_ranker(tr, RankerConfig(**overrides))
            p_click, p_cvr = model.predict_frame(te)
            a = segment_aucs(te, {"clicked": p_click, "purchased": p_click * p_cvr})
            per_run.append({s: _row(a[s], lr[s]) for s in a})
            epochs.append(model.metrics.get("deep_epochs", float("nan")))
        segs = _mean_segments(per_run)
        for s in segs:
            for key in [k for k in segs[s] if k.startswith(("diff_", "truth_diff_"))]:
                segs[s][key.replace("diff_", "wins_")] = int(
                    sum(r[s].get(key, float("nan")) > 0 for r in per_run)
                )
        out["configs"][name] = {
            "overrides": overrides,
            "seconds": time.perf_counter() - t0,
            "deep_epochs": epochs,
            "segments": segs,
        }
        progress(
            f"ablation {name}: all click {segs['all']['diff_click']:+.4f} purchase "
            f"{segs['all']['diff_purchase']:+.4f} vs LR ({time.perf_counter() - t0:.0f}s)"
        )
    return out


def _row(a: dict[str, float], lr: dict[str, float]) -> dict[str, float]:
    """One run's figures for a segment: AUCs and differences vs LR (labels, and truth if any)."""
    row = {}
    for y, head in (("clicked", "click"), ("purchased", "purchase")):
        row[f"auc_{head}"], row[f"diff_{head}"] = a[y], a[y] - lr[y]
        if f"truth_{y}" in a:
            row[f"truth_auc_{head}"], row[f"truth_diff_{head}"] = (
                a[f"truth_{y}"],
                a[f"truth_{y}"] - lr[f"truth_{y}"],
            )
    return row


def train_ranker_names(train: pd.DataFrame) -> list[str]:
    """The feature names ``train_ranker`` uses on ``train`` by default."""

    return available_features(train)


def _mean_segments(per_run: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean over runs of every figure, per segment (NaN-skipping; NaN when every run is NaN)."""

    def mean(v: list[float]) -> float:
        a = np.asarray(v, np.float64)
        return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else float("nan")

    keys = {s: list(dict.fromkeys(k for r in per_run for k in r[s])) for s in per_run[0]}
    return {
        s: {k: mean([r[s].get(k, float("nan")) for r in per_run]) for k in keys[s]} for s in keys
    }
