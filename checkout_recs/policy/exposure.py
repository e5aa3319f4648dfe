"""Exposure constraints over a sliding window of served slots.

Three levers, all configured in ``ExposureConfig`` (trade-offs in ``docs/serving.md``):

* **max share per seller** — once the window holds ``seller_share_min_slots`` slots, a seller at
  or over ``max_seller_share`` of them is removed from the candidates (the fallback may still
  show it when nothing else is in stock: six items beat a constraint);
* **audit-bucket skew** — sellers are hashed into ``audit_buckets`` proxy buckets; a bucket
  whose share exceeds its fair share ``1/B`` has its candidates' ranking score multiplied by
  ``max(0.1, 1 - skew_penalty * (B * share - 1))``;
* **minimum share for new sellers and cold-start listings** — while their running share is
  below ``min_new_seller_share`` and the slate has none, the best such candidate whose expected
  revenue is at least ``min_quality`` x the slate's sixth takes slot 4 (the last deterministic
  slot), pushing the former slot 4 to slot 5 and dropping slot 5.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import ExposureConfig, PolicyConfig
from checkout_recs.policy.slate import Slate


class ExposureController:
    """Running exposure counters and the three levers."""

    def __init__(self, catalog: ItemCatalog, cfg: ExposureConfig) -> None:
        self.catalog = catalog
        self.cfg = cfg
        self._window: deque[tuple[int, bool, int]] = deque()
        self.seller_counts: Counter[int] = Counter()
        self.bucket_counts = np.zeros(cfg.audit_buckets, dtype=np.int64)
        self.new_count = 0
        self.capped: set[int] = set()  # sellers at or over the per-seller cap

    def bucket(self, seller_ids: np.ndarray) -> np.ndarray:
        """Proxy audit bucket of each seller (multiplicative hash), int64 (n,)."""
        h = (np.asarray(seller_ids, np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(33)
        return (h % np.uint64(self.cfg.audit_buckets)).astype(np.int64)

    def is_new(self, rows: np.ndarray) -> np.ndarray:
        """New seller or cold-start listing, bool (n,)."""
        return self.catalog.seller_is_new[rows] | self.catalog.cold[rows]

    @property
    def slots(self) -> int:
        """Slots in the window."""
        return len(self._window)

    def new_share(self) -> float:
        """Share of window slots that went to new sellers / cold-start listings."""
        return self.new_count / self.slots if self.slots else 0.0

    def record(self, rows: np.ndarray) -> None:
        """Count the served slots (and forget the oldest beyond the window)."""
        if len(rows) == 0:
            return
        sellers = self.catalog.seller_id[rows].tolist()
        news = self.is_new(rows).tolist()
        buckets = self.bucket(self.catalog.seller_id[rows]).tolist()
        for s, n, b in zip(sellers, news, buckets, strict=True):
            self._window.append((s, n, b))
            self.seller_counts[s] += 1
            self.bucket_counts[b] += 1
            self.new_count += int(n)
        while len(self._window) > self.cfg.window_slots:
            s, n, b = self._window.popleft()
            self.seller_counts[s] -= 1
            self.bucket_counts[b] -= 1
            self.new_count -= int(n)
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
            keep = ~np.isin(self.catalog.seller_id[rows], np.fromiter(self.capped, np.int64, len(self.capped)))
        share = self.bucket_counts / self.slots
        over = np.maximum(share * self.cfg.audit_buckets - 1.0, 0.0)
        factor = np.maximum(0.1, 1.0 - self.cfg.skew_penalty * over)
        score *= factor[self.bucket(self.catalog.seller_id[rows])]
        return keep, score

    def reserve(self, slate: Slate, rows: np.ndarray, er: np.ndarray, pc: np.ndarray, pp: np.ndarray,
                sources: np.ndarray, pcfg: PolicyConfig) -> Slate:
        """Give slot 4 to the best qualifying new-seller / cold-start candidate when due."""
        cfg, cat = self.cfg, self.catalog
        if (not cfg.enabled or cfg.min_new_seller_share <= 0 or len(slate.rows) < 6
                or self.new_share() >= cfg.min_new_seller_share or self.is_new(slate.rows).any()):
            return slate
        head = slate.rows[:5]
        taken = set(slate.rows.tolist())
        floor = cfg.min_quality * float(slate.scores[-1])
        sellers, cats = cat.seller_id[head[:4]].tolist(), cat.category_id[head[:4]].tolist()
        sellers.append(int(cat.seller_id[head[4]]))
        cats.append(int(cat.category_id[head[4]]))
        best = -1
        for i in np.argsort(-er, kind="stable").tolist():
            r = int(rows[i])
            if er[i] < floor:
                break
            if (r in taken or not self.is_new(rows[i : i + 1])[0]
                    or sellers.count(int(cat.seller_id[r])) >= pcfg.max_per_seller
                    or cats.count(int(cat.category_id[r])) >= pcfg.max_per_category):
                continue
            best = i
            break
        if best < 0:
            return slate
        order = [0, 1, 2, 3, -1, 4]  # new item at slot 4, old slot 4 moves to 5, old 5 drops

        def put(arr: np.ndarray, new: float) -> np.ndarray:
            ext = np.append(arr[:5], new)
            return ext[order]

        slate.rows = put(slate.rows, rows[best]).astype(np.int64)
        slate.scores = put(slate.scores, er[best])
        slate.p_click = put(slate.p_click, pc[best])
        slate.p_purchase = put(slate.p_purchase, pp[best])
        slate.propensity = np.ones(6)
        slate.from_fallback = put(slate.from_fallback.astype(float), 0.0).astype(bool)
        src = [*slate.sources[:5], "new_seller"]
        slate.sources = [src[k] for k in order]
        slate.notes["exposure_reserved"] = int(cat.listing_id[rows[best]])
        return slate
