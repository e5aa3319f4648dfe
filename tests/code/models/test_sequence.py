"""SASRec-lite (checkout_recs/models/sequence.py): training rows, batches, masking, scoring."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkout_recs.models.sequence import (  # noqa: E402
    BitDropout,
    SASRec,
    SASRecConfig,
    _pad_left,
    blocked_mask,
    dropout_noise,
    epoch_batches,
    training_rows,
)


def _seqs(n: int = 30, n_items: int = 20, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(n_items, rng.integers(2, 14), replace=False) for _ in range(n)]


def test_training_rows_last_window_or_every_target_once():
    s = np.arange(12)
    assert [list(r) for r in training_rows([s], 4)] == [[7, 8, 9, 10, 11]]
    rows = training_rows([s, np.array([5])], 4, windows=True)
    assert [list(r) for r in rows] == [[7, 8, 9, 10, 11], [3, 4, 5, 6, 7], [0, 1, 2, 3]]
    targets = np.concatenate([r[1:] for r in rows])
    assert sorted(targets) == list(range(1, 12))  # every item after the first, once


def test_epoch_batches_cover_every_row_once_within_the_token_budget():
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 11, 200)
    batches = epoch_batches(lens, rng, 16, 40, 10)
    assert sorted(np.concatenate(batches)) == list(range(200))
    assert all(len(b) * lens[b].max() <= 40 or len(b) == 1 for b in batches)
    plain = epoch_batches(lens, rng, 16, 0, 10)
    assert [len(b) for b in plain] == [16] * 12 + [8]


def test_blocked_mask_sees_earlier_real_items_and_itself():
    seq = torch.tensor([[0, 0, 3, 4]])
    allowed = ~blocked_mask(seq)[0, 0]
    assert allowed.tolist() == [
        [True, False, False, False],
        [False, True, False, False],  # a padding query sees only itself
        [False, False, True, False],
        [False, False, True, True],
    ]


def test_scores_do_not_depend_on_the_padding_width():
    seqs = _seqs()
    cfg = SASRecConfig(dim=8, max_len=10, epochs=2, windows=True, batch_tokens=40, dropout=0.0)
    m = SASRec(cfg).fit(seqs, 20, seed=0)
    x = torch.from_numpy(_pad_left(seqs, 10))
    with torch.inference_mode():
        full = m.net.logits(m.net.hidden(x)[:, -1]).numpy()
    np.testing.assert_allclose(m.score(seqs), full, atol=1e-5)
    assert m.score(seqs).shape == (30, 20) and m.score(seqs).dtype == np.float32


@pytest.mark.parametrize("loss", ["ce", "gbce"])
def test_same_seed_same_model_and_untied_output(loss):
    seqs = _seqs()
    cfg = SASRecConfig(dim=8, max_len=10, epochs=2, loss=loss, negatives=5, tied=False)
    a = SASRec(cfg).fit(seqs, 20, seed=3).score(seqs)
    b = SASRec(cfg).fit(seqs, 20, seed=3).score(seqs)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        SASRec(SASRecConfig(dim=8, loss="nope")).fit(seqs, 20)


def test_snapshot_scores_average_the_saved_checkpoints_and_restore_the_weights():
    seqs = _seqs()
    m = SASRec(SASRecConfig(dim=8, max_len=10, epochs=4, batch_tokens=40)).fit(
        seqs, 20, seed=0, save_at=(2, 4)
    )
    assert set(m.saved) == {2, 4}
    final = m.score(seqs)
    snap = m.snapshot_scores(seqs, [2, 4, 9])  # 9 was never saved: ignored

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)

    m.net.load_state_dict(m.saved[2])
    at2 = m.score(seqs)
    m.net.load_state_dict(m.saved[4])
    np.testing.assert_allclose(snap, (z(at2) + z(final)) / 2, atol=1e-4)
    np.testing.assert_array_equal(m.score(seqs), final)


def test_monitor_checks_are_saved_within_the_window():
    seqs = _seqs()
    values = iter([0.1, 0.2, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0])
    cfg = SASRecConfig(dim=8, max_len=10, epochs=8, eval_every=1, patience=2, smooth=1)
    m = SASRec(cfg).fit(seqs, 20, seed=0, monitor=lambda _: next(values))
    assert m.best_epoch == 3 and m.epochs_run == 5
    assert {1, 2, 3} <= set(m.saved)  # the best and the two checks before it


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_bit_dropout_noise_has_nn_dropouts_distribution(dtype, p):
    noise = dropout_noise(np.random.default_rng(0), (400, 500), dtype, p)
    assert noise.dtype == dtype and noise.shape == (400, 500)
    values = set(noise.unique().tolist())
    assert values == {0.0, float(torch.tensor(1 / (1 - p), dtype=dtype))}
    dropped = float((noise == 0).double().mean())
    assert dropped == pytest.approx(p, abs=4 * (p * (1 - p) / noise.numel()) ** 0.5)
    again = dropout_noise(np.random.default_rng(0), (400, 500), dtype, p)
    assert torch.equal(noise, again)  # the generator's stream: the same seed, the same mask


def test_bit_dropout_scales_kept_elements_passes_gradients_and_is_off_in_eval():
    drop = BitDropout(0.5)
    drop.rng = np.random.default_rng(1)
    x = torch.ones(50, 40, requires_grad=True)
    y = drop(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x·noise)/dx = noise
    drop.eval()
    assert drop(x) is x
    drop.train()
    drop.rng = None  # no generator: torch's own dropout
    assert set(drop(x).unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(ValueError):
        BitDropout(1.0)


def test_fit_draws_dropout_from_the_seed():
    seqs = _seqs()
    cfg = SASRecConfig(dim=8, max_len=10, epochs=2, dropout=0.3, windows=True, batch_tokens=40)
    m = SASRec(cfg).fit(seqs, 20, seed=5)
    drops = [mod for mod in m.net.modules() if isinstance(mod, BitDropout)]
    assert len(drops) == 1 + cfg.blocks  # the input's and each block's
    assert all(d.rng is not None for d in drops)
    np.testing.assert_array_equal(SASRec(cfg).fit(seqs, 20, seed=5).score(seqs), m.score(seqs))
    assert not np.array_equal(SASRec(cfg).fit(seqs, 20, seed=6).score(seqs), m.score(seqs))
