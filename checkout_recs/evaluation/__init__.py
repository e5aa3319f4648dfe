"""Evaluation, by concept; each package is a face that re-exports its public names.

* ``evaluation.ope`` — off-policy estimators (single action and slate) and held-out estimates;
* ``evaluation.ranking`` — offline ranking quality of a trained bundle: per-head AUC against a
  baseline, the ``evaluate`` stage, shadow replay, the simulator's ranker report;
* ``evaluation.next_item`` — the shared next-item protocol, its public baselines, ``evaluate-offline``;
* ``evaluation.experiments`` — online experiments: A/B assignment and analysis, geo DiD, ramp
  guardrails and their HTML reports;
* ``evaluation.fairness`` — exposure and clicks by seller cohort;
* ``evaluation.html_report`` — the shared HTML helpers of the reports.

Studies that *use* these (coverage runs, ablations, the geo simulation) live in
``checkout_recs.studies``, apart from the library code they study.
"""
