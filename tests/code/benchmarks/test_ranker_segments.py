"""The several-run segment benchmark's counting and its report page."""

from benchmarks.ranker_segments import tally
from checkout_recs.evaluation.ranking.report import ranker_report_html, segments_report_html

SEGMENTS = ("all", "new_sellers")


def _ci(diff: float, half: float) -> dict:
    return {
        "auc": 0.7 + diff,
        "auc_lo": 0.69,
        "auc_hi": 0.71,
        "base_auc": 0.7,
        "base_lo": 0.69,
        "base_hi": 0.71,
        "diff": diff,
        "diff_lo": diff - half,
        "diff_hi": diff + half,
        "p_model_better": 0.9,
    }


def _segments(diffs: dict[str, tuple[float, float]], half: float) -> dict:
    return {
        seg: {
            "n": 100,
            "n_click": 10,
            "n_purchase": 3,
            "click_ci": _ci(diffs[seg][0], half),
            "purchase_ci": _ci(diffs[seg][1], half),
            "truth_click": 0.8,
            "truth_purchase": 0.85,
        }
        for seg in SEGMENTS
    }


def _run(seed: int, truth: dict, labels: dict) -> dict:
    return {"seed": seed, "truth": _segments(truth, 0.001), "labels": _segments(labels, 0.004)}


RUNS = [
    _run(
        7,
        {"all": (0.002, 0.0005), "new_sellers": (0.003, -0.001)},
        {"all": (0.002, -0.003), "new_sellers": (0.005, 0.001)},
    ),
    _run(
        1,
        {"all": (0.004, 0.003), "new_sellers": (0.002, 0.0015)},
        {"all": (0.001, 0.002), "new_sellers": (-0.002, 0.006)},
    ),
]


def test_tally_counts_cells_above_and_intervals_above_zero() -> None:
    t = tally(RUNS)
    # truth: 8 cells, 7 above 0 (seed 7's new-seller purchase is below); intervals (±0.001) clear 0
    # where the difference exceeds 0.001: 0.002, 0.003, 0.004, 0.003, 0.002, 0.0015
    assert t["truth"] == {"cells": 8, "above": 7, "interval_above": 6}
    # labels: two cells below 0; intervals (±0.004) clear 0 only at 0.005 and 0.006
    assert t["labels"] == {"cells": 8, "above": 6, "interval_above": 2}


def test_segments_page_states_the_tally_and_flags_a_cell_below() -> None:
    result = {"scale": 16, "config": "default", "runs": RUNS, "tally": tally(RUNS)}
    page = segments_report_html(result)
    assert "above LR in 7 of 8" in page and "on the labels in 6" in page
    assert "<img" in page  # the forest plot
    assert page.count("<td>new_sellers</td>") == 4  # one table row per run and head
    good = [
        _run(
            3,
            {"all": (0.002, 0.002), "new_sellers": (0.002, 0.002)},
            {"all": (0.002, 0.002), "new_sellers": (0.002, 0.002)},
        )
    ]
    assert segments_report_html({**result, "runs": good, "tally": tally(good)}) != page


def test_bench_page_verdict_reads_the_truth_when_present() -> None:
    sim = {"auc_vs_logistic": RUNS[0]["labels"], "auc_vs_logistic_truth": RUNS[0]["truth"]}
    page = ranker_report_html(sim)
    assert "against the hidden truth: above in 3 of 4" in page
    assert "on the labels above in 3" in page
    labels_only = ranker_report_html({"auc_vs_logistic": RUNS[1]["labels"]})
    assert "on the labels: above in 3 of 4" in labels_only
