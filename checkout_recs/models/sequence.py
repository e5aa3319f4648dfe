"""SASRec-lite: a causal self-attention next-item model over a fixed catalogue.

Used by the offline protocol (MovieLens and any atomic-format data set), where the catalogue
is small enough for a full softmax over every item at every position (Kang & McAuley, 2018,
"Self-Attentive Sequential Recommendation", trained here with full cross-entropy instead of
one sampled negative). The same encoder shape as the two-tower user tower, on item indices.
"""

from __future__ import annotations

import time
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
    shape; dropout; epochs, batch_size, lr, weight_decay: training; device: "cpu" or "cuda".
    """

    dim: int = 64
    max_len: int = 50
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.3
    epochs: int = 60
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    device: str = "cpu"


class SASRecNet(nn.Module):
    """Item + position embeddings → causal transformer blocks → logits over items."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # index 0 pads; item i → i+1
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.blocks = nn.ModuleList([AttentionBlock(cfg.dim, cfg.heads, 2 * cfg.dim, cfg.dropout, norm_first=True)
                                     for _ in range(cfg.blocks)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

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


class SASRec:
    """Protocol-model interface: ``fit(seqs, n_items, seed)`` then ``score(seqs) -> (U, I)``."""

    def __init__(self, cfg: SASRecConfig | None = None) -> None:
        self.cfg = cfg or SASRecConfig()
        self.fit_seconds = 0.0

    def fit(self, seqs: list[np.ndarray], n_items: int, seed: int = 0) -> SASRec:
        """Train next-item prediction at every position of every sequence (full softmax)."""
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
        self.net.train()
        for _ in range(cfg.epochs):
            perm = torch.from_numpy(rng.permutation(len(inp))).to(dev)
            for s in range(0, len(perm), cfg.batch_size):
                b = perm[s : s + cfg.batch_size]
                h = self.net.hidden(inp[b])
                t = tgt[b]
                keep = t >= 0
                loss = nn.functional.cross_entropy(self.net.logits(h[keep]), t[keep])
                opt.zero_grad()
                loss.backward()
                opt.step()
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
