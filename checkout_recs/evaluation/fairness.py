"""Fairness audit: exposure and clicks by seller cohort and by proxy audit bucket, over time.

Cohorts come from what the marketplace observes about a seller at impression time:

* ``new``        joined less than 30 days before the impression;
* ``incumbent``  joined more than 365 days before;
* ``regular``    in between.

Proxy audit buckets group sellers by attributes that can stand in for ones we must not rank on
(rating band, whether history was linked from elsewhere) so the audit can show that a group is not
buried through a proxy. Exposure is position-weighted, ``1 / log2(slot + 2)`` (slot 0 weighs 1),
the usual attention model of ranking-fairness work (Singh and Joachims 2018).

The disparity ratio of a cohort against a reference cohort is its exposure *per live listing*
divided by the reference's: 1.0 is parity, 0.5 means half the attention per listing. The
``published`` table is what the transparency page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from checkout_recs.evaluation.html_report import figure_tag, page, table_html

NEW_DAYS, INCUMBENT_DAYS = 30.0, 365.0
COHORTS = ("new", "regular", "incumbent")


def position_weight(slot: np.ndarray) -> np.ndarray:
    """Attention weight of each slot: (n,) int in [0, 6) -> (n,) float, ``1 / log2(slot + 2)``."""
    return 1.0 / np.log2(np.asarray(slot, dtype=float) + 2.0)


def seller_cohort(seller_age_days: np.ndarray) -> np.ndarray:
    """(n,) seller age at impression time, days -> (n,) cohort names (``COHORTS``)."""
    age = np.asarray(seller_age_days, dtype=float)
    return np.where(age < NEW_DAYS, "new", np.where(age > INCUMBENT_DAYS, "incumbent", "regular"))


def audit_bucket(rating: pd.Series, linked_history: pd.Series) -> pd.Series:
    """Proxy audit bucket: rating band x linked history (e.g. ``rated>=4.5|linked``)."""
    band = pd.cut(
        rating,
        [-np.inf, 4.0, 4.5, np.inf],
        labels=["rated<4", "rated4-4.5", "rated>=4.5"],
        right=False,
    )
    band = band.astype(str).where(rating.notna(), "unrated")
    return band + np.where(linked_history.astype(bool), "|linked", "|own")


def audit_frame(
    impressions: pd.DataFrame, listings: pd.DataFrame, sellers: pd.DataFrame
) -> pd.DataFrame:
    """One row per impression with ``day, cohort, bucket, exposure, clicked`` (+ ``policy``).

    ``impressions``: ``contract.IMPRESSIONS`` or ``LABELLED_IMPRESSIONS`` (``clicked`` is 0 when
    absent). Impressions of listings or sellers missing from the tables are dropped.
    """
    df = impressions.merge(listings[["listing_id", "seller_id"]], on="listing_id", how="inner")
    s = sellers.set_index("seller_id")
    df = df[df["seller_id"].isin(s.index)]
    age = (df["event_timestamp"] - df["seller_id"].map(s["joined_at"])).dt.total_seconds() / 86400.0
    clicked = df["clicked"] if "clicked" in df.columns else pd.Series(0, index=df.index)
    return pd.DataFrame(
        {
            "day": df["event_timestamp"].dt.floor("D"),
            "policy": df["policy"],
            "seller_id": df["seller_id"],
            "cohort": seller_cohort(age.to_numpy()),
            "bucket": audit_bucket(
                df["seller_id"].map(s["rating"]), df["seller_id"].map(s["linked_history"])
            ),
            "exposure": position_weight(df["slot"].to_numpy()),
            "clicked": clicked.astype(float),
        }
    ).reset_index(drop=True)


def live_listings_by_cohort(
    listings: pd.DataFrame, sellers: pd.DataFrame, at: pd.Timestamp
) -> pd.Series:
    """Listings listed by ``at`` per seller cohort at ``at`` (sold/delisted ones are not removed)."""
    live = listings[listings["listed_at"] <= at]
    joined = live["seller_id"].map(sellers.set_index("seller_id")["joined_at"])
    cohort = seller_cohort(((at - joined).dt.total_seconds() / 86400.0).to_numpy())
    return pd.Series(cohort).value_counts().reindex(list(COHORTS), fill_value=0)


def exposure_by_group(audit: pd.DataFrame, group: str, by_day: bool = False) -> pd.DataFrame:
    """Impressions, exposure, clicks and shares per ``group`` (``cohort`` or ``bucket``), per day if asked."""
    keys = ["day", group] if by_day else [group]
    g = audit.groupby(keys, observed=True).agg(
        impressions=("exposure", "size"), exposure=("exposure", "sum"), clicks=("clicked", "sum")
    )
    g = g.reset_index()
    total = g.groupby("day")["exposure"].transform("sum") if by_day else g["exposure"].sum()
    g["exposure_share"] = g["exposure"] / total
    g["ctr"] = g["clicks"] / g["impressions"]
    return g


def disparity_ratio(
    exposure: pd.Series, live: pd.Series, cohort: str = "new", reference: str = "incumbent"
) -> float:
    """Exposure per live listing of ``cohort`` / that of ``reference``; NaN when undefined."""
    per = exposure.reindex(live.index).fillna(0.0) / live.replace(0, np.nan)
    return float(per.get(cohort, np.nan) / per.get(reference, np.nan))


@dataclass
class FairnessAudit:
    """Everything the report and the transparency page need."""

    by_cohort: pd.DataFrame  # one row per cohort
    by_bucket: pd.DataFrame  # one row per proxy bucket
    daily: pd.DataFrame  # day x cohort exposure shares
    disparity_daily: pd.DataFrame  # day, new_vs_incumbent, regular_vs_incumbent
    live: pd.Series  # live listings per cohort at the end
    published: pd.DataFrame  # the transparency page's table


def run_audit(
    impressions: pd.DataFrame, listings: pd.DataFrame, sellers: pd.DataFrame
) -> FairnessAudit:
    """Audit exposure and clicks; raises ``ValueError`` when no impression can be attributed."""
    audit = audit_frame(impressions, listings, sellers)
    if audit.empty:
        raise ValueError("no impression matches a known listing and seller")
    end = audit["day"].max() + pd.Timedelta(days=1)
    live = live_listings_by_cohort(listings, sellers, end)
    by_cohort = exposure_by_group(audit, "cohort")
    daily = exposure_by_group(audit, "cohort", by_day=True)
    rows = []
    for day, part in daily.groupby("day"):
        exp = part.set_index("cohort")["exposure"]
        live_d = live_listings_by_cohort(listings, sellers, day + pd.Timedelta(days=1))
        rows.append(
            {"day": day, "new_vs_incumbent": disparity_ratio(exp, live_d),
             "regular_vs_incumbent": disparity_ratio(exp, live_d, "regular")}
        )  # fmt: skip
    exp_all = by_cohort.set_index("cohort")["exposure"]
    published = by_cohort.assign(
        live_listings=by_cohort["cohort"].map(live).fillna(0).astype(int),
        exposure_per_listing=lambda d: d["exposure"] / d["live_listings"].replace(0, np.nan),
        disparity_vs_incumbent=lambda d: [disparity_ratio(exp_all, live, c) for c in d["cohort"]],
    )[
        [
            "cohort",
            "live_listings",
            "impressions",
            "exposure_share",
            "exposure_per_listing",
            "ctr",
            "disparity_vs_incumbent",
        ]
    ]
    return FairnessAudit(
        by_cohort=by_cohort,
        by_bucket=exposure_by_group(audit, "bucket"),
        daily=daily,
        disparity_daily=pd.DataFrame(rows),
        live=live,
        published=published,
    )


def write_report(audit: FairnessAudit, out_dir: Path, title: str = "Seller fairness audit") -> Path:
    """Write ``fairness_report.html`` (plots embedded) and ``fairness_summary.json``; returns the HTML path."""
    import matplotlib  # lazy: matplotlib costs ~0.5 s and only the HTML reports need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~0.5 s and only the HTML reports need it

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
    shares = audit.daily.pivot(index="day", columns="cohort", values="exposure_share")
    shares.plot(ax=ax[0], marker="o", title="Exposure share by seller cohort")
    audit.disparity_daily.set_index("day").plot(
        ax=ax[1], marker="o", title="Exposure per listing vs incumbents"
    )
    ax[1].axhline(1.0, color="grey", ls="--", lw=1)
    sections = [
        ("Published figures (transparency page)", table_html(audit.published)),
        ("Over time", figure_tag(fig, "exposure over time")),
        ("By proxy audit bucket", table_html(audit.by_bucket)),
        (
            "Method",
            "<p class='note'>" + (__doc__ or "").replace("\n\n", "</p><p class='note'>") + "</p>",
        ),
    ]
    new_ratio = audit.published.set_index("cohort")["disparity_vs_incumbent"].get("new", np.nan)
    verdict = f"New sellers get {new_ratio:.2f}x the exposure per listing of incumbents"
    html_path = out_dir / "fairness_report.html"
    html_path.write_text(page(title, sections, verdict, ok=bool(new_ratio >= 0.8)))
    summary = {
        "published": audit.published.to_dict(orient="records"),
        "by_bucket": audit.by_bucket.to_dict(orient="records"),
        "disparity_daily": audit.disparity_daily.assign(day=lambda d: d["day"].astype(str)).to_dict(
            orient="records"
        ),
    }
    (out_dir / "fairness_summary.json").write_text(
        pd.Series(summary).to_json(indent=2, default_handler=str)
    )
    return html_path
