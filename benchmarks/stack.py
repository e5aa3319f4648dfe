"""`make stack-smoke`: the targets of issue #18 asserted against the running pods (`make stack-up`).

Reads ``runs/stack/state.json`` (``scripts/stack.py up``) and, against the transformer's port:

1. **answers** — ``--checkouts`` checkouts of known users (rows of the bundle's user table, which
   the stack materialized into Feast's Redis online store; a basket of 1-3 of the user's recent
   listings; the serving clock an hour after the bundle's snapshot, as in the demo), one at a
   time over v1: the share answered by the ranker (target >= 95 %), and for every answer six
   distinct listings, each in the bundle's snapshot and not sold;
2. **live inventory** — the listings shown most often are marked ``sold`` on the inventory stream
   (the Redis the pods use); the same checkouts again must show none of them (the transformer's
   replica tails the stream); they are ``listed`` again afterwards;
3. **ConfigMap change** — ``max_per_seller`` 1 -> 2 written into ``policy.json`` of the ConfigMap's
   podman volume (what the kubelet's sync does to a mounted ConfigMap): seconds until the
   transformer's ``checkout_recs_policy_config_info{version}`` shows the new content hash (target
   <= 60 s), the answers showing a seller twice before and after, the container's restart count and
   start time unchanged; then the original file is put back;
4. **decision log** — every answer's ``request_id`` found in the decision parts in the S3 bucket
   (moto), within ``--log_wait`` s (the transformer publishes a part every 30 s);
5. **pod security** — ``podman inspect`` of each serving container: user 10001, read-only root
   filesystem; and a write to ``/opt`` inside each refused;
6. **MLflow** — the server answers ``/health`` and lists experiments.

Writes ``benchmarks/results/stack.json`` (``--out``) and exits 1 when a target is missed.

    .venv/bin/python benchmarks/stack.py [--checkouts 200]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checkout_recs.serving.bundle_layout import BundleLayout  # noqa: E402
from checkout_recs.serving.decisions import KIND as DECISIONS  # noqa: E402
from checkout_recs.serving.inventory import InventoryEvent  # noqa: E402
from checkout_recs.serving.inventory_stream import publish_events, stream_key  # noqa: E402
from checkout_recs.serving.policy_source import POLICY_FILE, config_version, parse_policy  # noqa: E402
from checkout_recs.storage import S3ArtifactStore  # noqa: E402

STATE = ROOT / "runs" / "stack" / "state.json"
MODEL = "checkout-recs"
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_PREFIX = "checkout_recs"  # the transformer's --redis_prefix default (the overlay sets none)
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "stack-local",
    "AWS_SECRET_ACCESS_KEY": "stack-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "containers.conf")}


def podman(*args: str, check: bool = True) -> str:
    """``podman ARGS`` (the project's containers.conf); its stdout."""
    return subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, check=check
    ).stdout


def make_checkouts(bundle: Path, n: int, run: str, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` checkouts of users of the bundle's user table (known users), timestamped an hour after
    the bundle's snapshot; each with its own ``request_id`` (``stack-<run>-<i>``)."""
    layout = BundleLayout(bundle)
    users = pd.read_parquet(layout.features_dir / "user.parquet")
    snap = pd.read_parquet(
        bundle / "index" / "snapshot.parquet", columns=["listing_id", "snapshot_time"]
    )
    listed = set(snap["listing_id"].astype(int))
    now = (pd.Timestamp(snap["snapshot_time"].max()) + pd.Timedelta(hours=1)).isoformat()
    rng = np.random.default_rng(seed)
    picked = users.sample(n=min(n, len(users)), random_state=seed)
    out = []
    for i, u in enumerate(picked.itertuples()):
        recent = [
            int(x)
            for x in (u.recent_listing_ids if u.recent_listing_ids is not None else [])
            if int(x) in listed
        ]
        basket = recent[: int(rng.integers(1, 4))] or [int(rng.choice(sorted(listed)))]
        out.append(
            {
                "request_id": f"stack-{run}-{i}",
                "user_id": int(u.user_id),
                "purchased_item_ids": basket,
                "region": str(u.region),
                "device": ("web", "ios", "android")[i % 3],
                "timestamp": now,
            }
        )
    return out


def ask(
    http: httpx.Client, url: str, checkouts: list[dict[str, Any]], suffix: str
) -> list[dict[str, Any]]:
    """Send each checkout (its ``request_id`` + ``suffix``), one at a time; one record per answer."""
    out = []
    for c in checkouts:
        body = {"instances": [{**c, "request_id": c["request_id"] + suffix}]}
        t = time.perf_counter()
        r = http.post(url, json=body)
        ms = (time.perf_counter() - t) * 1e3
        pred = r.json()["predictions"][0] if r.status_code == 200 else {}
        out.append(
            {
                "request_id": body["instances"][0]["request_id"],
                "status": r.status_code,
                "ms": ms,
                "policy": pred.get("policy"),
                "fallback_reason": pred.get("fallback_reason"),
                "ids": [int(it["listing_id"]) for it in pred.get("items", [])],
            }
        )
    return out


def answer_figures(
    answers: list[dict[str, Any]], listed: set[int], sold: set[int], sellers: dict[int, int]
) -> dict:
    """Ranker share, six-distinct-in-stock share, fallback reasons, answers repeating a seller, latency."""
    ok = [a for a in answers if a["status"] == 200]
    six = [
        a
        for a in ok
        if len(a["ids"]) == 6
        and len(set(a["ids"])) == 6
        and all(i in listed and i not in sold for i in a["ids"])
    ]
    repeat = [a for a in ok if len({sellers.get(i) for i in a["ids"]}) < len(a["ids"])]
    ms = np.array([a["ms"] for a in answers])
    return {
        "n": len(answers),
        "http_200": len(ok),
        "ranker": sum(a["policy"] == "ranker" for a in ok),
        "ranker_share": round(sum(a["policy"] == "ranker" for a in ok) / max(len(answers), 1), 4),
        "six_distinct_in_stock": len(six),
        "six_distinct_in_stock_share": round(len(six) / max(len(answers), 1), 4),
        "fallback_reasons": dict(
            collections.Counter(a["fallback_reason"] for a in ok if a["fallback_reason"])
        ),
        "answers_repeating_a_seller": len(repeat),
        "shown_sold": sum(i in sold for a in ok for i in a["ids"]),
        "latency_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(ms, 95)), 2),
    }


def mark(listings: list[int], event_type: str) -> None:
    """Publish ``event_type`` for each listing on the inventory stream (sequence: now in µs)."""
    now = time.time()
    events = [
        InventoryEvent(
            listing_id=i,
            event_type=event_type,
            sequence=int(now * 1e6),
            lock_ttl_s=None,
            event_ts=now,
            event_id=f"stack-smoke-{event_type}-{i}",
        )
        for i in listings
    ]
    publish_events(redis.Redis.from_url(REDIS_URL), stream_key(REDIS_PREFIX), events)


def policy_version(http: httpx.Client, base: str) -> str | None:
    """The ``version`` label of ``checkout_recs_policy_config_info`` on the transformer's ``/metrics``."""
    for line in http.get(f"{base}/metrics").text.splitlines():
        if line.startswith("checkout_recs_policy_config_info{") and line.rstrip().endswith(" 1.0"):
            return line.split('version="', 1)[1].split('"', 1)[0]
    return None


def container_run(name: str) -> dict[str, Any]:
    """Restart count and start time of a container (``podman inspect``)."""
    info = json.loads(podman("inspect", name))[0]
    return {"restarts": info.get("RestartCount", 0), "started_at": info["State"]["StartedAt"]}


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by a file with ``text`` (same folder, then rename: no half-written read)."""
    tmp = path.with_name(f".{path.name}.stack-smoke")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


def wait_version(http: httpx.Client, base: str, want: str, timeout_s: float) -> float | None:
    """Seconds until the transformer's policy version is ``want`` (None after ``timeout_s``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if policy_version(http, base) == want:
            return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    return None


def configmap_change(
    http: httpx.Client, base: str, volume: str, container: str, timeout_s: float
) -> dict[str, Any]:
    """``max_per_seller`` 1 -> 2 in the mounted ConfigMap; time to take effect; put it back."""
    folder = Path(podman("volume", "inspect", volume, "--format", "{{.Mountpoint}}").strip())
    original = (folder / POLICY_FILE).read_text()
    doc = json.loads(original)
    changed = json.dumps({**doc, "max_per_seller": int(doc.get("max_per_seller", 1)) + 1}, indent=2)
    before_run, before = container_run(container), policy_version(http, base)
    write_atomically(folder / POLICY_FILE, changed)
    took = wait_version(http, base, config_version(parse_policy(changed)), timeout_s)
    return {
        "volume_folder": str(folder),
        "version_before": before,
        "version_after": policy_version(http, base),
        "max_per_seller": [doc.get("max_per_seller"), doc.get("max_per_seller", 1) + 1],
        "seconds_to_take_effect": took,
        "container_before": before_run,
        "original": original,
    }


def restore_configmap(
    http: httpx.Client, base: str, change: dict[str, Any], timeout_s: float
) -> float | None:
    """Put the ConfigMap's original ``policy.json`` back; seconds until it is in force again."""
    write_atomically(Path(change["volume_folder"]) / POLICY_FILE, change["original"])
    return wait_version(http, base, config_version(parse_policy(change["original"])), timeout_s)


def logged_request_ids(root: str, endpoint: str) -> set[str]:
    """Every ``request_id`` in the published decision parts under ``root`` (S3)."""
    for key, value in S3_CREDENTIALS.items():  # moto accepts any; boto3 needs some
        os.environ.setdefault(key, value)
    store = S3ArtifactStore(root, endpoint_url=endpoint)
    ids: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for version in store.versions(DECISIONS):
            folder = store.fetch(DECISIONS, version, Path(tmp) / version)
            ids |= set(
                pq.read_table(folder, columns=["request_id"]).column("request_id").to_pylist()
            )
    return ids


def wait_logged(
    root: str, endpoint: str, wanted: set[str], timeout_s: float
) -> tuple[set[str], float]:
    """Poll the decision log until every id of ``wanted`` is there (or ``timeout_s``): found, seconds."""
    t0, found = time.monotonic(), set()
    while time.monotonic() - t0 < timeout_s:
        found = logged_request_ids(root, endpoint) & wanted
        if found == wanted:
            break
        time.sleep(5)
    return found, round(time.monotonic() - t0, 1)


def security(containers: list[str]) -> dict[str, Any]:
    """User, read-only root filesystem (``podman inspect``) and a refused write to ``/opt``, per container."""
    out = {}
    for name in containers:
        info = json.loads(podman("inspect", name))[0]
        probe = subprocess.run(
            [
                "podman",
                "exec",
                name,
                "python",
                "-c",
                "import os; print(os.getuid(), os.getgid())\n"
                "try:\n open('/opt/stack-smoke', 'w')\nexcept OSError as e:\n print('write refused:', e.strerror)",
            ],
            env=PODMAN_ENV,
            capture_output=True,
            text=True,
        )
        lines = probe.stdout.strip().splitlines()
        out[name] = {
            "user": info["Config"]["User"],
            "read_only_rootfs": info["HostConfig"]["ReadonlyRootfs"],
            "uid_gid_inside": lines[0] if lines else probe.stderr.strip(),
            "write_to_opt": lines[1] if len(lines) > 1 else "allowed",
        }
    return out


def mlflow_check(http: httpx.Client, base: str) -> dict[str, Any]:
    """MLflow's ``/health`` and experiment search."""
    health = http.get(f"{base}/health").status_code
    r = http.post(f"{base}/api/2.0/mlflow/experiments/search", json={"max_results": 10})
    return {
        "health": health,
        "experiments_search": r.status_code,
        "experiments": [e["name"] for e in r.json().get("experiments", [])]
        if r.status_code == 200
        else [],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the checks, write the results, return 0 when every target is met."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkouts", type=int, default=200)
    p.add_argument(
        "--sold", type=int, default=20, help="listings marked sold in the live-inventory check"
    )
    p.add_argument("--configmap_timeout", type=float, default=90.0)
    p.add_argument("--log_wait", type=float, default=120.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stack.json")
    args = p.parse_args(argv)
    if not STATE.exists():
        sys.exit(f"stack-smoke: {STATE} not found: run `make stack-up` first")
    state = json.loads(STATE.read_text())
    bundle, base = Path(state["bundle"]), state["transformer_url"]
    url = f"{base}/v1/models/{MODEL}:predict"
    snap = pd.read_parquet(
        bundle / "index" / "snapshot.parquet", columns=["listing_id", "seller_id"]
    )
    listed, sellers = (
        set(snap["listing_id"].astype(int)),
        dict(zip(snap["listing_id"].astype(int), snap["seller_id"].astype(int), strict=True)),
    )
    checkouts = make_checkouts(bundle, args.checkouts, run=f"{time.time():.0f}")
    transformer = f"{state['pods'][-1]}-kserve-container"
    serving = [f"{pod}-kserve-container" for pod in state["pods"]]
    res: dict[str, Any] = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "bundle": bundle.name,
        "stack_up_seconds": state.get("up_seconds"),
        "transformer_url": url,
    }
    with httpx.Client(timeout=10) as http:
        res["probes"] = {
            f"{name} {path}": http.get(f"{u}{path}").status_code
            for name, u in (("transformer", base), ("predictor", "http://127.0.0.1:80"))
            for path in ("/v2/health/live", "/v2/health/ready")
        }
        first = ask(http, url, checkouts, "")
        res["answers"] = answer_figures(first, listed, set(), sellers)
        shown = collections.Counter(i for a in first for i in a["ids"])
        sold = [i for i, _ in shown.most_common(args.sold)]
        mark(sold, "sold")
        time.sleep(2.0)
        second = ask(http, url, checkouts, "-sold")
        res["live_inventory"] = {
            "marked_sold": sold,
            **answer_figures(second, listed, set(sold), sellers),
        }
        mark(sold, "listed")
        change = configmap_change(
            http, base, state["configmaps"][0], transformer, args.configmap_timeout
        )
        third = ask(http, url, checkouts, "-cm")
        change["answers_after"] = answer_figures(third, listed, set(), sellers)
        change["container_after"] = container_run(transformer)
        change["restored_in_s"] = restore_configmap(http, base, change, args.configmap_timeout)
        change.pop("original")
        res["configmap"] = change
        res["mlflow"] = mlflow_check(http, state["mlflow_url"])
    sent = {a["request_id"] for a in first + second + third if a["status"] == 200}
    found, waited = wait_logged(
        state["storage_uri"].split("/bundle/")[0], state["s3_endpoint"], sent, args.log_wait
    )
    res["decision_log"] = {
        "answers": len(sent),
        "rows_found": len(found),
        "waited_s": waited,
        "missing_examples": sorted(sent - found)[:5],
    }
    res["security"] = security(serving)
    res["targets"] = targets(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["targets"], indent=2))
    print(f"-> {args.out}")
    return 0 if all(t["met"] for t in res["targets"].values()) else 1


def targets(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of issue #18 (``make stack-up``) with its figure and whether it is met."""
    a, cm = res["answers"], res["configmap"]
    took = cm["seconds_to_take_effect"]
    sec = res["security"].values()
    return {
        "ranker_share_known_users": {
            "figure": a["ranker_share"],
            "target": ">= 0.95",
            "met": a["ranker_share"] >= 0.95,
        },
        "six_distinct_in_stock": {
            "figure": a["six_distinct_in_stock_share"],
            "target": "1.0",
            "met": a["six_distinct_in_stock_share"] == 1.0
            and res["live_inventory"]["shown_sold"] == 0,
        },
        "configmap_without_restart_s": {
            "figure": took,
            "target": "<= 60 without a restart",
            "met": took is not None
            and took <= 60
            and cm["container_before"] == cm["container_after"],
        },
        "decision_log_in_s3": {
            "figure": f"{res['decision_log']['rows_found']}/{res['decision_log']['answers']}",
            "target": "every answer",
            "met": res["decision_log"]["rows_found"] == res["decision_log"]["answers"] > 0,
        },
        "uid_10001_read_only_root": {
            "figure": [(s["user"], s["read_only_rootfs"]) for s in sec],
            "target": "10001, true",
            "met": all(
                s["user"].split(":")[0] == "10001"
                and s["read_only_rootfs"]
                and s["write_to_opt"].startswith("write refused")
                for s in sec
            ),
        },
        "mlflow_server": {
            "figure": res["mlflow"]["health"],
            "target": "200",
            "met": res["mlflow"]["health"] == 200,
        },
    }


if __name__ == "__main__":
    sys.exit(main())
