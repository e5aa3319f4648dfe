"""Distributed training against in-process training, on one machine: each training-pipeline stage
(ranker, two-tower retrieval) trained by ``checkout_recs.deploy.training_job.train_stage`` in this
process and as a job of ``--workers`` processes (``torchrun --standalone``, the command line of the
PyTorchJob the pipeline creates, with a local artifact store in place of S3).

    .venv/bin/python benchmarks/distributed_training.py --run RUN [--workers 2]

``RUN`` holds ``training_set.parquet``, ``labels/`` and ``features/`` (``checkout-recs experiment
train`` or ``experiment reproduce`` writes one). Per stage and mode: wall seconds, the CPU seconds
of this process and its children, and the stage's metrics (validation AUCs for the ranker, final
loss for the two-tower). Writes ``benchmarks/results/distributed_training.json``. On one 2-core
machine the processes share the cores, so the figures show that the job trains as well as one
process does (the AUCs), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checkout_recs.deploy.training_job import link_inputs, stage_input  # noqa: E402
from checkout_recs.models.ddp import INPUT_KIND, OUTPUT_KIND, run_stage  # noqa: E402
from checkout_recs.models.train import TrainConfig  # noqa: E402
from checkout_recs.storage import LocalArtifactStore  # noqa: E402

KEYS = {"ranker": ("auc_click", "auc_purchase", "auc_cvr_given_click", "ranker_train_seconds"),
        "retrieval": ("two_tower_final_loss", "two_tower_train_seconds", "two_tower_n_pairs")}  # fmt: skip


def _cpu() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _inputs(run: Path, stage: str, work: Path) -> Path:
    if stage == "ranker":
        d = work / "ranker-in"
        d.mkdir(parents=True, exist_ok=True)
        link = d / "training_set.parquet"
        if not link.exists():
            link.symlink_to((run / "training_set.parquet").resolve())
        return d
    return link_inputs(
        work / "retrieval-in", {"labels": run / "labels", "features": run / "features"}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed_training.json"
    )
    args = ap.parse_args()
    cfg = TrainConfig(seed=args.seed)
    out: dict = {"command": " ".join([".venv/bin/python", *sys.argv]), "workers": args.workers,
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_avg_at_start": os.getloadavg()}, "stages": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dist-train-") as tmp:
        work = Path(tmp)
        store = LocalArtifactStore(work / "store")
        for stage in ("ranker", "retrieval"):
            inputs = _inputs(args.run, stage, work)
            print(f"[{time.strftime('%H:%M:%S')}] {stage}: in-process", flush=True)
            t0, c0 = time.perf_counter(), _cpu()
            local = run_stage(stage, inputs, work / f"{stage}-local", cfg)
            one = {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - c0}
            staged = work / f"{stage}-staged"
            stage_input(inputs, staged, cfg.model_dump_json())
            store.publish(INPUT_KIND, f"bench-{stage}", staged)
            print(
                f"[{time.strftime('%H:%M:%S')}] {stage}: torchrun, {args.workers} processes",
                flush=True,
            )
            t0, c0 = time.perf_counter(), _cpu()
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc-per-node={args.workers}", "-m", "checkout_recs.models.ddp",
                            f"--stage={stage}", f"--artifact_root={work / 'store'}",
                            f"--job=bench-{stage}"], cwd=ROOT, check=True)  # fmt: skip
            many = {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - c0}
            got = store.fetch(OUTPUT_KIND, f"bench-{stage}", work / f"{stage}-ddp")
            ddp_metrics = json.loads((Path(got) / "metrics.json").read_text())
            out["stages"][stage] = {
                "in_process": {**one, **{k: local["metrics"].get(k) for k in KEYS[stage]}},
                "distributed": {**many, **{k: ddp_metrics.get(k) for k in KEYS[stage]},
                                "world_size": ddp_metrics.get(f"{stage}_world_size")},
            }  # fmt: skip
            print(json.dumps(out["stages"][stage], indent=1, default=float), flush=True)
    out["machine"]["load_avg_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
