"""Behaviour of the trained models, index and candidates on the synthetic demo bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_models import make_demo_bundle, make_model_inputs, tiny_train_config  # noqa: E402

from checkout_recs.models.train import load_models  # noqa: E402
from checkout_recs.models.user_encoder import FastUserEncoder  # noqa: E402
from checkout_recs.retrieval.candidates import CandidateRequest  # noqa: E402
from checkout_recs.retrieval.index import RetrievalIndex  # noqa: E402
from checkout_recs.serving.bundle import candidate_generator  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_demo_bundle(tmp_path_factory.mktemp("models_bundle"))


def test_bundle_layout_and_metrics(bundle):
    for rel in (
        "model/ranker/weights.safetensors",
        "model/ranker/config.json",
        "model/ranker.pt",
        "model/two_tower/weights.safetensors",
        "index/shard.0.faiss",
        "index/ids.npy",
        "index/snapshot.parquet",
        "index/manifest.json",
        "candidates/category_pairs.parquet",
    ):
        assert (bundle / rel).exists(), rel
    m = json.loads((bundle / "model/metrics.json").read_text())
    # the synthetic clicks depend on listing quality: the click head must find it
    assert m["auc_click"] > 0.62 and m["auc_purchase"] > 0.6
    man = json.loads((bundle / "index/manifest.json").read_text())
    assert man["n_items"] == len(np.load(bundle / "index/ids.npy")) == 600
    assert set(man["regions"]) == {"eu", "us"}


def test_candidates_distinct_live_basket_excluded(bundle):
    gen = candidate_generator(bundle)
    basket = [1000, 1001, 1002]
    c = gen.generate(CandidateRequest(region="eu", basket=basket, recent_listing_ids=[1003, 1004]))
    assert 150 <= len(c) <= 350
    assert len(np.unique(c.ids)) == len(c.ids) and c.ids.dtype == np.int64
    assert not np.isin(basket, c.ids).any()
    assert {"ann", "popular"} <= set(c.counts())


def test_sold_listing_never_returned_after_removal(bundle):
    gen = candidate_generator(bundle)
    req = CandidateRequest(region="eu", basket=[1010], recent_listing_ids=[1011, 1012])
    first = gen.generate(req).ids
    sold = first[:40]
    gen.index.remove(sold)
    assert not np.isin(sold, gen.generate(req).ids).any()
    q = gen.user_vector(req)[None, :]
    for region in (None, "eu", "us"):
        ids, _ = gen.index.search(q, 600, region=region)
        assert not np.isin(sold, ids).any()


def test_cold_start_listing_embedded_and_retrievable(bundle):
    _, tt = load_models(bundle / "model")
    index = RetrievalIndex.load(bundle / "index")
    snap = index.snapshot
    template = snap.iloc[[0]].copy()
    template["listing_id"] = 999_999  # never seen in training
    assert 999_999 not in tt.known_ids
    emb = tt.embed_items(template)
    assert emb.shape == (1, tt.dim) and np.isfinite(emb).all()
    # content alone: similar to a known listing of the same title and category
    twin = tt.embed_items(snap.iloc[[0]])
    assert float(emb[0] @ twin[0]) > 0.5
    index.add(template["listing_id"].to_numpy(), emb, template)
    ids, _ = index.search(emb, 5, region=str(template["region"].iloc[0]))
    assert 999_999 in ids[0]


def test_same_seed_same_model(tmp_path):
    from checkout_recs.models.ranker import train_ranker
    from checkout_recs.models.ranker_features import ranker_matrix

    paths = make_model_inputs(tmp_path)
    df = pd.read_parquet(paths["training_set"]).iloc[:1200]
    # fixed deep epochs: with early stopping the deep part may be switched off, and the linear
    # warm start is the same for every seed (a convex fit from zero)
    cfg = tiny_train_config(seed=3).ranker.model_copy(update={"early_stopping_share": 0.0})
    a, b = train_ranker(df, cfg), train_ranker(df, cfg)
    X = ranker_matrix(df, a.feature_names)
    np.testing.assert_array_equal(a.predict(X)[0], b.predict(X)[0])
    c = train_ranker(df, cfg.model_copy(update={"seed": 4}))
    assert not np.array_equal(a.predict(X)[0], c.predict(X)[0])


@pytest.mark.parametrize("source", ["model", "saved weights, no torch"])
def test_fast_user_encoder_matches_torch_tower(bundle, source):
    _, tt = load_models(bundle / "model")
    enc = (
        FastUserEncoder.from_model(tt)
        if source == "model"
        else FastUserEncoder.from_dir(bundle / "model" / "two_tower")
    )
    for seq in ([1002, 1003], list(range(1000, 1030)), []):
        for region, device in (("eu", "ios"), ("us", "web"), ("nowhere", "fridge")):
            fast = enc.encode(seq, region, device, 13.5)
            ref = tt.embed_users(
                np.array([seq[-20:] or [-1]]), [region], [device], np.array([13.5])
            )[0]
            np.testing.assert_allclose(fast, ref, atol=1e-5)


def test_serving_bundle_loads_without_torch(bundle):
    """The transformer's bundle (index, candidate generator with the user encoder, catalogue) needs no
    torch: the process stays ~185 MiB smaller."""
    code = (
        "import sys; from checkout_recs.serving.bundle import ServingBundle; "
        f"b = ServingBundle.load({str(bundle)!r}, candidates='auto'); "
        "assert type(b.candidates).__name__ == 'GeneratorCandidates', type(b.candidates); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_predictor_serves_the_student_without_torch(bundle):
    """The predictor reads the bundle's student into the numpy scorer: no torch in the process, and
    the scores of the torch model."""
    from checkout_recs.models.ranker import RankerModel

    student = RankerModel.load(bundle / "model" / "student")
    X = np.random.default_rng(0).normal(size=(5, len(student.feature_names))).astype(np.float32)
    code = (
        "import sys, json, numpy as np; from inference.predictor import RankerPredictor; "
        f"p = RankerPredictor({str(bundle)!r}); p.load(); "
        f"pc, pp = p.score(np.asarray({X.tolist()!r}, np.float32)); "
        "print(json.dumps(['torch' in sys.modules, p.version, pc.tolist(), pp.tolist()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    torch_loaded, version, pc, pp = json.loads(out.stdout.strip().splitlines()[-1])
    assert torch_loaded is False and version == student.version
    ref_c, ref_p = student.predict(X)
    np.testing.assert_allclose(pc, ref_c, atol=1e-5)
    np.testing.assert_allclose(pp, ref_p, atol=1e-5)
