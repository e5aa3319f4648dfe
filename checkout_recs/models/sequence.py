"""SASRec-lite: a causal self-attention next-item model over a fixed catalogue.

Used by the offline protocol (MovieLens and any atomic-format data set), where the catalogue
is small enough for a full softmax over every item at every position (Kang & McAuley, 2018,
"Self-Attentive Sequential Recommendation"; ``loss="ce"``: full cross-entropy, Klenitskiy &
Vasilev 2023; ``loss="gbce"``: gSASRec's gBCE, Petrov & Macdonald 2023; ``sequence_loss.py``).
The same encoder shape as the two-tower user tower, on item indices.

Attention masks padding keys (a real item attends exactly to the real items up to itself) and
position embeddings count from the right, so a batch cut to its longest row gives every real
item the same output as the full width: training uses every item of every history
(``windows``) in length-bucketed batches of about ``batch_tokens`` positions.

Training cost on a CPU (issue #20): every weight matrix starts Xavier-normal (as the reference
SASRec implementation; ``init="torch"`` keeps PyTorch's N(0, 1) embeddings, which with the √dim
input scale and the tied output layer start the softmax saturated and needed ~200 epochs to
reach what Xavier reaches in ~20); matrix products run in bfloat16 under autocast where the CPU
has native bf16 (AVX512-BF16 / AMX; ``bf16=False`` or any other CPU: float32); scoring is always
float32; dropout masks come from a numpy bit generator seeded by ``fit``'s seed (``BitDropout``:
torch's CPU ``bernoulli_`` was a fifth of a SASRec-CE epoch and a third of a gSASRec one) and the
full cross-entropy keeps one softmax buffer (``sequence_loss.full_ce``). ``fit(..., monitor=f)``
stops early on a validation figure.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from checkout_recs.models.attention import AttentionBlock
from checkout_recs.models.optim import Adam
from checkout_recs.models.sequence_loss import LOSSES, full_ce, gbce

#: ``fit(seed=s)`` draws its dropout masks from ``np.random.default_rng([s, DROPOUT_STREAM])``.
DROPOUT_STREAM = 1
#: Integer types of a float dtype's width (numpy, torch): dropout noise is built as bit patterns.
_INT_TYPES: dict[int, tuple[type, torch.dtype]] = {
    2: (np.int16, torch.int16),
    4: (np.int32, torch.int32),
    8: (np.int64, torch.int64),
}


@dataclass
class SASRecConfig:
    """Hyper-parameters of SASRec-lite (a dataclass: the protocol runs where pydantic is absent).

    dim: embedding width; max_len: most recent items kept per user; blocks, heads: transformer
    shape; dropout; epochs (the most epochs when ``fit`` is given a monitor), batch_size, lr,
    weight_decay: training; device: "cpu" or "cuda"; init: "xavier" (every matrix
    Xavier-normal) or "torch" (PyTorch's defaults); bf16: bfloat16 autocast for training on a CPU
    with native bf16; eval_every, patience, smooth: early stopping (a monitor call every
    ``eval_every`` epochs; criterion: the mean of the last ``smooth`` calls; stop after
    ``patience`` calls without a new best); loss: "ce" or "gbce", negatives and gbce_t its k
    and t; windows: train on every item (``training_rows``); batch_tokens: positions per
    length-bucketed batch (0: ``batch_size`` rows in random order, ``epoch_batches``); tied:
    output item embeddings = input ones.
    """

    dim: int = 64
    max_len: int = 50
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.3
    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    device: str = "cpu"
    init: str = "xavier"
    bf16: bool = True
    eval_every: int = 5
    patience: int = 4
    smooth: int = 3
    loss: str = "ce"
    negatives: int = 256
    gbce_t: float = 0.75
    windows: bool = False
    batch_tokens: int = 0
    tied: bool = True


class BitDropout(nn.Dropout):
    """Inverted dropout (as ``nn.Dropout``) whose keep-mask comes from a numpy bit generator.

    ``torch``'s CPU dropout draws every mask element with ``bernoulli_`` at ~6 ns an element:
    a third of gSASRec's training time on a 2-core CPU. Here an element is kept when a 16-bit
    uniform integer from ``rng`` (PCG64, 4 per 64-bit draw) is below ``round((1 − p)·2¹⁶)``
    (a keep probability within 2⁻¹⁷ of ``1 − p``) and multiplied by ``1 / (1 − p)`` rounded to
    the input's dtype, as ``nn.Dropout`` does: ~0.6 ns an element. The same distribution as
    ``nn.Dropout``; a different random stream. Without ``rng`` (not set by ``SASRec.fit``), or
    off the CPU, it is ``nn.functional.dropout``."""

    def __init__(self, p: float) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError("dropout must lie in [0, 1)")
        super().__init__(p)
        self.rng: np.random.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each element zeroed with probability ``p``, the rest scaled by 1/(1−p)."""
        if not self.training or self.p == 0.0:
            return x
        if self.rng is None or x.device.type != "cpu" or x.element_size() not in _INT_TYPES:
            return nn.functional.dropout(x, self.p, True)
        return x * dropout_noise(self.rng, tuple(x.shape), x.dtype, self.p)


def dropout_noise(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: torch.dtype, p: float
) -> torch.Tensor:
    """(shape) tensor of ``dtype``: 0 with probability ``p`` (to 2⁻¹⁷), else ``1/(1−p)`` rounded
    to ``dtype`` (``BitDropout``)."""
    n = int(np.prod(shape))
    bits = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]
    threshold = round((1.0 - p) * 65536)
    keep = bits < np.uint16(threshold) if threshold < 65536 else np.ones(n, bool)
    np_int, torch_int = _INT_TYPES[torch.empty((), dtype=dtype).element_size()]
    scale = torch.tensor(1.0 / (1.0 - p), dtype=dtype).view(torch_int).item()
    noise = keep * np_int(scale)  # the bit pattern of 1/(1−p) where kept, 0 (= +0.0) elsewhere
    return torch.from_numpy(noise.astype(np_int, copy=False).reshape(shape)).view(dtype)


class CausalBlock(AttentionBlock):
    """``AttentionBlock`` (pre-norm) whose attention takes an explicit mask: ``forward(x, blocked,
    causal)`` with ``blocked`` (n, 1, L, L) bool, True where query q may not see key k. Its
    dropout is ``BitDropout``."""

    def __init__(
        self, d: int, heads: int, ff: int, dropout: float = 0.0, norm_first: bool = False
    ) -> None:
        super().__init__(d, heads, ff, dropout, norm_first)
        self.drop = BitDropout(dropout)

    def attend(self, x: torch.Tensor, pad: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """Attention of ``x`` (n, L, d) over itself; ``pad`` is the (n, 1, L, L) blocked mask."""
        n, L, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(x).view(n, L, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        att = q @ k.transpose(-1, -2) / dh**0.5  # (n, h, L, L)
        if pad is not None:
            att = att.masked_fill(pad, -1e9)
        w = self.drop(torch.softmax(att, dim=-1))
        return self.out((w @ v).transpose(1, 2).reshape(n, L, d))


def blocked_mask(seq: torch.Tensor) -> torch.Tensor:
    """(n, L) left-padded tokens → (n, 1, L, L) bool, True where a query may not attend: later
    positions, and padding keys other than the query itself. A real item sees exactly the real
    items up to itself, so its output does not depend on how much padding precedes it."""
    L = seq.shape[1]
    idx = torch.arange(L, device=seq.device)
    future = idx[None, :] > idx[:, None]  # (L, L): key after query
    pad_key = (seq == 0)[:, None, :] & (idx[None, :] != idx[:, None])[None]  # (n, L, L)
    return (future[None] | pad_key).unsqueeze(1)


class SASRecNet(nn.Module):
    """Item + position embeddings → causal transformer blocks → logits over items."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # index 0 pads; item i → i+1
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.blocks = nn.ModuleList(
            [
                CausalBlock(cfg.dim, cfg.heads, 2 * cfg.dim, cfg.dropout, norm_first=True)
                for _ in range(cfg.blocks)
            ]
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = BitDropout(cfg.dropout)
        self.out = None if cfg.tied else nn.Embedding(n_items, cfg.dim)
        # gBCE's logit level (sequence_loss.py); no ranking depends on it
        self.offset = nn.Parameter(torch.tensor(-float(np.log(max(1, cfg.negatives)))))
        if cfg.init == "xavier":
            with torch.no_grad():
                for p in self.parameters():
                    if p.dim() > 1:
                        nn.init.xavier_normal_(p)
                self.item.weight[0].zero_()
        elif cfg.init != "torch":
            raise ValueError("init must be 'xavier' or 'torch'")

    def set_dropout_rng(self, rng: np.random.Generator | None) -> None:
        """The generator of every ``BitDropout`` mask (None: ``nn.functional.dropout``)."""
        for m in self.modules():
            if isinstance(m, BitDropout):
                m.rng = rng

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """seq (n, L) item tokens (0 pads, left-padded; L ≤ max_len) → (n, L, dim).

        Positions count from the right (the last column is always the last position), so a
        batch may be cut to its longest sequence without changing any real item's output."""
        L = seq.shape[1]
        h = self.item(seq) * (self.item.embedding_dim**0.5) + self.pos.weight[-L:].unsqueeze(0)
        h = self.drop(h) * (seq > 0).unsqueeze(-1)
        blocked = blocked_mask(seq)
        for block in self.blocks:
            h = block(h, blocked, causal=True)
        return self.norm(h)

    def output_items(self) -> torch.Tensor:
        """(I, dim) output embeddings: the input ones without the padding row when tied."""
        return self.item.weight[1:] if self.out is None else self.out.weight

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(…, dim) → (…, n_items) scores of real items."""
        return h @ self.output_items().T


def _pad_left(seqs: list[np.ndarray], L: int) -> np.ndarray:
    out = np.zeros((len(seqs), L), np.int64)
    for i, s in enumerate(seqs):
        s = s[-L:]
        if len(s):
            out[i, L - len(s) :] = s + 1
    return out


def training_rows(seqs: list[np.ndarray], L: int, windows: bool = False) -> list[np.ndarray]:
    """Training sequences of at most ``L + 1`` items (inputs = all but the last, targets = all
    but the first). ``windows=False``: each sequence's last ``L + 1`` items; ``True``: the
    sequence cut from its end into windows of ``L + 1`` items overlapping by one, so that every
    item after the first is a target exactly once. Sequences shorter than 2 are dropped."""
    rows = []
    for s in seqs:
        end = len(s)
        while end >= 2:
            rows.append(s[max(0, end - L - 1) : end])
            if not windows:
                break
            end -= L
    return rows


def epoch_batches(
    lens: np.ndarray, rng: np.random.Generator, batch_size: int, batch_tokens: int, L: int
) -> list[np.ndarray]:
    """Row indices of one epoch's batches. ``batch_tokens <= 0``: a random permutation cut into
    ``batch_size`` rows. Else length-bucketed: rows ordered by length plus a uniform jitter of
    up to ``L / 4`` (so that equal and near lengths mix differently every epoch), cut greedily
    into batches of at most ``batch_tokens`` tokens (rows × the batch's longest row), batches
    in random order. ``lens`` (R,) inputs per row."""
    n = len(lens)
    if batch_tokens <= 0:
        perm = rng.permutation(n)
        return [perm[s : s + batch_size] for s in range(0, n, batch_size)]
    order = np.argsort(lens + rng.uniform(0.0, max(1.0, L / 4), n), kind="stable")
    batches, start, width = [], 0, 0
    for j, i in enumerate(order):
        w = max(width, int(lens[i]))
        if j > start and (j - start + 1) * w > batch_tokens:
            batches.append(order[start:j])
            start, w = j, int(lens[i])
        width = w
    batches.append(order[start:])
    return [batches[k] for k in rng.permutation(len(batches))]


def _bf16_autocast(cfg: SASRecConfig) -> bool:
    """bf16 autocast only on a CPU with native bf16 (emulated bf16 is slower than float32)."""
    if not cfg.bf16 or torch.device(cfg.device).type != "cpu":
        return False
    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )


class SASRec:
    """Protocol-model interface: ``fit(seqs, n_items, seed)`` then ``score(seqs) -> (U, I)``.

    After ``fit``: ``epochs_run``, ``best_epoch`` (the epoch whose weights are kept),
    ``history`` (``[(epoch, monitor value)]``, empty without a monitor) and ``saved`` (epoch →
    weights: every monitor call's among the last ``smooth + patience + 2``, and the epochs of
    ``save_at``) for ``snapshot_scores``.
    """

    def __init__(self, cfg: SASRecConfig | None = None) -> None:
        self.cfg = cfg or SASRecConfig()
        self.fit_seconds = 0.0
        self.epochs_run = self.best_epoch = 0
        self.history: list[tuple[int, float]] = []
        self.saved: dict[int, dict[str, torch.Tensor]] = {}

    def fit(
        self,
        seqs: list[np.ndarray],
        n_items: int,
        seed: int = 0,
        monitor: Callable[[SASRec], float] | None = None,
        on_epoch: Callable[[int], None] | None = None,
        save_at: Collection[int] = (),
    ) -> SASRec:
        """Train next-item prediction at every position of every sequence (full softmax).

        ``monitor(self) -> float`` (higher is better), when given, is called every
        ``cfg.eval_every`` epochs. The criterion is the mean of the last ``cfg.smooth`` calls (a
        single call's figure on a few hundred validation targets moves by more than the trend
        between neighbouring checks); training stops after ``cfg.patience`` calls without a new
        best criterion (or at ``cfg.epochs``), and the weights of the middle call of the best
        window are kept (``best_epoch``). ``on_epoch(epoch)`` is called after every epoch
        (progress reporting). The weights after each epoch of ``save_at`` are kept in ``saved``.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        L = cfg.max_len
        if cfg.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}")
        rows = training_rows(seqs, L, cfg.windows)
        lens = np.array([len(r) - 1 for r in rows])  # inputs (= targets) per row
        full = _pad_left(rows, L + 1)
        dev = torch.device(cfg.device)
        gen = torch.Generator(device=dev).manual_seed(seed)
        inp = torch.from_numpy(full[:, :-1]).to(dev)
        tgt = torch.from_numpy(full[:, 1:] - 1).to(dev)  # -1 = pad target
        self.net = SASRecNet(n_items, cfg).to(dev)
        self.net.set_dropout_rng(np.random.default_rng([seed, DROPOUT_STREAM]))
        opt = Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        amp = _bf16_autocast(cfg)
        self.history, best, best_state, stale = [], -np.inf, None, 0
        recent: list[tuple[int, dict]] = []  # (epoch, weights) of the last ``smooth`` calls
        self.best_epoch = self.epochs_run = 0
        self.saved = {}
        keep_checks = max(1, cfg.smooth) + cfg.patience + 2
        for epoch in range(1, cfg.epochs + 1):
            self.net.train()
            for rows_b in epoch_batches(lens, rng, cfg.batch_size, cfg.batch_tokens, L):
                w = int(lens[rows_b].max())
                b = torch.from_numpy(rows_b).to(dev)
                x, t = inp[b][:, -w:], tgt[b][:, -w:]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    h, items = self.net.hidden(x), self.net.output_items()
                    if cfg.loss == "ce":
                        loss = full_ce(h, items, t)
                    else:
                        loss = gbce(h, items, t, cfg.negatives, cfg.gbce_t, gen, self.net.offset)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.epochs_run = epoch
            if on_epoch is not None:
                on_epoch(epoch)
            if epoch in save_at:
                self.saved[epoch] = copy.deepcopy(self.net.state_dict())
            if monitor is None or (epoch % cfg.eval_every and epoch != cfg.epochs):
                continue
            self.net.eval()
            self.history.append((epoch, float(monitor(self))))
            state = copy.deepcopy(self.net.state_dict())
            self.saved[epoch] = state
            checks = {e for e, _ in self.history[-keep_checks:]} | set(save_at)
            self.saved = {e: w for e, w in self.saved.items() if e in checks}
            recent = [*recent, (epoch, state)][-max(1, cfg.smooth) :]
            value = float(np.mean([v for _, v in self.history[-len(recent) :]]))
            if value > best:
                best, stale = value, 0
                self.best_epoch, best_state = recent[(len(recent) - 1) // 2]
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        else:
            self.best_epoch = self.epochs_run
        self.net.eval()
        self.fit_seconds = time.perf_counter() - t0
        return self

    def snapshot_scores(self, seqs: list[np.ndarray], epochs: Collection[int]) -> np.ndarray:
        """Mean over the saved weights of ``epochs`` (those in ``saved``; the current weights if
        none is) of each one's scores, standardised per user: float32 (U, I). A checkpoint
        ensemble of one training run: neighbouring checkpoints' top items differ (validation
        NDCG@6 moves by ±0.005 between checks five epochs apart) and their mean is steadier."""
        current = copy.deepcopy(self.net.state_dict())
        kept: list[int | None] = [e for e in sorted(set(epochs)) if e in self.saved]
        total = np.zeros((len(seqs), self.net.item.num_embeddings - 1), np.float64)
        try:
            for e in kept or [None]:
                if e is not None:
                    self.net.load_state_dict(self.saved[e])
                sc = self.score(seqs).astype(np.float64)
                sd = sc.std(1, keepdims=True)
                total += (sc - sc.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
        finally:
            self.net.load_state_dict(current)
        return (total / max(1, len(kept))).astype(np.float32)

    def score(self, seqs: list[np.ndarray], batch: int = 512) -> np.ndarray:
        """Next-item scores after each user's sequence: float32 (U, I). Users are batched by
        length, each batch cut to its longest sequence (exact: see ``SASRecNet.hidden``)."""
        L = self.cfg.max_len
        x = torch.from_numpy(_pad_left(seqs, L)).to(self.cfg.device)
        lens = np.minimum([len(s) for s in seqs], L)
        order = np.argsort(lens, kind="stable")
        out = np.empty((len(seqs), self.net.item.num_embeddings - 1), np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                rows = order[s : s + batch]
                w = max(1, int(lens[rows].max()))
                h = self.net.hidden(x[torch.from_numpy(rows)][:, -w:])[:, -1]
                out[rows] = self.net.logits(h).float().cpu().numpy()
        return out
