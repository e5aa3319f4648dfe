"""``checkout-recs demo``: the whole system on one machine, on the embedded defaults.

simulate a marketplace → run the training pipeline locally (kfp.local) → start the KServe
transformer and predictor on 127.0.0.1 → answer post-checkout requests (printed as a table) →
write a drift report → stop the servers. Each step calls the same function its own command does.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

DEMO_UNKNOWN_USER = 999_999_999


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the CLI."""
    app.command("demo")(demo)


def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for this demo's run (wiped first).")] = Path(
        "runs/demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the simulated marketplace.")] = 7,
    requests: Annotated[
        int, typer.Option(help="Post-checkout requests to send (plus two edge cases).")
    ] = 6,
) -> None:
    """Simulate, train with the local pipeline, serve, answer checkouts, report drift."""
    import shutil
    import signal
    import sys

    from rich.console import Console

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers' process groups are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    t0 = time.perf_counter()

    console.rule("[bold]1 · simulate a marketplace")
    raw = _simulate(workdir / "raw", seed, console)

    console.rule("[bold]2 · training pipeline (kfp.local)")
    run = _train(raw, workdir / "pipeline", seed, console)
    bundle, artifacts = Path(run["output"]), Path(run["arguments"]["artifact_root"])

    console.rule("[bold]3 · serve: KServe transformer + predictor on 127.0.0.1")
    checkouts = sample_checkouts(raw, requests, seed, bundle)
    answers = serve_and_ask(bundle, artifacts, checkouts, workdir / "server-logs", console)

    console.rule("[bold]4 · drift report for on-call")
    drift = drift_halves(training_set_path(Path(run["pipeline_root"])), workdir / "drift", console)

    summary = {
        "seconds": round(time.perf_counter() - t0, 1),
        "bundle": str(bundle),
        "requests": len(answers),
        "all_six_distinct": all(len(set(a["ids"])) == 6 == len(a["ids"]) for a in answers),
        "drift_report": str(drift),
    }
    (workdir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    console.rule("[bold green]done")
    console.print(summary)
    if not summary["all_six_distinct"]:
        raise typer.Exit(1)


def _simulate(out: Path, seed: int, console: Any) -> Path:
    from checkout_recs.simulate import SimConfig, run_simulation

    s = run_simulation(SimConfig(seed=seed, progress=True), out)
    console.print(
        f"{sum(s.rows.values()):,} rows in {len(s.rows)} tables → {out}  ({s.seconds:.1f} s)"
    )
    console.print({k: v for k, v in s.rows.items()})
    return out


def _train(raw: Path, out: Path, seed: int, console: Any) -> dict[str, Any]:
    """Run the training pipeline with kfp.local; its task logs go to ``out/pipeline.log``.

    A watcher prints each task as it finishes (KFP writes ``executor_output.json`` last).
    """
    import contextlib
    import sys
    import threading

    from rich.console import Console

    from kfp_pipelines.local import run_local

    out.mkdir(parents=True, exist_ok=True)
    screen = Console(file=sys.stdout)  # bound now: stdout is redirected to the log below
    done = threading.Event()

    def watch() -> None:
        seen: set[str] = set()
        while True:
            finished = done.wait(1.0)
            for f in sorted(
                (out / "pipeline_root").glob("*/*/executor_output.json"),
                key=lambda p: p.stat().st_mtime,
            ):
                if f.parent.name not in seen:
                    seen.add(f.parent.name)
                    screen.print(f"  [green]✓[/green] {f.parent.name}")
            if finished:
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with (
        open(out / "pipeline.log", "w") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        try:
            run = run_local("training", out, {"source": str(raw.resolve()), "seed": seed})
        finally:
            done.set()
    watcher.join()
    if not run["output"]:
        raise RuntimeError("the promotion gate refused the trained model; nothing to serve")
    console.print(
        f"pipeline finished in {run['seconds']:.1f} s (task logs: {out / 'pipeline.log'}); "
        f"bundle → {run['output']}"
    )
    return run


def sample_checkouts(
    raw: Path, n: int, seed: int, bundle: Path | None = None
) -> list[dict[str, Any]]:
    """The last day's real checkouts from the simulated logs, plus an unknown user, an empty basket
    and, when ``bundle`` is given, a checkout three days after its snapshot (stale features).

    The serving clock is the simulated world's "now": an hour after the bundle's listing snapshot
    was taken (the simulated data lies in the past, so the wall clock would make every snapshot
    stale). Each checkout carries that time as its ``timestamp``.
    """
    import pandas as pd

    orders = pd.read_parquet(raw / "orders")
    last = orders[
        orders["event_timestamp"] >= orders["event_timestamp"].max() - pd.Timedelta(days=1)
    ]
    baskets = last.groupby("order_id").agg(
        user_id=("user_id", "first"),
        items=("listing_id", list),
        region=("region", "first"),
        device=("device", "first"),
        ts=("event_timestamp", "first"),
    )
    picked = baskets.sample(n=min(n, len(baskets)), random_state=seed)
    out = [
        {
            "user_id": int(r.user_id),
            "purchased_item_ids": [int(i) for i in r.items],
            "region": r.region,
            "device": r.device,
            "note": "checkout",
        }
        for r in picked.itertuples()
    ]
    first = out[0]
    out.append({**first, "user_id": DEMO_UNKNOWN_USER, "note": "unknown user"})
    out.append({**first, "purchased_item_ids": [], "note": "empty basket"})
    snapshot_time = _snapshot_time(bundle) if bundle is not None else None
    if snapshot_time is not None:
        now = snapshot_time + pd.Timedelta(hours=1)
        for c in out:
            c["timestamp"] = now.isoformat()
        out.append(
            {
                **first,
                "timestamp": (now + pd.Timedelta(days=3)).isoformat(),
                "note": "stale snapshot",
            }
        )
    return out


def _snapshot_time(bundle: Path) -> Any:
    """When the bundle's listing snapshot was taken (``index/manifest.json``), a UTC Timestamp or None."""
    import pandas as pd

    from checkout_recs.serving.bundle_layout import BundleLayout

    manifest = BundleLayout(bundle).index_manifest
    t = json.loads(manifest.read_text()).get("snapshot_time") if manifest.exists() else None
    return pd.Timestamp(t) if t else None


def serve_and_ask(
    bundle: Path, artifacts: Path, checkouts: list[dict[str, Any]], log_dir: Path, console: Any
) -> list[dict[str, Any]]:
    """Start both servers on ``bundle`` (user features from the run's Feast store), send ``checkouts``
    over v1 and the first one over v2, print the answers as a table, stop the servers.

    Returns one dict per checkout: ``ids`` (the six listing ids), ``policy``, ``fallback_reason``,
    ``note``, ``status`` (HTTP status).
    """
    import httpx
    from rich.table import Table

    from checkout_recs.features.sla import SNAPSHOT_SLA
    from inference.launch import running_servers

    answers: list[dict[str, Any]] = []
    table = Table(title="post-checkout recommendations (six per checkout)")
    for col in ("user", "basket", "policy", "six listing ids", "top reason", "ms"):
        table.add_column(col)
    feast_args = [
        "--users",
        "feast",
        "--feast_features",
        str(artifacts / "features" / _latest(artifacts / "features")),
        "--feast_work_dir",
        str(artifacts / "feast"),
        "--max_snapshot_age_h",
        str(SNAPSHOT_SLA.total_seconds() / 3600),
    ]
    with (
        running_servers(
            bundle, log_dir=log_dir, transformer_args=feast_args, ready_timeout_s=300
        ) as servers,
        httpx.Client(timeout=10) as http,
    ):
        console.print(f"transformer {servers.transformer_url}   predictor {servers.predictor_url}")
        for c in checkouts:
            body = {"instances": [{k: v for k, v in c.items() if k != "note"}]}
            t = time.perf_counter()
            r = http.post(servers.v1_url, json=body)
            ms = (time.perf_counter() - t) * 1e3
            if r.status_code != 200:
                raise RuntimeError(f"request failed: {r.status_code} {r.text}")
            pred = r.json()["predictions"][0]
            ids = [it["listing_id"] for it in pred["items"]]
            answers.append(
                {
                    "ids": ids,
                    "policy": pred["policy"],
                    "fallback_reason": pred.get("fallback_reason"),
                    "note": c["note"],
                    "status": r.status_code,
                    "basket": c["purchased_item_ids"],
                }
            )
            policy = pred["policy"] + (
                f" ({pred['fallback_reason']})" if pred.get("fallback_reason") else ""
            )
            table.add_row(
                f"{c['user_id']} [{c['note']}]",
                str(c["purchased_item_ids"][:3]),
                policy,
                " ".join(map(str, ids)),
                pred["items"][0]["reason"],
                f"{ms:.1f}",
            )
        v2 = _ask_v2(http, servers.v2_url, checkouts[0])
    console.print(table)
    console.print(f"v2 (Open Inference Protocol) answer for the first checkout: {v2}")
    console.print("servers stopped")
    return answers


def _latest(kind_dir: Path) -> str:
    return (kind_dir / "LATEST").read_text().strip()


def _ask_v2(http: Any, url: str, c: dict[str, Any]) -> str:
    """One checkout over the v2 (Open Inference Protocol) REST endpoint; a one-line summary."""
    inputs = [
        {"name": "user_id", "datatype": "INT64", "shape": [1], "data": [c["user_id"]]},
        {
            "name": "purchased_item_ids",
            "datatype": "INT64",
            "shape": [len(c["purchased_item_ids"])],
            "data": c["purchased_item_ids"],
        },
        {"name": "region", "datatype": "BYTES", "shape": [1], "data": [c["region"]]},
        {"name": "device", "datatype": "BYTES", "shape": [1], "data": [c["device"]]},
    ]
    if c.get("timestamp"):
        inputs.append(
            {"name": "timestamp", "datatype": "BYTES", "shape": [1], "data": [c["timestamp"]]}
        )
    r = http.post(url, json={"inputs": inputs})
    r.raise_for_status()
    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
    reason = out.get("fallback_reason", [""])[0]
    return f"{[int(i) for i in out['item_ids']]} policy={out['policy'][0]}" + (
        f" ({reason})" if reason else ""
    )


def drift_halves(training_set: Path, out: Path, console: Any) -> Path:
    """Drift report of the training set's first half of days (reference) against its second half.

    Returns the path of the HTML report; ``drift_summary.json`` lies beside it.
    """
    import pandas as pd

    from monitoring.drift import drift_report

    ts = pd.read_parquet(training_set)
    cut = (
        ts["event_timestamp"].min()
        + (ts["event_timestamp"].max() - ts["event_timestamp"].min()) / 2
    )
    reference, current = ts[ts["event_timestamp"] < cut], ts[ts["event_timestamp"] >= cut]
    s = drift_report(reference, current, out)
    console.print(
        f"drift detected: {s.drift_detected} ({s.reason}); report → {out / 'drift_report.html'}"
    )
    return out / "drift_report.html"


def training_set_path(pipeline_root: Path) -> Path:
    """The training set a local pipeline run wrote (``training-set-op/training_set/*.parquet``)."""
    hits = sorted(pipeline_root.glob("*/training-set-op/training_set/training_set.parquet"))
    if not hits:
        raise FileNotFoundError(f"no training set under {pipeline_root}")
    return hits[-1]
