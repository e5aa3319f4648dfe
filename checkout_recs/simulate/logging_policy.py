"""The logged (old) policy: static category boosts that favour incumbent sellers, randomised.

How the propensities are exact
------------------------------
For each request the policy first draws ``K`` candidates (part of the context ``x``). Then, with
probability ``1 - epsilon`` it shows the deterministic top six of the heuristic score (ties broken
by listing id), and with probability ``epsilon`` a uniformly random ordered six of the ``K``
candidates. The marginal probability that listing ``j`` sits in slot ``s`` is therefore exactly::

    propensity(j, s | x) = (1 - epsilon) * [top6(x)[s] == j] + epsilon / K

(a uniformly random ordered 6-subset of K puts any given candidate in any given slot with
probability 1/K). It is never below ``epsilon / K`` > 0, whichever branch was taken.
"""

from __future__ import annotations

import numpy as np

from checkout_recs.contract import SLATE_SIZE
from checkout_recs.simulate.taxonomy import Taxonomy
from checkout_recs.simulate.world import Catalogue, Sellers

POLICY_NAME = "heuristic_v0"


class HeuristicPolicy:
    """Static category boosts + incumbent boost, with an epsilon-uniform exploration slate."""

    name = POLICY_NAME

    def __init__(
        self, tax: Taxonomy, sellers: Sellers, catalogue: Catalogue, epsilon: float
    ) -> None:
        self.tax, self.sellers, self.cat, self.epsilon = tax, sellers, catalogue, epsilon
        self.boost = (tax.comp >= 0.5).astype(np.float64)  # hand-written "goes with" table

    def scores(self, basket_leaf: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Heuristic scores: basket_leaf (M, B) leaf idx (-1 pad), candidates (M, K) idx (-1 pad) -> (M, K).

        Padding candidates score -inf.
        """
        cat, tax = self.cat, self.tax
        safe = np.maximum(candidates, 0)
        leaf = cat.leaf[safe].astype(np.int64)
        valid_b = basket_leaf >= 0
        b = np.maximum(basket_leaf, 0)
        boost = np.where(valid_b[:, :, None], self.boost[b], 0.0).max(axis=1)  # (M, n_leaf)
        goes_with = np.take_along_axis(boost, leaf, axis=1)
        top_b = np.where(valid_b, tax.leaf_top[b], -1)
        same_top = (tax.leaf_top[leaf][:, :, None] == top_b[:, None, :]).any(axis=2)
        incumbent = self.sellers.incumbent[cat.seller[safe]]
        s = 2.0 * goes_with + 0.5 * same_top + 1.5 * incumbent
        return np.where(candidates >= 0, s, -np.inf)

    def top6(self, basket_leaf: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """The greedy six: basket_leaf (M, B), candidates (M, K) -> (M, 6) listing indices, slot order
        (heuristic score, ties by listing index)."""
        m = len(candidates)
        s = self.scores(basket_leaf, candidates)
        row = np.repeat(np.arange(m), candidates.shape[1])
        order = (
            np.lexsort((candidates.ravel(), -s.ravel(), row)).reshape(m, -1) % candidates.shape[1]
        )
        return np.take_along_axis(candidates, order[:, :SLATE_SIZE], axis=1)

    def marginals(self, basket_leaf: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Exact P(candidate k at slot j | x): (M, B), (M, K) (no padding) -> (M, K, 6)."""
        k = candidates.shape[1]
        top = self.top6(basket_leaf, candidates)
        return (1 - self.epsilon) * (candidates[:, :, None] == top[:, None, :]) + self.epsilon / k

    def slate_batch(
        self, rng: np.random.Generator, basket_leaf: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Six listings per request and their exact per-slot propensities.

        Parameters
        ----------
        rng : generator for the exploration coins and the random slates.
        basket_leaf : (M, B) int   leaf index of each basket item, -1 for padding.
        candidates : (M, K) int   distinct listing indices, -1 for padding; >= 6 valid per row.

        Returns
        -------
        items : (M, 6) int   listing indices in slot order.
        propensity : (M, 6) float   P(that listing in that slot | context), in (0, 1].
        """
        m = len(candidates)
        top6 = self.top6(basket_leaf, candidates)
        keys = np.where(candidates >= 0, rng.random(candidates.shape), np.inf)
        rand6 = np.take_along_axis(candidates, np.argsort(keys, axis=1)[:, :SLATE_SIZE], axis=1)
        explore = rng.random(m) < self.epsilon
        items = np.where(explore[:, None], rand6, top6)
        k = (candidates >= 0).sum(axis=1, keepdims=True)
        return items, (1 - self.epsilon) * (items == top6) + self.epsilon / k

    def slate(
        self, rng: np.random.Generator, basket_leaf: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One request: basket_leaf (B,), candidates (K,) -> items (6,), propensities (6,)."""
        items, prop = self.slate_batch(rng, np.atleast_2d(basket_leaf), np.atleast_2d(candidates))
        return items[0], prop[0]
