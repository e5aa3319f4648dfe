"""Component of the evaluate step: offline metrics per segment on the held-out share."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components._base import component


@component
def evaluate_op(bundle: Input[Model], training_set: Input[Dataset], validation_share: float,
                metrics: Output[Metrics], report: Output[HTML]) -> str:
    """AUC per head, NDCG@6, expected revenue vs logged and popularity orders, per segment, and
    off-policy estimates (SNIPS, DR) of the ranker's greedy order vs the logged policy.

    Evaluates on the latest ``validation_share`` of requests (the same time split training
    held out). Overall figures go to ``metrics`` and are returned as JSON (the gate's input);
    the HTML report goes to ``report``.
    """
    import json
    import math
    import shutil
    import tempfile
    from pathlib import Path

    import pandas as pd

    from checkout_recs.evaluation.offline import evaluate_run
    from checkout_recs.evaluation.ope_heldout import ranker_greedy_ope
    from checkout_recs.models.ranker import RankerModel
    from checkout_recs.models.train import split_by_time

    frame = pd.read_parquet(Path(training_set.path) / "training_set.parquet")
    _, held_out = split_by_time(frame, validation_share)
    with tempfile.TemporaryDirectory() as tmp:
        test_path = Path(tmp) / "test.parquet"
        held_out.to_parquet(test_path)
        result = evaluate_run(Path(bundle.path) / "model", test_path, Path(tmp) / "eval")
        shutil.copyfile(Path(tmp) / "eval" / "report.html", report.path)
    overall = {k: float(v) for k, v in result["overall"].items()
               if isinstance(v, float | int) and math.isfinite(v)}
    ope = ranker_greedy_ope(RankerModel.load(Path(bundle.path) / "model" / "ranker"), held_out)
    overall.update({k: float(v) for k, v in ope.items() if math.isfinite(v)})  # ope_* keys, not gated
    for k, v in overall.items():
        metrics.log_metric(k, v)
    metrics.log_metric("n_rows", result["n_rows"])
    return json.dumps(overall)
