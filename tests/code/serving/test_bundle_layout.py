"""The bundle's one layout (``bundle_layout``) and one writer (``bundle_writer.assemble_bundle``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.bundle_layout import BundleInfo, BundleLayout, read_bundle_info
from checkout_recs.serving.bundle_writer import assemble_bundle
from checkout_recs.synthetic.serving import make_pairs, make_snapshot, make_users


def _inputs(root: Path) -> tuple[Path, Path, Path, pd.DataFrame]:
    """Working folders of a catalogue-only bundle: labels (pairs, co-purchase), features (two daily
    snapshots of the users), an empty model folder; and the listing snapshot."""
    labels, features, model = root / "labels", root / "features", root / "model"
    for d in (labels, features, model):
        d.mkdir(parents=True)
    pairs, co = make_pairs(0)
    pairs.to_parquet(labels / "category_pairs.parquet")
    co.to_parquet(labels / "co_purchase_items.parquet")
    users = make_users(20)
    older = users.assign(
        event_timestamp=users["event_timestamp"] - pd.Timedelta(days=1), n_purchases=-1
    )
    pd.concat([users, older]).to_parquet(features / "user.parquet")
    return model, labels, features, make_snapshot(300)


def test_a_catalogue_only_bundle_has_one_path_per_file_and_latest_users(tmp_path: Path) -> None:
    model, labels, features, snap = _inputs(tmp_path / "inputs")
    info = assemble_bundle(
        model, labels, features, tmp_path / "bundle", snapshot=snap, index_version="idx-t"
    )
    layout = BundleLayout(tmp_path / "bundle")
    assert layout.files() == {
        "bundle.json",
        "index/snapshot.parquet",
        "index/manifest.json",
        "candidates/category_pairs.parquet",
        "candidates/co_purchase_items.parquet",
        "features/user.parquet",
    }
    assert read_bundle_info(layout.root) == info
    assert info.index_version == "idx-t" and info.n_items == 300 and info.two_tower_version is None
    assert info.candidate_tables == {
        "co_purchase_items": 2,
        "category_pairs": len(make_pairs(0)[0]),
        "item_knn": 0,
    }
    users = pd.read_parquet(layout.user_features)
    assert (
        len(users) == 20 and (users["n_purchases"] >= 0).all()
    )  # the latest snapshot of each user
    bundle = ServingBundle.load(layout.root)
    assert bundle.index_version == "idx-t" and bundle.users is not None and len(bundle.users) == 20
    assert bundle.model_dir is None and not layout.has_retrieval()


def test_the_loader_does_not_guess_between_alternative_paths(tmp_path: Path) -> None:
    model, labels, features, snap = _inputs(tmp_path / "inputs")
    assemble_bundle(model, labels, features, tmp_path / "bundle", snapshot=snap)
    layout = BundleLayout(tmp_path / "bundle")
    layout.snapshot.rename(layout.root / "snapshot.parquet")  # an old, flat layout
    with pytest.raises(FileNotFoundError, match="index/snapshot.parquet"):
        ServingBundle.load(layout.root)


def test_bundle_info_keeps_unknown_keys(tmp_path: Path) -> None:
    layout = BundleLayout(tmp_path)
    layout.write_info(
        BundleInfo.model_validate({"index_version": "idx-1", "note": "written elsewhere"})
    )
    info = read_bundle_info(tmp_path)
    assert info.index_version == "idx-1" and info.model_extra == {"note": "written elsewhere"}
