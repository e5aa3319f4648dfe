"""Multi-task ranker: P(click) and P(purchase | click), ESMM-style, on a shared bottom or MMoE.

The click head is trained on every impression; the purchase head is never trained on clicked
rows alone (that biases it to the clicked population) but through the product
``p_ctcvr = p_click * p_cvr`` against the purchase label over all impressions (Ma et al., 2018,
"Entire Space Multi-Task Model"). An optional listwise term (softmax over each request's slots
on the p_ctcvr logit) or pairwise term (BPR over a slate's ordered pairs) can be mixed in.

Wide & deep (& cross): each logit is a linear ("wide") term plus the deep part, plus an optional
factorisation-machine term ``Σ_{i<j} <v_i, v_j> z_i z_j`` (``fm_factors`` > 0; Rendle, 2010) that
gives every pair of standardised features a low-rank interaction weight -- what a logistic
regression on the same matrix cannot express (e.g. the user's price level x the listing's price
relative to its category). The wide part also takes a piecewise-linear encoding of every feature
(``spline_knots`` quantile bins, ``piecewise``; default 8): a per-feature curve instead of a
slope, shrunk towards the linear model by a stronger L2 (``spline_scale``). Training
(``ranker_fit``) fits the linear part to convergence first, then the deep part as a residual
for as many epochs as a time-ordered hold-out supports (0 = the linear model alone).

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

from checkout_recs.models import ranker_fit as fit
from checkout_recs.models.distributed import shard_requests
from checkout_recs.models.optim import Adam
from checkout_recs.models.piecewise import CompactWideInput, PiecewiseLinear
from checkout_recs.models.ranker_features import available_features, ranker_matrix


class RankerConfig(BaseModel):
    """Hyper-parameters of the multi-task ranker."""

    hidden: list[int] = Field(default=[32, 16], description="Shared-bottom / expert layer sizes.")
    architecture: str = Field(default="shared_bottom", description="'shared_bottom' or 'mmoe'.")
    n_experts: int = Field(default=3, description="Experts when architecture is 'mmoe'.")
    wide: bool = Field(default=True, description="Add a linear (wide) term to each head's logit.")
    spline_knots: int = Field(
        default=8,
        ge=0,
        description="Bins of the piecewise-linear encoding of "
        "each feature in the wide part (``piecewise``); 0 = the wide part is linear.",
    )
    spline_scale: float = Field(
        default=0.03,
        gt=0,
        description="Scale of the standardised ramps: their L2 is "
        "1/scale² times the linear weights', so the wide part bends only where data insist.",
    )
    fm_factors: int = Field(
        default=0,
        ge=0,
        description="Rank of the pairwise (factorisation-machine) "
        "term per head; 0 = none (default: ranks 2 and 4 tie it in the demo "
        "simulation's 5-run ranker ablation). Trained with the deep part.",
    )
    epochs: int = Field(
        default=6, ge=0, description="Deep epochs; with early stopping, the most tried."
    )
    batch_size: int = Field(default=512, ge=8)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(
        default=1e-3,
        ge=0,
        description="L2 on every weight (chosen on a "
        "validation split of the demo simulation's training rows).",
    )
    ctcvr_weight: float = Field(default=1.0, ge=0, description="Weight of the purchase loss.")
    cvr_l2: float = Field(
        default=1.0,
        gt=0,
        description="Multiplier of the L2 on the cvr (purchase | click) "
        "logit's wide weights in the linear fit (``fit_linear``); > 1 shrinks it harder "
        "than the click logit, which about 4x more positives inform.",
    )
    listwise_weight: float = Field(default=0.0, ge=0, description="Weight of the listwise loss.")
    pairwise_weight: float = Field(
        default=0.0, ge=0, description="Weight of the pairwise (BPR in a slate) loss."
    )
    warm_start_max_gb: float = Field(
        default=4.0,
        ge=0,
        description="Largest dense wide input (n × d·(1 + spline_knots) float32, GB) "
        "the linear warm start holds; above it the input is held compactly "
        "(``piecewise.CompactWideInput``, 5 bytes a row and feature instead of "
        "4·(1 + spline_knots); the same loss and gradients up to float rounding, ~3x slower "
        "a step; the 300 full-batch Adam steps carry rounding differences far along poorly "
        "determined directions: not the dense path's weights).",
    )
    linear_warm_start: bool = Field(
        default=True,
        description="With ``wide``: fit the linear part to "
        "convergence first, start the deep heads at zero, freeze the linear part.",
    )
    early_stopping_share: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Latest share of training "
        "requests held out to choose the deep epochs (0: train ``epochs``).",
    )
    patience: int = Field(
        default=3, ge=1, description="Deep epochs without held-out improvement before stopping."
    )
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

    def __init__(
        self,
        d_in: int,
        hidden: Sequence[int],
        architecture: str = "shared_bottom",
        n_experts: int = 3,
        wide: bool = False,
        fm_factors: int = 0,
        spline_knots: int = 0,
        spline_scale: float = 0.03,
    ) -> None:
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
        self.spline = (
            PiecewiseLinear(d_in, spline_knots, spline_scale) if wide and spline_knots > 0 else None
        )
        self.wide = (
            nn.Linear(d_in * (1 + spline_knots * (self.spline is not None)), 2, bias=False)
            if wide
            else None
        )
        self.fm = FactorizationMachine(d_in, fm_factors) if fm_factors > 0 else None

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
            w = self.wide(self.wide_input(x, z))
            a, b = a + w[:, 0], b + w[:, 1]
        if self.fm is not None:
            f = self.fm(z)
            a, b = a + f[:, 0], b + f[:, 1]
        return a, b

    def wide_input(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Input of the wide layer: standardised ``z`` (n, d), followed by the piecewise-linear
        ramps of the raw ``x`` (n, d·k) when ``spline_knots`` > 0."""
        return z if self.spline is None else torch.cat([z, self.spline(x)], 1)

    def wide_matrix(self, X: torch.Tensor, chunk_rows: int = fit.CHUNK_ROWS) -> torch.Tensor:
        """The wide layer's input for raw rows ``X`` (n, d) float32: (n, d·(1 + k)) float32,
        ``wide_input(X, (X − mean) / std)`` written ``chunk_rows`` rows at a time into one
        preallocated matrix (the same numbers; only a chunk's temporaries besides it)."""
        width = self.wide.in_features if self.wide is not None else X.shape[1]
        out = torch.empty(len(X), width, dtype=torch.float32)
        with torch.no_grad():
            for sl in fit.row_chunks(len(X), chunk_rows):
                x = X[sl]
                out[sl] = self.wide_input(x, (x - self.mean) / self.std)
        return out


def build_net(d_in: int, cfg: RankerConfig) -> RankerNet:
    """The (untrained) ``RankerNet`` that ``cfg`` describes, for ``d_in`` features."""
    return RankerNet(
        d_in,
        cfg.hidden,
        cfg.architecture,
        cfg.n_experts,
        cfg.wide,
        cfg.fm_factors,
        cfg.spline_knots,
        cfg.spline_scale,
    )


class FactorizationMachine(nn.Module):
    """Second-order term per head: z (n, d) standardised → (n, 2) with column h equal to
    ``Σ_{i<j} <v_hi, v_hj> z_i z_j = ½ Σ_f [(Σ_i v_hif z_i)² − Σ_i v_hif² z_i²]`` (O(n d k)).

    Factors start small (N(0, 0.01²)), so a warm-started network starts as the linear model."""

    def __init__(self, d_in: int, k: int) -> None:
        super().__init__()
        self.v = nn.Parameter(0.01 * torch.randn(2, d_in, k))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (n, d) → (n, 2) pairwise-interaction logits (click, cvr)."""
        s = torch.einsum("nd,hdk->nhk", z, self.v)  # (n, 2, k)
        sq = torch.einsum("nd,hdk->nhk", z * z, self.v * self.v)
        return 0.5 * (s * s - sq).sum(-1)


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

    def __init__(
        self,
        net: RankerNet,
        feature_names: list[str],
        cfg: RankerConfig,
        metrics: dict | None = None,
    ) -> None:
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
        a, b = fit.logits(self.net, torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        with torch.inference_mode():
            return torch.sigmoid(a).numpy(), torch.sigmoid(b).numpy()

    def predict_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``predict(ranker_matrix(frame, self.feature_names))``."""
        return self.predict(ranker_matrix(frame, self.feature_names))

    def save(self, out_dir: Path) -> Path:
        """Write ``weights.safetensors`` and ``config.json`` under ``out_dir``; returns it."""
        from safetensors.torch import (
            save_file,  # lazy: safetensors torch helpers pull torch; the numpy path imports its numpy loader only
        )

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
        from safetensors.torch import (
            load_file,  # lazy: safetensors torch helpers pull torch; the numpy path imports its numpy loader only
        )

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / "config.json").read_text())
        cfg = RankerConfig(**{"spline_knots": 0, **meta["config"]})  # saved before splines: none
        net = build_net(len(meta["feature_names"]), cfg)
        net.load_state_dict(load_file(str(model_dir / "weights.safetensors")))
        return cls(net, list(meta["feature_names"]), cfg, meta.get("metrics"))

    def export_torchscript(self, path: Path) -> Path:
        """Write a TorchScript module ``x (n, d) float32 → (p_click, p_cvr)``; returns ``path``."""
        example = torch.zeros(4, len(self.feature_names))
        traced = torch.jit.trace(_Probabilities(self.net).eval(), example)
        traced.save(str(path))
        return Path(path)


def train_ranker(
    train_df: pd.DataFrame,
    cfg: RankerConfig | None = None,
    feature_names: Sequence[str] | None = None,
) -> RankerModel:
    """Train the multi-task ranker on labelled impressions (procedure: ``ranker_fit``).

    Parameters
    ----------
    train_df : pandas.DataFrame, n rows
        Rows with ranker features (see ``ranker_features``) and int labels ``clicked``,
        ``purchased`` (purchase implies click); ``request_id`` groups slates (listwise loss,
        batches) and ``event_timestamp`` orders them for the early-stopping hold-out.
    cfg : RankerConfig, optional
    feature_names : list of str, optional
        Features to use; default: every ``RANKER_FEATURES`` name the frame carries.

    Returns
    -------
    RankerModel, with ``metrics`` holding train-time figures (``train_seconds``, ``n_rows``,
    ``deep_epochs``: deep epochs chosen on the hold-out, 0 = the linear model alone).

    Raises
    ------
    ValueError
        When the frame is empty or carries no usable feature.
    """
    cfg = cfg or RankerConfig()
    train_df = shard_requests(train_df)  # under DDP: this rank's whole slates (else all rows)
    if len(train_df) == 0:
        raise ValueError("train_ranker: empty training frame")
    names = list(feature_names) if feature_names is not None else available_features(train_df)
    if not names:
        raise ValueError("train_ranker: the frame carries none of the ranker features")
    t0 = time.perf_counter()
    y_click, y_buy = fit.labels(train_df)
    rows = fit.RankerRows(
        X=ranker_matrix(train_df, names),
        y_click=y_click,
        y_buy=y_buy,
        groups=fit.group_codes(train_df),
        hold=fit.holdout_mask(train_df, cfg.early_stopping_share),
    )
    return train_ranker_rows(rows, names, cfg, started=t0)


def train_ranker_rows(
    rows: fit.RankerRows,
    names: Sequence[str],
    cfg: RankerConfig | None = None,
    started: float | None = None,
) -> RankerModel:
    """Train the multi-task ranker on rows already turned into arrays (``train_ranker``'s
    procedure after ``ranker_matrix``; ``train.read_ranker_split`` builds them from a parquet
    file a batch at a time).

    Parameters
    ----------
    rows : ``ranker_fit.RankerRows`` of n rows: X (n, d) float32 with the columns ``names``,
        labels, request index and early-stopping hold-out mask (this rank's rows under DDP).
    names : the d feature names, in the order of ``rows.X``'s columns.
    cfg : RankerConfig, optional
    started : ``time.perf_counter()`` at which ``train_seconds`` starts (default: now).

    Returns
    -------
    RankerModel, as ``train_ranker``. Raises ValueError for no rows or no feature.
    """
    cfg = cfg or RankerConfig()
    t0 = time.perf_counter() if started is None else started
    if len(rows.X) == 0:
        raise ValueError("train_ranker: empty training frame")
    if not names or rows.X.shape[1] != len(names):
        raise ValueError("train_ranker: the frame carries none of the ranker features")
    X, y_click, y_buy, groups, hold = rows.X, rows.y_click, rows.y_buy, rows.groups, rows.hold
    epochs, curve = cfg.epochs, list[float]()
    with fit.torch_threads(1):
        if fit.all_ranks(bool(hold.any() and (~hold).any())):
            keep = ~hold
            _, curve = _fit_once(
                X[keep],
                y_click[keep],
                y_buy[keep],
                groups[keep],
                cfg,
                cfg.epochs,
                heldout=(X[hold], y_click[hold], y_buy[hold]),
            )
            epochs = int(np.argmin(curve))
        net, _ = _fit_once(X, y_click, y_buy, groups, cfg, epochs)
    metrics = {
        "train_seconds": time.perf_counter() - t0,
        "n_rows": len(X),
        "click_rate": float(y_click.mean()),
        "purchase_rate": float(y_buy.mean()),
        "deep_epochs": float(epochs),
    }
    metrics.update({f"heldout_loss_epoch_{i}": v for i, v in enumerate(curve)})
    return RankerModel(net, list(names), cfg, metrics)


def _fit_once(
    X: np.ndarray,
    y_click: np.ndarray,
    y_buy: np.ndarray,
    groups: np.ndarray,
    cfg: RankerConfig,
    epochs: int,
    heldout: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[RankerNet, list[float]]:
    """Linear warm start, then ``epochs`` deep epochs; returns the net and, with ``heldout``
    rows, the held-out ESMM loss after 0, 1, ... deep epochs (stops after ``cfg.patience``
    epochs without improvement)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = build_net(X.shape[1], cfg)
    mean, std = fit.feature_stats(X)
    net.mean.copy_(torch.from_numpy(mean))
    net.std.copy_(torch.from_numpy(std))
    if net.spline is not None:
        net.spline.fit(X)
    Xt, yc, yb = torch.from_numpy(X), torch.from_numpy(y_click), torch.from_numpy(y_buy)
    if cfg.wide and cfg.linear_warm_start:
        _warm_start(net, Xt, yc, yb, cfg)
    ho = (
        None
        if heldout is None
        else (
            torch.from_numpy(heldout[0]),
            torch.from_numpy(heldout[1]),
            torch.from_numpy(heldout[2]),
        )
    )
    curve = [] if ho is None else [fit.heldout_loss(net, *ho, cfg.ctcvr_weight)]
    params = [p for p in net.parameters() if p.requires_grad]
    opt = Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = fit.Batches(groups, cfg.batch_size)
    module: nn.Module = net
    if fit.distributed():  # DDP: gradients averaged across ranks
        from torch.nn.parallel import (
            DistributedDataParallel,  # lazy: torch is optional on the serving path (the transformer and numpy predictor run without it)
        )

        module = DistributedDataParallel(net)
    for _ in range(epochs):
        net.train()
        for it, g in batches.epoch(rng):
            a, b = module(Xt[it])
            loss = fit.esmm_loss(a, b, yc[it], yb[it], cfg.ctcvr_weight)
            if cfg.listwise_weight > 0:
                loss = loss + cfg.listwise_weight * fit.listwise_loss(a, b, yb[it], yc[it], g)
            if cfg.pairwise_weight > 0:
                loss = loss + cfg.pairwise_weight * fit.pairwise_loss(a, b, yb[it], yc[it], g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        if ho is not None:
            curve.append(fit.heldout_loss(net, *ho, cfg.ctcvr_weight))
            if len(curve) - 1 - int(np.argmin(curve)) >= cfg.patience:
                break
    net.eval()
    net.requires_grad_(True)  # the frozen linear part was frozen for this fit only
    return net, curve


def _warm_start(
    net: RankerNet, Xt: torch.Tensor, yc: torch.Tensor, yb: torch.Tensor, cfg: RankerConfig
) -> None:
    """Start ``net`` as the converged linear model: wide weights and head biases from
    ``fit_linear``, deep head weights zero; the wide weights are then frozen."""
    assert net.wide is not None
    dense_gb = len(Xt) * net.wide.in_features * 4 / 1e9
    z: torch.Tensor | CompactWideInput
    if net.spline is None or dense_gb <= cfg.warm_start_max_gb:
        z = net.wide_matrix(Xt)
    else:
        z = CompactWideInput(Xt, net.mean, net.std, net.spline)
    lin = fit.fit_linear(z, yc, yb, cfg.ctcvr_weight, cvr_l2=cfg.cvr_l2)
    del z
    with torch.no_grad():
        net.wide.weight.copy_(lin.weight)
        for j, head in enumerate((net.click_head, net.cvr_head)):
            head.weight.zero_()
            head.bias.fill_(float(lin.bias[j]))
    net.wide.weight.requires_grad_(False)
