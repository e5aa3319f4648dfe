"""Two-tower retrieval model: a user tower over the recent item sequence and an item tower over
listing content, trained with in-batch negatives and log-Q correction.

User tower
    hashed ids of the user's recent items (newest last, ``RECENT_SEQUENCE_LEN`` at most) +
    positions → one self-attention block ("transformer-lite") → masked mean, concatenated with
    region, device and hour of day → MLP → unit vector of ``dim``.
Item tower
    hashed listing id + hashed title tokens (bag of words) + category + price bucket + region +
    seller features → MLP → unit vector of ``dim``. The id embedding is dropped at random during
    training and always for listings the model never saw, so a new listing is embedded from its
    content alone (cold start).
Loss
    softmax over the batch's items of ``u·v/τ − log q(v)`` where ``q`` is the item's share of
    training targets (Yi et al., 2019, "Sampling-bias-corrected neural modeling").
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from checkout_recs.models.attention import AttentionBlock
from checkout_recs.models.distributed import average_gradients, broadcast_parameters, rank_slice
from checkout_recs.models.optim import Adam
from checkout_recs.models.tower_inputs import (
    DEVICES,
    USER_HEADS,
    TwoTowerConfig,
    hash_ids,
    hash_tokens,
    str_hash,
)

__all__ = ["TwoTowerConfig", "TwoTowerModel", "hash_ids", "hash_tokens", "train_two_tower"]


def _dense_item(frame: pd.DataFrame) -> np.ndarray:
    def col(name: str, default: float) -> np.ndarray:
        return (
            frame[name].to_numpy(np.float32)
            if name in frame
            else np.full(len(frame), default, np.float32)
        )

    return np.stack(
        [
            (col("seller_rating", 4.0) - 4.0),
            col("seller_is_new", 0.0),
            np.log1p(np.maximum(col("seller_age_days", 365.0), 0)) / 6.0,
            np.log1p(np.maximum(col("price", 1.0), 0)) / 6.0,
        ],
        axis=1,
    ).astype(np.float32)


def item_inputs(frame: pd.DataFrame, cfg: TwoTowerConfig) -> dict[str, torch.Tensor]:
    """Tensorise listing content: ``listing_id, title, category_id, price, region`` (+ seller cols)."""
    price = frame["price"].to_numpy(np.float64) if "price" in frame else np.ones(len(frame))
    pb = np.clip((np.log1p(np.maximum(price, 0)) * 2).astype(np.int64), 0, cfg.price_buckets - 1)
    titles = frame["title"].tolist() if "title" in frame else [""] * len(frame)
    region = frame["region"].tolist() if "region" in frame else ["?"] * len(frame)
    return {
        "id": torch.from_numpy(hash_ids(frame["listing_id"].to_numpy(), cfg.id_buckets)),
        "tokens": torch.from_numpy(hash_tokens(titles, cfg.token_buckets)),
        "cat": torch.from_numpy(hash_ids(frame["category_id"].to_numpy(np.int64), cfg.cat_buckets)),
        "price": torch.from_numpy(pb),
        "region": torch.from_numpy(str_hash(region, 64)),
        "dense": torch.from_numpy(_dense_item(frame)),
    }


class ItemTower(nn.Module):
    """Listing content → unit vector (dim,)."""

    def __init__(self, cfg: TwoTowerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.id_emb = nn.Embedding(cfg.id_buckets, d, padding_idx=0, sparse=True)
        self.tok_emb = nn.EmbeddingBag(
            cfg.token_buckets, d, mode="mean", padding_idx=0, sparse=True
        )
        self.cat_emb = nn.Embedding(cfg.cat_buckets, d, padding_idx=0, sparse=True)
        self.price_emb = nn.Embedding(cfg.price_buckets, 8)
        self.region_emb = nn.Embedding(64, 8)
        self.mlp = nn.Sequential(nn.Linear(3 * d + 16 + 4, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x: dict[str, torch.Tensor], id_mask: torch.Tensor) -> torch.Tensor:
        """``x`` from ``item_inputs`` (n rows), ``id_mask`` (n,) 1 keeps the id → (n, dim)."""
        h = torch.cat(
            [
                self.id_emb(x["id"]) * id_mask.unsqueeze(-1),
                self.tok_emb(x["tokens"]),
                self.cat_emb(x["cat"]),
                self.price_emb(x["price"]),
                self.region_emb(x["region"]),
                x["dense"],
            ],
            dim=-1,
        )
        return nn.functional.normalize(self.mlp(h), dim=-1)


class UserTower(nn.Module):
    """Recent item sequence + region/device/hour → unit vector (dim,)."""

    def __init__(self, cfg: TwoTowerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.seq_emb = nn.Embedding(cfg.id_buckets, d, padding_idx=0, sparse=True)
        self.pos_emb = nn.Embedding(cfg.seq_len, d)
        self.block = AttentionBlock(d, heads=USER_HEADS, ff=2 * d)
        self.region_emb = nn.Embedding(64, 8)
        self.device_emb = nn.Embedding(4, 4)
        self.mlp = nn.Sequential(nn.Linear(d + 8 + 4 + 2, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(
        self, seq: torch.Tensor, region: torch.Tensor, device: torch.Tensor, hour: torch.Tensor
    ) -> torch.Tensor:
        """seq (n, L) hashed ids (0 pads, newest last), region/device (n,), hour (n,) → (n, dim)."""
        pad = seq == 0
        pos = torch.arange(seq.shape[1]).unsqueeze(0).expand_as(seq)
        h = self.seq_emb(seq) + self.pos_emb(pos)
        h = self.block(h, pad)
        keep = (~pad).float().unsqueeze(-1)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        ang = hour * (2 * torch.pi / 24.0)
        z = torch.cat(
            [
                pooled,
                self.region_emb(region),
                self.device_emb(device),
                torch.sin(ang).unsqueeze(-1),
                torch.cos(ang).unsqueeze(-1),
            ],
            dim=-1,
        )
        return nn.functional.normalize(self.mlp(z), dim=-1)


class TwoTowerNet(nn.Module):
    """Both towers together (one state dict)."""

    def __init__(self, cfg: TwoTowerConfig) -> None:
        super().__init__()
        self.user = UserTower(cfg)
        self.item = ItemTower(cfg)


def user_inputs(
    seqs: np.ndarray,
    regions: Sequence[str] | np.ndarray,
    devices: Sequence[str] | np.ndarray,
    hours: np.ndarray,
    cfg: TwoTowerConfig,
) -> tuple[torch.Tensor, ...]:
    """seqs (n, L) listing ids, -1 pads, newest last → the user tower's tensors."""
    seqs = np.asarray(seqs, dtype=np.int64)[:, -cfg.seq_len :]
    if seqs.shape[1] < cfg.seq_len:
        seqs = np.pad(seqs, ((0, 0), (cfg.seq_len - seqs.shape[1], 0)), constant_values=-1)
    dev = np.array([DEVICES.get(str(d), 0) for d in devices], np.int64)
    return (
        torch.from_numpy(hash_ids(seqs, cfg.id_buckets)),
        torch.from_numpy(str_hash(regions, 64)),
        torch.from_numpy(dev),
        torch.from_numpy(np.asarray(hours, np.float32)),
    )


class TwoTowerModel:
    """A trained two-tower model and the listing ids it saw in training."""

    def __init__(
        self,
        net: TwoTowerNet,
        cfg: TwoTowerConfig,
        known_ids: np.ndarray,
        metrics: dict | None = None,
    ) -> None:
        self.net = net.eval()
        self.cfg = cfg
        self.known_ids = np.unique(np.asarray(known_ids, np.int64))
        self.metrics = metrics or {}

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.cfg.dim

    def embed_items(self, listings: pd.DataFrame, batch: int = 65536) -> np.ndarray:
        """Embed listings (``listing_id, title, category_id, price, region`` [+ seller features]).

        Listings absent from training are embedded from content only (id embedding dropped).
        Returns float32 (n, dim), unit rows.
        """
        out = np.empty((len(listings), self.dim), np.float32)
        with torch.inference_mode():
            for s in range(0, len(listings), batch):
                part = listings.iloc[s : s + batch]
                known = np.isin(part["listing_id"].to_numpy(np.int64), self.known_ids)
                mask = torch.from_numpy(known.astype(np.float32))
                out[s : s + len(part)] = self.net.item(item_inputs(part, self.cfg), mask).numpy()
        return out

    def embed_users(
        self, seqs: np.ndarray, regions: Sequence[str], devices: Sequence[str], hours: np.ndarray
    ) -> np.ndarray:
        """seqs (n, L) recent listing ids (-1 pads, newest last) + context → float32 (n, dim)."""
        with torch.inference_mode():
            return self.net.user(*user_inputs(seqs, regions, devices, hours, self.cfg)).numpy()

    def save(self, out_dir: Path) -> Path:
        """Write ``weights.safetensors``, ``config.json`` and ``known_ids.npy``; returns the folder."""
        from safetensors.torch import (
            save_file,  # lazy: safetensors torch helpers pull torch; the numpy path imports its numpy loader only
        )

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.net.state_dict().items()},
            str(out_dir / "weights.safetensors"),
        )
        np.save(out_dir / "known_ids.npy", self.known_ids, allow_pickle=False)
        meta = {
            "kind": "two_tower",
            "version": self.cfg.version,
            "config": self.cfg.model_dump(),
            "metrics": self.metrics,
        }
        (out_dir / "config.json").write_text(json.dumps(meta, indent=2))
        return out_dir

    @classmethod
    def load(cls, model_dir: Path) -> TwoTowerModel:
        """Load a model written by ``save`` (nothing unpickled)."""
        from safetensors.torch import (
            load_file,  # lazy: safetensors torch helpers pull torch; the numpy path imports its numpy loader only
        )

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / "config.json").read_text())
        cfg = TwoTowerConfig(**meta["config"])
        net = TwoTowerNet(cfg)
        net.load_state_dict(load_file(str(model_dir / "weights.safetensors")))
        known = np.load(model_dir / "known_ids.npy", allow_pickle=False)
        return cls(net, cfg, known, meta.get("metrics"))


def sequence_pairs(
    interactions: pd.DataFrame, seq_len: int
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Next-item pairs from ``user_id, listing_id, event_timestamp`` rows.

    Returns
    -------
    seqs : int64 (m, seq_len), the items before each target (-1 pads, newest last)
    targets : int64 (m,), the target listing ids
    rows : the m interaction rows (sorted by user, time), for context columns
    """
    df = interactions.sort_values(["user_id", "event_timestamp", "listing_id"], kind="stable")
    df = df.reset_index(drop=True)
    ids = df["listing_id"].to_numpy(np.int64)
    users = df["user_id"].to_numpy()
    seqs = np.full((len(df), seq_len), -1, np.int64)
    for k in range(1, seq_len + 1):
        prev = np.full(len(df), -1, np.int64)
        same = np.zeros(len(df), bool)
        prev[k:], same[k:] = ids[:-k], users[k:] == users[:-k]
        seqs[:, seq_len - k] = np.where(same, prev, -1)
    return seqs, ids, df


def train_two_tower(
    interactions: pd.DataFrame,
    listings: pd.DataFrame,
    cfg: TwoTowerConfig | None = None,
    users: pd.DataFrame | None = None,
) -> TwoTowerModel:
    """Train the two-tower model.

    Parameters
    ----------
    interactions : DataFrame with ``user_id, listing_id, event_timestamp`` (orders, clicks).
    listings : DataFrame with the item tower's content columns, one row per listing.
    cfg : TwoTowerConfig, optional
    users : DataFrame with ``user_id, region, device``, optional (context; "?" when absent).

    Returns
    -------
    TwoTowerModel; ``metrics`` holds ``train_seconds``, ``n_pairs``, ``final_loss``.

    Raises
    ------
    ValueError
        When no interaction refers to a known listing.
    """
    cfg = cfg or TwoTowerConfig()
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    listings = listings.drop_duplicates("listing_id").reset_index(drop=True)
    inter = interactions[interactions["listing_id"].isin(listings["listing_id"])]
    if inter.empty:
        raise ValueError("train_two_tower: no interaction refers to a listing in the catalogue")
    seqs, targets, rows = sequence_pairs(inter, cfg.seq_len)
    ctx = _context(rows, users)
    row_of = pd.Series(np.arange(len(listings)), index=listings["listing_id"].to_numpy())
    t_rows = row_of.loc[targets].to_numpy()
    items = item_inputs(listings, cfg)
    counts = np.bincount(t_rows, minlength=len(listings)).astype(np.float64)
    logq = torch.from_numpy(np.log(np.maximum(counts, 1) / counts.sum()).astype(np.float32))
    u_in = user_inputs(seqs, ctx["region"], ctx["device"], ctx["hour"], cfg)
    net = TwoTowerNet(cfg)
    loss = _fit_two_tower(net, u_in, items, t_rows, logq, cfg, rng)
    metrics = {
        "train_seconds": time.perf_counter() - t0,
        "n_pairs": len(targets),
        "final_loss": loss,
    }
    return TwoTowerModel(net, cfg, np.unique(targets), metrics)


def _context(rows: pd.DataFrame, users: pd.DataFrame | None) -> dict[str, np.ndarray]:
    ts = pd.to_datetime(rows["event_timestamp"], utc=True)
    hour = (ts.dt.hour + ts.dt.minute / 60.0).to_numpy(np.float32)
    if users is not None and {"user_id", "region"} <= set(users.columns):
        u = users.drop_duplicates("user_id").set_index("user_id")
        region = u["region"].reindex(rows["user_id"]).fillna("?").to_numpy()
        dev = (
            u["device"].reindex(rows["user_id"]).fillna("?").to_numpy()
            if "device" in u
            else np.full(len(rows), "?")
        )
    else:
        region = rows["region"].to_numpy() if "region" in rows else np.full(len(rows), "?")
        dev = rows["device"].to_numpy() if "device" in rows else np.full(len(rows), "?")
    return {"region": region, "device": dev, "hour": hour}


def _fit_two_tower(
    net: TwoTowerNet,
    u_in: tuple[torch.Tensor, ...],
    items: dict[str, torch.Tensor],
    t_rows: np.ndarray,
    logq: torch.Tensor,
    cfg: TwoTowerConfig,
    rng: np.random.Generator,
) -> float:
    opt = Adam(net.parameters(), lr=cfg.lr)
    net.train()
    broadcast_parameters(net)  # under DDP every rank starts from rank 0's weights
    last = float("nan")
    for _ in range(cfg.epochs):
        perm = rank_slice(rng.permutation(len(t_rows)))  # every rank draws alike, takes its share
        for s in range(0, len(perm), cfg.batch_size):
            b = torch.from_numpy(perm[s : s + cfg.batch_size])
            rows = torch.from_numpy(t_rows[b.numpy()])
            u = net.user(*(t[b] for t in u_in))
            keep = (torch.rand(len(rows)) >= cfg.id_dropout).float()
            v = net.item({k: t[rows] for k, t in items.items()}, keep)
            logits = u @ v.T / cfg.temperature - logq[rows].unsqueeze(0)
            same = rows.unsqueeze(0) == rows.unsqueeze(1)
            logits = logits.masked_fill(same & ~torch.eye(len(rows), dtype=torch.bool), -1e9)
            loss = nn.functional.cross_entropy(logits, torch.arange(len(rows)))
            opt.zero_grad()
            loss.backward()
            average_gradients(net)  # under DDP: the mean over ranks (a larger effective batch)
            opt.step()
            last = float(loss.item())
    net.eval()
    return last
