"""Losses of SASRec-lite (checkout_recs/models/sequence_loss.py) against written-out formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkout_recs.models.sequence_loss import full_ce, gbce, gbce_beta  # noqa: E402


def test_gbce_beta_spans_bce_to_calibrated():
    assert gbce_beta(101, 10, 0.0) == pytest.approx(1.0)  # t = 0: plain BCE
    assert gbce_beta(101, 10, 1.0) == pytest.approx(0.1)  # t = 1: beta = alpha = k / (I - 1)
    assert gbce_beta(101, 10, 0.5) == pytest.approx(0.1 * (0.5 * (1 - 10) + 10))
    with pytest.raises(ValueError):
        gbce_beta(101, 10, 1.5)


def test_full_ce_ignores_positions_without_a_target():
    g = torch.Generator().manual_seed(0)
    h, items = torch.randn(2, 3, 4, generator=g), torch.randn(5, 4, generator=g)
    target = torch.tensor([[-1, 2, 4], [-1, -1, 0]])
    keep = target >= 0
    want = torch.nn.functional.cross_entropy(h[keep] @ items.T, target[keep])
    assert full_ce(h, items, target).item() == pytest.approx(want.item(), rel=1e-6)


def test_gbce_matches_the_formula_position_by_position():
    g = torch.Generator().manual_seed(0)
    h, items = torch.randn(2, 3, 4, generator=g), torch.randn(7, 4, generator=g)
    target = torch.tensor([[-1, 2, 4], [1, 1, 0]])
    k, t, offset = 5, 0.75, -0.3
    got = gbce(h, items, target, k, t, torch.Generator().manual_seed(1), offset)
    neg = torch.randint(7, (2, k), generator=torch.Generator().manual_seed(1))  # the same draw
    beta = gbce_beta(7, k, t)

    def sp(x: float) -> float:
        return math.log1p(math.exp(x))

    losses = []
    for n in range(2):
        for w in range(3):
            tg = int(target[n, w])
            if tg < 0:
                continue
            s = (h[n, w] @ items.T).tolist()
            loss = beta * sp(-(s[tg] + offset))
            loss += sum(sp(s[int(j)] + offset) for j in neg[n] if int(j) != tg)
            losses.append(loss)
    assert got.item() == pytest.approx(float(np.mean(losses)), rel=1e-5)
