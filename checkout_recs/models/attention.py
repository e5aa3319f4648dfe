"""A small transformer block (multi-head self-attention + feed-forward), written out.

``nn.TransformerEncoderLayer`` with a key-padding mask imports ``torch.fx``'s symbolic-shape
machinery (sympy) on its first call: over ten seconds on a busy 2-core machine, paid by every
process that trains or serves. This block is the same computation in a few lines.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """Self-attention block; post-norm (``norm_first=False``, as the original Transformer) or
    pre-norm. ``forward(x (n, L, d), pad (n, L) bool True = padding, causal) -> (n, L, d)``."""

    def __init__(
        self, d: int, heads: int, ff: int, dropout: float = 0.0, norm_first: bool = False
    ) -> None:
        super().__init__()
        if d % heads:
            raise ValueError("d must be divisible by heads")
        self.heads, self.norm_first = heads, norm_first
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def attend(self, x: torch.Tensor, pad: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """Multi-head attention of ``x`` over itself; padded keys (and the future) get no weight."""
        n, L, d = x.shape
        dh = d // self.heads
        q, k, v = (
            self.qkv(x).view(n, L, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        )  # (n, h, L, dh) each
        att = q @ k.transpose(-1, -2) / dh**0.5  # (n, h, L, L)
        if pad is not None:
            att = att.masked_fill(pad[:, None, None, :], -1e9)
        if causal:
            future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=x.device), 1)
            att = att.masked_fill(future, -1e9)
        w = self.drop(torch.softmax(att, dim=-1))
        return self.out((w @ v).transpose(1, 2).reshape(n, L, d))

    def forward(
        self, x: torch.Tensor, pad: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        """See the class docstring."""
        if self.norm_first:
            x = x + self.drop(self.attend(self.norm1(x), pad, causal))
            return x + self.drop(self._ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attend(x, pad, causal)))
        return self.norm2(x + self.drop(self._ff(x)))

    def _ff(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff2(self.drop(torch.relu(self.ff1(x))))
