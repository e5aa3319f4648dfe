"""Serving commands: ``serve``, ``recommend``, ``inventory apply|publish|consume``, ``explain``.

Heavy libraries (kserve, torch, redis, httpx) are imported inside the command bodies.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from checkout_recs.serving.settings import DEFAULT_MODEL_NAME
from cli.common import fail, usage_error

inventory_app = typer.Typer(help="Live inventory (sold / locked listings).", no_args_is_help=True)


def serve(
    bundle: Annotated[
        Path, typer.Option(help="Serving bundle folder (index/, model/, candidates/).")
    ],
    transformer_port: Annotated[
        int, typer.Option(help="Transformer HTTP port on 127.0.0.1.")
    ] = 8080,
    predictor_port: Annotated[int, typer.Option(help="Predictor HTTP port on 127.0.0.1.")] = 8081,
    predictor_protocol: Annotated[
        str, typer.Option(help="Transformer->predictor: rest-binary, rest-json, grpc.")
    ] = "rest-binary",
    scoring: Annotated[
        str,
        typer.Option(help="'remote' (predictor hop) or 'inprocess' (student in the transformer)."),
    ] = "remote",
    inventory: Annotated[
        str,
        typer.Option(
            help="Inventory backend: memory, redis (one MGET per request) or "
            "replica (in memory, tailing the inventory stream)."
        ),
    ] = "memory",
    redis_url: Annotated[
        str,
        typer.Option(
            envvar="CHECKOUT_RECS_REDIS_URL",
            help="Redis for inventory, kill switch and drift flag.",
        ),
    ] = "redis://127.0.0.1:6379/0",
    decision_log: Annotated[
        str | None,
        typer.Option(
            help="Artifact store root for the decision log (default: "
            "CHECKOUT_RECS_DECISION_LOG, else none)."
        ),
    ] = None,
    policy_config: Annotated[
        Path | None, typer.Option(help="JSON file of PolicyConfig (read once).")
    ] = None,
    policy_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder with policy.json (and kill_switch), re-read when "
            "it changes: the ConfigMap's layout."
        ),
    ] = None,
    users: Annotated[
        str | None,
        typer.Option(
            help="User features: feast, bundle or table (default: "
            "CHECKOUT_RECS_USERS, else bundle)."
        ),
    ] = None,
    feature_env: Annotated[
        str | None,
        typer.Option(
            envvar="CHECKOUT_RECS_FEATURE_ENV",
            help="Feast environment for --users feast: embedded or production.",
        ),
    ] = None,
    feast_features: Annotated[
        str | None,
        typer.Option(
            help="Feature tables the Feast sources name (default: the bundle's features/)."
        ),
    ] = None,
    feast_work_dir: Annotated[
        Path | None,
        typer.Option(help="Feast work folder (rendered feature_store.yaml, embedded store)."),
    ] = None,
) -> None:
    """Start predictor + transformer (two KServe ModelServers on 127.0.0.1); Ctrl-C stops both.

    The transformer reads the same settings as a pod (``ServingSettings``): ``CHECKOUT_RECS_*``
    variables, overridden by the options given here."""
    from inference.launch import start_servers, stop_servers

    if not bundle.is_dir():
        raise fail(f"no bundle folder at {bundle}")
    targs = [
        "--ranker_protocol",
        predictor_protocol,
        "--scoring",
        scoring,
        "--inventory",
        inventory,
        "--redis_url",
        redis_url,
    ]
    for flag, value in (
        ("--decision_log", decision_log),
        ("--policy_config", policy_config),
        ("--policy_dir", policy_dir),
        ("--users", users),
        ("--feature_env", feature_env),
        ("--feast_features", feast_features),
        ("--feast_work_dir", feast_work_dir),
    ):
        if value is not None:
            targs += [flag, str(value)]
    try:
        h = start_servers(
            bundle,
            transformer_port,
            predictor_port,
            transformer_args=targs,
            start_predictor=scoring == "remote",
        )
    except RuntimeError as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"transformer {h.transformer_url} (gRPC {h.transformer_grpc})  predictor {h.predictor_url}"
    )
    typer.echo(f"v1: POST {h.v1_url}\nv2: POST {h.v2_url}\nlogs: {h.log_dir}  (Ctrl-C to stop)")
    stop = {"now": False}

    def _handler(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    try:
        while not stop["now"] and all(p.poll() is None for p in h.processes.values()):
            time.sleep(0.3)
    finally:
        stop_servers(h)
        typer.echo("servers stopped")


def recommend(
    url: Annotated[str, typer.Option(help="Transformer base URL, e.g. http://127.0.0.1:8080.")],
    user: Annotated[int, typer.Option(help="Buyer id.")],
    region: Annotated[str, typer.Option(help="Buyer's region.")],
    items: Annotated[
        str, typer.Option(help="Basket listing ids, comma-separated (may be empty).")
    ] = "",
    device: Annotated[str, typer.Option(help="web, ios or android.")] = "web",
    protocol: Annotated[str, typer.Option(help="v1 or v2.")] = "v1",
    model: Annotated[
        str, typer.Option(help="Model name the transformer answers under (the InferenceService's).")
    ] = DEFAULT_MODEL_NAME,
) -> None:
    """Ask the transformer for six recommendations and print them as a table."""
    import httpx
    from rich.console import Console
    from rich.table import Table

    try:
        basket = [int(x) for x in items.split(",") if x.strip()]
    except ValueError as exc:
        raise usage_error(f"--items must be comma-separated integers: {exc}") from exc
    req = {"user_id": user, "purchased_item_ids": basket, "region": region, "device": device}
    try:
        pred = _ask(httpx, url.rstrip("/"), req, protocol, model)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise fail(f"request failed: {exc}") from exc
    table = Table(
        title=f"six for user {user} — policy {pred['policy']}"
        + (f" ({pred['fallback_reason']})" if pred.get("fallback_reason") else "")
    )
    for col in ("slot", "listing", "expected revenue", "propensity", "source", "reason"):
        table.add_column(col)
    for it in pred["items"]:
        table.add_row(
            str(it["slot"]),
            str(it["listing_id"]),
            f"{it['score']:.4f}",
            f"{it['propensity']:.3f}",
            it["source"],
            it["reason"],
        )
    Console().print(table)
    typer.echo(f"request_id {pred['request_id']}")


def _ask(
    httpx: object, url: str, req: dict, protocol: str, model: str = DEFAULT_MODEL_NAME
) -> dict:
    client = httpx.Client(timeout=10)  # type: ignore[attr-defined]
    with client:
        if protocol == "v1":
            r = client.post(f"{url}/v1/models/{model}:predict", json={"instances": [req]})
            if r.status_code != 200:
                raise ValueError(f"HTTP {r.status_code}: {r.text}")
            return r.json()["predictions"][0]
        body = {
            "inputs": [
                {"name": "user_id", "datatype": "INT64", "shape": [1], "data": [req["user_id"]]},
                {
                    "name": "purchased_item_ids",
                    "datatype": "INT64",
                    "shape": [len(req["purchased_item_ids"])],
                    "data": req["purchased_item_ids"],
                },
                {"name": "region", "datatype": "BYTES", "shape": [1], "data": [req["region"]]},
                {"name": "device", "datatype": "BYTES", "shape": [1], "data": [req["device"]]},
            ]
        }
        r = client.post(f"{url}/v2/models/{model}/infer", json=body)
        if r.status_code != 200:
            raise ValueError(f"HTTP {r.status_code}: {r.text}")
        out = {o["name"]: o["data"] for o in r.json()["outputs"]}
        return {
            "policy": out["policy"][0],
            "fallback_reason": out["fallback_reason"][0] or None,
            "request_id": out["request_id"][0],
            "items": [
                {
                    "slot": i,
                    "listing_id": lid,
                    "score": s,
                    "propensity": p,
                    "source": src,
                    "reason": why,
                }
                for i, (lid, s, p, src, why) in enumerate(
                    zip(
                        out["item_ids"],
                        out["scores"],
                        out["propensities"],
                        out["sources"],
                        out["reasons"],
                        strict=True,
                    )
                )
            ],
        }


@inventory_app.command("apply")
def inventory_apply(
    events: Annotated[
        Path, typer.Argument(help="Parquet file or folder of contract.INVENTORY_EVENTS rows.")
    ],
    backend: Annotated[str, typer.Option(help="memory (dry run) or redis.")] = "redis",
    redis_url: Annotated[
        str, typer.Option(envvar="CHECKOUT_RECS_REDIS_URL", help="Redis URL.")
    ] = "redis://127.0.0.1:6379/0",
    prefix: Annotated[
        str, typer.Option(help="Redis key prefix of the inventory keys.")
    ] = "checkout_recs",
) -> None:
    """Apply inventory events (sold, locked with TTL, unlocked, delisted, listed) in sequence order."""
    import pyarrow.parquet as pq

    from checkout_recs.serving.inventory import InventoryUnavailable, open_inventory

    if not events.exists():
        raise fail(f"no events at {events}")
    try:
        store = open_inventory(backend, redis_url, prefix=prefix, timeout_s=2.0)
        report = store.apply_events(pq.read_table(events))
    except (ValueError, InventoryUnavailable) as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(report.as_dict()))


@inventory_app.command("publish")
def inventory_publish(
    events: Annotated[
        Path, typer.Argument(help="Parquet file or folder of contract.INVENTORY_EVENTS rows.")
    ],
    redis_url: Annotated[
        str, typer.Option(envvar="CHECKOUT_RECS_REDIS_URL", help="Redis URL.")
    ] = "redis://127.0.0.1:6379/0",
    prefix: Annotated[
        str, typer.Option(help="Key prefix: the stream is <prefix>:inv_events.")
    ] = "checkout_recs",
    maxlen: Annotated[
        int, typer.Option(help="Entries the stream keeps, about (XADD MAXLEN ~); 0 = all.")
    ] = 1_000_000,
) -> None:
    """Publish inventory events to the inventory stream in time order (replays, tests)."""
    import pyarrow.parquet as pq
    import redis

    from checkout_recs.serving.inventory_stream import events_from_table, publish_events, stream_key

    if not events.exists():
        raise fail(f"no events at {events}")
    try:
        evs = events_from_table(pq.read_table(events))
        client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        ids = publish_events(client, stream_key(prefix), evs, maxlen=maxlen)
    except (ValueError, OSError, redis.RedisError) as exc:
        raise fail(f"publish failed: {exc}") from exc
    typer.echo(
        json.dumps(
            {
                "published": len(ids),
                "stream": stream_key(prefix),
                "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None,
            }
        )
    )


@inventory_app.command("consume")
def inventory_consume(
    redis_url: Annotated[
        str,
        typer.Option(
            envvar="CHECKOUT_RECS_REDIS_URL", help="Redis URL (stream and inventory state)."
        ),
    ] = "redis://127.0.0.1:6379/0",
    prefix: Annotated[
        str, typer.Option(help="Key prefix of the stream and the inventory keys.")
    ] = "checkout_recs",
    group: Annotated[str, typer.Option(help="Consumer group.")] = "inventory-appliers",
    consumer: Annotated[
        str | None, typer.Option(help="This consumer's name (default: the host name).")
    ] = None,
    claim_idle_ms: Annotated[
        int, typer.Option(help="Take over entries pending this long at a dead consumer.")
    ] = 30_000,
    batch: Annotated[int, typer.Option(help="Entries per read.")] = 500,
    metrics_port: Annotated[
        int, typer.Option(help="Port of /metrics (lag, counts); 0 = none.")
    ] = 9108,
    progress_every_s: Annotated[
        float, typer.Option(help="Seconds between progress / lag log lines.")
    ] = 10.0,
) -> None:
    """Apply the inventory stream to the Redis inventory state until SIGTERM / Ctrl-C (long-running)."""
    import logging

    from inference.inventory_consumer import build_parser, run, stop_on_signals

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(
        [
            "--redis_url",
            redis_url,
            "--redis_prefix",
            prefix,
            "--group",
            group,
            "--claim_idle_ms",
            str(claim_idle_ms),
            "--batch",
            str(batch),
            "--metrics_port",
            str(metrics_port),
            "--progress_every_s",
            str(progress_every_s),
        ]
        + (["--consumer", consumer] if consumer else [])
    )
    stats = run(args, stop_on_signals())
    typer.echo(json.dumps(stats.as_dict()))


def explain(
    request_id: Annotated[str, typer.Argument(help="Request id of the disputed answer.")],
    artifact_root: Annotated[
        str,
        typer.Option(
            envvar="CHECKOUT_RECS_ARTIFACT_ROOT",
            help="Artifact store root the decision log writes to.",
        ),
    ] = "artifacts",
) -> None:
    """Show the logged snapshot behind one answer: the six, scores, propensities, reasons, candidates."""
    from rich.console import Console
    from rich.table import Table

    from checkout_recs.serving.decisions import find_decision

    rec = find_decision(artifact_root, request_id)
    if rec is None:
        raise fail(f"request {request_id} is not in the decision log under {artifact_root}")
    con = Console()
    con.print(
        f"[bold]{rec['request_id']}[/] at {rec['event_timestamp']}  user {rec['user_id']} "
        f"region {rec['region']} device {rec['device']}  basket {rec['basket_ids']}"
    )
    con.print(
        f"policy {rec['policy']}  fallback {rec['fallback_reason']}  session {rec['session_class']}  "
        f"model {rec['model_version']}  index {rec['index_version']}  explored {rec['explored']}"
    )
    t = Table(title="the six")
    for col in ("slot", "listing", "expected revenue", "propensity", "source", "reason"):
        t.add_column(col)
    for i, row in enumerate(
        zip(
            rec["item_ids"],
            rec["scores"],
            rec["propensities"],
            rec["sources"],
            rec["reasons"],
            strict=True,
        )
    ):
        t.add_row(str(i), str(row[0]), f"{row[1]:.4f}", f"{row[2]:.3f}", row[3], row[4])
    con.print(t)
    con.print(
        f"{rec['n_candidates']} in-stock candidates, {rec['n_filtered_out']} dropped as sold/locked; "
        f"top candidates by expected revenue: "
        + ", ".join(
            f"{i}:{s:.3f}"
            for i, s in zip(rec["snapshot_ids"][:10], rec["snapshot_scores"][:10], strict=True)
        )
    )
    con.print(f"stage timings (ms): {rec['timings_json']}")


def register(app: typer.Typer) -> None:
    """Register the serving commands on the ``checkout-recs`` app."""
    app.command("serve")(serve)
    app.command("recommend")(recommend)
    app.command("explain")(explain)
    app.add_typer(inventory_app, name="inventory")
