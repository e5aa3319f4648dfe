"""The public baselines reproduce the shared protocol's MovieLens-100K table, as now written:
deterministic rows within ±0.005 on every figure, stochastic rows (ALS, BPR) with the mean of
seeds 0-4 within ±0.01; and tuning on MovieLens-100K validation chooses the table's
configurations again."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from checkout_recs.evaluation.next_item.baselines import GRIDS, ItemKNN, make_baseline
from checkout_recs.evaluation.next_item.evaluate import (
    ML100K_SPLIT_SHA256,
    PUBLISHED,
    PUBLISHED_SD,
    TOLERANCE,
)
from checkout_recs.evaluation.next_item.protocol import evaluate_scores, read_atomic, split_protocol
from checkout_recs.evaluation.next_item.runner import Runner
from checkout_recs.evaluation.next_item.tuning import (
    TABLE_CHOICE,
    choose,
    fit_score,
    grid_tasks,
    split_hash,
)

ROOT = Path(__file__).resolve().parents[4]
ML100K = ROOT / "data" / "external" / "ml-100k"
PROTOCOL = ROOT.parent / "shared" / "protocols" / "offline-next-item.md"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ML100K / "ml-100k.inter").exists(), reason="MovieLens-100K not unpacked"
    ),
]
ROWS = {
    "Popularity": "popularity",
    "Item-kNN": "item_knn",
    "Markov-1": "markov1",
    "ALS": "als",
    "BPR": "bpr",
}
COLUMNS = ("hr@6", "ndcg@6", "hr@50", "hr@300", "coverage@6")


@pytest.fixture(scope="module")
def split():
    return split_protocol(read_atomic(ML100K))


def _test_metrics(split, name: str, params: dict, seed: int = 0) -> dict:
    seqs = split.fit_seqs("test")
    return evaluate_scores(
        split, "test", make_baseline(name, params).fit(seqs, split.n_items, seed).score(seqs)
    )


def test_split_sizes(split):
    assert len(split.train) == 943 and split.n_items == 1682
    assert (
        0.43 < split.tied.mean() < 0.45
    )  # "44% of users rated their last two items in the same second"
    assert split_hash(split) == ML100K_SPLIT_SHA256


def _table() -> dict[str, tuple[str, dict[str, float], dict[str, float]]]:
    """name → (configuration text, means, standard deviations) from the protocol's table."""
    out = {}
    for line in PROTOCOL.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        label = cells[0].split(" (")[0] if cells else ""
        if label not in ROWS or len(cells) != 6:
            continue
        vals = [re.findall(r"[\d.]+", c) for c in cells[1:]]
        out[ROWS[label]] = (
            cells[0],
            {k: float(v[0]) for k, v in zip(COLUMNS, vals, strict=True)},
            {k: float(v[1]) for k, v in zip(COLUMNS, vals, strict=True) if len(v) > 1},
        )
    return out


@pytest.mark.skipif(
    not PROTOCOL.exists(), reason="the shared protocol is not checked out beside the repo"
)
def test_published_constants_and_configurations_match_the_protocol_table():
    table = _table()
    assert set(table) == set(PUBLISHED)
    for name, (config, mean, sd) in table.items():
        assert mean == PUBLISHED[name], name
        assert sd == PUBLISHED_SD.get(name, {}), name
        for key, value in re.findall(r"(\w+)=([\d.]+)", config):
            if key in TABLE_CHOICE[name]:
                assert float(value) == TABLE_CHOICE[name][key], (name, key)
    assert "recency decay 0.5" in table["item_knn"][0] and TABLE_CHOICE["item_knn"]["decay"] == 0.5
    assert TOLERANCE == {"deterministic": 0.005, "stochastic": 0.01}


@pytest.mark.parametrize("name", ["popularity", "markov1", "item_knn"])
def test_deterministic_row_at_the_table_configuration_matches_the_table(split, name):
    res = _test_metrics(split, name, TABLE_CHOICE[name])
    for metric, value in PUBLISHED[name].items():
        if name == "item_knn" and metric == "coverage@6":
            continue  # the known gap below
        assert abs(res[metric] - value) <= TOLERANCE["deterministic"], (
            name,
            metric,
            res[metric],
            value,
        )


@pytest.mark.xfail(
    strict=True,
    reason="item-kNN at the table's decay 0.5 gives coverage@6 0.426 against 0.433 "
    "(every other figure within 0.003); decay 0.47 matches (docs/models.md)",
)
def test_item_knn_coverage_at_the_table_configuration(split):
    res = _test_metrics(split, "item_knn", TABLE_CHOICE["item_knn"])
    assert (
        abs(res["coverage@6"] - PUBLISHED["item_knn"]["coverage@6"]) <= TOLERANCE["deterministic"]
    )


def test_item_knn_row_within_tolerance_at_decay_047(split):
    seqs = split.fit_seqs("test")
    res = evaluate_scores(
        split, "test", ItemKNN(100, 0.47, "row").fit(seqs, split.n_items).score(seqs)
    )
    for metric, value in PUBLISHED["item_knn"].items():
        assert abs(res[metric] - value) <= TOLERANCE["deterministic"], (metric, res[metric], value)


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_stochastic_row_five_seed_mean_matches_the_table(split, name):
    pytest.importorskip("implicit")
    runs = [_test_metrics(split, name, TABLE_CHOICE[name], seed) for seed in range(5)]
    for metric, value in PUBLISHED[name].items():
        mean = float(np.mean([r[metric] for r in runs]))
        assert abs(mean - value) <= TOLERANCE["stochastic"], (name, metric, mean, value)


def test_tuning_on_movielens_validation_chooses_the_table_configurations(split):
    pytest.importorskip("implicit")
    names = list(GRIDS)
    points = grid_tasks(names)
    with Runner(split, workers=1, progress=False) as runner:
        res = runner.run([(fit_score, (n, p, "val", 0)) for n, p in points], len(points), "grid")
    tuned = choose(names, points, [r.value for r in res], [r.wall_s for r in res])
    assert {n: tuned[n]["choice"] for n in names} == TABLE_CHOICE
