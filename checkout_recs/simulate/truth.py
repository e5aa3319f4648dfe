"""The hidden truth of the simulated marketplace: P(click) and P(purchase | click).

A latent model with position bias, so that any policy's expected clicks, purchases and GMV can
be computed exactly (``checkout_recs.simulate.evaluate``). All functions are vectorised: numpy
arrays in, arrays out, one row per (request, shown listing).

Model (``n`` rows; ``top``/``leaf`` of the shown listing, ``B`` basket slots)::

    comp      = max_b comp[leaf(basket_b), leaf]                  complementarity in [0, 1]
    season    = seasonality * sin(2 pi (t - start) / period + phase[top])
    dprice    = log(price) - log(median price of the leaf)
    relevance = a0 + a_taste * clip(log(n_top * taste[user, top]), -3, 1.5) + a_comp * comp
                + a_q * quality + season - a_price * price_sens[user] * dprice
                + a_new * [listing younger than 2 days]
    P(click)  = examination[slot] * device_factor[device] * sigmoid(relevance)
    P(purchase | click) = sigmoid(b0 + b_q * quality + b_comp * comp + b_rel * reliability[seller]
                                  - b_price * price_sens[user] * dprice)

Nothing in the truth favours incumbent sellers: a policy that buries new sellers loses money.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from checkout_recs.simulate.config import SimConfig
from checkout_recs.simulate.taxonomy import Taxonomy
from checkout_recs.simulate.world import (
    STREAM_TRUTH,
    US_PER_DAY,
    Catalogue,
    Sellers,
    Users,
    rng_for,
    start_us,
)


@dataclass
class TruthParams:
    """Coefficients of the latent model (see the module docstring)."""

    a0: float = -2.6
    a_taste: float = 0.9
    a_comp: float = 1.8
    a_q: float = 0.5
    a_price: float = 0.7
    a_new: float = 0.15
    b0: float = -1.4
    b_q: float = 0.5
    b_comp: float = 0.8
    b_rel: float = 0.6
    b_price: float = 0.8
    examination: list[float] = field(default_factory=lambda: [1.0, 0.78, 0.63, 0.53, 0.46, 0.41])
    device_factor: list[float] = field(
        default_factory=lambda: [1.0, 0.95, 0.9]
    )  # web, ios, android
    seasonality: float = 1.0
    period_days: float = 28.0
    phase: list[float] = field(default_factory=list)
    start_us: int = 0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Truth:
    """P(click) and P(purchase | click) for any (user, basket, listing, slot, time, device)."""

    def __init__(
        self,
        params: TruthParams,
        tax: Taxonomy,
        users: Users,
        catalogue: Catalogue,
        sellers: Sellers,
    ) -> None:
        self.params, self.tax, self.users, self.cat, self.sellers = (
            params,
            tax,
            users,
            catalogue,
            sellers,
        )
        self._exam = np.asarray(params.examination)
        self._dev = np.asarray(params.device_factor)
        self._phase = np.asarray(params.phase)

    @classmethod
    def draw(
        cls, cfg: SimConfig, tax: Taxonomy, users: Users, catalogue: Catalogue, sellers: Sellers
    ) -> Truth:
        """Truth for a run: fixed coefficients plus per-top-category season phases from the seed."""
        rng = rng_for(cfg.seed, STREAM_TRUTH)
        params = TruthParams(
            seasonality=cfg.seasonality,
            period_days=cfg.season_period_days,
            phase=rng.uniform(0, 2 * np.pi, len(tax.top_ids)).tolist(),
            start_us=start_us(cfg),
        )
        return cls(params, tax, users, catalogue, sellers)

    def season(self, top_idx: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        """Seasonal shift of the click logit, (n,) from top-category index (n,) and time µs (n,)."""
        p = self.params
        days = (np.asarray(t_us) - p.start_us) / US_PER_DAY
        return p.seasonality * np.sin(2 * np.pi * days / p.period_days + self._phase[top_idx])

    def complementarity(self, basket_leaf: np.ndarray, leaf: np.ndarray) -> np.ndarray:
        """max over the basket of comp[basket leaf, leaf]: (n, B) leaf idx (-1 = pad), (n,) -> (n,)."""
        basket_leaf = np.atleast_2d(basket_leaf)
        c = self.tax.comp[np.maximum(basket_leaf, 0), np.asarray(leaf)[:, None]]
        c = np.where(basket_leaf >= 0, c, 0.0)
        return c.max(axis=1) if c.shape[1] else np.zeros(len(leaf))

    def _parts(
        self, users: np.ndarray, basket_leaf: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        cat, tax = self.cat, self.tax
        leaf = cat.leaf[items].astype(np.int64)
        dprice = np.log(cat.price[items]) - tax.price_mu[leaf]
        comp = self.complementarity(basket_leaf, leaf)
        return (
            leaf,
            dprice,
            comp,
            cat.quality[items].astype(np.float64),
            self.users.price_sens[users],
        )

    def click_prob(
        self,
        users: np.ndarray,
        basket_leaf: np.ndarray,
        items: np.ndarray,
        slots: np.ndarray,
        t_us: np.ndarray,
        devices: np.ndarray,
    ) -> np.ndarray:
        """P(click) per row.

        Parameters
        ----------
        users : (n,) int   user index (``user_id - 1``).
        basket_leaf : (n, B) int   leaf index of each basket item, -1 for padding.
        items : (n,) int   listing index (``listing_id - 1``).
        slots : (n,) int   0..5.
        t_us : (n,) int   request time, µs since epoch.
        devices : (n,) int   index into ``contract.DEVICES``.

        Returns
        -------
        (n,) float64 in [0, 1].
        """
        p = self.params
        leaf, dprice, comp, q, ps = self._parts(users, basket_leaf, items)
        top = self.tax.leaf_top[leaf]
        taste = np.clip(
            np.log(len(self.tax.top_ids) * self.users.taste[users, top] + 1e-12), -3, 1.5
        )
        young = (np.asarray(t_us) - self.cat.listed_at[items]) < 2 * US_PER_DAY
        rel = (
            p.a0
            + p.a_taste * taste
            + p.a_comp * comp
            + p.a_q * q
            + self.season(top, t_us)
            - p.a_price * ps * dprice
            + p.a_new * young
        )
        return self._exam[slots] * self._dev[devices] * _sigmoid(rel)

    def purchase_prob(
        self, users: np.ndarray, basket_leaf: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """P(purchase | click) per row: users (n,), basket_leaf (n, B), items (n,) -> (n,) in [0, 1]."""
        p = self.params
        _, dprice, comp, q, ps = self._parts(users, basket_leaf, items)
        rel = self.sellers.reliability[self.cat.seller[items]]
        return _sigmoid(
            p.b0 + p.b_q * q + p.b_comp * comp + p.b_rel * rel - p.b_price * ps * dprice
        )

    def save_params(self, path: Path) -> None:
        """Write the coefficients as JSON."""
        path.write_text(json.dumps(asdict(self.params), indent=2))
