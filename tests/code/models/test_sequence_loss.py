"""Losses of SASRec-lite (checkout_recs/models/sequence_loss.py) against written-out formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkout_recs.models.sequence_loss import _SoftmaxCE, full_ce, gbce, gbce_beta  # noqa: E402


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_ce_value_and_gradients_match_pytorch_cross_entropy(dtype):
    g = torch.Generator().manual_seed(2)
    h0, items0 = torch.randn(3, 5, 8, generator=g), torch.randn(40, 8, generator=g)
    target = torch.randint(40, (3, 5), generator=g)
    target[0, :2] = -1  # positions without a target

    def run(loss_fn):
        h, items = h0.clone().to(dtype).requires_grad_(), items0.clone().to(dtype).requires_grad_()
        loss = loss_fn(h, items)
        loss.backward()
        return loss.item(), h.grad.float(), items.grad.float()

    def reference(h, items):
        keep = target >= 0
        return torch.nn.functional.cross_entropy((h[keep] @ items.T).float(), target[keep])

    got, want = run(lambda h, items: full_ce(h, items, target)), run(reference)
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16 gradients: the same up to rounding
    for a, b in zip(got[1:], want[1:], strict=True):
        torch.testing.assert_close(a, b, atol=tol * float(b.abs().max()), rtol=0)
    logits = torch.randn(4, 6, generator=g)
    kept = logits.clone()
    _SoftmaxCE.apply(logits.requires_grad_(), torch.tensor([0, 1, 2, 5]))
    torch.testing.assert_close(logits.detach(), kept)  # float32 logits: not overwritten in place


def test_full_ce_refuses_a_second_backward_through_its_spent_buffer():
    h = torch.randn(2, 3, 4, requires_grad=True)
    loss = full_ce(h, torch.randn(6, 4), torch.tensor([[0, 1, 2], [3, 4, 5]]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError):
        loss.backward()
