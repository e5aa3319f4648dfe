"""The two-tower model's user tower for ONE serving request, in plain numpy.

Torch's per-call overhead dominates a single short sequence; this encoder computes the same
function as ``two_tower.UserTower.forward`` from the same weights (checked in tests) in about
0.1 ms, and is what candidate generation calls on the request path. ``FastUserEncoder.from_dir``
reads the saved weights with safetensors' numpy loader, so a serving process embeds users
without importing torch (~185 MiB of resident memory in the transformer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from checkout_recs.models.tower_inputs import (
    DEVICES,
    USER_HEADS,
    TwoTowerConfig,
    hash_ids,
    str_hash,
)

if TYPE_CHECKING:
    from checkout_recs.models.two_tower import TwoTowerModel


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    c = x - mu
    var = np.einsum("ij,ij->i", c, c)[:, None] / x.shape[-1]
    return c / np.sqrt(var + eps) * w + b


class FastUserEncoder:
    """The user tower for ONE request in plain numpy (~0.1 ms instead of torch's per-call overhead).

    Same weights and same function as ``UserTower.forward`` (checked in tests); padded
    positions are simply skipped, which is what the key-padding mask and masked mean do.
    Weights are pre-transposed (contiguous) at construction, the attention heads are one batched
    matmul and the region embeddings are looked up once per region.
    """

    def __init__(
        self, cfg: TwoTowerConfig, weights: dict[str, np.ndarray], heads: int = USER_HEADS
    ) -> None:
        """``weights``: the user tower's state (``UserTower.state_dict()`` names, float32 arrays)."""
        self.cfg = cfg
        sd = {k: np.asarray(v, np.float32) for k, v in weights.items()}
        self.w = sd
        self.heads = heads
        self._t = {
            k: np.ascontiguousarray(sd[k].T)
            for k in (
                "block.qkv.weight",
                "block.out.weight",
                "block.ff1.weight",
                "block.ff2.weight",
            )
        }
        self._region_vec: dict[str, np.ndarray] = {}

    @classmethod
    def from_model(cls, model: TwoTowerModel) -> FastUserEncoder:
        """The encoder of a loaded (torch) two-tower model."""
        sd = {k: v.detach().numpy() for k, v in model.net.user.state_dict().items()}
        return cls(model.cfg, sd, model.net.user.block.heads)

    @classmethod
    def from_dir(cls, model_dir: Path) -> FastUserEncoder:
        """The encoder of a two-tower model saved by ``TwoTowerModel.save`` (``config.json`` +
        ``weights.safetensors``), read without torch; nothing unpickled."""
        from safetensors.numpy import (
            load_file,  # lazy: safetensors torch helpers pull torch; the numpy path imports its numpy loader only
        )

        model_dir = Path(model_dir)
        cfg = TwoTowerConfig(**json.loads((model_dir / "config.json").read_text())["config"])
        weights = load_file(str(model_dir / "weights.safetensors"))
        return cls(
            cfg, {k.removeprefix("user."): v for k, v in weights.items() if k.startswith("user.")}
        )

    def encode(
        self, recent_ids: Sequence[int], region: str, device: str, hour: float
    ) -> np.ndarray:
        """recent listing ids (newest last) + context → float32 (dim,), unit norm."""
        w, cfg = self.w, self.cfg
        ids = np.asarray(list(recent_ids)[-cfg.seq_len :], np.int64)
        if len(ids):
            x = (
                w["seq_emb.weight"][hash_ids(ids, cfg.id_buckets)]
                + w["pos_emb.weight"][cfg.seq_len - len(ids) :]
            )
            pooled = self._block(x).mean(0)
        else:
            pooled = np.zeros(cfg.dim, np.float32)
        reg = self._region_vec.get(region)
        if reg is None:
            reg = self._region_vec.setdefault(
                region, w["region_emb.weight"][str_hash([region], 64)[0]]
            )
        ang = hour * 2 * np.pi / 24.0
        z = np.concatenate(
            [
                pooled,
                reg,
                w["device_emb.weight"][DEVICES.get(str(device), 0)],
                np.array([np.sin(ang), np.cos(ang)], np.float32),
            ]
        )
        h = np.maximum(w["mlp.0.weight"] @ z + w["mlp.0.bias"], 0)
        out = w["mlp.2.weight"] @ h + w["mlp.2.bias"]
        return (out / max(np.linalg.norm(out), 1e-12)).astype(np.float32)

    def _block(self, x: np.ndarray) -> np.ndarray:
        """One encoder block over x float32 (L, d) → (L, d); all heads in one batched matmul."""
        w, t = self.w, self._t
        n, d = x.shape
        dh = d // self.heads
        qkv = (x @ t["block.qkv.weight"] + w["block.qkv.bias"]).reshape(n, 3, self.heads, dh)
        q, k, v = (qkv[:, j].transpose(1, 0, 2) for j in range(3))  # (heads, L, dh)
        a = q @ k.transpose(0, 2, 1) / np.sqrt(dh)  # (heads, L, L)
        a = np.exp(a - a.max(2, keepdims=True))
        att = ((a / a.sum(2, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, d)
        att = att @ t["block.out.weight"] + w["block.out.bias"]
        x = _layer_norm(x + att, w["block.norm1.weight"], w["block.norm1.bias"])
        ff = np.maximum(x @ t["block.ff1.weight"] + w["block.ff1.bias"], 0)
        ff = ff @ t["block.ff2.weight"] + w["block.ff2.bias"]
        return _layer_norm(x + ff, w["block.norm2.weight"], w["block.norm2.bias"])
