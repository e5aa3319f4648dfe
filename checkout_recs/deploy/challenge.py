"""Challenger vs champion on the same held-out logs, and the gate that decides between them.

The evaluate step runs ``evaluate_side_by_side``: the new model and the current champion (the
MLflow ``champion`` alias, downloaded by ``tracking.champion_model_dir``) are scored on the same
held-out impressions with the same code: offline metrics (``evaluation.offline.evaluate_run``:
AUCs, NDCG@6, revenue proxy, each also for the logged order as ``logged_*``) and off-policy
estimates of each model's greedy order (``evaluation.ope_heldout.ranker_greedy_ope``: SNIPS, DR
and the effective sample size). The register step runs ``challenger_gate`` on that result:

* with a champion: ``tracking.promotion_gate`` (every gated metric within ``tolerance`` of the
  champion's), plus the DR estimate of purchases per impression within ``ope_tolerance`` when
  both effective sample sizes reach ``min_ess`` (below it the estimate is too noisy to decide);
* without one (the first model): a floor — both AUCs above chance (0.5). Everything compared
  with the logged policy is reported, not gated: the logged order's own NDCG and revenue proxy
  (``logged_*``) are scored on clicks its own positions caused (position bias), so it wins that
  comparison by construction; and the held-out OPE of the greedy order against the on-policy
  mean is not gated by default either (``first_model_ope=True`` gates it), because on the demo
  simulation it put the model at 0.005 purchases per impression against the logged policy's
  0.026 (ESS 209) while the simulator's hidden truth rates the same model 1.5x the logged
  heuristic: one estimator's disagreement with the truth is not a reason to refuse. Against a
  champion the same estimator scores both sides, so its bias largely cancels.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from checkout_recs.evaluation.ope.heldout import ranker_greedy_ope
from checkout_recs.tracking import GateDecision, finite_metrics, promotion_gate

#: Metrics the logged policy has on the same logs (its slot order): reported for a first model.
LOGGED_REPORTED = ("ndcg@6", "expected_revenue@6")
#: A first model must rank better than chance on each head.
CHANCE_FLOOR = {"auc_click": 0.5, "auc_purchase": 0.5}
OPE_GATED = "ope_dr_purchase"


def model_metrics(
    model_dir: Path, held_out: pd.DataFrame, work_dir: Path
) -> tuple[dict[str, float], Path]:
    """Offline metrics and OPE of one model folder (``train_all`` layout) on ``held_out``.

    Returns ``(metrics, report_html_path)``; metrics are finite floats only (NaN dropped).
    """
    from checkout_recs.evaluation.ranking.offline import (
        evaluate_run,  # lazy: keeps scipy, torch out of this module's import
    )
    from checkout_recs.models.ranker import (
        RankerModel,
    )  # lazy: keeps torch out of this module's import

    work_dir.mkdir(parents=True, exist_ok=True)
    test_path = work_dir / "held_out.parquet"
    if not test_path.exists():
        held_out.to_parquet(test_path)
    result = evaluate_run(model_dir, test_path, work_dir / "eval")
    out = finite_metrics(result["overall"])
    ranker = model_dir / "ranker" if (model_dir / "ranker").is_dir() else model_dir
    ope = ranker_greedy_ope(RankerModel.load(ranker), held_out)
    out.update(finite_metrics(ope))
    out["n_rows"] = float(result["n_rows"])
    return out, work_dir / "eval" / "report.html"


def evaluate_side_by_side(
    challenger_dir: Path,
    held_out: pd.DataFrame,
    work_dir: Path,
    champion_dir: Path | None = None,
    champion_version: str | None = None,
) -> dict[str, Any]:
    """Challenger and champion on the same held-out rows.

    Parameters
    ----------
    challenger_dir, champion_dir : model folders (``train_all`` layout); ``champion_dir`` None
        when there is no champion.
    held_out : labelled impressions with ranker features (the time split training held out).
    champion_version : the champion's registry version, kept in the result.

    Returns
    -------
    dict
        ``challenger`` (metrics), ``champion`` (metrics, or None when absent or not evaluable on
        these rows), ``champion_version``, ``champion_note`` (why the champion has no metrics),
        ``report_html`` (path of the comparison page).
    """
    chal, chal_report = model_metrics(Path(challenger_dir), held_out, work_dir / "challenger")
    champ, note = None, "" if champion_dir else "no champion: gated against the logged policy"
    if champion_dir is not None:
        try:
            champ, _ = model_metrics(Path(champion_dir), held_out, work_dir / "champion")
        except (
            KeyError,
            ValueError,
            RuntimeError,
            FileNotFoundError,
        ) as e:  # e.g. a feature it needs is gone
            note = f"champion {champion_version} could not be scored on these logs: {type(e).__name__}: {e}"
    page = work_dir / "report.html"
    page.write_text(comparison_html(chal, champ, note, chal_report.read_text()))
    return {
        "challenger": chal,
        "champion": champ,
        "champion_version": champion_version,
        "champion_note": note,
        "report_html": str(page),
    }


def challenger_gate(
    evaluation: dict[str, Any],
    tolerance: float = 0.005,
    ope_tolerance: float = 0.10,
    min_ess: float = 100.0,
    champion_fallback: dict[str, float] | None = None,
    first_model_ope: bool = False,
) -> GateDecision:
    """Gate the challenger of an ``evaluate_side_by_side`` result (see the module docstring).

    ``champion_fallback``: the champion's logged metrics, used only when a champion exists
    (``champion_version`` set) but could not be scored on these logs; the reasons say so.
    ``first_model_ope``: also gate a first model (no champion) on its DR estimate vs the logged
    policy's on-policy mean (off by default; the module docstring says why).
    Returns the decision; ``compared`` holds (challenger, reference) per gated metric.
    """
    chal: dict[str, float] = evaluation["challenger"]
    champ: dict[str, float] | None = evaluation.get("champion")
    notes = [evaluation["champion_note"]] if evaluation.get("champion_note") else []
    if champ is None and evaluation.get("champion_version") and champion_fallback:
        champ = champion_fallback
        notes.append("gated against the champion's logged metrics")
    if champ is not None:
        decision = promotion_gate(chal, champ, tolerance)
        ope_ref, ess_ref, label = champ.get(OPE_GATED), champ.get("ope_ess"), "champion"
    else:
        decision = _chance_floor(chal)
        ope_ref, ess_ref, label = (
            chal.get("ope_logged_purchase"),
            chal.get("ope_ess"),
            "logged policy",
        )
    if champ is None and not first_model_ope:
        decision.reasons.append(
            f"{OPE_GATED}: {chal.get(OPE_GATED, math.nan):.4g} vs logged "
            f"{chal.get('ope_logged_purchase', math.nan):.4g} (ESS "
            f"{chal.get('ope_ess', math.nan):.0f}), reported, not gated for a first model"
        )
    else:
        _ope_check(
            decision,
            chal.get(OPE_GATED),
            chal.get("ope_ess"),
            ope_ref,
            ess_ref,
            label,
            ope_tolerance,
            min_ess,
        )
    decision.reasons = notes + [f"vs {label}: {r}" for r in decision.reasons]
    return decision


def _chance_floor(chal: dict[str, float]) -> GateDecision:
    decision = GateDecision(promote=True)
    for name, floor in CHANCE_FLOOR.items():
        value = chal.get(name)
        if value is None or math.isnan(value):
            decision.promote = False
            decision.reasons.append(f"{name}: no value on the held-out rows")
        elif value <= floor:
            decision.promote = False
            decision.reasons.append(f"{name}: {value:.4f} ≤ {floor} (no better than chance)")
        else:
            decision.reasons.append(f"{name}: {value:.4f} > {floor} (better than chance)")
    for name in LOGGED_REPORTED:
        if name in chal and f"logged_{name}" in chal:
            decision.reasons.append(
                f"{name}: {chal[name]:.4f} vs logged order {chal['logged_' + name]:.4f} "
                "(reported, not gated: position-biased towards the logged order)"
            )
    return decision


def _ope_check(
    decision: GateDecision,
    value: float | None,
    ess: float | None,
    ref: float | None,
    ref_ess: float | None,
    label: str,
    tolerance: float,
    min_ess: float,
) -> None:
    if value is None or ref is None:
        decision.reasons.append(f"{OPE_GATED}: not available on both sides, not gated")
        return
    low_ess = min(ess or 0.0, ref_ess if ref_ess is not None else math.inf)
    if low_ess < min_ess:
        decision.reasons.append(
            f"{OPE_GATED}: {value:.4g} vs {ref:.4g}, not gated (ESS {low_ess:.0f} < {min_ess:.0f})"
        )
        return
    decision.compared[OPE_GATED] = (value, ref)
    floor = ref - abs(ref) * tolerance
    if value < floor:
        decision.promote = False
        decision.reasons.append(
            f"{OPE_GATED}: {value:.4g} < {floor:.4g} ({label} {ref:.4g} − {tolerance:.0%})"
        )
    else:
        decision.reasons.append(f"{OPE_GATED}: {value:.4g} ≥ {floor:.4g}")


def comparison_html(
    chal: dict[str, float], champ: dict[str, float] | None, note: str, detail: str = ""
) -> str:
    """An HTML page: one row per metric, challenger / champion / logged policy side by side,
    followed by the challenger's per-segment report (``detail``, an HTML document)."""
    keys = sorted(k for k in chal if not k.startswith(("logged_", "popular_")))

    def cell(d: dict[str, float] | None, k: str) -> str:
        v = None if d is None else d.get(k)
        return "–" if v is None else f"{v:.4f}"

    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{cell(chal, k)}</td><td>{cell(champ, k)}</td>"
        f"<td>{cell(chal, 'logged_' + k)}</td></tr>"
        for k in keys
    )
    body = detail.split("<body>", 1)[-1].rsplit("</body>", 1)[0] if detail else ""
    return (
        "<html><head><meta charset='utf-8'><title>Challenger vs champion</title></head><body>"
        "<h1>Challenger vs champion on the same held-out logs</h1>"
        f"<p>{html.escape(note)}</p><table border=1><tr><th>metric</th><th>challenger</th>"
        f"<th>champion</th><th>logged policy</th></tr>{rows}</table><h2>Challenger by segment</h2>{body}"
        "</body></html>"
    )
