"""Candidate generation: a few hundred listings per post-checkout request, each with its source.

Sources, blended in this order (a listing keeps the first source that found it, and a source's
quota counts only the listings it adds):

``ann``          user-tower vector → FAISS (the request region's index)
``cf_residual``  item-kNN neighbours of the user's recent items and basket (collaborative
                 filtering) that the tower did not already retrieve: what CF finds and it misses
``co_purchase``  listings bought together with the basket's items (labels' co-purchase table)
``complement``   the categories most often bought with the basket's categories, each searched
                 with the user vector restricted to that category and region (exact search when
                 the category is selective: ``RetrievalIndex.search(category=...)``); without a
                 user vector, the category's popular listings
``popular``      popular in the request's region (decayed purchases, clicks)
``cold_start``   newest listings of the region with little exposure (new listings get a chance)

Everything that does not depend on the request is precomputed in ``CandidateGenerator``'s
constructor; ``generate`` costs one user-tower pass, one ANN search, one batched exact search
over the complement categories' blocks and array joins (numpy only). Basket items and listings removed from the index (sold)
are never returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from checkout_recs.models.user_encoder import FastUserEncoder
from checkout_recs.retrieval.index import RetrievalIndex
from checkout_recs.retrieval.neighbours import NeighbourTable, item_knn_table


class CandidateConfig(BaseModel):
    """How many candidates each source contributes (after de-duplication)."""

    ann: int = Field(default=150, ge=0)
    cf_residual: int = Field(default=40, ge=0, description="Item-kNN finds the ANN did not return.")
    co_purchase: int = Field(default=60, ge=0)
    complement: int = Field(default=60, ge=0)
    popular: int = Field(default=50, ge=0)
    cold_start: int = Field(default=30, ge=0)
    complement_categories: int = Field(
        default=3, ge=1, description="Complement categories per basket category."
    )
    max_complement_categories: int = Field(
        default=4, ge=1, description="Categories searched per request."
    )
    cf_history: int = Field(
        default=20, ge=1, description="Recent items (with the basket) the CF source reads."
    )
    cf_decay: float = Field(
        default=0.7, gt=0, le=1, description="Weight per step back in the history."
    )
    cold_start_age_days: float = Field(
        default=7.0, description="Listings younger than this are 'new'."
    )


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


SOURCES = ("ann", "cf_residual", "co_purchase", "complement", "popular", "cold_start")
_NONE = np.empty(0, np.int64)


def _popularity(snap: pd.DataFrame) -> np.ndarray:
    score = np.zeros(len(snap))
    for col, w in (("purchases_decayed", 3.0), ("clicks_decayed", 1.0), ("views_decayed", 0.05)):
        if col in snap:
            score += w * snap[col].fillna(0).to_numpy(np.float64)
    return score


class CandidateGenerator:
    """Blends the candidate sources for one request; build once per bundle."""

    def __init__(
        self,
        index: RetrievalIndex,
        two_tower=None,
        co_purchase: pd.DataFrame | None = None,
        category_pairs: pd.DataFrame | None = None,
        cfg: CandidateConfig | None = None,
        item_knn: pd.DataFrame | None = None,
        user_encoder=None,
    ) -> None:
        """``two_tower``: a loaded ``TwoTowerModel``, or ``user_encoder``: its ``FastUserEncoder``
        (what serving passes: no torch in the process); neither: no ANN / complement search."""
        self.index = index
        self._user_enc = user_encoder
        if two_tower is not None and user_encoder is None:
            self._user_enc = FastUserEncoder.from_model(two_tower)
        self.cfg = cfg or CandidateConfig()
        snap = index.snapshot
        ranked = snap.iloc[np.argsort(-_popularity(snap), kind="stable")]
        self._popular = {
            str(r): g["listing_id"].to_numpy(np.int64)[: 4 * self.cfg.popular]
            for r, g in ranked.groupby("region", sort=False, observed=True)
        }
        self._by_cat = {
            int(c): g["listing_id"].to_numpy(np.int64)[:200]
            for c, g in ranked.groupby("category_id", observed=True)
        }
        self._cold = self._cold_pool(snap)
        self._co = NeighbourTable.from_frame(co_purchase, "listing_a", "listing_b", "strength", 100)
        self._knn = NeighbourTable.from_frame(item_knn, "listing_a", "listing_b", "similarity", 100)
        self._comp = self._complement_categories(category_pairs)

    # ---------------------------------------------------------------- precomputation
    def _cold_pool(self, snap: pd.DataFrame) -> dict[str, np.ndarray]:
        if "age_days" in snap:
            young = snap[snap["age_days"] <= self.cfg.cold_start_age_days].sort_values(
                "age_days", kind="stable"
            )
        else:
            young = snap.iloc[0:0]
        return {
            str(r): g["listing_id"].to_numpy(np.int64)[: 4 * self.cfg.cold_start]
            for r, g in young.groupby("region", sort=False, observed=True)
        }

    def _complement_categories(self, pairs: pd.DataFrame | None) -> dict[int, np.ndarray]:
        """category → its strongest complement categories (int64, strongest first)."""
        if pairs is None or pairs.empty:
            return {}
        if "event_timestamp" in pairs:
            pairs = pairs[pairs["event_timestamp"] == pairs["event_timestamp"].max()]
        pairs = pairs[pairs["category_a"] != pairs["category_b"]]
        pairs = pairs.sort_values(
            ["category_a", "co_purchase_strength"], ascending=[True, False], kind="stable"
        )
        return {
            int(a): g["category_b"].to_numpy(np.int64)[: self.cfg.complement_categories]
            for a, g in pairs.groupby("category_a")
        }

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
        Candidates with at most ``sum(cfg counts)`` ids (typically 300-390).
        """
        cfg = self.cfg
        basket = np.asarray(req.basket, np.int64)
        vec = self.user_vector(req)
        region = req.region if req.region in self.index.indexes else None
        ann = _NONE
        if vec is not None and cfg.ann:
            ids, _ = self.index.search(vec[None, :], cfg.ann + len(basket), region=region)
            ann = ids[0][ids[0] >= 0]
        history = np.asarray(list(req.recent_listing_ids) + list(req.basket), np.int64)[
            -cfg.cf_history :
        ]
        cf = (
            self._knn.scored(history, cfg.cf_decay) if cfg.cf_residual and len(self._knn) else _NONE
        )
        co = _interleave([a for a, _ in self._co.lookup(basket)]) if len(self._co) else _NONE
        parts = [
            ann,
            cf,
            co,
            self._complement(vec, basket, req.region),
            self._popular.get(req.region, _NONE),
            self._cold.get(req.region, _NONE),
        ]
        return self._blend(parts, basket)

    def _complement(self, vec: np.ndarray | None, basket: np.ndarray, region: str) -> np.ndarray:
        """Listings of the basket's complement categories: user-vector search inside each."""
        cats = [c for c in dict.fromkeys(self.index.categories_of(basket).tolist()) if c >= 0]
        comp = [
            c
            for c in dict.fromkeys(int(b) for a in cats for b in self._comp.get(a, _NONE))
            if c not in cats
        ]
        comp = comp[: self.cfg.max_complement_categories]
        if not comp or not self.cfg.complement:
            return _NONE
        if vec is None:
            return _interleave([self._by_cat.get(c, _NONE)[:40] for c in comp])
        per = -(-self.cfg.complement // len(comp)) + 10  # a margin for listings other sources took
        reg = region if region in self.index.manifest.regions else None
        return _interleave(self.index.search_categories(vec, per, comp, region=reg))

    def _blend(self, parts: list[np.ndarray], basket: np.ndarray) -> Candidates:
        """Sources in order; each adds up to its quota of live listings not taken before."""
        limits = [getattr(self.cfg, s) for s in SOURCES]
        parts = [
            p[: 2 * lim + len(basket) + 100] if lim else p[:0]
            for p, lim in zip(parts, limits, strict=True)
        ]
        flat = np.concatenate(parts) if parts else _NONE
        live_mask = self.index.is_live(flat)
        live = live_mask.tolist()
        taken = set(basket.tolist())
        ids_out: list[int] = []
        src_out: list[str] = []
        pos = 0
        if len(parts[0]) and _distinct(
            parts[0]
        ):  # the ANN's ids are distinct: its share in one step
            first = parts[0][live_mask[: len(parts[0])] & ~np.isin(parts[0], basket)][: limits[0]]
            ids_out, src_out = first.tolist(), [SOURCES[0]] * len(first)
            taken.update(ids_out)
            pos, parts, limits = len(parts[0]), [_NONE, *parts[1:]], [0, *limits[1:]]
        for name, part, lim in zip(SOURCES, parts, limits, strict=True):
            n = 0
            for i, ok in zip(part.tolist(), live[pos : pos + len(part)], strict=True):
                if n >= lim:
                    break
                if ok and i not in taken:
                    taken.add(i)
                    ids_out.append(i)
                    src_out.append(name)
                    n += 1
            pos += len(part)
        return Candidates(np.array(ids_out, np.int64), np.array(src_out, dtype=object))

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_folders(
        cls,
        index_dir: Path,
        two_tower_dir: Path,
        co_purchase: pd.DataFrame | None = None,
        category_pairs: pd.DataFrame | None = None,
        item_knn: pd.DataFrame | None = None,
        cfg: CandidateConfig | None = None,
        snapshot: pd.DataFrame | None = None,
    ) -> CandidateGenerator:
        """Build from an index folder (``RetrievalIndex.save``) and a two-tower model folder
        (``TwoTowerModel.save``; only its user tower is loaded, as ``FastUserEncoder``).

        ``co_purchase`` / ``category_pairs`` / ``item_knn``: the candidate tables
        (``candidate_tables``), None when absent; ``snapshot``: the index folder's
        ``snapshot.parquet`` when the caller has read it (shared, see ``RetrievalIndex.load``).
        """

        index = RetrievalIndex.load(Path(index_dir), snapshot=snapshot)
        enc = FastUserEncoder.from_dir(Path(two_tower_dir))
        return cls(
            index, None, co_purchase, category_pairs, cfg, item_knn=item_knn, user_encoder=enc
        )


def _maybe(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _distinct(ids: np.ndarray) -> bool:
    """Whether the int64 ids (n,) are pairwise distinct."""
    return len(np.unique(ids)) == len(ids)


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


def candidate_tables(labels_dir: Path, features_dir: Path) -> dict[str, pd.DataFrame]:
    """The candidate sources' tables from the working folders; a table whose input is absent is left out.

    ``co_purchase_items``: ``labels_dir/co_purchase_items.parquet`` as is (``listing_a, listing_b,
    strength``); ``item_knn``: ``item_knn_table`` of ``labels_dir/interactions.parquet`` (the CF
    source's neighbours, ``listing_a, listing_b, similarity``); ``category_pairs``: the latest day
    of ``features_dir/category_pair.parquet`` (or of ``labels_dir/category_pairs.parquet``).
    """
    tables: dict[str, pd.DataFrame] = {}
    co = _maybe(Path(labels_dir) / "co_purchase_items.parquet")
    if co is not None:
        tables["co_purchase_items"] = co
    inter = _maybe(Path(labels_dir) / "interactions.parquet")
    if inter is not None:
        tables["item_knn"] = item_knn_table(inter)
    pairs = _maybe(Path(features_dir) / "category_pair.parquet")
    if pairs is None:
        pairs = _maybe(Path(labels_dir) / "category_pairs.parquet")
    if pairs is not None and "event_timestamp" in pairs and len(pairs):
        pairs = pairs[pairs["event_timestamp"] == pairs["event_timestamp"].max()]
    if pairs is not None:
        tables["category_pairs"] = pairs
    return tables
