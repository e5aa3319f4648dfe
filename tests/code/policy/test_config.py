"""Policy profiles shipped in configs/policy/ load as PolicyConfig and set exactly what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkout_recs.policy.config import PolicyConfig

PROFILE_DIR = Path(__file__).resolve().parents[3] / "configs" / "policy"
PROFILES = sorted(PROFILE_DIR.glob("*.json"))


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_there_is_a_cold_start_programme():
    assert any(p.name == "cold_start_programme.json" for p in PROFILES)


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_profile_loads_and_every_key_takes_effect(path):
    raw = json.loads(path.read_text())
    cfg = PolicyConfig.model_validate(raw)
    dumped = _leaves(cfg.model_dump())
    for key, value in _leaves(raw).items():
        assert key in dumped, f"{path.name}: {key} is not a PolicyConfig field (ignored silently)"
        assert dumped[key] == value


def test_cold_start_programme_binds_harder_than_the_default():
    prog = PolicyConfig.model_validate(
        json.loads((PROFILE_DIR / "cold_start_programme.json").read_text())
    )
    dflt = PolicyConfig()
    assert prog.exposure.min_cold_share > dflt.exposure.min_cold_share
    assert prog.exposure.cold_slots > dflt.exposure.cold_slots
    assert prog.exposure.min_quality < dflt.exposure.min_quality
    assert prog.exploration == dflt.exploration  # the exploration cap is untouched
