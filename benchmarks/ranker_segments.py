"""Ranker vs logistic regression per segment and head over several simulation runs
→ ``benchmarks/results/ranker_segments.json`` and ``ranker_segments.html``.

The simulator target asks each head's AUC to be above a logistic regression's in every segment.
One run's smallest segments hold a few thousand rows, so this benchmark repeats the benchmark
simulation (``models.sim_config``: the demo one × ``SIM_SCALE``, 14 days) over several seeds and
reports, per run, segment and head, the paired 95% interval of ranker − LR on the logged labels
(``head_auc_vs_logistic``) and against the hidden truth (``truth_auc_vs_logistic``: expected AUC,
the labels' noise removed). The ranker is trained exactly as the bench teacher:
``train_ranker(train part, RankerConfig(**overrides))`` on the time split's earlier 80%.

    python benchmarks/ranker_segments.py --seeds 7 1 2 11 12 13 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.models import RESULTS, SIM_SCALE, _progress, _sim_run  # noqa: E402


def one_run(work: Path, seed: int, overrides: dict, days: int = 14, scale: int = SIM_SCALE) -> dict:
    """Simulate (seed) → training set → time split → ranker and LR; the per-segment comparison.

    Returns ``{"seed", "n_train", "n_test", "fit_seconds", "deep_epochs", "labels": head_auc_vs_logistic(...),
    "truth": truth_auc_vs_logistic(...)}`` (segments × heads, paired intervals of ranker − LR).
    """
    import pandas as pd

    from checkout_recs.evaluation.ranking.head_auc import (
        head_auc_vs_logistic,
        truth_auc_vs_logistic,
    )
    from checkout_recs.models.ranker import RankerConfig, train_ranker
    from checkout_recs.models.train import split_by_time
    from checkout_recs.simulate.evaluate import logged_expectations
    from checkout_recs.simulate.scenario import SimWorld

    run = _sim_run(work, days, seed, scale)
    train, test = split_by_time(pd.read_parquet(run / "train.parquet"), 0.2)
    t0 = time.perf_counter()
    model = train_ranker(train, RankerConfig(**overrides))
    fit_s = time.perf_counter() - t0
    truth = logged_expectations(SimWorld.from_raw(run / "raw"), run / "raw")
    return {
        "seed": seed,
        "n_train": len(train),
        "n_test": len(test),
        "fit_seconds": fit_s,
        "deep_epochs": model.metrics.get("deep_epochs"),
        "labels": head_auc_vs_logistic(model, train, test),
        "truth": truth_auc_vs_logistic(model, train, test, truth),
    }


def tally(runs: list[dict]) -> dict:
    """Counts over runs × segments × heads (``ranker_report.count_above``), on the labels and against
    the truth: ``{"labels"|"truth": {"cells", "above", "interval_above"}}``."""
    from checkout_recs.evaluation.ranking.report import cells, count_above

    return {
        kind: count_above([c for r in runs for c in cells(r[kind])]) for kind in ("labels", "truth")
    }


def main(argv: list[str] | None = None) -> int:
    """Run the seeds (``--jobs`` at a time), write the JSON and the HTML page; returns 0."""
    from checkout_recs.evaluation.ranking.report import cells, segments_report_html
    from checkout_recs.studies.ranker_ablation import ABLATION

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 1, 2, 11, 12, 13])
    ap.add_argument(
        "--config",
        default="procedure/default (warm start + early stopping)",
        choices=sorted(ABLATION),
    )
    ap.add_argument("--scale", type=int, default=SIM_SCALE, help="simulation size, × the demo one")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (each uses one core)")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="simulation runs (default: a temporary folder)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "ranker_segments.json")
    args = ap.parse_args(argv)
    overrides = ABLATION[args.config]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        runs = []
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(one_run, work, s, overrides, scale=args.scale) for s in args.seeds
            ]
            for f in as_completed(futures):
                r = f.result()
                runs.append(r)
                diffs = ", ".join(f"{label} {ci['diff']:+.4f}" for label, ci in cells(r["truth"]))
                _progress(f"seed {r['seed']} ({len(runs)}/{len(args.seeds)}), vs truth: {diffs}")
    runs.sort(key=lambda r: args.seeds.index(r["seed"]))
    result = {
        "command": "python benchmarks/ranker_segments.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "scale": args.scale,
        "config": args.config,
        "overrides": overrides,
        "seeds": args.seeds,
        "wall_seconds": time.perf_counter() - t0,
        "tally": tally(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    args.out.with_suffix(".html").write_text(segments_report_html(result))
    _progress(f"tally {result['tally']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
