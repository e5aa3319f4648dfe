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
            rows.append({"segment": seg, "head": head, "rows": r["n"], "positives": r[f"n_{head}"],
                         "ranker AUC": f"{ci['auc']:.3f} [{ci['auc_lo']:.3f}, {ci['auc_hi']:.3f}]",
                         "LR AUC": f"{ci['base_auc']:.3f} [{ci['base_lo']:.3f}, {ci['base_hi']:.3f}]",
                         "ranker − LR": f"{ci['diff']:+.4f} [{ci['diff_lo']:+.4f}, {ci['diff_hi']:+.4f}]",
                         "P(ranker better)": ci["p_model_better"]})
    return pd.DataFrame(rows)


def truth_table(truth_aucs: dict[str, dict]) -> pd.DataFrame:
    """One row per (segment, head): expected AUC against the hidden truth, ranker and LR, the
    paired difference with its interval, and the truth's own (the ceiling)."""
    rows = []
    for seg, r in truth_aucs.items():
        for head in HEADS:
            ci = r[f"{head}_ci"]
            rows.append({"segment": seg, "head": head, "rows": r["n"], "ranker": ci["auc"], "LR": ci["base_auc"],
                         "ranker − LR": f"{ci['diff']:+.4f} [{ci['diff_lo']:+.4f}, {ci['diff_hi']:+.4f}]",
                         "truth (ceiling)": r[f"truth_{head}"]})
    return pd.DataFrame(rows)


def ablation_table(ablation: dict) -> pd.DataFrame:
    """One row per configuration: mean AUC difference vs LR per segment and head (wins / runs)."""
    n = ablation["n_runs"]
    rows = []
    for name, c in ablation["configs"].items():
        row: dict = {"configuration": name, "deep epochs": " ".join(f"{e:.0f}" for e in c["deep_epochs"])}
        for seg, v in c["segments"].items():
            for head in HEADS:
                row[f"{seg} {head}"] = f"{v[f'diff_{head}']:+.4f} ({v[f'wins_{head}']}/{n})"
                if f"truth_diff_{head}" in v:
                    row[f"{seg} {head} vs truth"] = f"{v[f'truth_diff_{head}']:+.4f} ({v[f'truth_wins_{head}']}/{n})"
        rows.append(row)
    return pd.DataFrame(rows)


def _forest(aucs: dict[str, dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = []
    for i, (seg, head) in enumerate((s, h) for s in aucs for h in HEADS):
        ci = aucs[seg][f"{head}_ci"]
        ax.errorbar(ci["diff"], i, xerr=[[ci["diff"] - ci["diff_lo"]], [ci["diff_hi"] - ci["diff"]]],
                    fmt="o", color="#1b7f3b" if ci["diff_lo"] > 0 else "#555")
        labels.append(f"{seg} / {head}")
    ax.axvline(0, color="#b00020", lw=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("AUC ranker − logistic regression (95% paired bootstrap, requests resampled)")
    return figure_tag(fig, "ranker minus LR AUC per segment and head")


def ranker_report_html(sim: dict) -> str:
    """The page for ``sim`` (``bench_sim``'s result: ``auc_vs_logistic``, ``ranker_ablation``,
    ``student``)."""
    aucs = sim["auc_vs_logistic"]
    above = all(aucs[s][f"{h}_ci"]["diff_lo"] > 0 for s in aucs for h in HEADS)
    sections = [("Head AUC vs logistic regression (bench run)", _forest(aucs) + table_html(auc_table(aucs)))]
    if "auc_vs_logistic_truth" in sim:
        sections.append(("Expected AUC against the hidden truth (label noise removed)",
                         table_html(truth_table(sim["auc_vs_logistic_truth"]))))
    if "ranker_ablation" in sim:
        ab = sim["ranker_ablation"]
        sections.append((f"Ablation: mean AUC difference vs LR over simulation seeds {ab.get('sim_seeds')}",
                         table_html(ablation_table(ab))))
    st = sim.get("student", {})
    if st:
        lat = st.get("latency_300_candidates", {})
        rows = [{"model": k.replace("_ms", ""), "ms / 300 candidates": v} for k, v in lat.items()]
        note = (f"<p>student − teacher AUC: click {st['auc'].get('click_vs_teacher', float('nan')):+.4f}, "
                f"purchase {st['auc'].get('purchase_vs_teacher', float('nan')):+.4f}</p>")
        sections.append(("Student", note + table_html(pd.DataFrame(rows))))
    verdict = ("ranker above LR in every segment and head (interval above 0)" if above else
               "not shown above LR in every segment and head: see the intervals")
    return page("Ranker on the simulator", sections, verdict, ok=above)
