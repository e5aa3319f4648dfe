"""Our serving policy as a simulator policy, for ``experiment simulate --treated serving``.

The simulator asks a policy to choose six of the K candidates it offers (``evaluate_policy``'s
protocol). This adapter runs the real request path (``checkout_recs.serving.recommender.Recommender``:
user features, ranker features, the multi-task ranker, the policy engine with exploration and
exposure constraints) with one change: the candidate stage returns the simulator's candidates
(those the snapshot knows) instead of querying the index, so both arms choose from the same
pool. When the answer contains listings outside that pool (the fallback fills from catalogue
lists), those slots are replaced by the next unused simulator candidates with propensity 1 and
the request is counted in ``stats["replaced"]``; fallback answers are counted by reason.

The bundle's listing snapshot is kept current as near-line indexing would (``SnapshotRefresh``):
hourly on the simulated clock every listing listed since (when the world is given) is indexed
from its observable fields with no history (zero views, prior rates) and every listing's and
seller's age moves to the refresh time; a listing offered before it is indexed is added before
the request is answered.
Histories (views, clicks, purchases) are not recomputed: that needs the feature pipeline.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import PolicyConfig
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.recommender import Recommender, TableUserFeatures
from checkout_recs.simulate.policy_api import candidate_set


class SimulatorCandidates:
    """A candidate source that returns the listings the simulator offered for this request."""

    def __init__(self) -> None:
        self.listing_ids = np.empty(0, np.int64)

    def generate(
        self, catalog: Any, req: contract.PostCheckoutRequest, user: Any, basket_rows: np.ndarray
    ):  # noqa: ANN201
        """Catalogue rows (n,) of the offered listings known to the snapshot, and their source."""
        rows = catalog.rows(self.listing_ids)
        rows = rows[(rows >= 0) & ~np.isin(rows, basket_rows)]
        return rows, np.full(len(rows), "simulator", dtype=object)


US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000


class ServingStats(Counter):
    """Counts (requests, fallback:<reason>, replaced, listings_added) plus, per simulated day,
    ``ledger``: the exploration ledger's expected revenue served and given up (currency) and slots
    explored; ``floors``: the exposure floors' reserved slots, the expected revenue they gave up
    (``notes["exposure_cost"]``, the model's estimate, currency) and the slates' expected revenue."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger: dict[str, dict[str, float]] = {}
        self.floors: dict[str, dict[str, float]] = {}

    def add_floor(self, day: str, notes: dict, slate_er: float) -> None:
        """Accumulate one answer's exposure-floor notes into ``floors[day]``."""
        f = self.floors.setdefault(day, {"reserved": 0.0, "given_up": 0.0, "served": 0.0})
        f["reserved"] += len(notes.get("exposure_reserved", []))
        f["given_up"] += float(notes.get("exposure_cost", 0.0))
        f["served"] += slate_er


class SnapshotRefresh:
    """Near-line indexing of the serving catalogue: new listings added, ages moved, at least hourly.

    Parameters
    ----------
    rec : the ``Recommender`` whose bundle catalogue, ranker plan and policy engine are updated.
    every_us : minimum simulated time between scheduled refreshes, µs.
    world : the simulated world (optional). With it, each scheduled refresh indexes every listing
        already listed (and not delisted) that the catalogue lacks, from its observable fields, as
        a near-line indexer would; without it, listings are indexed only when first offered.
        Either way a listing offered before it is indexed is added before the request is answered.
    """

    def __init__(self, rec: Any, every_us: int = US_PER_HOUR, world: Any = None) -> None:
        self.rec, self.every_us, self.world = rec, every_us, world
        frame = rec.bundle.catalog.frame
        fresh = frame[frame["views_decayed"].fillna(0) == 0] if "views_decayed" in frame else frame
        self.priors = {
            c: float(fresh[c].median()) for c in ("ctr_smoothed", "cvr_smoothed") if c in frame
        }
        t0 = (
            pd.Timestamp(frame["snapshot_time"].iloc[0])
            if "snapshot_time" in frame and len(frame)
            else None
        )
        self.last_us = int(t0.value // 1_000) if t0 is not None else None
        self._listed_us = self._listed(frame)
        self.pending: dict[int, dict[str, Any]] = {}
        self.added = 0

    @staticmethod
    def _listed(frame: pd.DataFrame) -> np.ndarray | None:
        """``listed_at`` as µs since epoch, float64 (n,) with NaN where unknown; None without the column."""
        if "listed_at" not in frame:
            return None
        ts = pd.to_datetime(frame["listed_at"], utc=True)
        return ((ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds() * 1e6).to_numpy(np.float64)

    def offer(self, ctx: Any, cands: Any) -> None:
        """Index offered listings unknown to the catalogue (refresh now); else refresh when due."""
        due = self.last_us is None or ctx.t_us - self.last_us >= self.every_us
        if due and self.world is not None:
            self._queue_listed(int(ctx.t_us))
        unknown = np.flatnonzero(
            self.rec.bundle.catalog.rows(np.asarray(cands.listing_id, np.int64)) < 0
        )
        self._queue(cands, unknown, int(ctx.t_us), [ctx.region] * len(cands.listing_id))
        if self.pending or due:
            self.refresh(int(ctx.t_us))

    def _queue_listed(self, t_us: int) -> None:
        """Queue every listing of the world listed by ``t_us`` (µs), still listed, not yet indexed."""

        cat = self.world.cat
        idx = np.flatnonzero((cat.listed_at <= t_us) & (cat.delist_at > t_us))
        idx = idx[self.rec.bundle.catalog.rows(idx + 1) < 0]
        if len(idx):
            regions = np.asarray(self.world.cfg.regions, dtype=object)[
                cat.region[idx].astype(np.int64)
            ]
            self._queue(
                candidate_set(self.world, idx, t_us), np.arange(len(idx)), t_us, regions.tolist()
            )

    def _queue(self, cands: Any, which: np.ndarray, t_us: int, regions: list[str]) -> None:
        for k in which.tolist():
            lid = int(cands.listing_id[k])
            if lid not in self.pending:
                self.pending[lid] = {
                    "listing_id": lid, "seller_id": int(cands.seller_id[k]), "category_id": int(cands.category_id[k]),
                    "top_category_id": int(cands.top_category_id[k]), "region": regions[k],
                    "price": float(cands.price[k]), "take_rate": float(cands.take_rate[k]),
                    "listed_at_us": int(t_us - cands.age_days[k] * US_PER_DAY),
                    "seller_rating": float(cands.seller_rating[k]),
                    "seller_joined_us": int(t_us - cands.seller_age_days[k] * US_PER_DAY),
                }  # fmt: skip

    def refresh(self, t_us: int) -> None:
        """Append pending listings, move ages to ``t_us`` (µs) and swap the catalogue in."""

        frame = self.rec.bundle.catalog.frame
        now = pd.Timestamp(t_us * 1_000, tz="UTC")
        elapsed = 0.0 if self.last_us is None else (t_us - self.last_us) / US_PER_DAY
        frame = (
            frame.assign(seller_age_days=frame["seller_age_days"] + elapsed)
            if "seller_age_days" in frame
            else frame
        )
        if self.pending:
            new = self._new_rows(frame, now)
            if self._listed_us is not None:
                self._listed_us = np.concatenate([self._listed_us, self._listed(new)])
            frame = pd.concat([frame, new], ignore_index=True)
            self.added += len(self.pending)
            self.pending = {}
        if self._listed_us is not None:
            age = (t_us - self._listed_us) / US_PER_DAY
            old = (
                frame["age_days"].to_numpy(np.float64)
                if "age_days" in frame
                else np.full(len(frame), np.nan)
            )
            frame["age_days"] = np.where(np.isnan(age), old, age)
        if "seller_age_days" in frame:
            frame["seller_is_new"] = (frame["seller_age_days"] < 30).astype(np.int8)
        frame["snapshot_time"] = now
        cat = ItemCatalog.from_frame(frame, top_k=self.rec.bundle.catalog.top_k)
        bundle, policy = self.rec.bundle, self.rec.policy
        bundle.catalog = policy.catalog = policy.explorer.catalog = policy.exposure.catalog = cat
        bundle.prepare_plan()
        self.last_us = t_us

    def _new_rows(self, frame: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
        new = pd.DataFrame(list(self.pending.values()))
        known = frame.drop_duplicates("seller_id", keep="last").set_index("seller_id")
        for col in ("seller_linked_history", "seller_sales_velocity"):
            if col in frame:
                new[col] = new["seller_id"].map(known[col]).fillna(0)
        new["listed_at"] = pd.to_datetime(new.pop("listed_at_us") * 1_000, utc=True)
        new["seller_age_days"] = (now.value // 1_000 - new.pop("seller_joined_us")) / US_PER_DAY
        for col in ("views_decayed", "clicks_decayed", "purchases_decayed"):
            new[col] = 0.0
        new = new.assign(title="", quantity=1, **self.priors)
        return new.astype(
            {c: frame[c].dtype for c in new.columns if c in frame and c != "listed_at"},
            errors="ignore",
        )


def serving_policy(
    bundle_dir: Path,
    users: Path | None = None,
    seed: int = 7,
    cfg: PolicyConfig | None = None,
    world: Any = None,
) -> tuple[Any, ServingStats]:
    """A simulator ``Policy`` backed by the serving path, and its running statistics.

    Parameters
    ----------
    bundle_dir
        A serving bundle (``ServingBundle.load``) with a ranker.
    users
        User feature table (``contract.USER_FEATURES`` rows), used when the bundle carries none
        (``bundle_layout.BundleLayout.user_features``).
    cfg
        Policy configuration (exploration, exposure, diversity); the serving default when None.
    world
        The simulated world: when given, new listings are indexed hourly as they are listed
        (``SnapshotRefresh``), else only when first offered (the same answers, more refreshes).

    Returns
    -------
    (policy, stats)
        ``stats`` counts ``requests``, ``fallback:<reason>``, ``replaced`` and ``listings_added``
        (by the snapshot refresh); ``stats.ledger`` maps each simulated day to the exploration
        ledger's expected revenue served and given up (currency) and slots explored.
    """
    from checkout_recs.models.ranker import (
        RankerModel,
    )  # lazy: keeps torch out of this module's import

    bundle = ServingBundle.load(Path(bundle_dir))
    if bundle.model_dir is None:
        raise ValueError(f"bundle {bundle_dir} has no ranker")
    source = SimulatorCandidates()
    bundle.candidates = source
    frame = (
        bundle.users
        if bundle.users is not None
        else (pd.read_parquet(users) if users is not None else None)
    )
    model = RankerModel.load(bundle.model_dir)
    rec = Recommender(bundle, TableUserFeatures(frame), cfg=cfg, seed=seed)
    stats = ServingStats()
    refresh = SnapshotRefresh(rec, world=world)

    def policy(ctx, cands):  # noqa: ANN001, ANN202 - the simulator's Policy protocol
        refresh.offer(ctx, cands)
        stats["listings_added"] = refresh.added
        source.listing_ids = np.asarray(cands.listing_id, np.int64)
        req = contract.PostCheckoutRequest(
            user_id=int(ctx.user_id), purchased_item_ids=[int(i) for i in ctx.basket_listing_ids],
            region=ctx.region, device=ctx.device, request_id=ctx.request_id,
            timestamp=dt.datetime.fromtimestamp(ctx.t_us / 1e6, dt.UTC),
        )  # fmt: skip
        decision = rec.recommend(req, model.predict)
        resp = decision.response
        stats["requests"] += 1
        if resp.fallback_reason:
            stats[f"fallback:{resp.fallback_reason}"] += 1
        led = rec.policy.explorer.ledger
        stats.ledger[str(led.day)] = {
            "served": led.served,
            "spent": led.spent,
            "explored": led.explored,
        }
        stats.add_floor(str(led.day), decision.slate.notes, float(np.sum(decision.slate.scores)))
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
