"""Multi-task ranker: P(click) and P(purchase | click), ESMM-style, on a shared bottom or MMoE.

The click head is trained on every impression; the purchase head is never trained on clicked
rows alone (that biases it to the clicked population) but through the product
``p_ctcvr = p_click * p_cvr`` against the purchase label over all impressions (Ma et al., 2018,
"Entire Space Multi-Task Model"). An optional listwise term (softmax over each request's slots
on the p_ctcvr logit) can be mixed in.

Artifacts (nothing pickled): ``weights.safetensors`` and ``config.json`` (feature names,
normalisation statistics, architecture, version). ``export_torchscript`` writes ``model.pt``
with the normalisation baked in, for a TorchScript predictor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field
from torch import nn

from checkout_recs.models.optim import Adam
from checkout_recs.models.ranker_features import available_features, ranker_matrix


class RankerConfig(BaseModel):
    """Hyper-parameters of the multi-task ranker."""

    hidden: list[int] = Field(default=[32, 16], description="Shared-bottom / expert layer sizes.")
    architecture: str = Field(default="shared_bottom", description="'shared_bottom' or 'mmoe'.")
    n_experts: int = Field(default=3, description="Experts when architecture is 'mmoe'.")
    wide: bool = Field(default=True, description="Add a linear (wide) term to each head's logit.")
    epochs: int = Field(default=6, ge=1)
    batch_size: int = Field(default=512, ge=8)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-3, ge=0, description="L2 on every weight (chosen on a "
                                "validation split of the demo simulation's training rows).")
    ctcvr_weight: float = Field(default=1.0, ge=0, description="Weight of the purchase loss.")
    listwise_weight: float = Field(default=0.0, ge=0, description="Weight of the listwise loss.")
    seed: int = 7
    version: str = "ranker-0"


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class RankerNet(nn.Module):
    """Normalise → shared bottom (or MMoE) → two logits (click, cvr), plus an optional linear
    ("wide") term per logit so the network is never less expressive than a logistic regression."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, d_in: int, hidden: Sequence[int], architecture: str = "shared_bottom",
                 n_experts: int = 3, wide: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("std", torch.ones(d_in))
        self.architecture = architecture
        sizes = [d_in, *hidden]
        if architecture == "mmoe":
            self.experts = nn.ModuleList([_mlp(sizes) for _ in range(n_experts)])
            self.gates = nn.ModuleList([nn.Linear(d_in, n_experts) for _ in range(2)])
        elif architecture == "shared_bottom":
            self.bottom = _mlp(sizes)
        else:
            raise ValueError(f"unknown architecture {architecture!r}")
        self.click_head = nn.Linear(hidden[-1], 1)
        self.cvr_head = nn.Linear(hidden[-1], 1)
        self.wide = nn.Linear(d_in, 2, bias=False) if wide else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (n, d) raw features → (click logit (n,), cvr logit (n,))."""
        z = (x - self.mean) / self.std
        if self.architecture == "mmoe":
            e = torch.stack([ex(z) for ex in self.experts], dim=1)  # (n, E, h)
            h_click = (torch.softmax(self.gates[0](z), -1).unsqueeze(-1) * e).sum(1)
            h_cvr = (torch.softmax(self.gates[1](z), -1).unsqueeze(-1) * e).sum(1)
        else:
            h_click = h_cvr = self.bottom(z)
        a, b = self.click_head(h_click).squeeze(-1), self.cvr_head(h_cvr).squeeze(-1)
        if self.wide is not None:
            w = self.wide(z)
            a, b = a + w[:, 0], b + w[:, 1]
        return a, b


class _Probabilities(nn.Module):
    """Export wrapper: x (n, d) → (p_click (n,), p_purchase_given_click (n,))."""

    def __init__(self, net: RankerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.net(x)
        return torch.sigmoid(a), torch.sigmoid(b)


class RankerModel:
    """A trained ranker: the network, its feature names and its metadata."""

    def __init__(self, net: RankerNet, feature_names: list[str], cfg: RankerConfig,
                 metrics: dict | None = None) -> None:
        self.net = net.eval()
        self.feature_names = feature_names
        self.cfg = cfg
        self.metrics = metrics or {}

    @property
    def version(self) -> str:
        """The model version recorded at training time."""
        return self.cfg.version

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score rows.

        Parameters
        ----------
        X : numpy.ndarray, float32, shape (n, d)
            ``ranker_matrix(frame, self.feature_names)``.

        Returns
        -------
        (p_click, p_purchase_given_click) : two float32 arrays of shape (n,), probabilities.
        """
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected X of shape (n, {len(self.feature_names)}), got {X.shape}")
        with torch.inference_mode():
            a, b = self.net(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        return torch.sigmoid(a).numpy(), torch.sigmoid(b).numpy()

    def predict_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``predict(ranker_matrix(frame, self.feature_names))``."""
        return self.predict(ranker_matrix(frame, self.feature_names))

    def save(self, out_dir: Path) -> Path:
        """Write ``weights.safetensors`` and ``config.json`` under ``out_dir``; returns it."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(out_dir / "weights.safetensors"))
        meta = {
            "kind": "multitask_ranker",
            "version": self.cfg.version,
            "feature_names": self.feature_names,
            "mean": self.net.mean.tolist(),
            "std": self.net.std.tolist(),
            "config": self.cfg.model_dump(),
            "metrics": self.metrics,
        }
        (out_dir / "config.json").write_text(json.dumps(meta, indent=2))
        return out_dir

    @classmethod
    def load(cls, model_dir: Path) -> RankerModel:
        """Load a ranker written by ``save`` (safetensors + JSON; nothing unpickled)."""
        from safetensors.torch import load_file

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / "config.json").read_text())
        cfg = RankerConfig(**meta["config"])
        net = RankerNet(len(meta["feature_names"]), cfg.hidden, cfg.architecture, cfg.n_experts, cfg.wide)
        net.load_state_dict(load_file(str(model_dir / "weights.safetensors")))
        return cls(net, list(meta["feature_names"]), cfg, meta.get("metrics"))

    def export_torchscript(self, path: Path) -> Path:
        """Write a TorchScript module ``x (n, d) float32 → (p_click, p_cvr)``; returns ``path``."""
        example = torch.zeros(4, len(self.feature_names))
        traced = torch.jit.trace(_Probabilities(self.net).eval(), example)
        traced.save(str(path))
        return Path(path)


def _labels(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    clicked = df["clicked"].to_numpy(np.float32)
    purchased = df["purchased"].to_numpy(np.float32) * (clicked > 0)
    return clicked, purchased.astype(np.float32)


def _esmm_loss(a: torch.Tensor, b: torch.Tensor, y_click: torch.Tensor, y_buy: torch.Tensor,
               cfg: RankerConfig) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits
    p_ctcvr = (torch.sigmoid(a) * torch.sigmoid(b)).clamp(1e-7, 1 - 1e-7)
    loss_ctcvr = nn.functional.binary_cross_entropy(p_ctcvr, y_buy)
    return bce(a, y_click) + cfg.ctcvr_weight * loss_ctcvr


def _listwise_loss(a: torch.Tensor, b: torch.Tensor, y_buy: torch.Tensor, y_click: torch.Tensor,
                   group: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy per request group on the log p_ctcvr score, clicks as targets."""
    s = nn.functional.logsigmoid(a) + nn.functional.logsigmoid(b)
    target = y_click + y_buy
    n_groups = int(group.max().item()) + 1
    mx = torch.full((n_groups,), -1e9).scatter_reduce(0, group, s.detach(), reduce="amax")
    e = torch.exp(s - mx[group])
    denom = torch.zeros(n_groups).index_add(0, group, e)
    logp = s - mx[group] - torch.log(denom[group] + 1e-12)
    tsum = torch.zeros(n_groups).index_add(0, group, target)
    has = tsum[group] > 0
    if not bool(has.any()):
        return s.sum() * 0.0
    return -(target * logp)[has].sum() / tsum[tsum > 0].sum()


def train_ranker(train_df: pd.DataFrame, cfg: RankerConfig | None = None,
                 feature_names: Sequence[str] | None = None) -> RankerModel:
    """Train the multi-task ranker on labelled impressions.

    Parameters
    ----------
    train_df : pandas.DataFrame, n rows
        Rows with ranker features (see ``ranker_features``) and int labels ``clicked``,
        ``purchased`` (purchase implies click); ``request_id`` is used by the listwise loss.
    cfg : RankerConfig, optional
    feature_names : list of str, optional
        Features to use; default: every ``RANKER_FEATURES`` name the frame carries.

    Returns
    -------
    RankerModel, with ``metrics`` holding train-time figures (``train_seconds``, ``n_rows``).

    Raises
    ------
    ValueError
        When the frame is empty or carries no usable feature.
    """
    cfg = cfg or RankerConfig()
    if len(train_df) == 0:
        raise ValueError("train_ranker: empty training frame")
    names = list(feature_names) if feature_names is not None else available_features(train_df)
    if not names:
        raise ValueError("train_ranker: the frame carries none of the ranker features")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    X = ranker_matrix(train_df, names)
    y_click, y_buy = _labels(train_df)
    groups = _group_codes(train_df)
    net = RankerNet(X.shape[1], cfg.hidden, cfg.architecture, cfg.n_experts, cfg.wide)
    mean, std = _feature_stats(X)
    net.mean.copy_(torch.from_numpy(mean))
    net.std.copy_(torch.from_numpy(std))
    _fit(net, X, y_click, y_buy, groups, cfg, rng)
    metrics = {"train_seconds": time.perf_counter() - t0, "n_rows": len(train_df),
               "click_rate": float(y_click.mean()), "purchase_rate": float(y_buy.mean())}
    return RankerModel(net, names, cfg, metrics)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _feature_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (d,) of the rows; over every rank's shard when torch.distributed is up."""
    s = torch.from_numpy(np.stack([X.sum(0), (X.astype(np.float64) ** 2).sum(0).astype(np.float32),
                                   np.full(X.shape[1], len(X), np.float32)]))
    if _distributed():
        torch.distributed.all_reduce(s)
    tot, sq, n = s.double().numpy()
    mean = tot / np.maximum(n, 1)
    std = np.sqrt(np.maximum(sq / np.maximum(n, 1) - mean**2, 0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def _group_codes(df: pd.DataFrame) -> np.ndarray:
    if "request_id" in df:
        return pd.factorize(df["request_id"])[0].astype(np.int64)
    return np.arange(len(df), dtype=np.int64)


def _fit(net: RankerNet, X: np.ndarray, y_click: np.ndarray, y_buy: np.ndarray,
         groups: np.ndarray, cfg: RankerConfig, rng: np.random.Generator) -> None:
    opt = Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    Xt, yc, yb = torch.from_numpy(X), torch.from_numpy(y_click), torch.from_numpy(y_buy)
    # batches are whole request groups, so the listwise term sees complete slates
    uniq = np.unique(groups)
    starts = np.searchsorted(np.sort(groups), uniq)
    order_by_group = np.argsort(groups, kind="stable")
    sizes = np.diff(np.append(starts, len(groups)))
    per_batch = max(1, int(cfg.batch_size / max(sizes.mean(), 1)))
    n_batches = -(-len(uniq) // per_batch)
    module: nn.Module = net
    if _distributed():  # DDP: gradients averaged across ranks; every rank takes as many steps
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(net)
        nb = torch.tensor([n_batches])
        torch.distributed.all_reduce(nb, op=torch.distributed.ReduceOp.MIN)
        n_batches = int(nb.item())
    net.train()
    for _ in range(cfg.epochs):
        perm = rng.permutation(len(uniq))
        for i in range(0, n_batches * per_batch, per_batch):
            sel = perm[i : i + per_batch]
            idx = np.concatenate([order_by_group[starts[g] : starts[g] + sizes[g]] for g in sel])
            it = torch.from_numpy(idx)
            a, b = module(Xt[it])
            loss = _esmm_loss(a, b, yc[it], yb[it], cfg)
            if cfg.listwise_weight > 0:
                g = torch.from_numpy(np.repeat(np.arange(len(sel)), sizes[sel]))
                loss = loss + cfg.listwise_weight * _listwise_loss(a, b, yb[it], yc[it], g)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
