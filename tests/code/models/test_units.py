"""Unit tests of the model area's functions: features matrix, ranker I/O, index, gate."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from checkout_recs.models.metrics import auc  # noqa: E402
from checkout_recs.models.ranker import RankerConfig, RankerModel, train_ranker  # noqa: E402
from checkout_recs.models.ranker_features import RANKER_FEATURES, ranker_matrix  # noqa: E402
from checkout_recs.retrieval.index import RetrievalIndex  # noqa: E402
from checkout_recs.retrieval.index_build import IndexConfig  # noqa: E402
from checkout_recs.tracking import promotion_gate  # noqa: E402


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=n)
    clicked = rng.uniform(size=n) < 1 / (1 + np.exp(-(q * 2 - 1)))
    return pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(n // 6), 6).astype(str),
            "slot": np.tile(np.arange(6), n // 6),
            "price": rng.uniform(5, 100, n),
            "take_rate": 0.1,
            "ctr_smoothed": 1 / (1 + np.exp(-q)),
            "ctr_lift": q,  # the ranker takes the lift, not the pooled level
            "seller_rating": 4.0,
            "device": rng.choice(["web", "ios"], n),
            "event_timestamp": pd.Timestamp("2026-03-01", tz="UTC")
            + pd.to_timedelta(rng.uniform(0, 5, n), unit="D"),
            "clicked": clicked.astype(np.int8),
            "purchased": (clicked & (rng.uniform(size=n) < 0.4)).astype(np.int8),
        }
    )


def test_ranker_matrix_shape_dtype_and_derived_features():
    f = _frame()
    names = ["price", "log_price", "hour_sin", "device_ios", "ctr_smoothed"]
    X = ranker_matrix(f, names)
    assert X.shape == (len(f), 5) and X.dtype == np.float32
    np.testing.assert_allclose(X[:, 0], np.log1p(f["price"]), rtol=1e-5)  # log1p feature
    np.testing.assert_allclose(X[:, 4], f["ctr_smoothed"], rtol=1e-6)
    prefixed = f.rename(columns={"ctr_smoothed": "listing_ctr_smoothed"})  # training-set naming
    np.testing.assert_array_equal(ranker_matrix(prefixed, names), X)
    np.testing.assert_allclose(X[:, 3], (f["device"] == "ios").astype(float))
    assert np.isfinite(X).all()


def test_ranker_matrix_missing_feature_raises_with_name():
    with pytest.raises(KeyError, match="seller_sales_velocity"):
        ranker_matrix(_frame(), ["seller_sales_velocity"])


def test_ranker_features_come_from_contract_views():
    from checkout_recs.features.on_demand import INTERACTION_FEATURES, REQUEST_FEATURES

    assert "ctr_lift" in RANKER_FEATURES and "seller_rating" in RANKER_FEATURES
    assert "cvr_lift" in RANKER_FEATURES and not {"ctr_smoothed", "cvr_smoothed"} & set(
        RANKER_FEATURES
    )  # pooled levels out (``LEVEL_COLUMNS``)
    assert set(REQUEST_FEATURES) <= set(RANKER_FEATURES) and set(INTERACTION_FEATURES) <= set(
        RANKER_FEATURES
    )
    assert not {"listing_id", "user_id", "listing_category_id"} & set(RANKER_FEATURES)


def test_ranker_save_load_and_torchscript_agree(tmp_path):
    import torch

    m = train_ranker(_frame(), RankerConfig(epochs=2, hidden=[8], architecture="mmoe", n_experts=2))
    X = ranker_matrix(_frame(seed=1), m.feature_names)
    p1, q1 = m.predict(X)
    assert p1.shape == (len(X),) and ((p1 > 0) & (p1 < 1)).all()
    m2 = RankerModel.load(m.save(tmp_path / "r"))
    p2, q2 = m2.predict(X)
    np.testing.assert_allclose(p1, p2, rtol=1e-6)
    assert not list(tmp_path.glob("r/*.pkl")) and (tmp_path / "r" / "weights.safetensors").exists()
    ts = torch.jit.load(str(m.export_torchscript(tmp_path / "r.pt")))
    with torch.no_grad():
        a, b = ts(torch.from_numpy(X))
    np.testing.assert_allclose(a.numpy(), p1, rtol=1e-5)
    np.testing.assert_allclose(b.numpy(), q1, rtol=1e-5)


def test_ranker_rejects_wrong_width():
    m = train_ranker(_frame(), RankerConfig(epochs=1, hidden=[4]))
    with pytest.raises(ValueError, match="shape"):
        m.predict(np.zeros((3, len(m.feature_names) + 1), np.float32))


def test_auc_known_values():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))


def _index(
    n: int = 500, d: int = 8, cfg: IndexConfig | None = None
) -> tuple[RetrievalIndex, np.ndarray]:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    snap = pd.DataFrame(
        {
            "listing_id": np.arange(n) + 10,
            "region": np.where(np.arange(n) % 2, "eu", "us"),
            "category_id": np.arange(n) % 10,
        }
    )
    return RetrievalIndex.from_embeddings(snap["listing_id"].to_numpy(), emb, snap, cfg), emb


def test_index_exact_search_matches_brute_force(tmp_path):
    idx, emb = _index()
    q = emb[:3]
    ids, sc = idx.search(q, 20)
    brute = np.argsort(-(q @ emb.T), axis=1)[:, :20] + 10
    np.testing.assert_array_equal(ids, brute)
    assert (np.diff(sc, axis=1) <= 1e-6).all()
    idx2 = RetrievalIndex.load(tmp_path) if idx.save(tmp_path) else None
    np.testing.assert_array_equal(idx2.search(q, 20)[0], ids)


def test_index_region_and_category_filters():
    idx, emb = _index()
    ids, _ = idx.search(emb[:2], 30, region="eu")
    assert set(((ids - 10) % 2).ravel()) == {1}
    ids, _ = idx.search(emb[:2], 30, category=3)
    valid = ids[ids >= 0]
    assert len(valid) == 60 and set(((valid - 10) % 10).tolist()) == {3}


def test_index_ivf_path_recall_against_exact():
    idx, emb = _index(
        n=3000,
        d=16,
        cfg=IndexConfig(exact_below=1000, kind="ivf_sq8", nlist=32, nprobe=16, rerank=300),
    )
    assert idx.manifest.kind == "ivf_sq8"
    exact, _ = _index(n=3000, d=16)
    a, _ = idx.search(emb[:20], 50)
    e, _ = exact.search(emb[:20], 50)
    rec = np.mean([len(np.intersect1d(x, y)) / 50 for x, y in zip(a, e, strict=True)])
    assert rec >= 0.9


def test_index_remove_then_add_back():
    idx, emb = _index()
    assert idx.remove(np.array([10, 11, 12])) == 3
    ids, _ = idx.search(emb[:3], 500)
    assert not np.isin([10, 11, 12], ids).any()
    idx.add(np.array([10]), emb[:1], idx.snapshot.iloc[:1])
    ids, _ = idx.search(emb[:1], 1)
    assert ids[0, 0] == 10


def test_promotion_gate_refuses_worse_and_accepts_equal():
    champ = {"ndcg@6": 0.10, "auc_click": 0.70, "expected_revenue@6": 1.0}
    worse = {"ndcg@6": 0.09, "auc_click": 0.71, "expected_revenue@6": 1.2}
    d = promotion_gate(worse, champ, tolerance=0.005)
    assert not d.promote and any("ndcg@6" in r for r in d.reasons)
    assert promotion_gate({**champ, "ndcg@6": 0.0996}, champ, tolerance=0.005).promote
    assert promotion_gate(champ, None).promote
    assert not promotion_gate({"ndcg@6": 0.2}, champ).promote  # missing metrics never pass


def test_student_distils_teacher_and_numpy_scorer_agrees(tmp_path):
    from checkout_recs.models.student import NumpyScorer, StudentConfig, distill

    train, test = _frame(1200, seed=2), _frame(600, seed=3)
    teacher = train_ranker(train, RankerConfig(epochs=20, hidden=[32, 16]))
    student = distill(teacher, train, StudentConfig(hidden=8, epochs=20))
    Xt = ranker_matrix(test, teacher.feature_names)
    t_auc = auc(test["clicked"], teacher.predict(Xt)[0])
    s_auc = auc(test["clicked"], student.predict(Xt)[0])
    assert t_auc > 0.7 and s_auc > t_auc - 0.02  # the student may not lose more than 0.02 AUC
    assert student.metrics["n_params"] < sum(p.numel() for p in teacher.net.parameters())
    np.testing.assert_allclose(
        NumpyScorer.from_model(student).predict(Xt)[0], student.predict(Xt)[0], atol=1e-5
    )
    again = RankerModel.load(
        student.save(tmp_path / "student")
    )  # same artifact format as the teacher
    np.testing.assert_allclose(again.predict(Xt)[1], student.predict(Xt)[1], rtol=1e-6)
    # the predictor's torch-free load of the saved student scores the same
    saved = NumpyScorer.from_dir(tmp_path / "student")
    assert saved.feature_names == student.feature_names and saved.version == student.version
    for a, b in zip(saved.predict(Xt), student.predict(Xt), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="needs torch"):
        NumpyScorer.from_dir(teacher.save(tmp_path / "teacher"))
    # serving's scorer: numpy for the plain student, torch for the spline teacher numpy cannot run
    from checkout_recs.models.student import fast_predict

    assert isinstance(getattr(fast_predict(student), "__self__", None), NumpyScorer)
    assert getattr(fast_predict(teacher), "__self__", None) is teacher
    np.testing.assert_allclose(fast_predict(student)(Xt)[0], student.predict(Xt)[0], atol=1e-5)
