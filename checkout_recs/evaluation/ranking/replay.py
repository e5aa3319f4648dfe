"""Shadow mode and replay: run a challenger bundle over logged requests.

The decision log (``checkout_recs.serving.decisions``, schema ``contract.DECISIONS``) holds every answer
the champion gave. ``replay`` rebuilds each logged request, sends it through the SAME request path
serving uses (``Recommender.recommend`` over ``ServingBundle.load`` with the bundle's ranker and
``TableUserFeatures(bundle.users)``) and reports:

* **overlap** of the challenger's six with the logged six (mean ``|A ∩ B| / 6``, share identical);
* **OPE** of the challenger from the logged per-slot propensities (independent IPS over slots,
  ``evaluation.ope_slate.IndependentIPS``), when rewards are available from a labels table;
* **latency** of the challenger's request path (p50 / p95 per request, ms, in-process).

Inventory is not replayed (every listing counts as in stock) and the ranker runs in-process, so
latency excludes the network hop to the predictor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from checkout_recs import contract
from checkout_recs.evaluation.ope.estimators_slate import IndependentIPS
from checkout_recs.policy.config import PolicyConfig
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.recommender import Recommender, TableUserFeatures

#: Decision-log columns replay needs.
REQUIRED_COLUMNS = (
    "request_id",
    "event_timestamp",
    "user_id",
    "region",
    "device",
    "basket_ids",
    "item_ids",
    "propensities",
)
KIND = "decisions"


class ReplayInputError(ValueError):
    """The decision log or labels cannot be replayed (missing columns, no rows)."""


@dataclass
class ReplayReport:
    """What a replay measured. Counts add up: ``n_logged = n_replayed + n_skipped``."""

    n_logged: int
    n_replayed: int
    n_skipped: int
    skipped_reasons: dict[str, int]
    mean_overlap: float  # mean |A ∩ B| / 6 over replayed requests, in [0, 1]
    share_identical: float  # share of replayed requests with the same six in the same order
    latency_p50_ms: float
    latency_p95_ms: float
    challenger_fallbacks: dict[str, int]
    model_version: str | None
    ope: dict[str, Any] | None = None  # reward -> {logged, iips, lower, upper, n_requests}
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def read_decisions(root: Path) -> pd.DataFrame:
    """Every logged decision under ``root``.

    ``root`` is an artifact-store root (parts under ``decisions/<version>/``), a folder holding
    parquet parts, or one parquet file. Returns the rows sorted by ``event_timestamp``; raises
    ``FileNotFoundError`` when nothing is there.
    """
    root = Path(root)
    if root.is_file():
        files = [root]
    else:
        base = root / KIND if (root / KIND).is_dir() else root
        files = sorted(
            p for p in base.rglob("*.parquet") if not any(s.startswith(".") for s in p.parts)
        )
    if not files:
        raise FileNotFoundError(f"no decision log parquet under {root}")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if "event_timestamp" in frame.columns:
        frame = frame.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    return frame


def replay(
    decisions: pd.DataFrame,
    bundle_dir: Path,
    labels: pd.DataFrame | None = None,
    cfg: PolicyConfig | None = None,
    seed: int = 7,
    n_bootstrap: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Replay logged requests through a challenger bundle.

    Parameters
    ----------
    decisions : decision-log rows (``contract.DECISIONS`` columns; at least ``REQUIRED_COLUMNS``),
        replayed in row order (sort by ``event_timestamp`` first for the serving order).
    bundle_dir : challenger serving bundle folder (``ServingBundle.load``); its ranker under
        ``model/`` scores candidates, without one the challenger answers with the fallback.
    labels : optional outcomes per shown listing, keyed by ``request_id`` and ``listing_id``:
        either labelled impressions (``clicked``, optional ``purchased``, ``price``, ``take_rate``)
        or a clicks table (one row per click). None: OPE is skipped and the report says so.
    cfg : challenger policy configuration; default ``PolicyConfig`` with exploration off, so the
        challenger is deterministic (propensity 1 for each of its slots).
    seed : exploration seed of the challenger.
    n_bootstrap : bootstrap resamples of the OPE interval (whole requests).
    progress : called with (rows reached, rows in all) as each logged row starts.

    Returns
    -------
    ReplayReport
        Overlap in [0, 1], latency in ms per request, OPE values as summed slot reward per request
        (clicks, and revenue in currency when purchases are labelled). Raises ``ReplayInputError``
        when columns are missing or no row is given; rows whose request no longer validates are
        skipped and counted in ``skipped_reasons``.
    """

    missing = [c for c in REQUIRED_COLUMNS if c not in decisions.columns]
    if missing:
        raise ReplayInputError(
            f"decision log lacks column(s) {missing}; expected contract.DECISIONS"
        )
    if len(decisions) == 0:
        raise ReplayInputError("decision log has no rows")
    if cfg is None:
        cfg = PolicyConfig()
        cfg.exploration.enabled = False
    bundle = ServingBundle.load(Path(bundle_dir))
    scorer = None
    notes: list[str] = [
        "inventory not replayed: every listing counts as in stock",
        "latency is the in-process request path (no predictor network hop)",
    ]
    if bundle.model_dir is not None:
        from checkout_recs.models.ranker import (
            RankerModel,
        )  # lazy: keeps torch out of this module's import

        scorer = RankerModel.load(bundle.model_dir).predict
    else:
        notes.append("challenger bundle has no ranker: it answers with the fallback")
    rec = Recommender(bundle, TableUserFeatures(bundle.users), cfg=cfg, seed=seed)

    overlaps, identical, latencies, rows = [], [], [], []
    skipped: dict[str, int] = {}
    fallbacks: dict[str, int] = {}
    n_rows = len(decisions)
    for done, row in enumerate(decisions.to_dict("records"), start=1):
        if progress is not None:
            progress(done, n_rows)
        try:
            req = _request(row)
        except (ValidationError, TypeError, ValueError) as exc:
            key = f"invalid_request: {type(exc).__name__}"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        t0 = time.perf_counter()
        d = rec.recommend(req, scorer)
        latencies.append((time.perf_counter() - t0) * 1e3)
        if d.response.fallback_reason:
            fallbacks[d.response.fallback_reason] = fallbacks.get(d.response.fallback_reason, 0) + 1
        logged = [int(x) for x in row["item_ids"]]
        chal = [i.listing_id for i in d.response.items]
        overlaps.append(len(set(logged) & set(chal)) / 6.0)
        identical.append(logged == chal)
        rows.append((row, chal, [i.propensity for i in d.response.items]))
    n_rep = len(latencies)
    ope = None
    if labels is None:
        notes.append("no labels: OPE skipped, overlap and latency only")
    elif n_rep:
        ope = _ope(rows, labels, n_bootstrap, seed)
    return ReplayReport(
        n_logged=len(decisions),
        n_replayed=n_rep,
        n_skipped=len(decisions) - n_rep,
        skipped_reasons=skipped,
        mean_overlap=float(np.mean(overlaps)) if n_rep else float("nan"),
        share_identical=float(np.mean(identical)) if n_rep else float("nan"),
        latency_p50_ms=float(np.percentile(latencies, 50)) if n_rep else float("nan"),
        latency_p95_ms=float(np.percentile(latencies, 95)) if n_rep else float("nan"),
        challenger_fallbacks=fallbacks,
        model_version=bundle.model_version,
        ope=ope,
        notes=notes,
    )


def _request(row: dict[str, Any]) -> contract.PostCheckoutRequest:
    ts = row["event_timestamp"]
    ts = pd.Timestamp(ts).to_pydatetime() if ts is not None and not pd.isna(ts) else None
    return contract.PostCheckoutRequest(
        user_id=int(row["user_id"]),
        purchased_item_ids=[int(x) for x in row["basket_ids"]],
        region=str(row["region"]),
        device=row["device"],
        timestamp=ts,
        request_id=str(row["request_id"]),
    )


def _rewards(labels: pd.DataFrame) -> dict[str, pd.Series]:
    """(request_id, listing_id) -> reward, per reward kind (clicks; revenue when labelled)."""
    for c in ("request_id", "listing_id"):
        if c not in labels.columns:
            raise ReplayInputError(f"labels lack column {c!r} (need request_id, listing_id)")
    lab = labels.assign(
        request_id=labels["request_id"].astype(str),
        listing_id=labels["listing_id"].astype(np.int64),
    )
    out: dict[str, pd.Series] = {}
    if "clicked" in lab.columns:
        out["clicks"] = lab.groupby(["request_id", "listing_id"])["clicked"].max().astype(float)
        if {"purchased", "price", "take_rate"} <= set(lab.columns):
            rev = (
                lab["purchased"].astype(float)
                * lab["price"].astype(float)
                * lab["take_rate"].astype(float)
            )
            out["revenue"] = rev.groupby([lab["request_id"], lab["listing_id"]]).sum()
    else:  # a clicks table: one row per click
        out["clicks"] = lab.groupby(["request_id", "listing_id"]).size().clip(upper=1).astype(float)
    return out


def _ope(
    rows: list[tuple[dict[str, Any], list[int], list[float]]],
    labels: pd.DataFrame,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Independent IPS over slots: pi_e(item at k) = challenger's propensity if it puts that item at k."""

    sid, rid, lid, p0, pe = [], [], [], [], []
    for n, (row, chal, chal_p) in enumerate(rows):
        for k, (item, prop) in enumerate(zip(row["item_ids"], row["propensities"], strict=True)):
            sid.append(n)
            rid.append(str(row["request_id"]))
            lid.append(int(item))
            p0.append(float(prop))
            pe.append(float(chal_p[k]) if k < len(chal) and chal[k] == int(item) else 0.0)
    p0_arr = np.asarray(p0)
    bad = ~((p0_arr > 0) & (p0_arr <= 1))
    keep = ~bad
    index = pd.MultiIndex.from_arrays([rid, lid])
    result: dict[str, Any] = {
        "estimator": "independent_ips",
        "n_slots_bad_propensity": int(bad.sum()),
    }
    for kind, series in _rewards(labels).items():
        reward = series.reindex(index).fillna(0.0).to_numpy()
        data = dict(
            slate_id=np.asarray(sid)[keep],
            reward=reward[keep],
            pscore=p0_arr[keep],
            evaluation_policy_pscore=np.asarray(pe)[keep],
        )
        iv = IndependentIPS().estimate_interval(
            n_bootstrap_samples=n_bootstrap, random_state=seed, **data
        )
        result[kind] = {
            "logged": float(reward.sum() / len(rows)),
            "iips": iv.estimate,
            "lower": iv.lower,
            "upper": iv.upper,
            "n_requests": len(rows),
        }
    return result
