"""A minimal Adam optimiser (dense, and lazy for sparse embedding gradients).

``torch.optim``'s optimisers import ``torch._dynamo`` on their first step (several seconds on
a busy 2-core machine, paid by every CLI call, KFP step and test process). This is the same
update rule (Kingma & Ba, 2015, with L2 weight decay added to the gradient, as
``torch.optim.Adam``) in a few lines, with no such import.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Adam:
    """Adam over ``params``; ``zero_grad()`` then ``step()`` after each ``backward()``."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        """Drop every parameter's gradient."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            if p.grad.is_sparse:  # embedding tables: update only the rows in the batch (lazy Adam)
                self._sparse_step(p, m, v, p.grad.coalesce(), c1, c2)
                continue
            g = p.grad if self.wd == 0 else p.grad + self.wd * p
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)

    def _sparse_step(
        self,
        p: torch.Tensor,
        m: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor,
        c1: float,
        c2: float,
    ) -> None:
        """Lazy Adam (as ``torch.optim.SparseAdam``): moments and weights of touched rows only."""
        idx, vals = g.indices()[0], g.values()
        m_rows = m[idx].mul_(self.b1).add_(vals, alpha=1 - self.b1)
        v_rows = v[idx].mul_(self.b2).addcmul_(vals, vals, value=1 - self.b2)
        m[idx], v[idx] = m_rows, v_rows
        p[idx] -= (self.lr / c1) * m_rows / ((v_rows / c2).sqrt_() + self.eps)
