"""The listing view's rate lifts: each listing's smoothed rate against its snapshot's prior."""

from __future__ import annotations

import numpy as np
import pandas as pd

from checkout_recs.features.item_views import (
    CTR_PRIOR_FIT,
    CVR_PRIOR_FIT,
    listing_rates,
    snapshot_rate_columns,
)
from checkout_recs.features.priors import fit_beta_prior
from tests.fixtures_features import synthetic_features  # noqa: F401


def _counts(level: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decayed (purchases, clicks) of 300 listings converting around ``level``; a third unclicked."""
    rng = np.random.default_rng(seed)
    clicks = rng.gamma(1.0, 4.0, 300) * (np.arange(300) % 3 > 0)
    rate = np.clip(level * np.exp(rng.normal(0.0, 0.5, 300)), 0.0, 1.0)
    return clicks * rate, clicks


def test_lift_is_the_smoothed_rate_against_the_snapshot_prior():
    buys, clicks = _counts(0.15)
    rate, lift = listing_rates(buys, clicks, *CVR_PRIOR_FIT)
    prior = fit_beta_prior(buys, clicks, CVR_PRIOR_FIT[0], min_trials=CVR_PRIOR_FIT[1])
    np.testing.assert_allclose(lift, np.log(rate / prior.mean))
    assert np.all(lift[clicks == 0] == 0.0)  # no evidence: exactly the prior
    # equal clicks: none bought is below the prior, most bought above it
    two = listing_rates(np.r_[buys, 0.0, 4.0], np.r_[clicks, 5.0, 5.0], *CVR_PRIOR_FIT)[1]
    assert two[-2] < 0 < two[-1]


def test_the_days_pooled_level_drops_out_of_the_lift():
    lo, hi = (listing_rates(*_counts(level), *CVR_PRIOR_FIT) for level in (0.10, 0.20))
    cold = _counts(0.10)[1] == 0
    # the smoothed rate of an unclicked listing is the day's pooled level; its lift is 0 either day
    assert hi[0][cold].min() > 1.5 * lo[0][cold].max()
    assert np.all(lo[1][cold] == 0.0) and np.all(hi[1][cold] == 0.0)
    assert abs(np.median(lo[1]) - np.median(hi[1])) < 0.05


def test_only_live_listings_fit_the_prior():
    buys, clicks = _counts(0.15)
    live = np.arange(300) < 200
    rate, lift = listing_rates(buys, clicks, *CVR_PRIOR_FIT, live=live)
    prior = fit_beta_prior(buys[live], clicks[live], CVR_PRIOR_FIT[0], min_trials=CVR_PRIOR_FIT[1])
    np.testing.assert_allclose(lift, np.log(rate / prior.mean))


def test_snapshot_rate_columns_use_the_view_formulas():
    buys, clicks = _counts(0.15)
    views = 8.0 * clicks + 3.0
    snap = pd.DataFrame(
        {"views_decayed": views, "clicks_decayed": clicks, "purchases_decayed": buys}
    )
    out = snapshot_rate_columns(snap)
    ctr, ctr_lift = listing_rates(clicks, views, *CTR_PRIOR_FIT)
    cvr, cvr_lift = listing_rates(buys, clicks, *CVR_PRIOR_FIT)
    for col, want in (
        ("ctr_smoothed", ctr),
        ("ctr_lift", ctr_lift),
        ("cvr_smoothed", cvr),
        ("cvr_lift", cvr_lift),
    ):
        np.testing.assert_array_equal(out[col].to_numpy(), want)


def test_listing_view_lift_recomputes_from_its_own_snapshot(synthetic_features):  # noqa: F811
    view = pd.read_parquet(synthetic_features["features"] / "listing.parquet")
    assert view["cvr_lift"].std() > 0 and view["ctr_lift"].std() > 0
    for _, snap in view.groupby("event_timestamp"):  # the rows of one snapshot = its live listings
        for s, n, rate, lift, fit in (
            ("clicks_decayed", "views_decayed", "ctr_smoothed", "ctr_lift", CTR_PRIOR_FIT),
            ("purchases_decayed", "clicks_decayed", "cvr_smoothed", "cvr_lift", CVR_PRIOR_FIT),
        ):
            prior = fit_beta_prior(snap[s].to_numpy(), snap[n].to_numpy(), fit[0], fit[1])
            np.testing.assert_allclose(snap[lift], np.log(snap[rate] / prior.mean), rtol=1e-12)
