"""Candidate generation: a few hundred listings per post-checkout request, each with its source.

Sources, blended in this order (a listing keeps the first source that found it):

``ann``          user-tower vector → FAISS (region index)
``co_purchase``  listings bought together with the basket's items (labels' co-purchase table)
``complement``   popular listings of the categories most often bought with the basket's
                 categories (category-pair strengths)
``popular``      popular in the request's region (decayed purchases, clicks)
``cold_start``   newest listings of the region with little exposure (new listings get a chance)

Everything that does not depend on the request is precomputed in ``CandidateGenerator``'s
constructor; ``generate`` costs one user-tower pass, one index search and a few array joins.
Basket items and listings removed from the index (sold) are never returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from checkout_recs.retrieval.index import RetrievalIndex


class CandidateConfig(BaseModel):
    """How many candidates each source contributes (before de-duplication)."""

    ann: int = Field(default=150, ge=0)
    co_purchase: int = Field(default=60, ge=0)
    complement: int = Field(default=60, ge=0)
    popular: int = Field(default=50, ge=0)
    cold_start: int = Field(default=30, ge=0)
    complement_categories: int = Field(default=3, ge=1, description="Complement categories per basket category.")
    cold_start_age_days: float = Field(default=7.0, description="Listings younger than this are 'new'.")


@dataclass
class CandidateRequest:
    """What candidate generation needs to know about one request."""

    region: str
    basket: list[int] = field(default_factory=list)
    recent_listing_ids: list[int] = field(default_factory=list)
    device: str = "web"
    hour: float = 12.0
    user_vector: np.ndarray | None = None  # (d,) when the caller already has it


@dataclass
class Candidates:
    """``ids`` int64 (n,) distinct listing ids; ``sources`` (n,) their source labels."""

    ids: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def counts(self) -> dict[str, int]:
        """Candidates per source."""
        s, c = np.unique(self.sources, return_counts=True)
        return {str(a): int(b) for a, b in zip(s, c, strict=True)}


SOURCES = ("ann", "co_purchase", "complement", "popular", "cold_start")


def _popularity(snap: pd.DataFrame) -> np.ndarray:
    score = np.zeros(len(snap))
    for col, w in (("purchases_decayed", 3.0), ("clicks_decayed", 1.0), ("views_decayed", 0.05)):
        if col in snap:
            score += w * snap[col].fillna(0).to_numpy(np.float64)
    return score


class CandidateGenerator:
    """Blends the candidate sources for one request; build once per bundle."""

    def __init__(self, index: RetrievalIndex, two_tower=None, co_purchase: pd.DataFrame | None = None,
                 category_pairs: pd.DataFrame | None = None, cfg: CandidateConfig | None = None) -> None:
        self.index = index
        self.tt = two_tower
        self._user_enc = None
        if two_tower is not None:
            from checkout_recs.models.two_tower import FastUserEncoder

            self._user_enc = FastUserEncoder(two_tower)
        self.cfg = cfg or CandidateConfig()
        snap = index.snapshot
        self._cat_of = dict(zip(snap["listing_id"].to_numpy(), snap["category_id"].to_numpy(), strict=True))
        pop = _popularity(snap)
        order = np.argsort(-pop, kind="stable")
        ranked = snap.iloc[order]
        self._popular = {r: g["listing_id"].to_numpy(np.int64)[: 4 * self.cfg.popular]
                         for r, g in ranked.groupby("region", sort=False)}
        self._by_cat = {c: g["listing_id"].to_numpy(np.int64)[:200] for c, g in ranked.groupby("category_id")}
        self._cold = self._cold_pool(snap)
        self._co = self._co_table(co_purchase)
        self._comp = self._complements(category_pairs)

    # ---------------------------------------------------------------- precomputation
    def _cold_pool(self, snap: pd.DataFrame) -> dict[str, np.ndarray]:
        if "age_days" in snap:
            young = snap[snap["age_days"] <= self.cfg.cold_start_age_days].sort_values("age_days")
        else:
            young = snap.iloc[0:0]
        return {r: g["listing_id"].to_numpy(np.int64)[: 4 * self.cfg.cold_start]
                for r, g in young.groupby("region", sort=False)}

    def _co_table(self, co: pd.DataFrame | None) -> dict[int, np.ndarray]:
        if co is None or co.empty:
            return {}
        co = co.sort_values(["listing_a", "strength"], ascending=[True, False])
        return {int(a): g["listing_b"].to_numpy(np.int64)[:100] for a, g in co.groupby("listing_a")}

    def _complements(self, pairs: pd.DataFrame | None) -> dict[int, np.ndarray]:
        if pairs is None or pairs.empty:
            return {}
        if "event_timestamp" in pairs:
            pairs = pairs[pairs["event_timestamp"] == pairs["event_timestamp"].max()]
        pairs = pairs[pairs["category_a"] != pairs["category_b"]]
        pairs = pairs.sort_values(["category_a", "co_purchase_strength"], ascending=[True, False])
        out: dict[int, np.ndarray] = {}
        for a, g in pairs.groupby("category_a"):
            cats = g["category_b"].to_numpy()[: self.cfg.complement_categories]
            lists = [self._by_cat.get(c, np.empty(0, np.int64))[:40] for c in cats]
            out[int(a)] = _interleave(lists)
        return out

    # ---------------------------------------------------------------- per request
    def user_vector(self, req: CandidateRequest) -> np.ndarray | None:
        """The user-tower vector (d,) for ``req``, or None without a two-tower model."""
        if req.user_vector is not None:
            return np.asarray(req.user_vector, np.float32)
        if self._user_enc is None:
            return None
        seq = list(req.recent_listing_ids) + list(req.basket)
        return self._user_enc.encode(seq, req.region, req.device, req.hour)

    def generate(self, req: CandidateRequest) -> Candidates:
        """Candidates for one request: distinct, live, basket excluded, sources labelled.

        Returns
        -------
        Candidates with at most ``sum(cfg counts)`` ids (typically 250-350).
        """
        cfg = self.cfg
        basket = np.asarray(req.basket, np.int64)
        parts: list[np.ndarray] = []
        vec = self.user_vector(req)
        if vec is not None and cfg.ann:
            region = req.region if req.region in self.index.indexes else None
            ids, _ = self.index.search(vec[None, :], cfg.ann + len(basket), region=region)
            parts.append(ids[0][ids[0] >= 0])
        else:
            parts.append(np.empty(0, np.int64))
        parts.append(_interleave([self._co.get(int(b), np.empty(0, np.int64)) for b in basket]))
        cats = pd.unique(np.array([self._cat_of.get(int(b), -1) for b in basket]))
        parts.append(_interleave([self._comp.get(int(c), np.empty(0, np.int64)) for c in cats if c >= 0]))
        parts.append(self._popular.get(req.region, np.empty(0, np.int64)))
        parts.append(self._cold.get(req.region, np.empty(0, np.int64)))
        return self._blend(parts, basket)

    def _blend(self, parts: list[np.ndarray], basket: np.ndarray) -> Candidates:
        limits = [self.cfg.ann, self.cfg.co_purchase, self.cfg.complement, self.cfg.popular, self.cfg.cold_start]
        ids_out, src_out = [], []
        taken = set(basket.tolist())
        for name, ids, lim in zip(SOURCES, parts, limits, strict=True):
            if len(ids) == 0 or lim == 0:
                continue
            ok = self.index.is_live(ids)
            n = 0
            for i in ids[ok].tolist():
                if n >= lim:
                    break
                if i not in taken:
                    taken.add(i)
                    ids_out.append(i)
                    src_out.append(name)
                    n += 1
        return Candidates(np.array(ids_out, np.int64), np.array(src_out, dtype=object))

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_bundle(cls, bundle_dir: Path, cfg: CandidateConfig | None = None) -> CandidateGenerator:
        """Build from a bundle folder: ``index/``, ``model/two_tower/``, ``candidates/*.parquet``."""
        from checkout_recs.models.two_tower import TwoTowerModel

        bundle_dir = Path(bundle_dir)
        index = RetrievalIndex.load(bundle_dir / "index")
        tt = TwoTowerModel.load(bundle_dir / "model" / "two_tower")
        cand = bundle_dir / "candidates"
        co = _maybe(cand / "co_purchase_items.parquet")
        pairs = _maybe(cand / "category_pairs.parquet")
        return cls(index, tt, co, pairs, cfg)


def _maybe(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _interleave(lists: list[np.ndarray]) -> np.ndarray:
    """Round-robin merge of id arrays (so every basket item / category gets a share)."""
    lists = [a for a in lists if len(a)]
    if not lists:
        return np.empty(0, np.int64)
    if len(lists) == 1:
        return np.asarray(lists[0], np.int64)
    n = max(len(a) for a in lists)
    mat = np.full((n, len(lists)), -1, np.int64)
    for j, a in enumerate(lists):
        mat[: len(a), j] = a
    flat = mat.ravel()
    return flat[flat >= 0]


def write_candidate_tables(labels_dir: Path, features_dir: Path, out_dir: Path) -> dict[str, int]:
    """Copy the candidate sources' tables into a bundle's ``candidates/`` folder.

    Reads ``labels_dir/co_purchase_items.parquet`` and the latest day of
    ``features_dir/category_pair.parquet`` (or ``labels_dir/category_pairs.parquet``).
    Returns rows written per table (0 when a table is absent).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    co = _maybe(Path(labels_dir) / "co_purchase_items.parquet")
    if co is not None:
        co.to_parquet(out_dir / "co_purchase_items.parquet", index=False)
    written["co_purchase_items"] = 0 if co is None else len(co)
    pairs = _maybe(Path(features_dir) / "category_pair.parquet")
    if pairs is None:
        pairs = _maybe(Path(labels_dir) / "category_pairs.parquet")
    if pairs is not None and "event_timestamp" in pairs and len(pairs):
        pairs = pairs[pairs["event_timestamp"] == pairs["event_timestamp"].max()]
    if pairs is not None:
        pairs.to_parquet(out_dir / "category_pairs.parquet", index=False)
    written["category_pairs"] = 0 if pairs is None else len(pairs)
    return written
