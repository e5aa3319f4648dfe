"""The two-tower model's configuration and input hashing, without torch.

Shared by the model (``two_tower``, training and batch embedding, torch) and the serving-time
user encoder (``user_encoder``, numpy only), so the transformer process can embed a user without
importing torch at all.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from checkout_recs.contract import RECENT_SEQUENCE_LEN

TOKEN = re.compile(r"[a-z0-9]+")
MAX_TOKENS = 12
#: Device codes of the user tower (0: unknown).
DEVICES = {"web": 1, "ios": 2, "android": 3}
#: Attention heads of the user tower's encoder block.
USER_HEADS = 2


class TwoTowerConfig(BaseModel):
    """Hyper-parameters of the two-tower model."""

    dim: int = Field(default=32, description="Embedding dimension of both towers.")
    id_buckets: int = Field(default=1 << 16, description="Hash buckets for listing ids.")
    token_buckets: int = Field(default=1 << 14, description="Hash buckets for title tokens.")
    cat_buckets: int = Field(default=4096, description="Hash buckets for category ids.")
    price_buckets: int = Field(default=16, description="Log-price buckets.")
    seq_len: int = Field(default=RECENT_SEQUENCE_LEN, description="Recent items per user.")
    temperature: float = Field(default=0.07, gt=0)
    id_dropout: float = Field(
        default=0.3, ge=0, le=1, description="P(drop id embedding) in training."
    )
    epochs: int = Field(default=4, ge=1)
    batch_size: int = Field(default=256, ge=8)
    lr: float = Field(default=3e-3, gt=0)
    seed: int = 7
    version: str = "two-tower-0"


def hash_ids(ids: np.ndarray, buckets: int) -> np.ndarray:
    """Map int64 ids (any shape) to [1, buckets) with a multiplicative hash; -1 (padding) → 0."""
    ids = np.asarray(ids, dtype=np.int64)
    h = ((ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)).astype(np.int64)
    out = 1 + h % (buckets - 1)
    return np.where(ids < 0, 0, out)


def hash_tokens(titles: Sequence[str], buckets: int, max_tokens: int = MAX_TOKENS) -> np.ndarray:
    """Titles → (n, max_tokens) int64 token buckets in [1, buckets); 0 pads."""
    out = np.zeros((len(titles), max_tokens), dtype=np.int64)
    for i, t in enumerate(titles):
        toks = TOKEN.findall(str(t).lower())[:max_tokens]
        out[i, : len(toks)] = [1 + zlib.crc32(w.encode()) % (buckets - 1) for w in toks]
    return out


def str_hash(values: Sequence[str] | np.ndarray, buckets: int) -> np.ndarray:
    """Strings (n,) → int64 (n,) buckets in [1, buckets) (crc32)."""
    return np.array([1 + zlib.crc32(str(v).encode()) % (buckets - 1) for v in values], np.int64)
