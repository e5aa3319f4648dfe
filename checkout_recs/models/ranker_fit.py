"""Training procedure of the multi-task ranker: losses, the linear warm start, the deep stage.

Three steps, each one a function here (``ranker.train_ranker`` strings them together):

1. **Wide (linear) part first.** ``fit_linear`` fits one linear logit per head on the
   standardised features to convergence (full-batch Adam, L2 ``1 / (2 n C)`` with ``C = 1`` as
   scikit-learn's logistic regression) under the ESMM loss. With ``spline_knots`` > 0 its input
   is the standardised features followed by their scaled piecewise-linear ramps
   (``RankerNet.wide_input``), so the "linear" part is a per-feature curve (a GAM). The network
   starts *as* that model: the deep heads' output weights are zero.
2. **Deep part as a residual.** ``fit_deep`` trains the bottom (or MMoE experts) and the head
   weights on top of the frozen linear part, mini-batches of whole requests, with an optional
   listwise term.
3. **Early stopping.** ``train_ranker`` first runs 1-2 on all but the latest
   ``early_stopping_share`` of requests, picks the number of deep epochs (0 included) with the
   lowest held-out ESMM loss, then refits on every row with that number. With 0 epochs the
   ranker *is* the linear model, so the deep part is only kept where it helps on later data.

Every function works under ``torch.distributed`` (DDP, gloo): gradients and held-out losses
are averaged over ranks so every rank takes the same decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from checkout_recs.models.distributed import distributed
from checkout_recs.models.optim import Adam


def labels(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(clicked, purchased) float32 (n,) each; a purchase without a click counts as none."""
    clicked = df["clicked"].to_numpy(np.float32)
    purchased = df["purchased"].to_numpy(np.float32) * (clicked > 0)
    return clicked, purchased.astype(np.float32)


def esmm_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    y_click: torch.Tensor,
    y_buy: torch.Tensor,
    ctcvr_weight: float = 1.0,
) -> torch.Tensor:
    """Mean BCE of the click logit ``a`` (n,) + ``ctcvr_weight`` · BCE of ``σ(a)·σ(b)`` against
    purchases, over every impression (Ma et al., 2018). Returns a scalar tensor."""
    bce = nn.functional.binary_cross_entropy_with_logits
    p_ctcvr = (torch.sigmoid(a) * torch.sigmoid(b)).clamp(1e-7, 1 - 1e-7)
    return bce(a, y_click) + ctcvr_weight * nn.functional.binary_cross_entropy(p_ctcvr, y_buy)


def listwise_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    y_buy: torch.Tensor,
    y_click: torch.Tensor,
    group: torch.Tensor,
) -> torch.Tensor:
    """Softmax cross-entropy per request ``group`` (n,) int64 on ``log p_ctcvr``; targets are
    click + purchase (a purchase counts twice). Groups without a positive are skipped."""
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


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the previous count.

    The ranker's matrices are small (hundreds of rows × tens of features): extra threads buy
    nothing and, on a loaded machine, their spin-waits made training 10-20x slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pairwise_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    y_buy: torch.Tensor,
    y_click: torch.Tensor,
    group: torch.Tensor,
) -> torch.Tensor:
    """BPR-style loss ``-log σ(s_i − s_j)`` on ``s = log p_ctcvr`` over every pair of rows of the
    same request ``group`` (n,) int64 whose graded target (click + purchase) has ``i > j``;
    mean over pairs (0 when a batch has none)."""
    s = nn.functional.logsigmoid(a) + nn.functional.logsigmoid(b)
    target = y_click + y_buy
    better = (group[:, None] == group[None, :]) & (target[:, None] > target[None, :])
    i, j = torch.nonzero(better, as_tuple=True)
    if len(i) == 0:
        return s.sum() * 0.0
    return -nn.functional.logsigmoid(s[i] - s[j]).mean()


def all_ranks(flag: bool) -> bool:
    """``flag`` and-ed over every rank under DDP (so that every rank takes the same branch)."""
    if not distributed():
        return flag
    t = torch.tensor([int(flag)])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


#: Rows per chunk of the ranker's whole-matrix passes (statistics, encodings, forward passes):
#: 65,536 rows x 360 float32 columns (40 features x 9) is ~0.09 GB.
CHUNK_ROWS = 65_536


def row_chunks(n: int, chunk_rows: int = CHUNK_ROWS) -> Iterator[slice]:
    """``slice``s of ``chunk_rows`` rows (the last one shorter) covering ``range(n)``."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    for s in range(0, n, chunk_rows):
        yield slice(s, min(s + chunk_rows, n))


def column_sums(chunks: Iterable[np.ndarray], d: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Column sums of the rows of ``chunks`` (each (m, d) float32), as ``X.sum(0)`` of their
    concatenation ``X`` would give them.

    numpy sums a C-ordered matrix over axis 0 row after row, so carrying the running sum in as
    the first row of the next chunk adds in the same order: the result is bit for bit the
    whole-matrix one, for any chunking. A single column (``d == 1``) is contiguous and numpy
    sums it pairwise, so its chunks are joined first (4 bytes a row).

    Returns
    -------
    (sum (d,) float32, sum of squares (d,) float64 (accumulated in float64), rows (int)).
    """
    tot, sq, n = np.zeros(d, np.float32), np.zeros(d, np.float64), 0
    if d == 1:
        chunks = [
            np.concatenate(
                [np.zeros((0, 1), np.float32)]
                + [np.asarray(c, np.float32).reshape(-1, 1) for c in chunks]
            )
        ]
    for c in chunks:
        c = np.asarray(c, np.float32)
        if len(c) == 0:
            continue
        tot = (c.sum(0) if n == 0 else np.concatenate([tot[None], c]).sum(0)).astype(np.float32)
        c2 = c.astype(np.float64) ** 2
        sq = c2.sum(0) if n == 0 else np.concatenate([sq[None], c2]).sum(0)
        n += len(c)
    return tot, sq, n


def feature_stats(
    X: np.ndarray | Iterable[np.ndarray], d: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (d,) float32 of the rows of ``X`` (n, d) float32 (other dtypes are summed
    as float32), over every rank under DDP.

    ``X`` may also be an iterable of row chunks ((m, d) float32 each; give ``d``): the
    statistics are bit for bit those of the concatenated matrix (``column_sums``), without it.
    """
    if isinstance(X, np.ndarray):
        d = X.shape[1]
        chunks: Iterable[np.ndarray] = [X[sl] for sl in row_chunks(len(X))]
    elif d is None:
        raise ValueError("feature_stats: give d with an iterable of chunks")
    else:
        chunks = X
    tot, sq, n = column_sums(chunks, d)
    s = torch.from_numpy(np.stack([tot, sq.astype(np.float32), np.full(d, n, np.float32)]))
    if distributed():
        torch.distributed.all_reduce(s)
    tot, sq, n = s.double().numpy()
    mean = tot / np.maximum(n, 1)
    std = np.sqrt(np.maximum(sq / np.maximum(n, 1) - mean**2, 0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def group_codes(df: pd.DataFrame) -> np.ndarray:
    """Request index per row, int64 (n,) (each row its own group without ``request_id``)."""
    if "request_id" in df:
        return pd.factorize(df["request_id"])[0].astype(np.int64)
    return np.arange(len(df), dtype=np.int64)


def holdout_mask(df: pd.DataFrame, share: float) -> np.ndarray:
    """bool (n,): rows of the latest ``share`` of requests (by first ``event_timestamp``).

    All False when ``share`` is 0, the frame has no timestamps, or fewer than 10 requests
    would be held out (too few to choose anything on). ``holdout_rows`` on the frame's columns.
    """
    if share <= 0 or "event_timestamp" not in df:
        return np.zeros(len(df), bool)
    return holdout_rows(group_codes(df), df["event_timestamp"].to_numpy(), share)


def holdout_rows(groups: np.ndarray, timestamps: np.ndarray, share: float) -> np.ndarray:
    """bool (n,): rows of the latest ``share`` of requests, from arrays.

    Parameters
    ----------
    groups : (n,) int64, request index per row (``group_codes``: 0, 1, ... in order of first
        appearance).
    timestamps : (n,) the rows' ``event_timestamp`` values: ``Series.to_numpy()``'s array or
        a pandas datetime array (``pd.Series(timestamps)`` must give the dtype the frame's
        ``to_numpy()`` would: tz-aware Timestamps become ``datetime64[ns, tz]``).
    share : latest share of requests (by their first timestamp) to hold out.

    Returns
    -------
    bool (n,); all False when ``share`` is 0 or fewer than 10 requests would be held out.
    """
    if share <= 0:
        return np.zeros(len(groups), bool)
    first = pd.Series(timestamps).groupby(groups).min()
    if len(first) * share < 10:
        return np.zeros(len(groups), bool)
    cut = first.quantile(1 - share)
    return np.asarray((first > cut).reindex(groups).to_numpy(), bool)


@dataclass
class RankerRows:
    """The ranker's training rows as arrays: what ``ranker.train_ranker`` builds from a frame
    (``ranker_matrix``, ``labels``, ``group_codes``, ``holdout_mask``) and
    ``ranker.train_ranker_rows`` trains on."""

    X: np.ndarray  # (n, d) float32 raw features, ``ranker_matrix`` order
    y_click: np.ndarray  # (n,) float32 0/1
    y_buy: np.ndarray  # (n,) float32 0/1 (a purchase without a click is 0)
    groups: np.ndarray  # (n,) int64 request index per row (order of first appearance)
    hold: np.ndarray  # (n,) bool: the early-stopping hold-out (latest requests)


@dataclass
class Batches:
    """Mini-batches of whole requests (so the listwise term sees complete slates)."""

    groups: np.ndarray  # (n,) int64 request index per row
    batch_size: int

    def __post_init__(self) -> None:
        self.uniq = np.unique(self.groups)
        self.order = np.argsort(self.groups, kind="stable")
        self.starts = np.searchsorted(self.groups[self.order], self.uniq)
        self.sizes = np.diff(np.append(self.starts, len(self.groups)))
        self.per_batch = max(1, int(self.batch_size / max(self.sizes.mean(), 1)))
        n_batches = -(-len(self.uniq) // self.per_batch)
        if distributed():  # every rank takes as many steps
            nb = torch.tensor([n_batches])
            torch.distributed.all_reduce(nb, op=torch.distributed.ReduceOp.MIN)
            n_batches = int(nb.item())
        self.n_batches = n_batches

    def epoch(self, rng: np.random.Generator):  # noqa: ANN201 - generator of (rows, local groups)
        """Yield ``(row indices (m,) int64, request index within the batch (m,) int64)``."""
        perm = rng.permutation(len(self.uniq))
        for i in range(0, self.n_batches * self.per_batch, self.per_batch):
            sel = perm[i : i + self.per_batch]
            idx = np.concatenate(
                [self.order[self.starts[g] : self.starts[g] + self.sizes[g]] for g in sel]
            )
            yield (
                torch.from_numpy(idx),
                torch.from_numpy(np.repeat(np.arange(len(sel)), self.sizes[sel])),
            )


def _wrap(module: nn.Module) -> nn.Module:
    if distributed():
        from torch.nn.parallel import (
            DistributedDataParallel,  # lazy: torch is optional on the serving path (the transformer and numpy predictor run without it)
        )

        return DistributedDataParallel(module)
    return module


class WideInput(Protocol):
    """A matrix z (n, D) a linear layer can be fitted on without holding it densely
    (``piecewise.CompactWideInput``)."""

    shape: tuple[int, int]

    def logits(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``z @ weight.T + bias``: weight (2, D), bias (2,) → (n, 2), differentiable."""
        ...


class _WideLinear(nn.Module):
    """``lin`` applied to a dense z (n, D) or to a ``WideInput`` (so DDP sees one forward)."""

    def __init__(self, lin: nn.Linear) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, z: torch.Tensor | WideInput) -> torch.Tensor:
        if isinstance(z, torch.Tensor):
            return self.lin(z)
        return z.logits(self.lin.weight, self.lin.bias)


def fit_linear(
    z: torch.Tensor | WideInput,
    y_click: torch.Tensor,
    y_buy: torch.Tensor,
    ctcvr_weight: float = 1.0,
    c: float = 1.0,
    steps: int = 300,
    lr: float = 0.05,
    cvr_l2: float = 1.0,
) -> nn.Linear:
    """The linear ESMM model on standardised features ``z`` (n, d): ``nn.Linear(d, 2)`` whose
    outputs are the (click, cvr) logits, fitted full-batch to convergence with L2 on the weights
    ``||w_click||² / (2 n C) + cvr_l2 · ||w_cvr||² / (2 n C)`` (with ``cvr_l2 = 1`` the penalty of
    scikit-learn's ``LogisticRegression(C=c)``; ``cvr_l2 > 1`` shrinks the cvr logit, which only
    the few purchases inform, harder towards its bias).

    ``z`` is a dense float32 tensor or a ``WideInput`` (the same fit on a matrix held compactly;
    equal up to float rounding)."""
    lin = nn.Linear(z.shape[1], 2)
    nn.init.zeros_(lin.weight)
    with torch.no_grad():
        rate = y_click.mean().clamp(1e-4, 1 - 1e-4)
        cvr = (y_buy.sum() / y_click.sum().clamp(min=1)).clamp(1e-4, 1 - 1e-4)
        lin.bias.copy_(torch.stack([torch.logit(rate), torch.logit(cvr)]))
    n = torch.tensor([float(z.shape[0])])
    if distributed():
        torch.distributed.all_reduce(n)
    head_l2 = torch.tensor([[1.0], [float(cvr_l2)]])  # (2, 1): per-head L2 multiplier
    module = _wrap(lin) if isinstance(z, torch.Tensor) else _wrap(_WideLinear(lin))
    opt = Adam(lin.parameters(), lr=lr)
    for _ in range(steps):
        out = module(z)
        loss = esmm_loss(out[:, 0], out[:, 1], y_click, y_buy, ctcvr_weight)
        loss = loss + (lin.weight**2 * head_l2).sum() / (2 * float(n.item()) * c)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lin


def logits(
    net: nn.Module, X: torch.Tensor, chunk_rows: int = CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """``net(X)`` for raw rows X (n, d) float32: the click and cvr logits, (n,) float32 each,
    computed ``chunk_rows`` rows at a time under ``inference_mode`` so that the wide part's
    (m, d·k) encoding exists for one chunk only. A row's logits do not depend on the other rows;
    for chunks of a few rows BLAS may pick another kernel (differences ~1e-7)."""
    with torch.inference_mode():
        if len(X) <= chunk_rows:
            return net(X)
        parts = [net(X[sl]) for sl in row_chunks(len(X), chunk_rows)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def heldout_loss(
    net: nn.Module, X: torch.Tensor, y_click: torch.Tensor, y_buy: torch.Tensor, ctcvr_weight: float
) -> float:
    """ESMM loss of ``net`` on held-out rows (mean over every rank's rows under DDP); the
    logits are computed a chunk of rows at a time (``logits``), the loss on all of them."""
    a, b = logits(net, X)
    with torch.inference_mode():
        s = torch.tensor(
            [float(esmm_loss(a, b, y_click, y_buy, ctcvr_weight)) * len(X), float(len(X))]
        )
    if distributed():
        torch.distributed.all_reduce(s)
    return float(s[0] / s[1].clamp(min=1))
