"""The geo DiD's power table: MDE by number of regions from the pre-period noise, its noise model
against the DiD's own standard error, and a planted effect of the MDE detected about as often as
promised."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_recs.evaluation.experiments.did import diff_in_diff
from checkout_recs.evaluation.experiments.did_inference import geo_inference
from checkout_recs.evaluation.experiments.geo_power import region_power_table
from tests.fixtures_measure import geo_panel


def _panel(seed: int = 0, uplift: float = 0.143, n_regions: int = 4, days: int = 14):
    return geo_panel(seed, uplift=uplift, n_regions=n_regions, pre_days=days, post_days=days)


def test_power_table_by_number_of_regions() -> None:
    panel, arms = _panel(seed=6, uplift=0.0, days=14)
    table = region_power_table(panel, arms, start=14, n_regions=(4, 8, 16, 32))
    assert list(table["regions"]) == [4, 8, 16, 32] and list(table["assignments"]) == [
        6,
        70,
        12870,
        601080390,
    ]
    same_size = table["mde_same_size"].to_numpy()
    assert (np.diff(same_size) < 0).all()
    assert same_size[1] / same_size[0] == pytest.approx(np.sqrt(0.5), rel=0.02)  # 1/sqrt(n) in se
    assert np.allclose(table["mde_same_traffic"], table["mde_same_traffic"].iloc[0])
    assert table["min_p_two_sided"].iloc[1] == pytest.approx(2 / 70)
    inf = geo_inference(panel, arms, 14)
    m = inf.power_model
    assert 0.5 < m["model_se"] / m["welch_se"] < 2.0  # the noise model fits the design that ran


def test_power_table_mde_is_detected_about_as_often_as_promised() -> None:
    """A planted effect of the MDE (16 regions, same-size) is detected in roughly 80% of seeds."""
    panel, arms = _panel(seed=0, uplift=0.0, n_regions=16)
    mde = region_power_table(panel, arms, start=14, n_regions=(16,))["mde_same_size"].iloc[0]
    hits = [diff_in_diff(*_panel(seed=s, uplift=mde, n_regions=16), 14, n_bootstrap_samples=10).lower > 0
            for s in range(1, 41)]  # fmt: skip
    assert 0.55 <= np.mean(hits) <= 0.97
