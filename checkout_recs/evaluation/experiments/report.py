"""HTML reports of experiments: A/B lifts with intervals, geo DiD with the parallel-trends view.

``ab_report`` and ``geo_report`` take the analysis results (``experiments.analyze_ab``,
``did.diff_in_diff``, optionally ``did.geo_inference``) and write one self-contained HTML file
with embedded PNG plots; ``inference_sections`` renders a ``GeoInference`` as report sections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from checkout_recs.evaluation.experiments.did import DidResult, daily_arm_means
from checkout_recs.evaluation.experiments.did_inference import GeoInference
from checkout_recs.evaluation.html_report import figure_tag, page, table_html


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def lift_plot(results: pd.DataFrame) -> str:
    """Forest plot of relative lifts with intervals, one row per (metric, method)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(results) + 1))
    y = np.arange(len(results))
    lift = results["lift"].to_numpy() * 100
    ax.errorbar(
        lift, y,
        xerr=[lift - results["lift_lower"] * 100, results["lift_upper"] * 100 - lift],
        fmt="o", capsize=3,
    )  # fmt: skip
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(
        y, [f"{m} ({k})" for m, k in zip(results["metric"], results["method"], strict=True)]
    )
    ax.set_xlabel("relative lift, % (95% interval)")
    return figure_tag(fig, "lifts")


def ab_report(
    results: pd.DataFrame, out: Path, title: str, power: pd.DataFrame | None = None
) -> Path:
    """Write the A/B report to ``out`` (an .html path); returns it."""
    sig = results[(results["method"] == "delta") & (results["lift_lower"] > 0)]["metric"].tolist()
    verdict = f"significant gains: {', '.join(sig)}" if sig else "no metric significantly improved"
    sections = [("Lifts", lift_plot(results)), ("Table", table_html(results))]
    if power is not None:
        sections.append(("Power", table_html(power)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(title, sections, verdict, ok=bool(sig)))
    return out


def did_plots(
    panel: pd.DataFrame, arms: dict[str, str], start: object, value: str, result: DidResult
) -> str:
    """Two panels: daily means treated vs control, and the log-ratio with pre-period trend."""
    plt = _plt()
    daily = daily_arm_means(panel, arms, value)
    fig, ax = plt.subplots(1, 2, figsize=(13, 4))
    daily.plot(ax=ax[0], title=f"daily {value} per region", marker=".")
    diff = (
        np.log(daily["treatment"]) - np.log(daily["control"])
        if result.scale == "log"
        else (daily["treatment"] - daily["control"])
    )
    ax[1].plot(daily.index, diff, marker=".", label="treated - control")
    pre = np.asarray(daily.index < start)
    x = np.arange(pre.sum())
    slope, icpt = np.polyfit(x, diff[pre], 1)
    ax[1].plot(daily.index[pre], icpt + slope * x, color="black", lw=1, label="pre-period trend")
    for a in ax:
        a.axvline(start, color="red", ls="--", lw=1)
    ax[1].set_title(
        f"{result.scale} difference (parallel trends: {'ok' if result.parallel_trends.passed else 'FAILED'})"
    )
    ax[1].legend()
    return figure_tag(fig, "did")


def geo_report(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    result: DidResult,
    out: Path,
    title: str,
    value: str = "gmv",
    extra: list[tuple[str, str]] | None = None,
    inference: GeoInference | None = None,
) -> Path:
    """Write the geo-holdout DiD report to ``out``; ``extra`` sections are appended.

    With ``inference`` (``did.geo_inference`` of the same panel and value) the estimate table
    gains the HAC and region-clustered intervals and the permutation p-value, and sections for the
    permutation test, the placebo periods and the power table follow the trends plot.
    """
    pt = result.parallel_trends
    robust = [] if inference is None else _robust_rows(inference)
    rows = pd.DataFrame(
        [
            ("uplift", result.uplift), ("95% interval (days as units)", f"[{result.lower:+.3f}, {result.upper:+.3f}]"),
            ("95% interval (day-block bootstrap)", f"[{result.boot_lower:+.3f}, {result.boot_upper:+.3f}]"),
            *robust,
            ("p-value", result.p_value), ("incremental total", result.incremental_total),
            ("pre / post days", f"{result.n_pre_days} / {result.n_post_days}"),
            ("treated regions", ", ".join(result.treated_regions)),
            ("holdout regions", ", ".join(result.control_regions)),
            ("pre-trend slope (p)", f"{pt.slope_per_day:+.4f} (p={pt.slope_p_value:.2f})"),
            ("placebo uplift", f"{pt.placebo_uplift:+.3f} [{pt.placebo_lower:+.3f}, {pt.placebo_upper:+.3f}]"),
        ],
        columns=["quantity", "value"],
    )  # fmt: skip
    verdict = f"DiD uplift {result.uplift:+.1%} [{result.lower:+.1%}, {result.upper:+.1%}]"
    if not pt.passed:
        verdict += " - parallel trends FAILED: do not trust"
    sections = [
        ("Estimate", table_html(rows)),
        ("Trends", did_plots(panel, arms, start, value, result)),
    ]
    sections += [] if inference is None else inference_sections(inference, value)
    sections += extra or []
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(title, sections, verdict, ok=pt.passed and result.lower > 0))
    return out


def _robust_rows(inf: GeoInference) -> list[tuple[str, str]]:
    """Estimate-table rows: the regression intervals and the permutation p-value."""
    rows = [(f"95% interval ({r.method}; t, {r.df:.0f} df)", f"{r.uplift:+.3f} [{r.lower:+.3f}, {r.upper:+.3f}]")
            for r in (inf.hac, inf.cluster) if r is not None]  # fmt: skip
    if inf.cluster is None:
        rows.append(("region-clustered interval", f"not computed: {inf.cluster_note}"))
    p = inf.permutation
    rows.append((f"permutation p over {p.n_assignments} region assignments (one / two-sided)",
                 f"{p.p_one_sided:.3f} / {p.p_two_sided:.3f} (smallest possible {p.min_p_one_sided:.3f} / "
                 f"{p.min_p_two_sided:.3f})"))  # fmt: skip
    return rows


def inference_sections(inf: GeoInference, what: str) -> list[tuple[str, str]]:
    """(heading, html) sections of a ``GeoInference`` of metric ``what``: the intervals, the
    permutation over region assignments, the placebo periods and the power by number of regions."""
    p, pl = inf.permutation, inf.placebo
    intervals = pd.DataFrame([{"method": r.method, "uplift": r.uplift, "lower": r.lower, "upper": r.upper,
                               "se (delta)": r.se, "p": r.p_value, "df": r.df}
                              for r in (inf.hac, inf.cluster) if r is not None])  # fmt: skip
    perm = pd.DataFrame([{"treated": ", ".join(a["treated"]), "uplift": a["uplift"],
                          "ran": "yes" if a["observed"] else ""} for a in p.assignments])  # fmt: skip
    perm_note = (
        f"<p class='note'>{p.n_assignments} assignments ({'all' if p.exhaustive else 'random draws'}); "
        f"p one-sided {p.p_one_sided:.3f}, two-sided {p.p_two_sided:.3f}. With these regions no p-value can be "
        f"below {p.min_p_one_sided:.3f} one-sided or {p.min_p_two_sided:.3f} two-sided, whatever the effect.</p>"
    )
    placebo = pd.DataFrame({"placebo start": [str(s) for s in pl.starts], "uplift": pl.uplifts,
                            "lower": pl.lowers, "upper": pl.uppers})  # fmt: skip
    placebo_note = (
        f"<p class='note'>Pre-period only, nothing treated: mean {pl.mean_uplift:+.3f}, largest "
        f"|uplift| {pl.max_abs_uplift:.3f}; {pl.share_covering_zero:.0%} of the intervals cover 0; "
        f"share of placebo estimates as large as the real one {pl.p_in_time:.2f}.</p>"
    )
    m = inf.power_model
    power_note = (
        f"<p class='note'>Pre-period two-way FE residuals: variance {m['s2']:.4g} per region-day, "
        f"lag-1 autocorrelation {m['rho']:.2f}; the model's standard error for the design that ran "
        f"{m['model_se']:.4g} against the DiD's {m['welch_se']:.4g}. MDE: two-sided 5%, power 80%; "
        "'same size' adds regions as large as today's, 'same traffic' cuts today's traffic finer.</p>"
    )
    return [
        (f"Intervals beside the day-level one ({what})", table_html(intervals)),
        (f"Permutation over region assignments ({what})", table_html(perm) + perm_note),
        (f"Placebo periods ({what})", table_html(placebo) + placebo_note),
        (f"Power by number of regions ({what})", table_html(pd.DataFrame(inf.power)) + power_note),
    ]
