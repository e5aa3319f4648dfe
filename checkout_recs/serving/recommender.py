"""The request-path core shared by the KServe transformer and offline evaluation.

One request goes through five visible stages, each timed (milliseconds in ``Prepared.timings``):

1. **features** — user features (one row) from a ``UserFeatureSource`` (Feast online in serving,
   a table offline); unknown user -> fallback ``unknown_user``;
2. **retrieval** — candidates from the bundle (``CandidateSource``) and the fallback pool;
3. **inventory** — one batched lookup drops sold / delisted / locked listings;
4. **rank** — the ranker's input matrix (``models.ranker_features.ranker_matrix``) scored by
   the predictor (a remote hop in serving, in-process offline); the matrix is built while the
   inventory lookup is in flight, and in serving it is scored while the lookup is still in
   flight too: the unavailable rows (and their scores) are dropped when the answer comes,
   always before the policy sees them;
5. **policy** — expected revenue, diversity, exploration, exposure -> exactly six.

``Recommender.prepare`` runs stages 1-3 and builds the matrix, ``Recommender.decide`` runs
stage 5 on whatever the scorer answered (or on nothing, with a fallback reason), so the
transformer can put its deadline-bound predictor call in between and offline code can call
``Recommender.recommend`` with an in-process ranker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.policy.config import PolicyConfig
from checkout_recs.policy.engine import PolicyEngine, PolicyGauges
from checkout_recs.policy.fallback import fallback_candidates
from checkout_recs.policy.slate import Slate
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.inventory import (
    InventoryStore,
    InventoryUnavailable,
    MemoryInventoryStore,
)
from checkout_recs.serving.switches import Switches

Scores = tuple[np.ndarray, np.ndarray]
#: Fallback reasons an inventory failure does not replace: the operators' switches. Any other reason
#: (unknown user, stale features...) gives way to ``inventory_unavailable`` / ``inventory_stale``, so
#: the answer and the fallback counter say that the inventory was degraded.
_OPERATOR_REASONS = ("kill_switch", "drift_flag")
#: Ranked candidates kept in each decision's snapshot (for disputes).
SNAPSHOT_CANDIDATES = 30


class UserFeatureSource(Protocol):
    """Where user features come from (Feast online in serving, a table offline)."""

    async def get(self, user_id: int) -> dict[str, Any] | None:
        """One user's features (``contract.USER_FEATURES`` names), None when unknown.

        Raises any exception when the store cannot answer (the caller degrades)."""
        ...


class TableUserFeatures:
    """User features from an in-memory table keyed by ``user_id`` (embedded mode, offline)."""

    def __init__(self, frame: pd.DataFrame | None) -> None:
        self._rows: dict[int, dict[str, Any]] = {}
        if frame is not None and len(frame):
            if "event_timestamp" in frame.columns:
                frame = frame.sort_values("event_timestamp").drop_duplicates("user_id", keep="last")
            self._rows = {int(r["user_id"]): r for r in frame.to_dict("records")}

    async def get(self, user_id: int) -> dict[str, Any] | None:
        """See ``UserFeatureSource.get``."""
        return self._rows.get(int(user_id))

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class Prepared:
    """A request after stages 1-3: what the scorer and the policy need."""

    request: contract.PostCheckoutRequest
    request_id: str
    started: float
    user: dict[str, Any] | None
    session_class: str
    fallback_reason: str | None
    basket_rows: np.ndarray
    cand_rows: np.ndarray
    cand_sources: np.ndarray
    fb_rows: np.ndarray
    fb_sources: np.ndarray
    matrix: np.ndarray | None = None  # float32 (n, d) ranker input, None on the fallback path
    filtered_out: int = 0
    #: bundle (index) version of the ranker that scored this request (the remote predictor's
    #: answered ``bundle_version``, or this bundle's for in-process scoring); None when none did
    predictor_version: str | None = None
    #: the inventory lookup still in flight (``prepare(defer_inventory=True)``), None once settled
    pending: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    #: CPU ms of this thread per stage (``time.thread_time``); exact when requests do not
    #: overlap on the event loop (stages that await may include other requests' CPU otherwise).
    cpu_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Decision:
    """The answer and the facts behind it (for the decision log and metrics)."""

    response: contract.PostCheckoutResponse
    prepared: Prepared
    slate: Slate
    reasons: list[str]
    user_id: int
    snapshot: tuple[list[int], list[float]] = (
        [],
        [],
    )  # top candidates: listing ids, expected revenue


class TooFewInStock(RuntimeError):
    """Fewer than six in-stock listings are known for this checkout (candidates and fallback pools
    together): the six-item promise cannot be kept, so no answer is made (the transformer refuses
    the call with 503 + ``Retry-After``; nothing is logged or counted as exposure)."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"only {found} in-stock listings are known for this checkout, fewer than "
            f"{contract.SLATE_SIZE}; retry after a while"
        )
        self.found = found


class InventoryUnproven(RuntimeError):
    """The inventory lookup could not be proven current (the replica stale or its read fence unread,
    the Redis backend down) and the recommender was built with ``unproven="refuse"``: no answer is
    made, rather than one from the last known state (the transformer refuses the call with 503 +
    ``Retry-After``; nothing is logged or counted as exposure). ``reason`` is the fallback reason
    the answer would have carried (``inventory_stale`` / ``inventory_unavailable``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason}: the listings' stock cannot be proven now (the inventory stream is not "
            "readable), and this server refuses rather than answer from the last known state; "
            "retry after a while"
        )
        self.reason = reason


#: What an answer does when its inventory lookup cannot be proven current (``Recommender.unproven``).
UNPROVEN_ANSWERS = ("known", "refuse")


class Recommender:
    """Request-path core: ``prepare`` -> (scorer) -> ``decide``.

    Parameters
    ----------
    bundle : loaded serving bundle (catalogue, complements, candidate source, versions).
    users : user feature source.
    inventory : live inventory store (memory or Redis).
    cfg : policy configuration; ``cfg.exploration.ledger`` chooses the exploration ledger (per
        process, or shared through Redis and renewed inline or, in serving, in a background
        thread so ``decide`` never waits on Redis: ``LedgerConfig.renewal``).
    switches : kill switch / drift flag reader (None: both off).
    seed : seed of the exploration random stream.
    max_snapshot_age : staleness SLA of the listing snapshot (None: not checked).
    unproven : when the inventory lookup cannot be proven current (``InventoryUnavailable``:
        the replica stale or its fence unread, the Redis backend down): ``"known"`` answers from
        the store's last known state with that fallback reason (``last_known_unavailable``; its
        residual risk is in docs/serving.md, *The stale rule*), ``"refuse"`` raises
        ``InventoryUnproven`` from ``settle_inventory`` (no answer, nothing logged).
    """

    def __init__(
        self,
        bundle: ServingBundle,
        users: UserFeatureSource,
        inventory: InventoryStore | None = None,
        cfg: PolicyConfig | None = None,
        switches: Switches | None = None,
        seed: int = 7,
        max_snapshot_age: dt.timedelta | None = None,
        unproven: str = "known",
    ) -> None:
        if unproven not in UNPROVEN_ANSWERS:
            raise ValueError(f"unproven must be one of {UNPROVEN_ANSWERS}, got {unproven!r}")
        self.unproven = unproven
        self.bundle = bundle
        self.users = users
        self.inventory = inventory or MemoryInventoryStore()
        self.cfg = cfg or PolicyConfig()
        self.switches = switches or Switches(None)
        self.policy = PolicyEngine(bundle.catalog, self.cfg, bundle.complements, seed=seed)
        #: Staleness SLA of the listing snapshot, checked at the checkout's time (None: not checked).
        self.max_snapshot_age = max_snapshot_age

    def apply_config(self, cfg: PolicyConfig) -> list[str]:
        """Use ``cfg`` from the next request on (``PolicyEngine.apply_config``: ledger and exposure
        state kept); the switch cache lifetime follows ``cfg.switch_cache_ttl_s``. Returns the
        fields that keep their running value until a restart. Call it between requests: on the
        event loop that runs ``decide`` (which never awaits), the swap is atomic per request."""
        kept = self.policy.apply_config(cfg)
        self.switches.ttl_s = cfg.switch_cache_ttl_s
        self.cfg = self.policy.cfg
        return kept

    def close(self) -> None:
        """Give back what the exploration ledger holds of the shared budget (shutdown)."""
        self.policy.explorer.ledger.close()

    def gauges(self) -> PolicyGauges:
        """The policy's gauges now: exploration budget of the day (currency) and new-seller share
        of the exposure window (``PolicyGauges``); the transformer exports them after each answer."""
        return self.policy.gauges()

    # ---------------------------------------------------------------- stages 1-3
    async def prepare(
        self,
        req: contract.PostCheckoutRequest,
        now: float | None = None,
        defer_inventory: bool = False,
        degrade: str | None = None,
    ) -> Prepared:
        """Stages features, retrieval and inventory, and the ranker matrix.

        Never raises for a dependency failure: the failure becomes ``fallback_reason``. With
        ``defer_inventory`` the inventory lookup is left in flight (``Prepared.pending``) and the
        candidates unfiltered, so the caller can overlap it with the ranker call; the caller must
        then ``await settle_inventory(prep)`` before ``decide`` (the transformer does). ``degrade``
        (a fallback reason: ``overload``) takes the cheap path: no user features, no retrieval, no
        matrix; the fallback pool, filtered by the inventory, answers (the operators' switches
        still name the reason when on).
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        cat = self.bundle.catalog
        reason: str | None = None
        state = await self.switches.state()
        if state.kill_switch:
            reason = "kill_switch"
        elif state.drift_flag:
            reason = "drift_flag"
        elif self.max_snapshot_age is not None and not self.bundle.snapshot_fresh(
            req.timestamp or dt.datetime.now(dt.UTC), self.max_snapshot_age
        ):
            reason = "stale_features"
        user: dict[str, Any] | None = None
        if degrade is not None:
            reason = reason if reason in _OPERATOR_REASONS else degrade
        else:
            try:
                user = await self.users.get(req.user_id)
            except Exception:  # noqa: BLE001 - any feature-store failure degrades to the fallback
                reason = reason or "features_unavailable"
        if user is None:
            reason = reason or "unknown_user"
        t1, c1 = time.perf_counter(), time.thread_time()
        basket_rows = cat.rows(np.asarray(req.purchased_item_ids, np.int64))
        basket_rows = basket_rows[basket_rows >= 0]
        cand_rows, cand_sources = (np.empty(0, np.int64), np.empty(0, object))
        if reason is None:
            cand_rows, cand_sources = self.bundle.candidates.generate(cat, req, user, basket_rows)
        fb_rows, _, fb_sources = fallback_candidates(
            cat,
            self.bundle.complements,
            np.asarray(req.purchased_item_ids, np.int64),
            req.region,
            basket_rows=basket_rows,
        )
        t2, c2 = time.perf_counter(), time.thread_time()
        # Stage 3 overlaps the ranker: the inventory lookup is sent first, and while Redis answers
        # the matrix of every candidate is built (and, deferred, scored); the rows of candidates
        # found unavailable are dropped after (``settle_inventory``).
        lookup = asyncio.ensure_future(self._unavailable(cand_rows, fb_rows))
        await asyncio.sleep(0)  # let the lookup write its request before the CPU work below
        t3, c3 = time.perf_counter(), time.thread_time()
        matrix = None
        if reason is None and len(cand_rows):
            try:
                matrix = self.bundle.ranker_input(req, user, cand_rows, basket_rows)
            except BaseException:
                lookup.cancel()  # no orphaned lookup when the matrix cannot be built
                raise
        t4, c4 = time.perf_counter(), time.thread_time()
        prep = Prepared(
            request=req,
            request_id=req.resolved_request_id(),
            started=t0,
            user=user,
            session_class=self.policy.session_class(user, cat, basket_rows),
            fallback_reason=reason,
            basket_rows=basket_rows,
            cand_rows=cand_rows,
            cand_sources=cand_sources,
            fb_rows=fb_rows,
            fb_sources=fb_sources,
            matrix=matrix if reason is None else None,
            pending=lookup,
        )
        prep.timings.update(
            features=(t1 - t0) * 1e3,
            retrieval=(t2 - t1) * 1e3,
            inventory=(t3 - t2) * 1e3,
            rank_input=(t4 - t3) * 1e3,
        )
        prep.cpu_ms.update(
            features=(c1 - c0) * 1e3,
            retrieval=(c2 - c1) * 1e3,
            inventory=(c3 - c2) * 1e3,
            rank_input=(c4 - c3) * 1e3,
        )
        if not defer_inventory:
            await self.settle_inventory(prep)
        return prep

    async def settle_inventory(self, prep: Prepared) -> np.ndarray:
        """Wait for the inventory lookup of ``prepare`` and drop what it found unavailable.

        Filters ``cand_rows`` / ``cand_sources`` / ``matrix`` and the fallback pool in place; sets
        ``fallback_reason`` to the store's failure (``inventory_unavailable``: store down;
        ``inventory_stale``: replica behind its bound; either replaces any reason but the operators'
        switches) or ``too_few_candidates`` (nothing left); with ``unproven="refuse"`` a store
        failure raises ``InventoryUnproven`` instead (the candidates are left as they were). Returns the keep mask, bool (n,), over the
        candidates as they were before (all True when already settled), to align scores computed on
        the unfiltered matrix.
        """
        if prep.pending is None:
            return np.ones(len(prep.cand_rows), bool)
        t0 = time.perf_counter()
        (
            gone,
            inv_failure,
        ) = await prep.pending  # other tasks (the scorer) run meanwhile: CPU counted after
        c0 = time.thread_time()
        prep.pending = None
        if inv_failure is not None and self.unproven == "refuse":
            raise InventoryUnproven(inv_failure)
        n = len(prep.cand_rows)
        keep_c, keep_f = ~gone[:n], ~gone[n:]
        prep.cand_rows, prep.cand_sources = prep.cand_rows[keep_c], prep.cand_sources[keep_c]
        prep.fb_rows, prep.fb_sources = prep.fb_rows[keep_f], prep.fb_sources[keep_f]
        prep.filtered_out = int(gone.sum())
        if inv_failure is not None and prep.fallback_reason not in _OPERATOR_REASONS:
            prep.fallback_reason = inv_failure
        if prep.fallback_reason is None and len(prep.cand_rows) == 0:
            prep.fallback_reason = "too_few_candidates"
        prep.matrix = (
            prep.matrix[keep_c]
            if prep.fallback_reason is None and prep.matrix is not None
            else None
        )
        prep.timings["inventory"] = (
            prep.timings.get("inventory", 0.0) + (time.perf_counter() - t0) * 1e3
        )
        prep.cpu_ms["inventory"] = (
            prep.cpu_ms.get("inventory", 0.0) + (time.thread_time() - c0) * 1e3
        )
        return keep_c

    async def _unavailable(
        self, cand_rows: np.ndarray, fb_rows: np.ndarray
    ) -> tuple[np.ndarray, str | None]:
        """(bool (n_cand + n_fb,) unavailable mask over candidates then fallback pool, None or the
        fallback reason of the store's failure); on failure the store's ``last_known_unavailable``
        (Redis: listings this process saw unavailable recently; the replica: all but known state,
        keeping at least six of the fallback pool, which then answers, when six were offered)."""
        cat = self.bundle.catalog
        ids = np.concatenate([cat.listing_id[cand_rows], cat.listing_id[fb_rows]])
        try:
            return await self.inventory.unavailable_async(ids), None
        except InventoryUnavailable as exc:
            known = self.inventory.last_known_unavailable
            n = len(cand_rows)
            return np.concatenate(
                [known(ids[:n]), known(ids[n:], keep_at_least=contract.SLATE_SIZE)]
            ), exc.reason

    # ---------------------------------------------------------------- stage 5
    def decide(self, prep: Prepared, scores: Scores | None, failure: str | None = None) -> Decision:
        """Stage policy: exactly six, or ``TooFewInStock`` when fewer than six in-stock listings
        are known at all (never a short list).

        Parameters
        ----------
        scores : (p_click, p_purchase|click), float (n,) aligned with ``prep.cand_rows``, or None.
        failure : fallback reason from the scorer hop (``predictor_error`` / ``predictor_timeout``).
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        reason = prep.fallback_reason or failure
        if reason is None and scores is None:
            reason = "predictor_error"
        if reason is not None:
            scores = None
        slate = self.policy.choose(prep, scores)
        if len(slate.rows) < contract.SLATE_SIZE:
            raise TooFewInStock(len(slate.rows))
        reasons = self.policy.reasons(prep, slate)
        cat = self.bundle.catalog
        items = [
            contract.RecommendedItem(
                listing_id=int(cat.listing_id[r]),
                slot=j,
                score=float(slate.scores[j]),
                p_click=_prob(slate.p_click[j]),
                p_purchase=_prob(slate.p_purchase[j]),
                propensity=float(slate.propensity[j]),
                source=slate.sources[j],
                reason=reasons[j],
            )
            for j, r in enumerate(slate.rows.tolist())
        ]
        prep.timings["policy"] = (time.perf_counter() - t0) * 1e3
        prep.cpu_ms["policy"] = (time.thread_time() - c0) * 1e3
        resp = contract.PostCheckoutResponse(
            request_id=prep.request_id,
            items=items,
            policy="fallback" if reason else "ranker",
            fallback_reason=cast(contract.FallbackReason | None, reason),
            model_version=self.bundle.model_version,
            index_version=self.bundle.index_version,
            latency_ms=round((time.perf_counter() - prep.started) * 1e3, 3),
        )
        return Decision(
            response=resp,
            prepared=prep,
            slate=slate,
            reasons=reasons,
            user_id=prep.request.user_id,
            snapshot=self._snapshot(prep, slate),
        )

    def _snapshot(self, prep: Prepared, slate: Slate) -> tuple[list[int], list[float]]:
        er = slate.notes.get("candidate_er")
        if er is None or len(er) == 0:
            return [], []
        top = np.argsort(-er, kind="stable")[:SNAPSHOT_CANDIDATES]
        return self.bundle.catalog.listing_id[prep.cand_rows[top]].tolist(), er[top].tolist()

    # ---------------------------------------------------------------- offline path
    def recommend(
        self, req: contract.PostCheckoutRequest, scorer: Callable[[np.ndarray], Scores] | None
    ) -> Decision:
        """All stages in-process (offline evaluation, tests).

        ``scorer`` maps the ranker matrix float32 (n, d) to (p_click, p_purchase); None or a
        raising scorer gives the fallback with ``predictor_error``.
        """
        prep = asyncio.run(self.prepare(req))
        if prep.fallback_reason is not None or scorer is None or prep.matrix is None:
            return self.decide(prep, None, None if scorer else "predictor_error")
        try:
            scores = scorer(prep.matrix)
        except Exception:  # noqa: BLE001 - a failing scorer degrades, like the remote one
            return self.decide(prep, None, "predictor_error")
        return self.decide(prep, scores)


def _prob(x: float) -> float | None:
    return None if not np.isfinite(x) else float(min(max(x, 0.0), 1.0))
