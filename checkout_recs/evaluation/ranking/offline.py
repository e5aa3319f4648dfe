"""Stage ``evaluate``: the trained ranker on held-out labelled impressions.

Metrics (all higher-is-better, the promotion gate's inputs):

``auc_click``           AUC of P(click) against clicks, every impression
``auc_purchase``        AUC of P(click)·P(purchase|click) against purchases, every impression
``ndcg@6``              NDCG@6 of each logged slate re-ordered by expected revenue
                        (gain: click 1, purchase 2), averaged over requests with a click
``expected_revenue@6``  mean realised revenue-weighted gain of the model's top slot order
                        (purchase · price · take_rate at the positions the model chooses,
                        position-discounted like NDCG) — a logged-data proxy; the simulator's
                        hidden truth gives the unbiased figure (``evaluate_simulator``)

each also for the logged order (``logged_*``) and a popularity order (``popular_*``, by the
listing's smoothed CTR), and split by segment (new listings, new sellers, new users) when the
frame carries ``age_days``, ``seller_is_new``, ``n_purchases``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.evaluation.ranking.head_auc import numeric_column
from checkout_recs.models.metrics import auc
from checkout_recs.models.ranker import RankerModel
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.recommender import TableUserFeatures
from checkout_recs.simulate.evaluate import evaluate_policy, heuristic_policy, oracle_policy
from checkout_recs.simulate.scenario import SimWorld

SEGMENTS = {
    "new_listings": lambda f: f["age_days"] <= 7 if "age_days" in f else None,
    "new_sellers": lambda f: f["seller_is_new"] == 1 if "seller_is_new" in f else None,
    "new_users": lambda f: f["n_purchases"] <= 1 if "n_purchases" in f else None,
}


def slate_ndcg(frame: pd.DataFrame, score: np.ndarray, gain: np.ndarray, k: int = 6) -> float:
    """Mean NDCG@k over requests (``request_id``) with a positive gain.

    Parameters
    ----------
    frame : rows with ``request_id``; score, gain : (n,) arrays aligned with ``frame``.

    Returns NaN when no request has a positive gain.
    """
    df = pd.DataFrame({"g": frame["request_id"].to_numpy(), "s": score, "y": gain})
    df = df[df.groupby("g")["y"].transform("sum") > 0]
    if df.empty:
        return float("nan")
    df = df.sort_values(["g", "s"], ascending=[True, False], kind="stable")
    df["pos"] = df.groupby("g").cumcount()
    df["disc"] = np.where(df["pos"] < k, 1 / np.log2(df["pos"] + 2), 0.0)
    dcg = (df["y"] * df["disc"]).groupby(df["g"]).sum()
    ideal = df.sort_values(["g", "y"], ascending=[True, False], kind="stable")
    ipos = ideal.groupby("g").cumcount().to_numpy()
    ideal_disc = np.where(ipos < k, 1 / np.log2(ipos + 2), 0.0)
    idcg = (
        pd.Series(ideal["y"].to_numpy() * ideal_disc, index=ideal["g"].to_numpy())
        .groupby(level=0)
        .sum()
    )
    return float((dcg / idcg.reindex(dcg.index)).mean())


def _scores(model: RankerModel, frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    p_click, p_cvr = model.predict_frame(frame)
    value = (
        frame["price"].to_numpy(np.float64)
        * frame.get("take_rate", pd.Series(0.1, index=frame.index)).to_numpy()
    )
    out = {"model": (p_click, p_click * p_cvr * value)}
    slot = frame["slot"].to_numpy(np.float64) if "slot" in frame else np.zeros(len(frame))
    out["logged"] = (-slot, -slot)
    ctr = numeric_column(frame, "ctr_smoothed").astype(
        np.float64
    )  # the view column, prefixed or not
    out["popular"] = (ctr, ctr)
    return out


def ranking_metrics(model: RankerModel, frame: pd.DataFrame) -> dict[str, float]:
    """AUCs, NDCG@6 and the revenue proxy for the model and the two reference orders."""
    if len(frame) == 0:
        return {}
    clicked = frame["clicked"].to_numpy()
    purchased = frame["purchased"].to_numpy()
    value = (
        frame["price"].to_numpy(np.float64)
        * frame.get("take_rate", pd.Series(0.1, index=frame.index)).to_numpy()
    )
    out: dict[str, float] = {}
    for name, (s_click, s_rank) in _scores(model, frame).items():
        pre = "" if name == "model" else f"{name}_"
        out[f"{pre}auc_click"] = auc(clicked, s_click)
        out[f"{pre}auc_purchase"] = auc(purchased, s_rank)
        out[f"{pre}ndcg@6"] = slate_ndcg(frame, s_rank, clicked + purchased)
        out[f"{pre}expected_revenue@6"] = (
            slate_ndcg(frame, s_rank, purchased * value) if purchased.any() else float("nan")
        )
    return out


def evaluate_run(
    model_dir: Path,
    test_set_path: Path,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate a trained ranker on a labelled test set; write ``metrics.json`` and ``report.html``.

    Parameters
    ----------
    model_dir : ``train_all`` output (``ranker/``) or a ranker folder.
    test_set_path : parquet of labelled impressions with ranker features.
    out_dir : receives ``metrics.json`` and ``report.html``.
    progress : called with ``overall`` and then each segment's name as it is scored.

    Returns
    -------
    dict ``{"overall": {...}, "segments": {segment: {...}}, "n_rows": n}``.
    """
    model_dir = Path(model_dir)
    model = RankerModel.load(model_dir / "ranker" if (model_dir / "ranker").is_dir() else model_dir)
    frame = pd.read_parquet(test_set_path)
    say = progress or (lambda _stage: None)
    say("overall")
    result: dict = {
        "n_rows": len(frame),
        "model_version": model.version,
        "overall": ranking_metrics(model, frame),
        "segments": {},
    }
    for name, sel in SEGMENTS.items():
        mask = sel(frame)
        if mask is not None and mask.any():
            say(name)
            result["segments"][name] = {
                "n_rows": int(mask.sum()),
                **ranking_metrics(model, frame[mask.to_numpy()]),
            }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    (out_dir / "report.html").write_text(_html(result))
    return result


def _html(result: dict) -> str:
    rows = [("overall", result["overall"])] + list(result["segments"].items())
    keys = sorted({k for _, m in rows for k in m if k != "n_rows"})
    head = "".join(f"<th>{k}</th>" for k in keys)
    body = "".join(
        "<tr><td>"
        + name
        + "</td>"
        + "".join(f"<td>{m.get(k, float('nan')):.4f}</td>" for k in keys)
        + "</tr>"
        for name, m in rows
    )
    return (
        f"<html><head><meta charset='utf-8'><title>Ranker evaluation</title></head><body>"
        f"<h1>Ranker {result['model_version']}: {result['n_rows']} impressions</h1>"
        f"<table border=1><tr><th>segment</th>{head}</tr>{body}</table></body></html>"
    )


# ---------------------------------------------------------------------------- simulator
# per-head AUC vs logistic regression with bootstrap intervals: ``evaluation.head_auc``


def ranker_policy(bundle_dir: Path):
    """A simulator policy (``simulate.evaluate`` interface) that ranks the offered candidates by
    expected revenue ``p_click · p_purchase|click · price · take_rate`` with the bundle's ranker,
    its features assembled by the serving code (``ServingBundle.ranker_input``). Candidates the
    bundle's snapshot does not know (listed after it) get the median score of the others."""

    bundle = ServingBundle.load(Path(bundle_dir), candidates="builtin")
    if bundle.model_dir is None:
        raise FileNotFoundError(f"no ranker in bundle {bundle_dir}")
    model = RankerModel.load(bundle.model_dir)
    users = TableUserFeatures(bundle.users)
    cat = bundle.catalog

    def policy(ctx, cands):  # noqa: ANN001, ANN202 - the simulator's Policy protocol
        req = contract.PostCheckoutRequest(
            user_id=int(ctx.user_id),
            purchased_item_ids=[int(i) for i in ctx.basket_listing_ids],
            region=ctx.region,
            device=ctx.device,
            timestamp=dt.datetime.fromtimestamp(ctx.t_us / 1e6, dt.UTC),
        )
        user = asyncio.run(users.get(ctx.user_id))
        rows = cat.rows(np.asarray(cands.listing_id, np.int64))
        known = rows >= 0
        basket = cat.rows(np.asarray(ctx.basket_listing_ids, np.int64))
        value = np.full(len(rows), np.nan)
        if known.any():
            X = bundle.ranker_input(req, user, rows[known], basket[basket >= 0])
            if X is None:
                raise RuntimeError("bundle has no ranker feature names")
            pc, pb = model.predict(X)
            value[known] = pc * pb * cands.price[known] * cands.take_rate[known]
        value[~known] = np.nanmedian(value) if known.any() else 0.0
        top = np.argsort(-value, kind="stable")[: contract.SLATE_SIZE]
        return cands.listing_id[top], np.ones(contract.SLATE_SIZE)

    return policy


def evaluate_simulator(
    bundle_dir: Path, raw_dir: Path, days: list[int], requests_per_day: int | None = None
) -> dict:
    """Expected revenue per request (hidden truth) of the bundle's ranker vs the logged heuristic
    and the oracle, on the same simulated requests (``simulate.evaluate.evaluate_policy``).

    Returns ``{"ranker", "heuristic", "oracle": per-request dict, "ratio_vs_heuristic": float}``.
    """

    world = SimWorld.from_raw(Path(raw_dir))
    out: dict[str, Any] = {}
    for name, pol in (
        ("ranker", ranker_policy(bundle_dir)),
        ("heuristic", heuristic_policy(world)),
        ("oracle", oracle_policy(world)),
    ):
        v = evaluate_policy(pol, days, world=world, requests_per_day=requests_per_day)
        out[name] = {
            "n_requests": v.n_requests,
            **v.per_request,
            "impressions_by_seller_cohort": v.impressions_by_seller_cohort,
        }
    out["ratio_vs_heuristic"] = out["ranker"]["revenue"] / max(out["heuristic"]["revenue"], 1e-12)
    return out
