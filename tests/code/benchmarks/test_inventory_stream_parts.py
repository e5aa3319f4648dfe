"""The inventory benchmark's truth: strict (an event a millisecond before the arrival counts, one in
the same millisecond does not), a lock counts only while it lasts, a later event releases the
listing, and the answer check counts an answer once however many of its six were unavailable."""

from benchmarks.inventory_stream_parts import PhaseCheck, Truth


def _entry(ms: int, n: int, lid: int, etype: str, seq: int, ttl: str = "") -> tuple[str, dict]:
    return f"{ms}-{n}", {
        "listing_id": str(lid),
        "event_type": etype,
        "sequence": str(seq),
        "lock_ttl_s": ttl,
        "event_ts_ms": str(ms),
    }


def _truth() -> Truth:
    t = Truth()
    for eid, f in (
        _entry(1_000_000, 0, 1, "sold", 1),
        _entry(1_000_000, 1, 2, "locked", 1, ttl="2"),  # a lock of 2 s: until 1,002,000 ms
        _entry(1_000_500, 0, 3, "delisted", 1),
        _entry(1_001_000, 0, 3, "listed", 2),  # back half a second later
        _entry(1_000_200, 0, 4, "sold", 5),
        _entry(1_000_300, 0, 4, "listed", 3),  # an older sequence arriving late: ignored
    ):
        t.add(eid, f)
    return t


def test_strict_truth_counts_events_of_earlier_milliseconds_only():
    t = _truth()
    assert t.unavailable_throughout(1, 1000.001, 1000.5) == (1000.0, "1000000-0", "sold")
    assert t.unavailable_throughout(1, 1000.0, 1000.5) is None  # the same millisecond: not before
    assert t.unavailable_throughout(4, 1000.4, 1000.6) == (
        1000.2,
        "1000200-0",
        "sold",
    )  # late "listed"
    assert t.entries == 6 and t.last_seq[4] == 5


def test_a_lock_counts_while_it_lasts_and_a_relisting_releases():
    t = _truth()
    assert t.unavailable_throughout(2, 1000.1, 1001.9) is not None
    assert t.unavailable_throughout(2, 1000.1, 1002.1) is None  # the lock ended before the answer
    assert t.unavailable_throughout(3, 1000.6, 1000.9) is not None
    assert t.unavailable_throughout(3, 1000.6, 1001.2) is None  # listed again before the answer
    assert t.unavailable_throughout(9, 1000.6, 1001.2) is None  # no event at all


def test_an_answer_with_two_unavailable_listings_counts_once():
    t = _truth()
    chk = PhaseCheck(bound_s=1.0)
    items = [{"listing_id": lid} for lid in (1, 4, 5, 6, 7, 8)]
    good = [{"listing_id": lid} for lid in (5, 6, 7, 8, 9, 10)]
    chk.add(1000.9, [({"items": items, "fallback_reason": None}, 1000.95)])
    chk.add(1000.9, [({"items": good, "fallback_reason": "inventory_stale"}, 1000.95)])
    chk.check(t, applied={})
    fig = chk.figures(wall_s=1.0)
    assert fig["answers"] == 2 and fig["with_unavailable_shown"] == 1
    assert fig["with_unavailable_shown_older_than_bound"] == 0  # 700 ms old at arrival
    assert fig["fallback_reasons"] == {"none (ranker)": 1, "inventory_stale": 1}
    (v,) = fig["violations"]
    assert v["event_age_ms"] == 700.0 and v["replica_applied_after_arrival_ms"] is None
    assert v["state"] == "sold" and v["arrived_in_a_stall_event_ms_before_it"] is None


def test_refused_calls_count_as_calls_never_as_answers_shown():
    t = _truth()
    chk = PhaseCheck(bound_s=1.0)
    refused = {"error": "shed: inventory_stale", "items": [], "fallback_reason": "shed"}
    good = [{"listing_id": lid} for lid in (5, 6, 7, 8, 9, 10)]
    chk.add(1000.9, [(refused, 1000.91), (refused, 1000.92)])
    chk.add(1000.9, [({"items": good, "fallback_reason": None}, 1000.95)])
    chk.check(t, applied={})
    fig = chk.figures(wall_s=1.0)
    assert (fig["answers"], fig["refused"], fig["answered"]) == (3, 2, 1)
    assert fig["with_unavailable_shown"] == 0
