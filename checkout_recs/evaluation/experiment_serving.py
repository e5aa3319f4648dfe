"""Our serving policy as a simulator policy, for ``experiment simulate --treated serving``.

The simulator asks a policy to choose six of the K candidates it offers (``evaluate_policy``'s
protocol). This adapter runs the real request path (``checkout_recs.recommend.Recommender``:
user features, ranker features, the multi-task ranker, the policy engine with exploration and
exposure constraints) with one change: the candidate stage returns the simulator's candidates
(those the snapshot knows) instead of querying the index, so both arms choose from the same
pool. When the answer contains listings outside that pool (the fallback fills from catalogue
lists), those slots are replaced by the next unused simulator candidates with propensity 1 and
the request is counted in ``stats["replaced"]``; fallback answers are counted by reason.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from checkout_recs import contract


class SimulatorCandidates:
    """A candidate source that returns the listings the simulator offered for this request."""

    def __init__(self) -> None:
        self.listing_ids = np.empty(0, np.int64)

    def generate(self, catalog: Any, req: contract.PostCheckoutRequest, user: Any, basket_rows: np.ndarray):  # noqa: ANN201
        """Catalogue rows (n,) of the offered listings known to the snapshot, and their source."""
        rows = catalog.rows(self.listing_ids)
        rows = rows[(rows >= 0) & ~np.isin(rows, basket_rows)]
        return rows, np.full(len(rows), "simulator", dtype=object)


def _users_table(bundle_dir: Path, users: Path | None) -> pd.DataFrame | None:
    if users is not None:
        return pd.read_parquet(users)
    hits = sorted(Path(bundle_dir).rglob("user.parquet"))
    return pd.read_parquet(hits[0]) if hits else None


def serving_policy(bundle_dir: Path, users: Path | None = None, seed: int = 7) -> tuple[Any, Counter]:
    """A simulator ``Policy`` backed by the serving path, and its running statistics.

    Parameters
    ----------
    bundle_dir
        A serving bundle (``ServingBundle.load``) with a ranker.
    users
        User feature table (``features/user.parquet``); default: the bundle's own, else the
        first ``user.parquet`` found under ``bundle_dir``.

    Returns
    -------
    (policy, stats)
        ``stats`` counts ``requests``, ``fallback:<reason>`` and ``replaced``.
    """
    from checkout_recs.models.ranker import RankerModel
    from checkout_recs.recommend import Recommender, TableUserFeatures
    from checkout_recs.serving_bundle import ServingBundle

    bundle = ServingBundle.load(Path(bundle_dir))
    if bundle.model_dir is None:
        raise ValueError(f"bundle {bundle_dir} has no ranker")
    source = SimulatorCandidates()
    bundle.candidates = source
    frame = bundle.users if bundle.users is not None else _users_table(Path(bundle_dir), users)
    model = RankerModel.load(bundle.model_dir)
    rec = Recommender(bundle, TableUserFeatures(frame), seed=seed)
    stats: Counter = Counter()

    def policy(ctx, cands):  # noqa: ANN001, ANN202 - the simulator's Policy protocol
        source.listing_ids = np.asarray(cands.listing_id, np.int64)
        req = contract.PostCheckoutRequest(
            user_id=int(ctx.user_id), purchased_item_ids=[int(i) for i in ctx.basket_listing_ids],
            region=ctx.region, device=ctx.device, request_id=ctx.request_id,
            timestamp=dt.datetime.fromtimestamp(ctx.t_us / 1e6, dt.UTC),
        )  # fmt: skip
        resp = rec.recommend(req, model.predict).response
        stats["requests"] += 1
        if resp.fallback_reason:
            stats[f"fallback:{resp.fallback_reason}"] += 1
        return _within_candidates(resp, source.listing_ids, stats)

    return policy, stats


def _within_candidates(resp: contract.PostCheckoutResponse, offered: np.ndarray, stats: Counter):  # noqa: ANN202
    ids = np.array([i.listing_id for i in resp.items], np.int64)
    prop = np.array([i.propensity for i in resp.items], float)
    outside = ~np.isin(ids, offered)
    if outside.any():
        stats["replaced"] += 1
        spare = [i for i in offered.tolist() if i not in set(ids[~outside].tolist())]
        ids[outside] = spare[: int(outside.sum())]
        prop[outside] = 1.0
    return ids, prop
