"""The page of ``faiss_scale.py``: recall vs latency per size, the figures, the targets."""

from __future__ import annotations

from pathlib import Path

K = 300


def report(results: dict[str, dict], out: Path) -> Path:
    """One HTML page over the sizes in ``results`` (label → a ``bench`` output): recall vs
    latency per nprobe, the figures table and the targets; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from checkout_recs.evaluation.html_report import figure_tag, page, table_html

    fig, ax = plt.subplots(figsize=(7, 4))
    for lab, res in results.items():
        rows = res["sweep_region"]
        ax.plot([r["p50_ms"] for r in rows], [r[f"recall@{K}"] for r in rows], "o-", label=lab)
        for r in rows:
            ax.annotate(
                str(r["nprobe"]),
                (r["p50_ms"], r[f"recall@{K}"]),
                fontsize=8,
                xytext=(3, -10),
                textcoords="offset points",
            )
    ax.axhline(0.95, color="grey", ls="--", lw=1)
    ax.axvline(2.0, color="grey", ls=":", lw=1)
    ax.set(
        xlabel="p50 ms per single query in its region's shard (one thread)",
        ylabel=f"recall@{K} vs exact float32",
        title="IVF-SQ8 shards + exact re-rank (labels: nprobe)",
    )
    ax.legend(loc="lower right")
    facts = pd.DataFrame([_facts(lab, res) for lab, res in results.items()]).set_index("figure").T
    sections = [
        ("Recall vs latency", figure_tag(fig, "recall vs latency")),
        (
            "Figures (load = 1-min load average of the shared 2-core box)",
            table_html(facts.T.reset_index()),
        ),
    ]
    for lab, res in results.items():
        sections.append((f"nprobe sweep, {lab}", table_html(pd.DataFrame(res["sweep_region"]))))
    ok = all(targets(res)["all_met"] for res in results.values())
    verdict = "; ".join(f"{lab}: {targets(res)}" for lab, res in results.items())
    Path(out).write_text(page("Retrieval index at scale", sections, verdict=verdict, ok=ok))
    return Path(out)


def targets(res: dict) -> dict:
    """The issue's targets against one size's figures (build on 2 cores: CPU-s / 2 as well)."""
    at, b = res["at_config"], res["build"]
    t = {
        "recall@300>=0.95": at[f"recall@{K}"] >= 0.95,
        "p50<=2ms": at["p50_ms"] <= 2.0,
        "p95<=2ms": at["p95_ms"] <= 2.0,
        "build<=600s wall": b["wall_s"] <= 600,
        "build<=600s CPU/2": b["cpu_s"] / 2 <= 600,
        "index+snapshot<=4GB": res["loaded"]["index_plus_snapshot_bytes"] <= 4e9,
        "loaded RSS<=4GB": res["loaded"]["rss_added"] <= 4e9,
    }
    t["all_met"] = all(t.values())
    return t


def _facts(lab: str, res: dict) -> dict:
    at, b, ar, ld = res["at_config"], res["build"], res["add_remove"], res["loaded"]
    return {
        "figure": lab,
        "listings": res["catalogue"]["rows"],
        "build wall s (load start/end)": f"{b['wall_s']:.0f} ({b['load_1m_start_end']})",
        "build CPU s": round(b["cpu_s"]),
        f"recall@{K} (nprobe {at['nprobe']})": round(at[f"recall@{K}"], 4),
        "p50 / p95 / p99 ms (load)": f"{at['p50_ms']:.2f} / {at['p95_ms']:.2f} / {at['p99_ms']:.2f} ({at['load_1m']})",
        "no region (all shards): recall, p50 ms": f"{res['no_region'][f'recall@{K}']:.4f}, {res['no_region']['p50_ms']:.2f}",
        "category: recall, p50 ms": f"{res['category']['recall_vs_exact']:.4f}, {res['category']['p50_ms']:.2f}",
        "index + snapshot GB (by part)": f"{ld['index_plus_snapshot_bytes'] / 1e9:.2f} "
        f"(faiss {ld['faiss'] / 1e9:.2f}, store {ld['store'] / 1e9:.2f}, categories {ld['categories'] / 1e9:.2f}, snapshot {ld['snapshot'] / 1e9:.2f})",
        "RSS added by load GB": round(ld["rss_added"] / 1e9, 2),
        "peak RSS of the run GB": round(res["peak_rss_bytes"] / 1e9, 2),
        "remove / add 10k wall s": f"{ar['remove_wall_s']:.2f} / {ar['add_wall_s']:.2f}",
        f"recall@{K} after add/remove": round(ar[f"recall@{K}_after"], 4),
        "removed listings returned": ar["removed_returned"],
    }
