"""Exposure constraints over a sliding window of served slots.

Four levers, all configured in ``ExposureConfig`` (trade-offs in ``docs/serving.md``):

* **max share per seller** — once the window holds ``seller_share_min_slots`` slots, a seller at
  or over ``max_seller_share`` of them is removed from the candidates (the fallback may still
  show it when nothing else is in stock: six items beat a constraint);
* **audit-bucket skew** — sellers are hashed into ``audit_buckets`` proxy buckets; a bucket
  whose share exceeds its fair share ``1/B`` has its candidates' ranking score multiplied by
  ``max(0.1, 1 - skew_penalty * (B * share - 1))``;
* **minimum share for new sellers** — while their running share is below
  ``min_new_seller_share`` and the six hold none, the best new-seller candidate whose expected
  revenue is at least ``min_quality`` x the greedy sixth's takes a reserved slot;
* **minimum share for cold-start listings** (younger than ``cold_days`` and shown fewer than
  ``cold_max_impressions`` times in the window) — counted apart: while their running share is below
  ``min_cold_share``, the six are topped up to ``cold_slots`` cold-start listings under the same
  quality prior, least shown first (``cold_order``): the qualifying cold-start listing with the
  fewest impressions in the window takes the slot (ties: higher expected revenue), so the floor
  spreads first impressions over many new listings instead of re-showing the best one.

Reserved listings go just before the last slot (the exploration slot keeps a greedy item), the
weakest greedy items make room, and diversity (per seller, per category) and the seller cap still
hold. The floors depend only on the window state, so they are deterministic per request and every
logged propensity stays exact.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from checkout_recs.policy.catalog import COLD_START_DAYS, ItemCatalog
from checkout_recs.policy.config import ExposureConfig, PolicyConfig
from checkout_recs.policy.slate import Slate

#: Reserved slots per slate at most: slot 0 and the exploration slot keep greedy items.
_MAX_RESERVED = 4


def young_mask(catalog: ItemCatalog, cold_days: float) -> np.ndarray:
    """Listings whose snapshot age (``age_days`` column, days) is under ``cold_days``, bool (n,).

    Without an ``age_days`` column the catalogue's own flag (age < ``COLD_START_DAYS``) is used.
    """
    if cold_days == COLD_START_DAYS or "age_days" not in catalog.frame.columns:
        return np.asarray(catalog.cold, bool).copy()
    return catalog.frame["age_days"].fillna(365.0).to_numpy(np.float64) < cold_days


class ExposureController:
    """Running exposure counters and the four levers."""

    def __init__(self, catalog: ItemCatalog, cfg: ExposureConfig) -> None:
        self.catalog = catalog
        self.cfg = cfg
        self._window: deque[tuple[int, int, bool, bool, int]] = deque()
        self.seller_counts: Counter[int] = Counter()
        self.listing_counts: Counter[int] = Counter()  # impressions per listing id in the window
        self.bucket_counts = np.zeros(cfg.audit_buckets, dtype=np.int64)
        self.new_count = 0
        self.cold_count = 0
        self.capped: set[int] = set()  # sellers at or over the per-seller cap
        self._young_of: ItemCatalog | None = None
        self._young = np.zeros(0, bool)

    def reconfigure(self, cfg: ExposureConfig) -> None:
        """Use ``cfg`` from now on, keeping the window and its counters (``cfg.audit_buckets`` must
        equal the current one: it sizes the bucket counters). The cold-start age mask is recomputed
        on next use; a smaller ``window_slots`` trims the window at the next ``record``."""
        if cfg.audit_buckets != len(self.bucket_counts):
            raise ValueError("audit_buckets cannot change on a running controller")
        self.cfg = cfg
        self._young_of = None

    def bucket(self, seller_ids: np.ndarray) -> np.ndarray:
        """Proxy audit bucket of each seller (multiplicative hash), int64 (n,)."""
        h = (np.asarray(seller_ids, np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(33)
        return (h % np.uint64(self.cfg.audit_buckets)).astype(np.int64)

    def is_new(self, rows: np.ndarray) -> np.ndarray:
        """Listing of a new seller, bool (n,)."""
        return self.catalog.seller_is_new[rows]

    def is_cold(self, rows: np.ndarray) -> np.ndarray:
        """Cold-start listing now: younger than ``cold_days`` (``young_mask``, cached per catalogue)
        and, when ``cold_max_impressions`` is set, shown fewer times than that in the window; bool (n,)."""
        if self._young_of is not self.catalog:
            self._young = young_mask(self.catalog, self.cfg.cold_days)
            self._young_of = self.catalog
        young = self._young[rows]
        limit = self.cfg.cold_max_impressions
        if limit is None or not young.any():
            return young
        counts, idx = self.listing_counts, np.flatnonzero(young)
        ids = self.catalog.listing_id[np.asarray(rows)[idx]].tolist()
        young[idx] = np.fromiter((counts.get(i, 0) < limit for i in ids), bool, len(ids))
        return young

    @property
    def slots(self) -> int:
        """Slots in the window."""
        return len(self._window)

    def new_share(self) -> float:
        """Share of window slots that went to new sellers' listings."""
        return self.new_count / self.slots if self.slots else 0.0

    def cold_share(self) -> float:
        """Share of window slots that went to cold-start listings (cold when served)."""
        return self.cold_count / self.slots if self.slots else 0.0

    def record(self, rows: np.ndarray) -> None:
        """Count the served slots (and forget the oldest beyond the window)."""
        if len(rows) == 0:
            return
        sellers, ids = self.catalog.seller_id[rows].tolist(), self.catalog.listing_id[rows].tolist()
        news, colds = self.is_new(rows).tolist(), self.is_cold(rows).tolist()
        buckets = self.bucket(self.catalog.seller_id[rows]).tolist()
        for s, i, n, c, b in zip(sellers, ids, news, colds, buckets, strict=True):
            self._window.append((s, i, n, c, b))
            self.seller_counts[s] += 1
            self.listing_counts[i] += 1
            self.bucket_counts[b] += 1
            self.new_count += int(n)
            self.cold_count += int(c)
        while len(self._window) > self.cfg.window_slots:
            s, i, n, c, b = self._window.popleft()
            self.seller_counts[s] -= 1
            self.listing_counts[i] -= 1
            if not self.listing_counts[i]:
                del self.listing_counts[i]
            self.bucket_counts[b] -= 1
            self.new_count -= int(n)
            self.cold_count -= int(c)
        limit = self.cfg.max_seller_share * self.slots
        self.capped.update(s for s in sellers if self.seller_counts[s] >= limit)
        self.capped = {s for s in self.capped if self.seller_counts[s] >= limit}

    def adjust(self, rows: np.ndarray, er: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seller cap and bucket-skew penalty.

        Returns
        -------
        keep : bool (n,) candidates still allowed; score : float64 (n,) ranking score.
        """
        keep = np.ones(len(rows), dtype=bool)
        score = np.asarray(er, np.float64).copy()
        if not self.cfg.enabled or self.slots == 0:
            return keep, score
        if self.slots >= self.cfg.seller_share_min_slots and self.capped:
            keep = ~np.isin(
                self.catalog.seller_id[rows], np.fromiter(self.capped, np.int64, len(self.capped))
            )
        share = self.bucket_counts / self.slots
        over = np.maximum(share * self.cfg.audit_buckets - 1.0, 0.0)
        factor = np.maximum(0.1, 1.0 - self.cfg.skew_penalty * over)
        score *= factor[self.bucket(self.catalog.seller_id[rows])]
        return keep, score

    def reserve(
        self,
        slate: Slate,
        rows: np.ndarray,
        er: np.ndarray,
        pc: np.ndarray,
        pp: np.ndarray,
        sources: np.ndarray,
        pcfg: PolicyConfig,
    ) -> Slate:
        """Apply the two floors (new sellers, then cold-start listings) to a greedy six.

        Parameters
        ----------
        slate : the greedy six (slate.scores: true expected revenue, currency units).
        rows : int64 (n,) in-stock candidate rows; er, pc, pp : float64 (n,) their expected
            revenue, P(click), P(purchase | click).
        sources : object (n,) candidate sources (unused; kept for the engine's call).
        pcfg : policy config (diversity limits).

        Returns
        -------
        The slate with ``k`` reserved listings at slots ``4-k+1 .. 4`` (never the exploration
        slot), the greedy items ranked ``6-k .. 5`` dropped except the best of them, which moves to
        the last slot; ``notes["exposure_reserved"]`` (listing ids) and ``notes["exposure_cost"]``
        (expected revenue given up, currency). Unchanged when no floor is due or nothing qualifies.
        Deterministic given the window state, so every propensity stays exact.
        """
        cfg = self.cfg
        if not cfg.enabled or len(slate.rows) < 6:
            return slate
        floor = cfg.min_quality * float(slate.scores[-1])
        order = np.lexsort((self.catalog.listing_id[rows], -er))
        order = order[er[order] >= floor]  # the quality prior
        picks: list[tuple[int, str]] = []
        due = (
            ("new_seller", self.new_share(), cfg.min_new_seller_share, 1, self.is_new),
            ("cold_start", self.cold_share(), cfg.min_cold_share, cfg.cold_slots, self.is_cold),
        )
        for name, share, target, want, group in due:
            if target <= 0 or share >= target:
                continue
            mask = group(rows)
            ranked = (
                self.least_shown_first(order, rows)
                if name == "cold_start" and cfg.cold_order == "least_shown"
                else order
            )
            while len(picks) < _MAX_RESERVED:
                now, after = (
                    np.asarray(
                        [*slate.rows[: n - len(picks)].tolist(), *(int(rows[i]) for i, _ in picks)],
                        np.int64,
                    )
                    for n in (6, 5)
                )
                if int(group(now).sum()) >= want:
                    break
                i = self._best(ranked, rows, mask, after, pcfg)
                if i < 0:
                    break
                picks.append((i, name))
        return self._place(slate, picks, rows, er, pc, pp) if picks else slate

    def least_shown_first(self, order: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``order`` (indices into ``rows``, best expected revenue first) re-sorted stably by the
        listing's impressions in the window, fewest first; int64 (m,)."""
        ids = self.catalog.listing_id[rows[order]].tolist()
        shown = np.fromiter((self.listing_counts.get(i, 0) for i in ids), np.int64, len(ids))
        return order[np.argsort(shown, kind="stable")]

    def _best(
        self,
        order: np.ndarray,
        rows: np.ndarray,
        mask: np.ndarray,
        held: np.ndarray,
        pcfg: PolicyConfig,
    ) -> int:
        """Index (into ``rows``) of the best qualifying group member that fits ``held``, or -1."""
        cat = self.catalog
        sellers = cat.seller_id[held].tolist()
        cats = cat.category_id[held].tolist()
        taken = set(held.tolist())
        capped = self.capped if self.slots >= self.cfg.seller_share_min_slots else set()
        for i in order[mask[order]].tolist():
            r = int(rows[i])
            s = int(cat.seller_id[r])
            if (
                r in taken
                or s in capped
                or sellers.count(s) >= pcfg.max_per_seller
                or cats.count(int(cat.category_id[r])) >= pcfg.max_per_category
            ):
                continue
            return int(i)
        return -1

    def _place(
        self,
        slate: Slate,
        picks: list[tuple[int, str]],
        rows: np.ndarray,
        er: np.ndarray,
        pc: np.ndarray,
        pp: np.ndarray,
    ) -> Slate:
        """``head[:5-k] + picks + [head[5-k]]``: reserved items just before the exploration slot."""
        k = len(picks)
        keep = [*range(5 - k), 5 - k]
        given_up = float(slate.scores[5 - k + 1 :].sum() - sum(er[i] for i, _ in picks))
        idx = [i for i, _ in picks]

        def put(arr: np.ndarray, new: np.ndarray) -> np.ndarray:
            kept = arr[keep]
            return np.concatenate([kept[:-1], new, kept[-1:]])

        slate.rows = put(slate.rows, rows[idx]).astype(np.int64)
        slate.scores = put(slate.scores, er[idx])
        slate.p_click = put(slate.p_click, pc[idx])
        slate.p_purchase = put(slate.p_purchase, pp[idx])
        slate.from_fallback = put(slate.from_fallback, np.zeros(k, bool)).astype(bool)
        src = [slate.sources[j] for j in keep]
        slate.sources = [*src[:-1], *(name for _, name in picks), src[-1]]
        slate.propensity = np.ones(len(slate.rows))
        slate.notes["exposure_reserved"] = [int(self.catalog.listing_id[rows[i]]) for i in idx]
        slate.notes["exposure_cost"] = max(given_up, 0.0)
        return slate
