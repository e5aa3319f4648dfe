"""SASRec-lite (checkout_recs/models/sequence.py) learns: both losses on a deterministic task."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from checkout_recs.models.sequence import SASRec, SASRecConfig  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("loss", ["ce", "gbce"])
def test_both_losses_learn_a_deterministic_successor(loss):
    """next item = previous + 7 (mod 60): full cross-entropy and gBCE (with its logit offset)
    both put the successor in the top 3 for nearly every sequence within a few epochs."""
    rng = np.random.default_rng(0)
    n = 60
    seqs = [(rng.integers(n) + 7 * np.arange(rng.integers(4, 16))) % n for _ in range(200)]
    cfg = SASRecConfig(
        dim=16,
        max_len=16,
        epochs=8,
        loss=loss,
        negatives=16,
        windows=True,
        batch_tokens=400,
        dropout=0.0,
        lr=5e-3,
    )
    inputs = [s[:-1] for s in seqs]
    scores = SASRec(cfg).fit(inputs, n, seed=0).score(inputs)
    top = np.argsort(-scores, 1)[:, :3]
    hit = np.mean([s[-1] in t for s, t in zip(seqs, top, strict=True)])
    assert hit > 0.9, hit
