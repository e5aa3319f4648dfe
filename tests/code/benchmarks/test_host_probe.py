"""The serving benchmark's host probe: the idle gap is never inside the timed window."""

from benchmarks.host_probe import cold_penalty


def test_cold_probe_times_the_operation_not_the_idle_gap() -> None:
    idle_ms = 20.0
    p = cold_penalty(n=15, idle_ms=idle_ms)
    assert p["idle_ms"] == idle_ms
    assert 0 < p["hot_us_p50"] < 1_000
    # a sum of 5,000 floats takes microseconds even cold; a sleep inside the window would add 20,000
    assert 0 < p["after_idle_us_p50"] <= p["after_idle_us_p95"] < idle_ms * 1e3 / 2
    assert p["ratio"] == round(p["after_idle_us_p50"] / p["hot_us_p50"], 1)
