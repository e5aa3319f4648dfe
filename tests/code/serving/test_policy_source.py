"""The policy ConfigMap folder: validated reads, change detection through the ..data swap, bad
files keep the last good config, and a new config applied to a running Recommender keeps its state."""

from __future__ import annotations

import json
import os

import pytest

from checkout_recs.policy.config import PolicyConfig
from checkout_recs.serving.policy_source import (
    KILL_SWITCH_FILE,
    POLICY_FILE,
    PolicyDir,
    PolicyReloader,
    config_version,
    parse_policy,
)
from checkout_recs.serving.switches import Switches
from tests.fixtures_policy import publish_configmap as publish


class FakeTarget:
    """A Recommender stand-in: records what it was given."""

    def __init__(self) -> None:
        self.switches = Switches(None)
        self.applied: list[PolicyConfig] = []

    def apply_config(self, cfg: PolicyConfig) -> list[str]:
        self.applied.append(cfg)
        return []


def test_parse_refuses_unknown_fields_and_bad_values_with_a_reason():
    assert parse_policy('{"max_per_seller": 2}').max_per_seller == 2
    with pytest.raises(ValueError, match="max_items_per_seller"):
        parse_policy('{"max_items_per_seller": 2}')
    with pytest.raises(ValueError, match="max_per_seller"):
        parse_policy('{"max_per_seller": 9}')
    with pytest.raises(ValueError, match="not JSON"):
        parse_policy("max_per_seller: 2")


def test_a_configmap_swap_is_seen_and_a_bad_file_keeps_the_last_good(tmp_path):
    publish(
        tmp_path, {POLICY_FILE: json.dumps({"max_per_seller": 2}), KILL_SWITCH_FILE: "false"}, 1
    )
    src, target = PolicyDir(tmp_path), FakeTarget()
    rel = PolicyReloader(src, target)
    st = rel.apply(src.read())
    assert st.valid and target.applied[-1].max_per_seller == 2
    assert rel.check() is None  # nothing moved
    publish(tmp_path, {POLICY_FILE: json.dumps({"max_per_seller": 3}), KILL_SWITCH_FILE: "true"}, 2)
    st = rel.check()
    assert st is not None and st.valid and target.applied[-1].max_per_seller == 3
    assert target.switches.pinned_kill and st.kill_switch
    good = st.version
    publish(tmp_path, {POLICY_FILE: '{"max_per_seller": "many"}', KILL_SWITCH_FILE: "false"}, 3)
    st = rel.check()
    assert st is not None and not st.valid and "max_per_seller" in (st.error or "")
    assert st.version == good and len(target.applied) == 2  # last good kept, nothing applied
    assert not target.switches.pinned_kill  # the kill switch file is read on its own


def test_a_missing_policy_file_is_invalid(tmp_path):
    st = PolicyReloader(PolicyDir(tmp_path), FakeTarget()).apply(PolicyDir(tmp_path).read())
    assert not st.valid and POLICY_FILE in (st.error or "")
    assert st.version == config_version(PolicyConfig())


def test_a_plain_file_rewrite_is_seen_too(tmp_path):
    f = tmp_path / POLICY_FILE
    f.write_text('{"max_per_seller": 2}')
    src = PolicyDir(tmp_path)
    src.read()
    f.write_text('{"max_per_seller": 3, "max_per_category": 3}')  # size changes
    os.utime(f, ns=(1, 1))
    read = src.changed()
    assert read is not None and read.config is not None and read.config.max_per_seller == 3


def test_pinned_kill_switch_turns_the_switch_on_whatever_redis_says():
    import asyncio

    sw = Switches(None)
    assert not asyncio.run(sw.state()).kill_switch
    sw.pinned_kill = True
    assert asyncio.run(sw.state()).kill_switch


def test_a_running_recommender_takes_a_new_config_and_keeps_its_state(tmp_path):
    import numpy as np

    from checkout_recs import contract
    from checkout_recs.serving.bundle import ServingBundle
    from checkout_recs.serving.recommender import Recommender, TableUserFeatures
    from tests.fixtures_serving import make_serving_bundle

    bundle = ServingBundle.load(
        make_serving_bundle(tmp_path / "bundle", n_listings=800, n_users=50)
    )
    rec = Recommender(bundle, TableUserFeatures(bundle.users))
    for uid in (3, 7, 11):
        req = contract.PostCheckoutRequest(
            user_id=uid, purchased_item_ids=[1000], region="north", timestamp="2026-11-22T12:00:00Z"
        )
        rec.recommend(req, lambda m: (np.full(len(m), 0.1), np.full(len(m), 0.2)))
    ledger, slots = rec.policy.explorer.ledger, rec.policy.exposure.slots
    served = (ledger.served, ledger.requests)
    new = PolicyConfig.model_validate(
        {
            "max_per_seller": 2,
            "exploration": {"daily_share": 0.05, "ledger": {"prefix": "other"}},
            "exposure": {"audit_buckets": 4, "cold_days": 7},
            "switch_cache_ttl_s": 3,
        }
    )
    kept = rec.apply_config(new)
    assert kept == ["exploration.ledger", "exposure.audit_buckets"]
    pol = rec.policy
    assert pol.cfg.max_per_seller == 2 and rec.cfg is pol.cfg and rec.switches.ttl_s == 3
    assert (
        pol.explorer.cfg.daily_share == 0.05
        and pol.explorer.ledger is ledger
        and ledger.cfg.daily_share == 0.05
    )
    assert pol.cfg.exploration.ledger.prefix != "other" and pol.exposure.cfg.audit_buckets == 8
    assert pol.exposure.cfg.cold_days == 7 and pol.exposure.slots == slots == 18
    assert (ledger.served, ledger.requests) == served and served[1] == 3
