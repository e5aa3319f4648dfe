"""HTML report of the ranker on the simulator: head AUC vs logistic regression with intervals,
the ablation, the student. Input: the ``sim`` section ``benchmarks/models.py`` writes."""

from __future__ import annotations

import pandas as pd

from checkout_recs.evaluation.html_report import figure_tag, page, table_html

HEADS = ("click", "purchase")


def auc_table(aucs: dict[str, dict]) -> pd.DataFrame:
    """One row per (segment, head): counts, AUCs with 95% intervals, the paired difference."""
    rows = []
    for seg, r in aucs.items():
        for head in HEADS:
            ci = r[f"{head}_ci"]
            rows.append(
                {
                    "segment": seg,
                    "head": head,
                    "rows": r["n"],
                    "positives": r[f"n_{head}"],
                    "ranker AUC": f"{ci['auc']:.3f} [{ci['auc_lo']:.3f}, {ci['auc_hi']:.3f}]",
                    "LR AUC": f"{ci['base_auc']:.3f} [{ci['base_lo']:.3f}, {ci['base_hi']:.3f}]",
                    "ranker − LR": _interval(ci),
                    "P(ranker better)": ci["p_model_better"],
                }
            )
    return pd.DataFrame(rows)


def truth_table(truth_aucs: dict[str, dict]) -> pd.DataFrame:
    """One row per (segment, head): expected AUC against the hidden truth, ranker and LR, the
    paired difference with its interval, and the truth's own (the ceiling)."""
    rows = []
    for seg, r in truth_aucs.items():
        for head in HEADS:
            ci = r[f"{head}_ci"]
            rows.append(
                {
                    "segment": seg,
                    "head": head,
                    "rows": r["n"],
                    "ranker": ci["auc"],
                    "LR": ci["base_auc"],
                    "ranker − LR": _interval(ci),
                    "truth (ceiling)": r[f"truth_{head}"],
                }
            )
    return pd.DataFrame(rows)


def ablation_table(ablation: dict) -> pd.DataFrame:
    """One row per configuration: mean AUC difference vs LR per segment and head (wins / runs)."""
    n = ablation["n_runs"]
    rows = []
    for name, c in ablation["configs"].items():
        row: dict = {
            "configuration": name,
            "deep epochs": " ".join(f"{e:.0f}" for e in c["deep_epochs"]),
        }
        for seg, v in c["segments"].items():
            for head in HEADS:
                row[f"{seg} {head}"] = f"{v[f'diff_{head}']:+.4f} ({v[f'wins_{head}']}/{n})"
                if f"truth_diff_{head}" in v:
                    row[f"{seg} {head} vs truth"] = (
                        f"{v[f'truth_diff_{head}']:+.4f} ({v[f'truth_wins_{head}']}/{n})"
                    )
        rows.append(row)
    return pd.DataFrame(rows)


def _forest(rows: list[tuple[str, dict]], xlabel: str) -> str:
    """A forest plot: one line per ``(label, paired_auc_bootstrap result)``, the difference and its interval."""
    import matplotlib  # lazy: matplotlib costs ~0.5 s and only the HTML reports need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~0.5 s and only the HTML reports need it

    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.3 * len(rows)))
    for i, (_, ci) in enumerate(rows):
        ax.errorbar(
            ci["diff"],
            i,
            xerr=[[ci["diff"] - ci["diff_lo"]], [ci["diff_hi"] - ci["diff"]]],
            fmt="o",
            color="#1b7f3b" if ci["diff_lo"] > 0 else "#555",
        )
    ax.axvline(0, color="#b00020", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return figure_tag(fig, "ranker minus LR AUC per segment and head")


_LABELS_X = "AUC ranker − logistic regression (95% paired bootstrap, requests resampled)"
_TRUTH_X = "expected AUC against the truth, ranker − logistic regression (95% paired bootstrap)"


def cells(aucs: dict[str, dict], prefix: str = "") -> list[tuple[str, dict]]:
    """``(label, interval)`` per segment × head of a ``head_auc_vs_logistic`` / ``truth_auc_vs_logistic`` result."""
    return [(f"{prefix}{seg} / {h}", aucs[seg][f"{h}_ci"]) for seg in aucs for h in HEADS]


def count_above(rows: list[tuple[str, dict]]) -> dict[str, int]:
    """``{"cells", "above", "interval_above"}``: how many ``(label, interval)`` rows have ranker − LR
    above 0, and how many have the whole 95% interval above 0."""
    return {
        "cells": len(rows),
        "above": sum(ci["diff"] > 0 for _, ci in rows),
        "interval_above": sum(ci["diff_lo"] > 0 for _, ci in rows),
    }


def ranker_report_html(sim: dict) -> str:
    """The page for ``sim`` (``bench_sim``'s result: ``auc_vs_logistic``, ``ranker_ablation``,
    ``student``)."""
    aucs = sim["auc_vs_logistic"]
    sections = [
        (
            "Head AUC vs logistic regression (bench run)",
            _forest(cells(aucs), _LABELS_X) + table_html(auc_table(aucs)),
        )
    ]
    if "auc_vs_logistic_truth" in sim:
        sections.append(
            (
                "Expected AUC against the hidden truth (label noise removed)",
                table_html(truth_table(sim["auc_vs_logistic_truth"])),
            )
        )
    if "ranker_ablation" in sim:
        ab = sim["ranker_ablation"]
        sections.append(
            (
                f"Ablation: mean AUC difference vs LR over simulation seeds {ab.get('sim_seeds')}",
                table_html(ablation_table(ab)),
            )
        )
    st = sim.get("student", {})
    if st:
        lat = st.get("latency_300_candidates", {})
        rows = [{"model": k.replace("_ms", ""), "ms / 300 candidates": v} for k, v in lat.items()]
        note = (
            f"<p>student − teacher AUC: click {st['auc'].get('click_vs_teacher', float('nan')):+.4f}, "
            f"purchase {st['auc'].get('purchase_vs_teacher', float('nan')):+.4f}</p>"
        )
        sections.append(("Student", note + table_html(pd.DataFrame(rows))))
    main = count_above(cells(sim.get("auc_vs_logistic_truth", aucs)))
    kind = "against the hidden truth" if "auc_vs_logistic_truth" in sim else "on the labels"
    verdict = (
        f"ranker − LR {kind}: above in {main['above']} of {main['cells']} segment × head cells, interval "
        f"above 0 in {main['interval_above']}; on the labels above in {count_above(cells(aucs))['above']}"
    )
    return page("Ranker on the simulator", sections, verdict, ok=main["above"] == main["cells"])


def segments_report_html(result: dict) -> str:
    """The page for ``benchmarks/ranker_segments.py``'s result: per run, ranker − LR per segment and
    head against the hidden truth (forest plot and table) and on the logged labels, with the tally."""
    runs, t = result["runs"], result["tally"]
    truth_rows = [c for r in runs for c in cells(r["truth"], f"seed {r['seed']}: ")]
    table = pd.DataFrame(
        [
            {
                "seed": r["seed"],
                "segment": seg,
                "head": h,
                "rows": r["labels"][seg]["n"],
                "positives": r["labels"][seg][f"n_{h}"],
                "vs truth": _interval(r["truth"][seg][f"{h}_ci"]),
                "on labels": _interval(r["labels"][seg][f"{h}_ci"]),
            }
            for r in runs
            for seg in r["truth"]
            for h in HEADS
        ]
    )
    summary = "".join(
        f"<p>{kind}: above in {v['above']} of {v['cells']} cells, interval above 0 in "
        f"{v['interval_above']}</p>"
        for kind, v in t.items()
    )
    sections = [
        (
            f"Ranker − LR against the truth, {len(runs)} runs (scale {result['scale']}×, {result['config']})",
            summary + _forest(truth_rows, _TRUTH_X),
        ),
        ("Every run, segment and head", table_html(table)),
    ]
    ok = t["truth"]["above"] == t["truth"]["cells"]
    verdict = (
        f"against the truth the ranker is above LR in {t['truth']['above']} of {t['truth']['cells']} "
        f"run × segment × head cells; on the labels in {t['labels']['above']}"
    )
    return page("Ranker vs logistic regression per segment, several runs", sections, verdict, ok=ok)


def _interval(ci: dict) -> str:
    return f"{ci['diff']:+.4f} [{ci['diff_lo']:+.4f}, {ci['diff_hi']:+.4f}]"
