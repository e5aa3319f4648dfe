"""Scale ladder: the whole pipeline, simulate → serve, at 1M, 5M and 18M listings (#21).

Each step runs the shipped ``checkout-recs`` command in its own child process (``scale_steps``, measured by ``scale_measure``);
traffic grows with the catalogue (``scale_steps.TrafficModel``). Per step: wall, CPU (user +
system), peak RSS, rows in / out, rows/s; between rungs, the growth exponent
(``scale_report``). Resumable: each finished step leaves ``<workdir>/<rung>/steps/<step>.json``
with its figures; a re-run skips those and runs the rest (a failed step re-runs alone, then the
ones that need it: ``scale_steps.NEEDS``); ``--from-step`` forgets a step and those after it.

    .venv/bin/python benchmarks/scale.py [--rungs 1M 5M 18M] [--workdir runs/scale]
        [--from-step label] [--max-rss-gb 8] [--not-run 18M="why"]

Writes ``benchmarks/results/scale.json`` and ``scale.html`` (``--out-dir``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale_measure import StepFailed, measure_step  # noqa: E402
from benchmarks.scale_report import exponents, report_html  # noqa: E402
from benchmarks.scale_steps import (  # noqa: E402
    NEEDS,
    RUNGS,
    STEP_NAMES,
    STEPS,
    Rung,
    TrafficModel,
    parse_size,
)

ROOT = Path(__file__).resolve().parents[1]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prepare_rung(name: str, workdir: Path, model: TrafficModel) -> Rung:
    """The rung's folder with ``rung.json`` (its traffic); refuses a folder made with other traffic."""
    rung = Rung(name, workdir / name, model.for_listings(parse_size(name)))
    meta = rung.p("rung.json")
    if meta.exists():
        old = json.loads(meta.read_text())["traffic"]
        if old != rung.sim:
            raise SystemExit(
                f"{meta} holds other traffic ({old}); remove {rung.work} to start over"
            )
    else:
        rung.work.mkdir(parents=True, exist_ok=True)
        body = {"name": name, "traffic": rung.sim, "model": model.as_dict()}
        meta.write_text(json.dumps(body, indent=2))
    return rung


def run_rung(rung: Rung, from_step: str | None, requests: int, limit_mb: float) -> list[str]:
    """Run the rung's steps that have no ``done`` marker, in order. A failed step leaves
    ``steps/<step>.failed.json`` (figures, log tail); the steps that need it are not run, the
    others are. Returns the steps that failed or waited on a failure."""
    steps_dir = rung.p("steps")
    steps_dir.mkdir(exist_ok=True)
    if from_step is not None:
        for name in STEP_NAMES[STEP_NAMES.index(from_step) :]:
            (steps_dir / f"{name}.json").unlink(missing_ok=True)
    t0, broken = time.monotonic(), []
    for i, step in enumerate(STEPS, 1):
        done, failed = steps_dir / f"{step.name}.json", steps_dir / f"{step.name}.failed.json"
        head = f"[{rung.name}] {i}/{len(STEPS)} {step.name:<12}"
        if done.exists():
            print(f"{head} done earlier, skipped", flush=True)
            continue
        waits = [n for n in NEEDS[step.name] if n in broken]
        if waits:
            broken.append(step.name)
            print(f"{head} not run: needs {', '.join(waits)}", flush=True)
            continue
        print(f"{head} running (elapsed {time.monotonic() - t0:,.0f} s)", flush=True)
        load = os.getloadavg()[0]
        try:
            fig = measure_step(step, rung, requests, limit_mb)
        except StepFailed as exc:
            body = {"step": step.name, "returncode": exc.returncode, "why": exc.why}
            body |= {"log_tail": exc.tail, "figures": exc.figures, "measured_at": _now()}
            failed.write_text(json.dumps(body, indent=2, default=str))
            print(f"{head} FAILED: {exc}", flush=True)
            broken.append(step.name)
            continue
        fig |= {"measured_at": _now(), "load_1m": round(load, 2)}
        failed.unlink(missing_ok=True)
        done.write_text(json.dumps(fig, indent=2))
        print(
            f"{head} {fig['wall_s']:,.1f} s wall, {fig['cpu_s']:,.1f} s CPU, "
            f"{fig['peak_rss_mb']:,.0f} MB peak RSS, {fig['rows_per_s']:,.0f} rows/s",
            flush=True,
        )
    return broken


def collect(workdir: Path) -> dict[str, dict]:
    """Every rung folder under ``workdir``: traffic, observed rows, step figures, status."""
    rungs: dict[str, dict] = {}
    for meta in sorted(workdir.glob("*/rung.json")):
        info = json.loads(meta.read_text())
        folder = meta.parent
        steps = {
            n: json.loads((folder / "steps" / f"{n}.json").read_text())
            for n in STEP_NAMES
            if (folder / "steps" / f"{n}.json").exists()
        }
        failed = {
            n: json.loads((folder / "steps" / f"{n}.failed.json").read_text())
            for n in STEP_NAMES
            if (folder / "steps" / f"{n}.failed.json").exists()
        }
        missing = [n for n in STEP_NAMES if n not in steps and n not in failed]
        status = "complete" if len(steps) == len(STEP_NAMES) else "partial"
        if failed:
            status = f"failed at {', '.join(failed)}"
        if missing:
            status += f"; not run: {', '.join(missing)}"
        rungs[info["name"]] = {
            "listings": info["traffic"]["listings"],
            "traffic": info["traffic"],
            "traffic_model": info["model"],
            "observed": _observed(folder / "raw" / "manifest.json"),
            "status": status,
            "steps": steps,
            "failed": failed,
        }
    return rungs


def keep_earlier(rungs: dict[str, dict], previous: Path) -> dict[str, dict]:
    """``rungs`` plus the rungs of an earlier ``scale.json`` whose folders are not in this
    workdir (a rung re-run here replaces its earlier record); each kept one is marked with
    ``earlier_run``: that file's command and commit, so its figures are not taken for this run's.
    Ordered by catalogue size."""
    if previous.exists():
        old = json.loads(previous.read_text())
        for name, rung in old.get("rungs", {}).items():
            if name not in rungs:
                mark = rung.get("earlier_run") or {
                    k: old.get(k) for k in ("command", "commit", "measured_at", "finished_at")
                }
                rungs[name] = {**rung, "earlier_run": mark}
    return dict(sorted(rungs.items(), key=lambda kv: kv[1]["listings"]))


def _observed(manifest: Path) -> dict | None:
    """Rows the simulator wrote (checkout traffic) and the click / purchase rates it drew."""
    if not manifest.exists():
        return None
    rows = json.loads(manifest.read_text())["rows"]
    imps, clicks, buys = rows.get("impressions", 0), rows.get("clicks", 0), rows.get("purchases", 0)
    return {
        **{k: rows.get(k, 0) for k in ("listings", "users", "sellers", "orders")},
        **{"impressions": imps, "clicks": clicks, "purchases": buys},
        "click_rate": round(clicks / imps, 4) if imps else None,
        "purchase_per_click": round(buys / clicks, 4) if clicks else None,
    }


def _commit() -> str:
    """HEAD's short hash, ``+dirty`` when the working tree has changes (others edit it too)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rungs", nargs="+", default=list(RUNGS), help="rung sizes: 1M 5M 18M, 250k…")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "scale", help="rung folders")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--from-step", choices=STEP_NAMES, help="forget this step and later ones first")
    ap.add_argument("--requests", type=int, default=200, help="checkouts the serve step answers")
    ap.add_argument("--max-rss-gb", type=float, default=0.0, help="kill a step over this (0: none)")
    ap.add_argument("--days", type=int, help="override the traffic model's days")
    ap.add_argument("--checkouts-per-listing-day", type=float, help="override the model's rate")
    ap.add_argument("--not-run", action="append", default=[], metavar="RUNG=WHY",
                    help="record why a ladder rung was not run")  # fmt: skip
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = TrafficModel()
    if args.days is not None:
        model = TrafficModel(**{**model.as_dict(), "days": args.days})
    if args.checkouts_per_listing_day is not None:
        rate = args.checkouts_per_listing_day
        model = TrafficModel(**{**model.as_dict(), "checkouts_per_listing_day": rate})
    started, load0 = _now(), os.getloadavg()
    for name in args.rungs:
        rung = prepare_rung(name, args.workdir, model)
        print(f"[{name}] {rung.sim}", flush=True)
        run_rung(rung, args.from_step, args.requests, args.max_rss_gb * 1024)
    rungs = keep_earlier(collect(args.workdir), args.out_dir / "scale.json")
    why = dict(item.split("=", 1) for item in args.not_run)
    not_run = {
        n: why.get(n, "not requested in this invocation")
        for n in RUNGS
        if n not in rungs or rungs[n]["status"] != "complete"
    }
    for n in not_run:
        if n in rungs:
            not_run[n] = f"{rungs[n]['status']}: {why.get(n, '')}".rstrip(": ")
    figs = [f for r in rungs.values() for f in r["steps"].values()]
    stamps = [f["measured_at"] for f in figs if "measured_at" in f]
    loads = [f["load_1m"] for f in figs if "load_1m" in f]
    result = {
        "benchmark": "scale",
        "command": shlex.join([Path(sys.executable).name, "benchmarks/scale.py", *sys.argv[1:]])
        if argv is None
        else shlex.join(["benchmarks/scale.py", *argv]),
        "invoked_at": started,
        "measured_at": min(stamps, default=started),
        "finished_at": max(stamps, default=_now()),
        "commit": _commit(),
        "host": {
            "machine": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_1m_start": load0[0],
            "load_1m_end": os.getloadavg()[0],
            "load_start": list(load0),
            "load_end": list(os.getloadavg()),
            "load_1m_steps_min_max": [min(loads, default=None), max(loads, default=None)],
        },
        "notes": "wall_s/cpu_s per step include the command's start (imports); cpu_s is user + "
        "system of the command and its waited-for children (os.wait4); peak_rss_mb is the largest "
        "single process, tree_rss_mb the sampled (0.5 s) peak of the process tree's summed RSS; "
        "rows_per_s = rows_in (rows_out where a step reads none) / wall_s; serve's rows_out are "
        "answered requests; index and bundle read the listing view's daily snapshot rows (rows_in) and "
        "write one snapshot row per listing; materialize's rows_out are Feast SQLite online rows "
        "(one per entity and feature). Exponent = log(f2/f1)/log(n2/n1) between consecutive "
        "rungs; load_1m per step is the 1-minute load average at its start (a shared 2-core box).",
        "traffic_model": model.as_dict(),
        "steps": STEP_NAMES,
        "rungs": rungs,
        "requested": args.rungs,
        "not_run": not_run,
        "exponents": exponents(rungs),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "scale.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out_dir / "scale.html").write_text(report_html(result))
    print(f"wrote {args.out_dir / 'scale.json'} and scale.html", flush=True)
    return result


if __name__ == "__main__":
    main()
