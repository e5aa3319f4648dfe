"""SASRec-lite: a causal self-attention next-item model over a fixed catalogue.

Used by the offline protocol (MovieLens and any atomic-format data set), where the catalogue
is small enough for a full softmax over every item at every position (Kang & McAuley, 2018,
"Self-Attentive Sequential Recommendation", trained here with full cross-entropy instead of
one sampled negative). The same encoder shape as the two-tower user tower, on item indices.

Training cost on a CPU (issue #20): every weight matrix starts Xavier-normal (as the reference
SASRec implementation; ``init="torch"`` keeps PyTorch's N(0, 1) embeddings, which with the √dim
input scale and the tied output layer start the softmax saturated and needed ~200 epochs to
reach what Xavier reaches in ~20); matrix products run in bfloat16 under autocast where the CPU
has native bf16 (AVX512-BF16 / AMX; ``bf16=False`` or any other CPU: float32); scoring is always
float32. ``fit(..., monitor=f)`` stops early on a validation figure.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from checkout_recs.models.attention import AttentionBlock
from checkout_recs.models.optim import Adam


@dataclass
class SASRecConfig:
    """Hyper-parameters of SASRec-lite (a dataclass: the protocol runs where pydantic is absent).

    dim: embedding width; max_len: most recent items kept per user; blocks, heads: transformer
    shape; dropout; epochs (the most epochs when ``fit`` is given a monitor), batch_size, lr,
    weight_decay: training; device: "cpu" or "cuda"; init: "xavier" (every matrix
    Xavier-normal) or "torch" (PyTorch's defaults); bf16: bfloat16 autocast for training on a CPU
    with native bf16; eval_every, patience, smooth: early stopping (a monitor call every
    ``eval_every`` epochs; criterion: the mean of the last ``smooth`` calls; stop after
    ``patience`` calls without a new best).
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


class SASRecNet(nn.Module):
    """Item + position embeddings → causal transformer blocks → logits over items."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # index 0 pads; item i → i+1
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.blocks = nn.ModuleList(
            [
                AttentionBlock(cfg.dim, cfg.heads, 2 * cfg.dim, cfg.dropout, norm_first=True)
                for _ in range(cfg.blocks)
            ]
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.init == "xavier":
            with torch.no_grad():
                for p in self.parameters():
                    if p.dim() > 1:
                        nn.init.xavier_normal_(p)
                self.item.weight[0].zero_()
        elif cfg.init != "torch":
            raise ValueError("init must be 'xavier' or 'torch'")

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """seq (n, L) padded item tokens (0 pads, left-padded) → (n, L, dim)."""
        L = seq.shape[1]
        pos = torch.arange(L, device=seq.device)
        h = self.item(seq) * (self.item.embedding_dim**0.5) + self.pos(pos).unsqueeze(0)
        h = self.drop(h) * (seq > 0).unsqueeze(-1)
        for block in self.blocks:
            h = block(h, None, causal=True)
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(…, dim) → (…, n_items) scores of real items (padding row dropped)."""
        return h @ self.item.weight[1:].T


def _pad_left(seqs: list[np.ndarray], L: int) -> np.ndarray:
    out = np.zeros((len(seqs), L), np.int64)
    for i, s in enumerate(seqs):
        s = s[-L:]
        if len(s):
            out[i, L - len(s) :] = s + 1
    return out


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

    After ``fit``: ``epochs_run``, ``best_epoch`` (the epoch whose weights are kept) and
    ``history`` (``[(epoch, monitor value)]``, empty without a monitor).
    """

    def __init__(self, cfg: SASRecConfig | None = None) -> None:
        self.cfg = cfg or SASRecConfig()
        self.fit_seconds = 0.0
        self.epochs_run = self.best_epoch = 0
        self.history: list[tuple[int, float]] = []

    def fit(
        self,
        seqs: list[np.ndarray],
        n_items: int,
        seed: int = 0,
        monitor: Callable[[SASRec], float] | None = None,
        on_epoch: Callable[[int], None] | None = None,
    ) -> SASRec:
        """Train next-item prediction at every position of every sequence (full softmax).

        ``monitor(self) -> float`` (higher is better), when given, is called every
        ``cfg.eval_every`` epochs. The criterion is the mean of the last ``cfg.smooth`` calls (a
        single call's figure on a few hundred validation targets moves by more than the trend
        between neighbouring checks); training stops after ``cfg.patience`` calls without a new
        best criterion (or at ``cfg.epochs``), and the weights of the middle call of the best
        window are kept (``best_epoch``). ``on_epoch(epoch)`` is called after every epoch
        (progress reporting).
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        L = cfg.max_len
        full = _pad_left([s for s in seqs if len(s) >= 2], L + 1)
        dev = torch.device(cfg.device)
        inp = torch.from_numpy(full[:, :-1]).to(dev)
        tgt = torch.from_numpy(full[:, 1:] - 1).to(dev)  # -1 = pad target
        self.net = SASRecNet(n_items, cfg).to(dev)
        opt = Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        amp = _bf16_autocast(cfg)
        self.history, best, best_state, stale = [], -np.inf, None, 0
        recent: list[tuple[int, dict]] = []  # (epoch, weights) of the last ``smooth`` calls
        self.best_epoch = self.epochs_run = 0
        for epoch in range(1, cfg.epochs + 1):
            self.net.train()
            perm = torch.from_numpy(rng.permutation(len(inp))).to(dev)
            for s in range(0, len(perm), cfg.batch_size):
                b = perm[s : s + cfg.batch_size]
                t = tgt[b]
                keep = t >= 0
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    logits = self.net.logits(self.net.hidden(inp[b])[keep])
                loss = nn.functional.cross_entropy(logits.float(), t[keep])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.epochs_run = epoch
            if on_epoch is not None:
                on_epoch(epoch)
            if monitor is None or (epoch % cfg.eval_every and epoch != cfg.epochs):
                continue
            self.net.eval()
            self.history.append((epoch, float(monitor(self))))
            recent = [*recent, (epoch, copy.deepcopy(self.net.state_dict()))][-max(1, cfg.smooth) :]
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

    def score(self, seqs: list[np.ndarray], batch: int = 512) -> np.ndarray:
        """Next-item scores after each user's sequence: float32 (U, I)."""
        x = torch.from_numpy(_pad_left(seqs, self.cfg.max_len)).to(self.cfg.device)
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), batch):
                h = self.net.hidden(x[s : s + batch])[:, -1]
                out.append(self.net.logits(h).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)
