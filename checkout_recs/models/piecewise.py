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

from checkout_recs.models.ranker_fit import feature_stats


def quantile_edges(X: np.ndarray, k: int) -> np.ndarray:
    """Bin edges float32 (d, k + 1): the 0, 1/k, …, 1 quantiles of each column of ``X`` (n, d).

    Under ``torch.distributed`` rank 0's edges are broadcast so that every rank encodes alike.
    """
    edges = np.quantile(X.astype(np.float64), np.linspace(0.0, 1.0, k + 1), axis=0).T.astype(
        np.float32
    )
    t = torch.from_numpy(np.ascontiguousarray(edges))
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

    def fit(self, X: np.ndarray) -> None:
        """Set the edges and the ramp statistics from training rows ``X`` (n, d) float32."""

        with torch.no_grad():
            self.edges.copy_(torch.from_numpy(quantile_edges(X, self.k)))
            mean, std = feature_stats(self.ramps(torch.from_numpy(X)).numpy())
            self.mean.copy_(torch.from_numpy(mean))
            self.std.copy_(torch.from_numpy(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, d) raw features → (n, d·k) ``scale · (ramps − mean) / std``."""
        return self.scale * (self.ramps(x) - self.mean) / self.std
