"""The per-model training stages (ranker, distil, retrieval, merge) reproduce ``train_all``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_models import make_model_inputs, tiny_train_config  # noqa: E402

from checkout_recs.evaluation.ope.heldout import ranker_greedy_ope  # noqa: E402
from checkout_recs.models.ranker import RankerModel  # noqa: E402
from checkout_recs.models.train import (  # noqa: E402
    distil_stage,
    merge_model_dirs,
    split_by_time,
    train_all,
    train_ranker_stage,
    train_retrieval_stage,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("trainsplit")
    paths = make_model_inputs(tmp / "inputs", seed=5)
    cfg = tiny_train_config(7)
    ranker = train_ranker_stage(paths["training_set"], tmp / "ranker", cfg)
    student = distil_stage(tmp / "ranker", paths["training_set"], cfg)
    retrieval = train_retrieval_stage(paths["labels"], paths["features"], tmp / "retrieval", cfg)
    merged = merge_model_dirs([tmp / "ranker", tmp / "retrieval"], tmp / "merged", cfg)
    whole = train_all(paths["training_set"], paths["labels"], paths["features"], tmp / "whole", cfg)
    return {
        "tmp": tmp,
        "paths": paths,
        "ranker": ranker,
        "student": student,
        "retrieval": retrieval,
        "merged": merged,
        "whole": whole,
    }


def test_stage_outputs_land_where_the_bundle_expects_them(runs):
    tmp = runs["tmp"]
    for rel in (
        "ranker/weights.safetensors",
        "ranker.pt",
        "student/config.json",
        "two_tower/weights.safetensors",
        "metrics.json",
    ):
        assert (tmp / "merged" / rel).exists(), rel
        assert (tmp / "whole" / rel).exists(), rel
    assert (
        not (tmp / "retrieval" / "ranker").exists() and not (tmp / "ranker" / "two_tower").exists()
    )
    assert runs["merged"]["mlflow_run_id"] is None  # no tracking URI in the config


def test_stages_give_train_all_metrics_keys_and_the_same_ranker(runs):
    tmp = runs["tmp"]
    whole = json.loads((tmp / "whole" / "metrics.json").read_text())
    merged = json.loads((tmp / "merged" / "metrics.json").read_text())
    assert set(whole) - {"train_all_seconds"} == set(merged)
    assert set(runs["student"]["metrics"]) <= set(merged) and any(
        k.startswith("student_") for k in merged
    )
    assert any(k.startswith("two_tower_") for k in runs["retrieval"]["metrics"])
    assert runs["whole"].ranker_version == runs["ranker"]["version"]
    frame = pd.read_parquet(runs["paths"]["training_set"]).head(200)
    a = RankerModel.load(tmp / "whole" / "ranker").predict_frame(frame)[0]
    b = RankerModel.load(tmp / "merged" / "ranker").predict_frame(frame)[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # same seed, same data: same model
    assert merged["auc_click"] == pytest.approx(whole["auc_click"], abs=1e-6)


def test_distil_on_a_folder_without_a_ranker_fails_clearly(runs, tmp_path):
    with pytest.raises((FileNotFoundError, OSError)):
        distil_stage(tmp_path, runs["paths"]["training_set"])


def test_greedy_ope_of_the_trained_ranker_on_held_out_slates(runs):
    _, val = split_by_time(pd.read_parquet(runs["paths"]["training_set"]), 0.2)
    model = RankerModel.load(runs["tmp"] / "merged" / "ranker")
    assert ranker_greedy_ope(model, val.drop(columns=["propensity"], errors="ignore")) == {}
    val = val.assign(propensity=1 / 6)  # the synthetic logs carry no propensity: uniform slots
    got = ranker_greedy_ope(model, val)
    assert got["ope_n_rounds"] == len(val) and 0 < got["ope_match_share"] < 1
    for r in ("click", "purchase"):
        assert 0 <= got[f"ope_snips_{r}"] <= 1 and np.isfinite(got[f"ope_dr_{r}"])
    assert got["ope_dropped_rows"] == 0
    first = val["request_id"].iloc[0]
    bad = val.assign(propensity=np.where(val["request_id"] == first, np.nan, 1 / 6))
    got_bad = ranker_greedy_ope(model, bad)  # a bad request is left out, not fatal
    n_first = int((val["request_id"] == first).sum())
    assert got_bad["ope_dropped_rows"] == n_first and got_bad["ope_n_rounds"] == len(val) - n_first


def test_two_tower_stage_reads_only_the_interacted_listings_and_trains_the_same_model(runs):
    """The stage keeps the snapshot rows of interacted listings only (``interacted_listings``,
    a block at a time); the item tower sees each row on its own, so the weights are those of
    ``train_two_tower`` over the whole catalogue, byte for byte."""
    from checkout_recs.models.inputs import listing_snapshot
    from checkout_recs.models.train import interacted_listings
    from checkout_recs.models.two_tower import train_two_tower

    paths, tmp = runs["paths"], runs["tmp"]
    inter = pd.read_parquet(paths["labels"] / "interactions.parquet")
    whole = listing_snapshot(paths["features"], labels_dir=paths["labels"])
    kept = interacted_listings(paths["features"], paths["labels"], inter["listing_id"])
    assert 0 < len(kept) < len(whole)
    assert set(kept["listing_id"]) == set(whole["listing_id"]) & set(inter["listing_id"])
    expected = whole[whole["listing_id"].isin(kept["listing_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, expected)
    users = pd.read_parquet(paths["features"] / "user.parquet")
    users = users.sort_values("event_timestamp").drop_duplicates("user_id", keep="last")
    reference = train_two_tower(
        inter[["user_id", "listing_id", "event_timestamp"]],
        whole,
        tiny_train_config(7).two_tower,
        users.sort_values("user_id").reset_index(drop=True),
    )
    reference.save(tmp / "reference_two_tower")
    got = (tmp / "retrieval" / "two_tower" / "weights.safetensors").read_bytes()
    assert got == (tmp / "reference_two_tower" / "weights.safetensors").read_bytes()
