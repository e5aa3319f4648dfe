"""The deterministic public baselines reproduce the shared protocol's MovieLens-100K table."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkout_recs.evaluation.baselines import ItemKNN, Markov1, Popularity
from checkout_recs.evaluation.next_item import PUBLISHED
from checkout_recs.evaluation.protocol import evaluate_scores, read_atomic, split_protocol

ML100K = Path(__file__).resolve().parents[2] / "data" / "external" / "ml-100k"
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
