"""What serving loads: the item snapshot, candidate tables, model metadata, versions.

A bundle is a folder (``artifacts/bundle/<version>/`` in the artifact store) in the layout of
``bundle_layout.BundleLayout``, written by ``bundle_writer.assemble_bundle``. Required:
``index/snapshot.parquet``; optional: ``index/manifest.json`` (index version, snapshot time),
``model/student/`` or ``model/ranker/`` (the scoring model's ``config.json``: feature names,
version), ``candidates/*.parquet``, ``features/user.parquet`` (the embedded user store), and the
FAISS index + ``model/two_tower/`` that switch on the models' candidate generator.

``ServingBundle.load`` reads it once at start-up. The transformer never loads torch: it reads
the ranker's ``config.json`` for the feature names and sends the matrix to the predictor.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.features.sla import snapshot_age_ok
from checkout_recs.models.ranker_features import ranker_matrix
from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.fallback import ComplementMap
from checkout_recs.serving.bundle_layout import BundleLayout
from checkout_recs.serving.ranker_input import RankerInputPlan


class CandidateSource(Protocol):
    """Candidate generation for one request."""

    def generate(
        self,
        catalog: ItemCatalog,
        req: contract.PostCheckoutRequest,
        user: dict[str, Any] | None,
        basket_rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate catalogue rows int64 (n,) (distinct, basket excluded) and their source names
        object (n,)."""
        ...


class CatalogCandidates:
    """Built-in blended candidates from the catalogue's precomputed lists.

    complements of the basket's categories ∪ popular in the buyer's region ∪ cold-start in the
    region ∪ popular in the user's top and recent categories; ``per_source`` rows from each.
    """

    def __init__(self, complements: ComplementMap, per_source: int = 50) -> None:
        self.complements = complements
        self.per_source = per_source

    def generate(
        self,
        catalog: ItemCatalog,
        req: contract.PostCheckoutRequest,
        user: dict[str, Any] | None,
        basket_rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """See ``CandidateSource.generate``."""
        k = self.per_source
        parts: list[tuple[np.ndarray, str]] = []
        for c in self.complements.for_basket(catalog.category_id[basket_rows]):
            parts.append(
                (catalog.by_category.get(c, np.empty(0, np.int64))[: k // 2], "complement")
            )
        rcode = catalog.region_code_of(req.region)
        parts.append((catalog.by_region.get(rcode, np.empty(0, np.int64))[:k], "popular"))
        parts.append(
            (catalog.cold_by_region.get(rcode, np.empty(0, np.int64))[: k // 2], "cold_start")
        )
        user_cats: list[int] = []
        if user is not None:
            recent = user.get("recent_category_ids")
            user_cats = [int(c) for c in list(recent if recent is not None else [])[-3:]]
            top = int(user.get("top_category_id", -1) or -1)
            if top >= 0:
                user_cats.append(top)
        for c in dict.fromkeys(user_cats):
            parts.append((catalog.by_category.get(c, np.empty(0, np.int64))[: k // 2], "category"))
        if not parts:
            return np.empty(0, np.int64), np.empty(0, object)
        rows = np.concatenate([p for p, _ in parts]).astype(np.int64)
        srcs = np.concatenate([np.full(len(p), s, dtype=object) for p, s in parts])
        rows, first = np.unique(rows, return_index=True)
        srcs = srcs[first]
        keep = ~np.isin(rows, basket_rows)
        return rows[keep], srcs[keep]


class GeneratorCandidates:
    """Adapter: the models' ``retrieval.candidates.CandidateGenerator`` (ANN ∪ co-purchase ∪
    complements ∪ popular ∪ cold-start) as a ``CandidateSource``."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    def generate(
        self,
        catalog: ItemCatalog,
        req: contract.PostCheckoutRequest,
        user: dict[str, Any] | None,
        basket_rows: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """See ``CandidateSource.generate`` (ids unknown to the snapshot are dropped)."""
        from checkout_recs.retrieval.candidates import (
            CandidateRequest,  # lazy: keeps scipy out of this module's import
        )

        recent = (user or {}).get("recent_listing_ids")
        ts = req.timestamp or dt.datetime.now(dt.UTC)
        c = self.generator.generate(
            CandidateRequest(
                region=req.region,
                basket=list(req.purchased_item_ids),
                recent_listing_ids=[int(i) for i in (recent if recent is not None else [])],
                device=req.device,
                hour=ts.hour + ts.minute / 60.0,
            )
        )
        rows = catalog.rows(np.asarray(c.ids, np.int64))
        keep = rows >= 0
        return rows[keep], np.asarray(c.sources, dtype=object)[keep]


def candidate_generator(
    path: Path,
    snapshot: pd.DataFrame | None = None,
    cfg: Any = None,
    co_purchase: pd.DataFrame | None = None,
    category_pairs: pd.DataFrame | None = None,
) -> Any:
    """The models' ``retrieval.candidates.CandidateGenerator`` over bundle ``path``: its index
    folder, two-tower folder and candidate tables.

    ``snapshot``: ``index/snapshot.parquet`` already read (shared with the index, not read
    twice); ``cfg``: a ``CandidateConfig``; ``co_purchase`` / ``category_pairs``: those tables
    already read (``ServingBundle.load``), else read here (None when the bundle has none).
    """
    from checkout_recs.retrieval.candidates import (
        CandidateGenerator,  # lazy: keeps scipy out of this module's import
    )

    layout = BundleLayout(path)
    return CandidateGenerator.from_folders(
        layout.index_dir,
        layout.two_tower_dir,
        co_purchase=co_purchase if co_purchase is not None else _read(layout.co_purchase),
        category_pairs=category_pairs
        if category_pairs is not None
        else _read(layout.category_pairs),
        item_knn=_read(layout.item_knn),
        cfg=cfg,
        snapshot=snapshot,
    )


def load_candidate_source(
    path: Path,
    catalog: ItemCatalog,
    complements: ComplementMap,
    top_k: int,
    co_purchase: pd.DataFrame | None = None,
    category_pairs: pd.DataFrame | None = None,
) -> CandidateSource:
    """The models' generator when the bundle has an index and a two-tower model, else the built-in one.

    ``co_purchase`` / ``category_pairs``: the bundle's tables when the caller has read them.
    """
    if BundleLayout(path).has_retrieval():
        # the catalogue read index/snapshot.parquet already: the index shares that frame
        return GeneratorCandidates(
            candidate_generator(
                path, snapshot=catalog.frame, co_purchase=co_purchase, category_pairs=category_pairs
            )
        )
    return CatalogCandidates(complements, top_k)


@dataclass
class ServingBundle:
    """A loaded bundle (see module docstring)."""

    path: Path
    catalog: ItemCatalog
    complements: ComplementMap
    candidates: CandidateSource
    feature_names: list[str] | None
    model_dir: Path | None
    model_version: str | None
    index_version: str | None
    users: pd.DataFrame | None
    interactions: Any = None  # features.on_demand.InteractionTables when available
    plan: Any = None  # ranker_input.RankerInputPlan, built on first use
    snapshot_time: dt.datetime | None = (
        None  # when the listing snapshot's features were taken (UTC)
    )

    @classmethod
    def load(cls, path: Path, top_k: int = 50, candidates: str = "auto") -> ServingBundle:
        """Read a bundle folder; ``FileNotFoundError`` when it has no item snapshot.

        ``candidates``: ``auto`` (the models' generator when the bundle carries an index and a
        two-tower model, else built-in), ``builtin`` (catalogue lists only).
        """
        path = Path(path)
        layout = BundleLayout(path)
        if not layout.snapshot.exists():
            raise FileNotFoundError(f"no {layout.snapshot.relative_to(path)} under {path}")
        catalog = ItemCatalog.load(layout.snapshot, top_k=top_k)
        pairs, co = _read(layout.category_pairs), _read(layout.co_purchase)
        complements = ComplementMap.from_frame(pairs)
        model_dir = layout.scoring_model_dir()
        meta = json.loads((model_dir / "config.json").read_text()) if model_dir else {}
        info = (
            json.loads(layout.index_manifest.read_text()) if layout.index_manifest.exists() else {}
        )
        index_version = info.get("version")
        snapshot_time = (
            pd.Timestamp(info["snapshot_time"]).to_pydatetime()
            if info.get("snapshot_time")
            else None
        )
        return cls(
            path=path,
            catalog=catalog,
            complements=complements,
            candidates=CatalogCandidates(complements, top_k)
            if candidates == "builtin"
            else load_candidate_source(path, catalog, complements, top_k, co, pairs),
            feature_names=list(meta["feature_names"]) if "feature_names" in meta else None,
            model_dir=model_dir,
            model_version=meta.get("version"),
            index_version=index_version or path.name,
            users=_read(layout.user_features),
            interactions=_interaction_tables(pairs, co),
            snapshot_time=snapshot_time,
        )

    def snapshot_fresh(self, at: dt.datetime, max_age: dt.timedelta) -> bool:
        """Whether the listing snapshot is within ``max_age`` at time ``at`` (True when its time is unknown)."""

        return self.snapshot_time is None or snapshot_age_ok(self.snapshot_time, at, max_age)

    def ranker_input(
        self,
        req: contract.PostCheckoutRequest,
        user: dict[str, Any] | None,
        rows: np.ndarray,
        basket_rows: np.ndarray,
    ) -> np.ndarray | None:
        """The ranker's input matrix float32 (n, d) for candidate rows, None without a model."""
        if self.feature_names is None:
            return None
        if self.plan is None:
            self.prepare_plan()
        ts = pd.Timestamp(req.timestamp or dt.datetime.now(dt.UTC))
        req_f, pair_f = self._on_demand(req, ts, rows, basket_rows)
        return self.plan.build(rows, user, req.device, ts, req_f, pair_f)

    def prepare_plan(self) -> None:
        """Precompute the item block of the ranker input (call at start-up; ~d x 4 bytes per listing)."""

        if self.feature_names is not None:
            self.plan = RankerInputPlan(self.feature_names, self.catalog.frame)

    def ranker_input_reference(
        self,
        req: contract.PostCheckoutRequest,
        user: dict[str, Any] | None,
        rows: np.ndarray,
        basket_rows: np.ndarray,
    ) -> np.ndarray | None:
        """The same matrix through ``ranker_matrix`` on one full pandas frame (slow; for tests)."""
        if self.feature_names is None:
            return None

        frame = self.catalog.frame.iloc[rows].reset_index(drop=True)
        ts = pd.Timestamp(req.timestamp or dt.datetime.now(dt.UTC))
        extra: dict[str, Any] = {"device": req.device, "event_timestamp": ts}
        for k, v in (user or {}).items():
            if k in ("user_id", "region", "event_timestamp") or isinstance(v, list | np.ndarray):
                continue
            extra["user_top_category_id" if k == "top_category_id" else k] = v
        req_f, pair_f = self._on_demand(req, ts, rows, basket_rows)
        extra.update(req_f)
        extra.update(pair_f)
        frame = frame.assign(
            **{
                k: v
                for k, v in extra.items()
                if k not in frame.columns or k in ("device", "event_timestamp")
            }
        )
        return ranker_matrix(frame, self.feature_names)

    def _on_demand(
        self,
        req: contract.PostCheckoutRequest,
        ts: pd.Timestamp,
        rows: np.ndarray,
        basket_rows: np.ndarray,
    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """(request features, interaction features (n,) each) from ``features.on_demand``."""
        try:
            from checkout_recs.features import on_demand
        except ImportError:
            return {}, {}
        cat = self.catalog
        req_f = dict(
            on_demand.request_features(
                cat.price[basket_rows], cat.category_id[basket_rows], ts, req.device
            )
        )
        pair_f: dict[str, np.ndarray] = {}
        if self.interactions is not None:
            basket = on_demand.Basket(
                cat.listing_id[basket_rows],
                cat.category_id[basket_rows],
                cat.top_category_id[basket_rows],
                cat.price[basket_rows],
            )
            pair_f = on_demand.interaction_features(
                basket,
                cat.listing_id[rows],
                cat.category_id[rows],
                cat.top_category_id[rows],
                cat.price[rows],
                self.interactions,
            )
        return req_f, pair_f


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _interaction_tables(pairs: pd.DataFrame | None, co: pd.DataFrame | None) -> Any:
    try:
        from checkout_recs.features.on_demand import InteractionTables
    except ImportError:
        return None
    empty_pairs = pd.DataFrame({"category_a": [], "category_b": [], "co_purchase_strength": []})
    empty_co = pd.DataFrame(
        {
            "listing_a": pd.Series([], dtype=np.int64),
            "listing_b": pd.Series([], dtype=np.int64),
            "strength": pd.Series([], dtype=np.float64),
        }
    )
    return InteractionTables.from_frames(
        pairs if pairs is not None else empty_pairs, co if co is not None else empty_co
    )
