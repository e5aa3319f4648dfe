"""The strongest public sequential baselines under the offline protocol.

* ``sasrec_ce``: SASRec (Kang & McAuley, 2018) trained with cross-entropy over the whole
  catalogue at every position (Klenitskiy & Vasilev, 2023);
* ``gsasrec``: gSASRec (Petrov & Macdonald, 2023): the same network trained with gBCE, ``k``
  sampled negatives and calibration ``t``.

Both are ``models.sequence.SASRec`` (``loss`` "ce" / "gbce", ``models/sequence_loss.py``).
Each is tuned like the other baselines, on the validation target of the data set it runs on:
every point of its grid (``SEQ_GRIDS``) is trained on train at seed 0 with early stopping on its
own validation NDCG@6 (``SEQ_BASE``: a check every ``eval_every`` epochs, smoothed over 3,
``patience`` checks, at most ``epochs``); the point with the best validation NDCG@6 is chosen,
with its early-stopped epoch count, and refit on train + validation for that many epochs, once
per seed. Both train on every item of every sequence (``windows``: each history cut into
windows of ``max_len + 1``), in length-bucketed batches of about ``batch_tokens`` positions.

The baselines' rows are their final weights. The same runs also give the project's
components (``project.py``; the project adds no training of its own): the mean of the
per-user standardised scores of the last ``SNAPSHOTS`` checkpoints (``snapshot_epochs``: the
kept epoch and the checks before it), reported beside each row as ``snapshot_ensemble``.
"""

from __future__ import annotations

from typing import Any

from checkout_recs.evaluation.next_item.components import zscore
from checkout_recs.evaluation.next_item.protocol import Split, evaluate_with_ranks
from checkout_recs.evaluation.next_item.runner import tick
from checkout_recs.models.sequence import SASRec, SASRecConfig

#: Sequential baselines, in table order.
SEQ_NAMES = ("sasrec_ce", "gsasrec")
#: Settings shared by every point of both grids; ``epochs`` is the early-stopping ceiling.
SEQ_BASE: dict[str, Any] = {
    "dim": 64,
    "max_len": 50,
    "blocks": 2,
    "heads": 1,
    "windows": True,
    "batch_tokens": 3200,
    "lr": 2e-3,
    "epochs": 100,
    "eval_every": 5,
    "patience": 3,
}
#: Each model's grid (on top of ``SEQ_BASE``). gSASRec: 256 negatives (the paper's setting); the
#: calibration t in {0.5, 0.75} brackets the paper's best values on MovieLens.
SEQ_GRIDS: dict[str, list[dict[str, Any]]] = {
    "sasrec_ce": [{"loss": "ce", "dropout": d} for d in (0.2, 0.5)],
    "gsasrec": [
        {"loss": "gbce", "negatives": 256, "gbce_t": t, "dropout": 0.2} for t in (0.5, 0.75)
    ],
}
#: Tuning seed (the protocol's stochastic baselines are tuned at seed 0).
TUNING_SEED = 0
#: Checkpoints of one run averaged into the project's component (``snapshot_epochs``).
SNAPSHOTS = 3
#: ``--no-tune``: the points (and early-stopped epochs) chosen on MovieLens-100K validation.
DEFAULT_SEQ_CHOICE: dict[str, dict[str, Any]] = {
    "sasrec_ce": {"loss": "ce", "dropout": 0.2, "epochs": 60},
    "gsasrec": {"loss": "gbce", "negatives": 256, "gbce_t": 0.5, "dropout": 0.2, "epochs": 50},
}


def seq_config(params: dict[str, Any], device: str) -> SASRecConfig:
    """``SASRecConfig`` of one point (``SEQ_BASE`` | params; unknown keys are an error)."""
    return SASRecConfig(**{**SEQ_BASE, **params, "device": device})


def snapshot_epochs(last: int, every: int, n: int = SNAPSHOTS) -> list[int]:
    """The ``n`` checkpoint epochs ``last, last − every, …`` (those ≥ 1), oldest first."""
    return sorted(e for e in (last - k * every for k in range(n)) if e >= 1)


def tune_seq(
    split: Split,
    name: str,
    params: dict[str, Any],
    device: str,
    base: dict[str, Any] | None = None,
    seed: int = TUNING_SEED,
) -> dict:
    """Task: grid point ``params`` of ``name`` (on ``base``, default ``SEQ_BASE``) trained on
    train with early stopping on its validation NDCG@6. Returns the validation metrics of the
    kept weights (``val``), ``best_epoch``, ``epochs_run``, ``history`` ([(epoch, val NDCG@6)]),
    ``fit_seconds`` and ``scores`` (the z-scored validation scores, float32 (U, I): the
    project's component)."""
    cfg = seq_config({**(base or {}), **params}, device)
    seqs = split.fit_seqs("val")

    def monitor(m: SASRec) -> float:
        return float(evaluate_with_ranks(split, "val", m.score(seqs))[0]["ndcg@6"])

    model = SASRec(cfg).fit(seqs, split.n_items, seed, monitor=monitor, on_epoch=lambda _: tick())
    tick(cfg.epochs - model.epochs_run)  # the epochs early stopping saved
    val = evaluate_with_ranks(split, "val", model.score(seqs))[0]
    snap = model.snapshot_scores(seqs, snapshot_epochs(model.best_epoch, cfg.eval_every))
    return {
        "name": name,
        "params": params,
        "val": val,
        "best_epoch": model.best_epoch,
        "epochs_run": model.epochs_run,
        "history": model.history,
        "fit_seconds": model.fit_seconds,
        "snapshot_val": evaluate_with_ranks(split, "val", snap)[0],
        "scores": zscore(snap),
    }


def choose_seq(name: str, runs: list[dict], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tuning record of ``name`` from its grid's ``tune_seq`` runs (grid order): the best
    validation NDCG@6 (first on a tie) is the choice (``base`` | its point, refit for its
    early-stopped epoch count); ``grid_index`` is its position in the grid."""
    best = max(range(len(runs)), key=lambda i: (runs[i]["val"]["ndcg@6"], -i))
    r = runs[best]
    return {
        "choice": {**(base or SEQ_BASE), **r["params"], "epochs": max(1, int(r["best_epoch"]))},
        "grid_index": best,
        "val": {k: v for k, v in r["val"].items() if k not in ("untied", "ranks")},
        "grid": [
            {
                "params": x["params"],
                "val_ndcg@6": x["val"]["ndcg@6"],
                "val_hr@300": x["val"]["hr@300"],
                "snapshot_val_ndcg@6": x["snapshot_val"]["ndcg@6"],
                "snapshot_val_hr@300": x["snapshot_val"]["hr@300"],
                "best_epoch": x["best_epoch"],
                "epochs_run": x["epochs_run"],
                "history": x["history"],
                "seconds": x["fit_seconds"],
            }
            for x in runs
        ],
        "seed": TUNING_SEED,
    }


def refit_seq(split: Split, name: str, choice: dict[str, Any], device: str, seed: int) -> dict:
    """Task: ``name`` at its chosen configuration (``choice["epochs"]`` epochs) refit on train +
    validation with ``seed``. Returns the test metrics of the final weights (the baseline's
    row), ``ranks`` (int64 (U,), the test target's rank), and the checkpoint ensemble of epochs
    ``snapshot_epochs(epochs)``: ``snapshot_ensemble`` (+ ``_untied``) test metrics and
    ``scores`` (its z-scored test scores, float32 (U, I): the project's component)."""
    seqs = split.fit_seqs("test")
    cfg = seq_config(choice, device)
    snaps = snapshot_epochs(cfg.epochs, cfg.eval_every)
    model = SASRec(cfg).fit(seqs, split.n_items, seed, on_epoch=lambda _: tick(), save_at=snaps)
    metrics, ranks = evaluate_with_ranks(split, "test", model.score(seqs))
    snap = model.snapshot_scores(seqs, snaps)
    s_metrics = evaluate_with_ranks(split, "test", snap)[0]
    return {
        **metrics,
        "ranks": ranks,
        "snapshot_ensemble": {k: v for k, v in s_metrics.items() if k != "untied"},
        "snapshot_ensemble_untied": s_metrics["untied"],
        "scores": zscore(snap),
        "fit_seconds": model.fit_seconds,
    }
