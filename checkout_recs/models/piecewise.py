"""Piecewise-linear encoding of numeric features, for the ranker's wide part.

Each raw feature ``x_j`` is cut at ``k + 1`` training-set quantiles ``e_0 < … < e_k`` and encoded
as ``k`` ramps ``clamp((x_j − e_{i−1}) / (e_i − e_{i−1}), 0, 1)`` (Gorishniy et al., 2022, "On
Embeddings for Numerical Features in Tabular Deep Learning"). A linear function of the ramps is
a continuous piecewise-linear function of ``x_j``: a logit that is additive per feature but not
linear in it, which is what a logistic regression on the same matrix cannot express. Quantiles
that coincide (binary or mostly-constant features) give zero-width bins; their ramps are 0.

The ramps are standardised on the training rows and multiplied by ``scale`` (< 1): under the
same L2 as the linear weights that is an L2 ``1 / scale²`` times stronger on the ramp weights,
so the fit shrinks towards the linear model and bends it only where the data insist.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from checkout_recs.models.ranker_fit import CHUNK_ROWS, feature_stats, row_chunks


def quantile_edges(X: np.ndarray, k: int) -> np.ndarray:
    """Bin edges float32 (d, k + 1): the 0, 1/k, …, 1 quantiles of each column of ``X`` (n, d).

    One column at a time (a float64 copy of one column, not of ``X``): the same numbers as
    ``np.quantile(X.astype(np.float64), q, axis=0)``, which works column by column as well.
    Under ``torch.distributed`` rank 0's edges are broadcast so that every rank encodes alike.
    """
    q = np.linspace(0.0, 1.0, k + 1)
    edges = np.empty((X.shape[1], k + 1), np.float32)
    for j in range(X.shape[1]):
        edges[j] = np.quantile(X[:, j].astype(np.float64), q).astype(np.float32)
    t = torch.from_numpy(edges)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast(t, 0)
    return t.numpy()


class PiecewiseLinear(nn.Module):
    """x (n, d) raw features → (n, d·k) standardised, scaled ramps (see the module docstring).

    Buffers (saved with the weights): ``edges`` (d, k + 1), ``mean`` and ``std`` (d·k,) of the
    ramps on the training rows. Until ``fit`` is called every ramp is 0.
    """

    edges: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, d_in: int, k: int, scale: float) -> None:
        super().__init__()
        self.k, self.scale = k, float(scale)
        self.register_buffer("edges", torch.zeros(d_in, k + 1))
        self.register_buffer("mean", torch.zeros(d_in * k))
        self.register_buffer("std", torch.ones(d_in * k))

    def ramps(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, d) → unstandardised ramps (n, d·k) in [0, 1]; zero-width bins give 0."""
        lo, hi = self.edges[:, :-1], self.edges[:, 1:]  # (d, k)
        width = hi - lo
        r = ((x.unsqueeze(-1) - lo) / width.clamp(min=1e-12)).clamp(0.0, 1.0)
        return (r * (width > 1e-12)).flatten(1)

    def fit(self, X: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> None:
        """Set the edges and the ramp statistics from training rows ``X`` (n, d) float32.

        The ramps' statistics are summed ``chunk_rows`` rows at a time (``feature_stats`` on
        chunks: the same numbers as on the whole (n, d·k) ramp matrix, which is never built).
        """

        with torch.no_grad():
            self.edges.copy_(torch.from_numpy(quantile_edges(X, self.k)))
            Xt = torch.from_numpy(X)
            chunks = (self.ramps(Xt[sl]).numpy() for sl in row_chunks(len(X), chunk_rows))
            mean, std = feature_stats(chunks, X.shape[1] * self.k)
            self.mean.copy_(torch.from_numpy(mean))
            self.std.copy_(torch.from_numpy(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, d) raw features → (n, d·k) ``scale · (ramps − mean) / std``."""
        return self.scale * (self.ramps(x) - self.mean) / self.std


class CompactWideInput:
    """The wide layer's input ``z = [(x − mean) / std | spline(x)]`` (n, d·(1 + k)) of raw rows
    ``X`` (n, d), held in 5 bytes a row and feature instead of 4·(1 + k), for a full-batch fit.

    Let ``b`` be a feature's first live (non-zero-width) bin whose ramp is below 1 (k when
    none). The live bins below ``b`` have ramp 1, every bin above it ramp 0 (x lies below its
    upper edge; rounding is monotone) and zero-width bins are always 0. So ``spline(x)``'s block
    of a feature is fixed by ``b`` (uint8) and the standardised value ``v`` at ``b`` (float32, as
    ``spline`` computes it): the "upper" value ``scale · (1 − mean) / std`` for the live bins
    below ``b``, ``v`` at ``b``, the "lower" value ``scale · (0 − mean) / std`` elsewhere.
    ``matrix`` rebuilds ``z`` bit for bit. ``X`` is referenced, not copied; the standardised
    linear part is recomputed per chunk.

    ``logits(weight, bias)`` is ``z @ weight.T + bias`` (n, 2), differentiable in both, computed
    ``chunk_rows`` rows at a time in O(n·d) per call (a gather of per-bin partial sums forward,
    a scatter-add of the output gradient into the (d, k + 1) bins backward, accumulated in
    float64): not bit-identical to the dense product (another order of the additions).
    """

    def __init__(
        self,
        X: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        spline: PiecewiseLinear,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        n, d = X.shape
        k = spline.k
        if k > 255:
            raise ValueError("CompactWideInput: at most 255 bins")
        self.X, self.mean, self.std, self.k, self.chunk_rows = X, mean, std, k, chunk_rows
        self.shape = (n, d * (1 + k))
        self.bins = torch.empty(n, d, dtype=torch.uint8)
        self.value = torch.empty(n, d, dtype=torch.float32)
        with torch.no_grad():
            live = (spline.edges[:, 1:] - spline.edges[:, :-1]) > 1e-12  # (d, k), as ``ramps``
            self.upper = (spline.scale * (live.flatten().float() - spline.mean) / spline.std).view(
                d, k
            )
            self.lower = (spline.scale * (torch.zeros(d * k) - spline.mean) / spline.std).view(d, k)
            for sl in row_chunks(n, chunk_rows):
                r = spline.ramps(X[sl])  # (m, d·k)
                v = (spline.scale * (r - spline.mean) / spline.std).view(-1, d, k)
                partial = (r.view(-1, d, k) < 1) & live
                b = torch.where(partial.any(-1), partial.to(torch.uint8).argmax(-1), k)
                at = v.gather(-1, b.clamp(max=k - 1).unsqueeze(-1)).squeeze(-1)
                self.bins[sl] = b.to(torch.uint8)
                self.value[sl] = torch.where(b < k, at, torch.zeros((), dtype=at.dtype))
        self._offsets = (torch.arange(d) * (k + 1)).unsqueeze(0)  # (1, d)

    def _index(self, sl: slice) -> torch.Tensor:
        """(m, d) int64 index of each row's bin into a flattened (d, k + 1) table."""
        return self.bins[sl].long() + self._offsets

    def matrix(self) -> torch.Tensor:
        """The dense ``z`` (n, d·(1 + k)) float32 (for tests and small inputs)."""
        n, d = self.X.shape
        k = self.k
        i = torch.arange(k)
        out = torch.empty(self.shape, dtype=torch.float32)
        for sl in row_chunks(n, self.chunk_rows):
            b = self.bins[sl].long().unsqueeze(-1)  # (m, d, 1)
            z = torch.where(i < b, self.upper, self.lower)
            z = torch.where(i == b, self.value[sl].unsqueeze(-1), z)
            x = self.X[sl]
            out[sl] = torch.cat([(x - self.mean) / self.std, z.flatten(1)], 1)
        return out

    def logits(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``z @ weight.T + bias``: weight (2, d·(1 + k)), bias (2,) → (n, 2) float32."""
        return _CompactLinear.apply(weight, self) + bias

    def _tables(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(linear weights (2, d), per-bin sums S (2, d·(k + 1)), bin weights (2, d·(k + 1)))."""
        d, k = self.X.shape[1], self.k
        w = weight[:, :d]
        ws = weight[:, d:].reshape(2, d, k)
        up = torch.nn.functional.pad(torch.cumsum(self.upper * ws, -1), (1, 0))  # Σ_{i<b}
        lo_all = self.lower * ws
        lo = torch.nn.functional.pad(
            torch.flip(torch.cumsum(torch.flip(lo_all, [-1]), -1), [-1])[..., 1:], (0, 2)
        )  # Σ_{i>b}: b = 0..k (0 for b ≥ k − 1)
        s = (up + lo).reshape(2, -1)
        wx = torch.nn.functional.pad(ws, (0, 1)).reshape(2, -1)  # weight of bin b, 0 at b = k
        return w, s, wx


class _CompactLinear(torch.autograd.Function):
    """z @ W.T for a ``CompactWideInput`` z (see there); gradient with respect to W only."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, z: CompactWideInput) -> torch.Tensor:  # noqa: ANN001
        ctx.z = z
        w, s, wx = z._tables(weight)
        out = torch.empty(z.shape[0], 2, dtype=torch.float32)
        for sl in row_chunks(z.shape[0], z.chunk_rows):
            x = z.X[sl]
            idx = z._index(sl)
            part = (s[:, idx] + z.value[sl] * wx[:, idx]).sum(-1)  # (2, m)
            out[sl] = ((x - z.mean) / z.std) @ w.T + part.T
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        z: CompactWideInput = ctx.z
        n, d = z.X.shape
        k = z.k
        g_lin = torch.zeros(2, d, dtype=torch.float64)
        count = torch.zeros(2, d * (k + 1), dtype=torch.float64)  # Σ g over rows in bin b
        at = torch.zeros(2, d * (k + 1), dtype=torch.float64)  # Σ g·v over rows in bin b
        for sl in row_chunks(n, z.chunk_rows):
            gc = g[sl].double()  # (m, 2)
            x = z.X[sl]
            g_lin += gc.T @ ((x - z.mean) / z.std).double()
            idx = z._index(sl).flatten()
            v = z.value[sl].double()
            for h in range(2):
                gh = gc[:, h : h + 1].expand(-1, d)
                count[h].index_add_(0, idx, gh.flatten())
                at[h].index_add_(0, idx, (gh * v).flatten())
        count, at = count.view(2, d, k + 1), at.view(2, d, k + 1)
        above = torch.flip(torch.cumsum(torch.flip(count, [-1]), -1), [-1])[..., 1:]  # Σ_{b>i}
        below = torch.cumsum(count, -1)[..., :-1] - count[..., :-1]  # Σ_{b<i}
        g_s = z.upper.double() * above + at[..., :k] + z.lower.double() * below
        grad = torch.cat([g_lin, g_s.reshape(2, -1)], 1).float()
        return grad, None
