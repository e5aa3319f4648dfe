"""Shared fixtures for the serving tests: a small synthetic serving bundle with a real ranker.

``make_serving_bundle(out_dir)`` writes a bundle in the layout ``ServingBundle.load`` reads:
an item snapshot with the contract's listing and seller feature columns, category co-purchase
pairs, item co-purchase pairs, a user feature table (users ``0..n_users-1`` are known), and a
multi-task ranker trained for one epoch on impressions sampled from the snapshot's own click and
purchase rates (the models engineer's ``train_ranker``), so the predictor serves a real model.

The builders live in ``checkout_recs.synthetic.serving`` (the benchmarks use them too); this
module re-exports them and adds what only tests need (the bundle folder, a Feast user store).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from checkout_recs.synthetic.serving import (
    N_CATEGORIES,
    REGIONS,
    RICH_NAMES,
    TINY_NAMES,
    make_pairs,
    make_prepared,
    make_snapshot,
    make_users,
    train_tiny_ranker,
)

__all__ = [
    "N_CATEGORIES",
    "REGIONS",
    "RICH_NAMES",
    "TINY_NAMES",
    "make_feast_user_store",
    "make_pairs",
    "make_prepared",
    "make_serving_bundle",
    "make_snapshot",
    "make_users",
    "train_tiny_ranker",
]


def make_serving_bundle(
    out_dir: Path,
    n_listings: int = 3000,
    n_users: int = 200,
    seed: int = 0,
    with_model: bool = True,
) -> Path:
    """Write a complete serving bundle under ``out_dir`` and return ``out_dir``.

    Catalogue-only (no FAISS index: built-in candidates), written by the bundle writer
    (``serving.bundle_writer.assemble_bundle``) from working folders under ``<out_dir>-inputs/``.
    """
    from checkout_recs.serving.bundle_layout import BundleLayout
    from checkout_recs.serving.bundle_writer import assemble_bundle

    out_dir = Path(out_dir)
    stage = out_dir.with_name(f"{out_dir.name}-inputs")
    labels, features, model = stage / "labels", stage / "features", BundleLayout(stage)
    for d in (labels, features, model.model_dir):
        d.mkdir(parents=True, exist_ok=True)
    snap = make_snapshot(n_listings, seed=seed)
    users = make_users(n_users, seed=seed)
    pairs, co = make_pairs(seed)
    pairs.to_parquet(labels / "category_pairs.parquet")
    co.to_parquet(labels / "co_purchase_items.parquet")
    users.to_parquet(features / "user.parquet")
    if with_model:
        train_tiny_ranker(snap, users, model.ranker_dir, seed)
    assemble_bundle(
        model.model_dir, labels, features, out_dir, snapshot=snap, index_version="idx-test-1"
    )
    return out_dir


def make_feast_user_store(root: Path, users: pd.DataFrame, env: str = "embedded") -> object:
    """A Feast store under ``root`` with ``users`` materialized in the ``user`` view (the only view
    serving reads online); returns the ``FeatureStoreAdapter`` (``.teardown()`` removes it).

    ``embedded``: SQLite online store; ``production``: Redis DB 11 + the feature tests' registry
    database on PostgreSQL, on a fresh project name.
    """
    import uuid

    from checkout_recs import contract
    from feature_repo.store import open_store

    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    ts = pd.Timestamp("2026-11-01", tz="UTC")
    users.assign(event_timestamp=ts)[contract.field_names(contract.USER_FEATURES)].to_parquet(
        features / "user.parquet"
    )
    kw: dict = {"project": f"crserve_{uuid.uuid4().hex[:6]}"}
    if env == "production":
        from tests.fixtures_features import feature_test_registry_url

        kw.update(redis_url="redis://127.0.0.1:6379/11", registry_url=feature_test_registry_url())
    store = open_store(env, str(features), root / "feast", **kw)
    store.apply()
    store.materialize(None, pd.Timestamp("2026-11-02", tz="UTC").to_pydatetime(), views=["user"])
    return store
