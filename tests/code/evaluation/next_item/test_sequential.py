"""The sequential baselines (checkout_recs/evaluation/next_item/sequential.py) on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from checkout_recs.evaluation.next_item.protocol import Split  # noqa: E402
from checkout_recs.evaluation.next_item.sequential import (  # noqa: E402
    SEQ_BASE,
    SEQ_GRIDS,
    SEQ_NAMES,
    choose_seq,
    refit_seq,
    seq_config,
    snapshot_epochs,
    tune_seq,
)

TINY = {"dim": 8, "epochs": 3, "eval_every": 1, "patience": 1, "batch_tokens": 64}


def _split(n_users: int = 30, n_items: int = 25) -> Split:
    rng = np.random.default_rng(0)
    seqs = [rng.choice(n_items, rng.integers(5, 12), replace=False) for _ in range(n_users)]
    return Split(
        np.arange(n_items),
        [s[:-2] for s in seqs],
        np.array([s[-2] for s in seqs]),
        np.array([s[-1] for s in seqs]),
        np.zeros(n_users, bool),
    )


def test_grids_build_configs_with_their_loss():
    assert SEQ_NAMES == ("sasrec_ce", "gsasrec")
    for name in SEQ_NAMES:
        assert len(SEQ_GRIDS[name]) >= 2
        for p in SEQ_GRIDS[name]:
            cfg = seq_config(p, "cpu")
            assert cfg.loss == ("ce" if name == "sasrec_ce" else "gbce")
            assert cfg.windows == SEQ_BASE["windows"]


def test_tune_choose_and_refit():
    split = _split()
    runs = [
        tune_seq(split, "gsasrec", p, "cpu", {**SEQ_BASE, **TINY}) for p in SEQ_GRIDS["gsasrec"]
    ]
    for r in runs:
        assert 1 <= r["best_epoch"] <= 3 and r["scores"].shape == (30, 25)
        np.testing.assert_allclose(r["scores"].mean(1), 0, atol=1e-5)  # z-scored per user
    rec = choose_seq("gsasrec", runs, {**SEQ_BASE, **TINY})
    best = runs[rec["grid_index"]]
    assert rec["choice"]["epochs"] == best["best_epoch"]
    assert rec["val"]["ndcg@6"] == max(r["val"]["ndcg@6"] for r in runs)
    assert rec["choice"]["dim"] == 8 and len(rec["grid"]) == len(runs)
    assert set(rec["grid"][0]) >= {"snapshot_val_ndcg@6", "history", "best_epoch"}
    out = refit_seq(split, "gsasrec", rec["choice"], "cpu", seed=1)
    assert out["ranks"].shape == (30,) and out["ranks"].min() >= 1
    assert 0.0 <= out["ndcg@6"] <= 1.0 and "untied" in out
    assert 0.0 <= out["snapshot_ensemble"]["ndcg@6"] <= 1.0 and out["scores"].shape == (30, 25)


def test_snapshot_epochs_end_at_the_kept_epoch():
    assert snapshot_epochs(30, 5) == [20, 25, 30]
    assert snapshot_epochs(6, 5) == [1, 6]
    assert snapshot_epochs(2, 5, n=1) == [2]
