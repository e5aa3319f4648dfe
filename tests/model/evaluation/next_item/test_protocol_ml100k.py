"""The deterministic public baselines reproduce the shared protocol's MovieLens-100K table."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkout_recs.evaluation.next_item.baselines import ItemKNN, Markov1, Popularity
from checkout_recs.evaluation.next_item.evaluate import MF_PARAMS, PUBLISHED
from checkout_recs.evaluation.next_item.protocol import evaluate_scores, read_atomic, split_protocol

ML100K = Path(__file__).resolve().parents[4] / "data" / "external" / "ml-100k"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ML100K / "ml-100k.inter").exists(), reason="MovieLens-100K not unpacked")]


@pytest.fixture(scope="module")
def split():
    return split_protocol(read_atomic(ML100K))


def test_split_sizes(split):
    assert len(split.train) == 943 and split.n_items == 1682
    assert 0.43 < split.tied.mean() < 0.45  # "44% of users rated their last two items in the same second"


@pytest.mark.parametrize("name,model", [("popularity", Popularity()), ("markov1", Markov1()),
                                        ("item_knn", ItemKNN(100, 0.47, "row"))])
def test_baseline_matches_published_table(split, name, model):
    seqs = split.fit_seqs("test")
    res = evaluate_scores(split, "test", model.fit(seqs, split.n_items).score(seqs))
    for metric, value in PUBLISHED[name].items():
        assert abs(res[metric] - value) <= 0.005, (name, metric, res[metric], value)


def _mf_mean(split, kind: str, seeds: int = 5) -> dict[str, float]:
    import numpy as np

    from checkout_recs.evaluation.next_item.baselines import ImplicitMF

    seqs = split.fit_seqs("test")
    runs = [evaluate_scores(split, "test", ImplicitMF(kind, 128, **MF_PARAMS[kind]).fit(seqs, split.n_items, s).score(seqs))
            for s in range(seeds)]
    return {m: float(np.mean([r[m] for r in runs])) for m in PUBLISHED[kind]}


@pytest.mark.parametrize("kind", ["bpr", pytest.param("als", marks=pytest.mark.xfail(
    strict=True, reason="ALS HR@50 is ~0.012 above the table with the stated settings (docs/models.md)"))])
def test_matrix_factorisation_mean_over_five_seeds_matches_published_table(split, kind):
    pytest.importorskip("implicit")
    res = _mf_mean(split, kind)
    for metric, value in PUBLISHED[kind].items():
        assert abs(res[metric] - value) <= 0.005, (kind, metric, res[metric], value)
