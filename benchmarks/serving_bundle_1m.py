"""The serving benchmark's bundle with the real retrieval stack at catalogue scale (default 1M).

``build_ann_bundle(root, listings)`` writes ``root/bundle-ann-<listings>/`` with the bundle writer
(``serving.bundle_writer.assemble_bundle``), so the transformer's ``--candidates auto`` path runs
the models' ``CandidateGenerator`` (user tower -> FAISS ANN, item-kNN CF residual, co-purchase,
category-restricted complement search, popular, cold start):

    model/two_tower/            the demo run's trained two-tower model (``retrieval_scale.demo_tower``)
    index/                      ``build_index`` over the catalogue's item-tower embeddings: FAISS
                                indexes + ids.npy + embeddings.npy + snapshot.parquet (aligned)
    candidates/                 item_knn, co_purchase_items, category_pairs, as
                                ``write_candidate_tables`` writes them in the training pipeline
    model/ranker/, student/     a multi-task ranker over ``RICH_NAMES`` (the serving path fills every
                                one) and its distilled student
    bundle.json                 versions, item count, candidate table rows (``BundleInfo``)
    features/                   Feast tables: user (the demo users, with recent items), listing +
                                seller (every catalogue listing: the naive path reads candidates'),
                                category_pair
    requests.json               checkout bodies of demo users with >= 2 recent items: the newest is the
                                basket, the others stay in the user's Feast row (what CF / the tower read)

The catalogue is the demo run's listings plus simulator-drawn ones (``scaled_catalogue``). Built
once; a finished folder is reused.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import retrieval_scale  # noqa: E402

N_REQUESTS = 4000
FEATURE_TIME = pd.Timestamp("2026-11-01", tz="UTC")


def ann_bundle_dir(root: Path, listings: int) -> Path:
    """Where ``build_ann_bundle`` writes the bundle for ``listings`` under ``root``."""
    return Path(root) / f"bundle-ann-{listings}"


def build_ann_bundle(root: Path, listings: int, log: Callable[[str], None] = print) -> Path:
    """Build (or reuse) the ANN bundle of ``listings`` listings under ``root``; returns its folder.

    Steps are logged through ``log`` with their seconds (about 3 minutes at 1M on 2 cores).
    """
    from checkout_recs.models.inputs import latest_per_entity, read_table
    from checkout_recs.serving.bundle_layout import BundleLayout
    from checkout_recs.serving.bundle_writer import assemble_bundle
    from checkout_recs.synthetic.serving import RICH_NAMES, train_tiny_ranker

    bundle = ann_bundle_dir(root, listings)
    layout = BundleLayout(bundle)
    if layout.info_path.exists() and (bundle / "requests.json").exists():
        return bundle
    t = time.perf_counter()
    paths = retrieval_scale.demo_tower(Path(root) / "tower")
    snap = retrieval_scale.scaled_catalogue(paths, listings)
    log(f"demo tower + {len(snap)}-listing catalogue in {time.perf_counter() - t:.0f} s")
    stage = BundleLayout(
        Path(root) / f"inputs-ann-{listings}"
    )  # the model folder the writer copies
    shutil.copytree(paths["model"] / "two_tower", stage.two_tower_dir, dirs_exist_ok=True)
    users = latest_per_entity(
        read_table(paths["features"] / "user.parquet"), "user_id"
    ).reset_index(drop=True)
    t = time.perf_counter()
    train_tiny_ranker(
        snap,
        users,
        stage.ranker_dir,
        names=RICH_NAMES,
        n=20000,
        hidden=[64, 32],
        student_dir=stage.student_dir,
    )
    log(
        f"ranker ({len(RICH_NAMES)} features) + distilled student in {time.perf_counter() - t:.0f} s"
    )
    t = time.perf_counter()
    info = assemble_bundle(
        stage.model_dir,
        paths["labels"],
        paths["features"],
        bundle,
        snapshot=snap,
        index_version=f"bench-ann-{listings}",
    )
    kind = json.loads(layout.index_manifest.read_text())["kind"]
    log(
        f"bundle: index {kind} over {info.n_items} item-tower embeddings + candidate tables in "
        f"{time.perf_counter() - t:.0f} s"
    )
    write_feature_tables(snap, users, pd.read_parquet(layout.category_pairs), layout.features_dir)
    reqs = retrieval_scale.user_requests(paths["model"], paths["features"], N_REQUESTS)
    devices = ("web", "ios", "android")
    bodies = [
        {
            "instances": [
                {
                    "user_id": r["user_id"],
                    "purchased_item_ids": r["basket"],
                    "region": r["region"],
                    "device": devices[i % 3],
                }
            ]
        }
        for i, r in enumerate(reqs)
    ]
    (bundle / "requests.json").write_text(
        json.dumps(bodies)
    )  # written last: the bundle is complete
    log(
        f"bundle {bundle} ready: {len(bodies)} requests of {len({r['user_id'] for r in reqs})} users"
    )
    return bundle


def write_feature_tables(
    listings: pd.DataFrame, users: pd.DataFrame, pairs: pd.DataFrame, out: Path
) -> None:
    """Contract feature views for Feast under ``out``: ``listing`` / ``seller`` from the ``listings``
    rows given (snapshot frame), ``user`` from ``users`` (``recent_listing_ids`` kept when present),
    ``category_pair`` from ``pairs``; all stamped ``FEATURE_TIME``."""
    from checkout_recs import contract

    out.mkdir(parents=True, exist_ok=True)
    lst = listings.assign(event_timestamp=FEATURE_TIME)
    lst[contract.field_names(contract.LISTING_FEATURES)].to_parquet(out / "listing.parquet")
    sel = lst.drop_duplicates("seller_id")
    sel[contract.field_names(contract.SELLER_FEATURES)].to_parquet(out / "seller.parquet")
    u = users.assign(event_timestamp=FEATURE_TIME)
    if "recent_listing_ids" not in u:
        u["recent_listing_ids"] = [[] for _ in range(len(u))]
    u[contract.field_names(contract.USER_FEATURES)].to_parquet(out / "user.parquet")
    pairs.assign(event_timestamp=FEATURE_TIME)[
        contract.field_names(contract.CATEGORY_PAIR_FEATURES)
    ].to_parquet(out / "category_pair.parquet")


def bundle_requests(bundle: Path) -> list[dict] | None:
    """The bundle's checkout bodies (``requests.json``), or None when it has none."""
    p = Path(bundle) / "requests.json"
    return json.loads(p.read_text()) if p.exists() else None
