"""Distilled student ranker: a one-hidden-layer MLP trained on the teacher's two logits.

Loss: ``(1 − α)`` · MSE to the teacher's click and cvr logits (soft targets over every row)
+ ``α`` · the ESMM label loss. The student is a ``RankerModel`` (same artifact format,
``RankerModel.load`` reads it) so serving swaps it in without new code; ``NumpyScorer``
evaluates it in plain numpy, and ``quantized_scorer`` gives the int8 dynamic-quantised torch
variant, for the latency comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field
from torch import nn

from checkout_recs.models.numpy_scorer import NumpyScorer
from checkout_recs.models.optim import Adam
from checkout_recs.models.ranker import RankerConfig, RankerModel, build_net
from checkout_recs.models.ranker_features import ranker_matrix
from checkout_recs.models.ranker_fit import esmm_loss, labels, torch_threads
from checkout_recs.models.ranker_fit import logits as fit_logits


class StudentConfig(BaseModel):
    """Hyper-parameters of the distilled student."""

    hidden: int = Field(default=16, ge=1, description="Width of the single hidden layer.")
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=128, ge=8)
    lr: float = Field(default=5e-3, gt=0)
    label_weight: float = Field(default=0.2, ge=0, le=1, description="α: weight of the label loss.")
    wide: bool = Field(default=True, description="Linear term per logit (as the teacher's).")
    seed: int = 7


def distill(
    teacher: RankerModel, train_df: pd.DataFrame, cfg: StudentConfig | None = None
) -> RankerModel:
    """Train a small student to reproduce ``teacher`` on ``train_df`` (same features).

    Returns a ``RankerModel`` whose ``metrics`` hold ``distill_seconds`` and ``n_params``.
    """
    cfg = cfg or StudentConfig()
    with torch_threads(1):
        return _distill(teacher, train_df, cfg)


def distill_rows(
    teacher: RankerModel,
    X: np.ndarray,
    y_click: np.ndarray,
    y_buy: np.ndarray,
    cfg: StudentConfig | None = None,
) -> RankerModel:
    """``distill`` on arrays: X (n, d) float32 in ``teacher.feature_names`` order (the
    teacher's raw features, ``ranker_matrix``), ``y_click`` and ``y_buy`` (n,) float32 0/1
    (``ranker_fit.labels``). Returns the student ``RankerModel``."""
    cfg = cfg or StudentConfig()
    with torch_threads(1):
        return _distill_rows(teacher, X, y_click, y_buy, cfg)


def _distill(teacher: RankerModel, train_df: pd.DataFrame, cfg: StudentConfig) -> RankerModel:
    y_click, y_buy = labels(train_df)
    return _distill_rows(
        teacher, ranker_matrix(train_df, teacher.feature_names), y_click, y_buy, cfg
    )


def _distill_rows(
    teacher: RankerModel,
    X: np.ndarray,
    y_click: np.ndarray,
    y_buy: np.ndarray,
    cfg: StudentConfig,
) -> RankerModel:
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t_click, t_cvr = fit_logits(teacher.net, torch.from_numpy(X))  # a chunk of rows at a time
    rcfg = RankerConfig(
        hidden=[cfg.hidden],
        seed=cfg.seed,
        version=f"{teacher.version}-student",
        wide=cfg.wide,
        fm_factors=0,
        spline_knots=0,
    )
    net = build_net(X.shape[1], rcfg)
    net.mean.copy_(teacher.net.mean)
    net.std.copy_(teacher.net.std)
    opt = Adam(net.parameters(), lr=cfg.lr)
    Xt, yc, yb = torch.from_numpy(X), torch.from_numpy(y_click), torch.from_numpy(y_buy)
    t_click, t_cvr = t_click.clone(), t_cvr.clone()
    net.train()
    for _ in range(cfg.epochs):
        perm = torch.from_numpy(rng.permutation(len(X)))
        for s in range(0, len(perm), cfg.batch_size):
            b = perm[s : s + cfg.batch_size]
            a, c = net(Xt[b])
            soft = nn.functional.mse_loss(a, t_click[b]) + nn.functional.mse_loss(c, t_cvr[b])
            loss = (1 - cfg.label_weight) * soft + cfg.label_weight * esmm_loss(
                a, c, yc[b], yb[b], rcfg.ctcvr_weight
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    n_params = sum(p.numel() for p in net.parameters())
    return RankerModel(
        net,
        list(teacher.feature_names),
        rcfg,
        {"distill_seconds": time.perf_counter() - t0, "n_params": float(n_params)},
    )


def fast_predict(model: RankerModel) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The cheapest exact scorer of ``model``: X float32 (n, d) -> (p_click, p_cvr) float32 (n,) each.

    ``NumpyScorer`` (no torch dispatch: ~10x less CPU on 300 rows) when the architecture allows it
    and it agrees with torch on a probe matrix (|diff| <= 1e-5); else ``model.predict`` (torch).
    """
    try:
        scorer = NumpyScorer.from_model(model)
    except (ValueError, KeyError):
        return model.predict
    probe = np.random.default_rng(0).normal(size=(64, len(model.feature_names))).astype(np.float32)
    agree = all(
        np.allclose(a, b, atol=1e-5)
        for a, b in zip(scorer.predict(probe), model.predict(probe), strict=True)
    )
    return scorer.predict if agree else model.predict


def quantized_scorer(model: RankerModel) -> nn.Module:
    """int8 dynamic-quantised copy of the model's network (Linear layers), for CPU inference."""
    from torch.ao.quantization import (
        quantize_dynamic,  # lazy: torch is optional on the serving path (the transformer and numpy predictor run without it)
    )

    return quantize_dynamic(model.net, {nn.Linear}, dtype=torch.qint8)


def median_latency_ms(fn, X: np.ndarray, repeats: int = 300) -> float:
    """Median wall time of ``fn(X)`` in milliseconds over ``repeats`` calls (after 20 warm-ups)."""
    for _ in range(20):
        fn(X)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)
