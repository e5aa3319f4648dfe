"""`make stack-up` / `make stack-down`: the local overlay's InferenceService run as pods, here.

``up``:

1. **bundle** — the newest ``runs/*/artifacts/bundle/bundle-*`` (or ``--bundle``); none: the
   training pipeline runs first (``checkout-recs pipeline run training --local --out runs/stack``,
   about 4 min);
2. **S3** — ``moto_server`` on 127.0.0.1:9000 (the overlay's ``minio.checkout-recs-local:9000``;
   ``S3_IGNORE_SUBDOMAIN_BUCKETNAME``, else moto reads ``minio`` of that host name as a bucket),
   the bundle uploaded to the rendered ``STORAGE_URI``;
3. **PostgreSQL** (the host's, 127.0.0.1:5432) — databases ``checkout_recs_feast`` (Feast's SQL
   registry) and ``checkout_recs_mlflow`` (MLflow's backend); **Redis** (the host's, 6379, db 0) —
   the bundle's user features applied and materialized into the production Feast environment;
4. **MLflow** — ``mlflow server`` on 127.0.0.1:5000, backend PostgreSQL, artifacts in the bucket;
5. **pods** — ``manifests/overlays/local`` rendered with the pinned kubectl, each InferenceService
   component converted to its RawDeployment pod (``checkout_recs.deploy.raw_pods``), adapted with
   ``for_local_run`` and played with ``podman kube play --network slirp4netns:allow_host_loopback=true``
   with the policy ConfigMap (a podman volume) and the Secret ``checkout-recs-feast-registry`` (a
   podman secret); then the transformer's readiness is awaited on 127.0.0.1:8080.

State (pids, ports, names) goes to ``runs/stack/state.json``; ``down`` removes the pods, the
ConfigMap volume, the secret, and stops the processes it started (by pid). ``docs/deploy.md`` →
*Local stack* says what runs and what cannot run here.

    .venv/bin/python scripts/stack.py up [--bundle DIR]
    .venv/bin/python scripts/stack.py down
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checkout_recs.deploy.manifests import build as render_overlay  # noqa: E402
from checkout_recs.deploy.raw_pods import for_local_run, raw_pods  # noqa: E402

OVERLAY = ROOT / "manifests" / "overlays" / "local"
STATE_DIR = ROOT / "runs" / "stack"
STATE = STATE_DIR / "state.json"
VENV_BIN = ROOT / ".venv" / "bin"
#: The image whose python + boto3 run the storage initializer's download.
INITIALIZER_IMAGE = "ghcr.io/checkout-recs/transformer:0.1.0"
S3_PORT, MLFLOW_PORT, TRANSFORMER_PORT, PREDICTOR_SERVICE_PORT = 9000, 5000, 8080, 80
#: slirp4netns (allow_host_loopback): the address a pod reaches the host's 127.0.0.1 at.
HOST_LOOPBACK = "10.0.2.2"
#: The cluster DNS names the overlay's pods use, all served on the host's loopback here.
SERVICE_NAMES = [
    "checkout-recs-redis",
    "minio.checkout-recs-local",
    "checkout-recs-predictor.checkout-recs-local",
]
#: S3 credentials (moto accepts any): what IRSA or the MinIO Secret gives a cluster pod.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "stack-local",
    "AWS_SECRET_ACCESS_KEY": "stack-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PG = "postgresql+psycopg://postgres@{host}:5432/{db}"
FEAST_DB, MLFLOW_DB = "checkout_recs_feast", "checkout_recs_mlflow"
REDIS_URL = "redis://127.0.0.1:6379/0"
NETWORK = "slirp4netns:allow_host_loopback=true"
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "containers.conf")}


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def podman(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``podman ARGS`` with the project's containers.conf (rootful runc, the sandbox's ulimits)."""
    return subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, check=check, input=stdin
    )


def newest_bundle() -> Path | None:
    """The newest bundle folder under ``runs/*/artifacts/bundle`` (by name: versions sort by time)."""
    found = sorted(
        ROOT.glob("runs/*/artifacts/bundle/bundle-*/bundle.json"), key=lambda p: p.parent.name
    )
    return found[-1].parent if found else None


def ensure_bundle(given: Path | None) -> Path:
    """``given``, else the newest bundle, else one built by the training pipeline (``runs/stack``)."""
    bundle = given or newest_bundle()
    if bundle is None:
        log("no bundle under runs/: running the training pipeline (about 4 min)")
        subprocess.run(
            [
                str(VENV_BIN / "checkout-recs"),
                "pipeline",
                "run",
                "training",
                "--local",
                "--out",
                str(STATE_DIR),
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        bundle = newest_bundle()
    if bundle is None or not (bundle / "bundle.json").exists():
        sys.exit(f"stack: no bundle at {bundle}")
    return bundle.resolve()


def start_process(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in its own session, output to ``runs/stack/logs/<name>.log``; its pid."""
    logs = STATE_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("w") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=STATE_DIR,
            env={**os.environ, **(env or {})},
        )
    return proc.pid


def wait_http(url: str, timeout_s: float, what: str) -> float:
    """Poll ``url`` until it answers 200; seconds waited (``SystemExit`` after ``timeout_s``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sys.exit(f"stack: {what} did not answer 200 at {url} within {timeout_s:.0f} s")


def s3_client() -> Any:
    """A boto3 S3 client of the loopback moto server."""
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{S3_PORT}",
        region_name="us-east-1",
        aws_access_key_id="stack-local",
        aws_secret_access_key="stack-local",
    )


def upload_bundle(bundle: Path, storage_uri: str) -> int:
    """Every file of ``bundle`` under ``storage_uri`` (bucket created); the number of objects."""
    bucket, _, prefix = storage_uri.removeprefix("s3://").partition("/")
    s3 = s3_client()
    s3.create_bucket(Bucket=bucket)
    files = [p for p in sorted(bundle.rglob("*")) if p.is_file()]
    for p in files:
        s3.upload_file(str(p), bucket, f"{prefix.rstrip('/')}/{p.relative_to(bundle).as_posix()}")
    return len(files)


def ensure_databases(*names: str) -> None:
    """Create each PostgreSQL database that does not exist yet (host's server, user postgres)."""
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        for name in names:
            if (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                is None
            ):
                conn.execute(f'CREATE DATABASE "{name}"')


def materialize_users(bundle: Path) -> dict[str, Any]:
    """Apply the feature repo to the production Feast environment (SQL registry, Redis) and load the
    bundle's user features online (the only view serving reads online)."""
    from feature_repo.store import open_store

    store = open_store(
        "production",
        bundle / "features",
        STATE_DIR / "feast",
        redis_url=REDIS_URL,
        registry_url=PG.format(host="127.0.0.1", db=FEAST_DB),
    )
    store.apply()
    records = store.materialize(
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC), views=["user"]
    )
    return {"project": store.cfg.project, "records": records}


def create_secret(name: str, data: dict[str, str]) -> None:
    """A podman secret in the form ``kube play`` reads a ``secretKeyRef`` from (JSON, base64 values)."""
    podman("secret", "rm", name, check=False)
    body = json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in data.items()})
    podman("secret", "create", name, "-", stdin=body)


def play_documents(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods of the overlay's InferenceService adapted for this machine, and the ConfigMaps they mount."""
    pods = [
        for_local_run(
            p,
            {HOST_LOOPBACK: SERVICE_NAMES},
            {TRANSFORMER_PORT: TRANSFORMER_PORT}
            if p["metadata"]["labels"]["component"] == "transformer"
            else {TRANSFORMER_PORT: PREDICTOR_SERVICE_PORT},
            S3_CREDENTIALS,
        )
        for p in raw_pods(docs, INITIALIZER_IMAGE)
    ]
    mounted = {
        v["configMap"]["name"]
        for p in pods
        for v in p["spec"].get("volumes", [])
        if "configMap" in v
    }
    maps = [d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"]["name"] in mounted]
    return maps + pods


def storage_uri(docs: list[dict[str, Any]]) -> str:
    """The one ``STORAGE_URI`` the overlay's InferenceService serves."""
    isvc = next(d for d in docs if d.get("kind") == "InferenceService")
    uris = {
        e["value"]
        for comp in isvc["spec"].values()
        for c in comp.get("containers", [])
        for e in c.get("env", [])
        if e.get("name") == "STORAGE_URI"
    }
    if len(uris) != 1:
        sys.exit(f"stack: expected one STORAGE_URI, the overlay has {sorted(uris)}")
    return uris.pop()


def up(args: argparse.Namespace) -> None:
    """Bring the stack up (module docstring)."""
    if STATE.exists():
        sys.exit(f"stack: {STATE} exists: run `make stack-down` first")
    for image in (
        "ghcr.io/checkout-recs/transformer:0.1.0",
        "ghcr.io/checkout-recs/predictor:0.1.0",
    ):
        if podman("image", "exists", image, check=False).returncode != 0:
            sys.exit(f"stack: image {image} is missing: run `make images` first")
    t0 = time.monotonic()
    bundle = ensure_bundle(args.bundle)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    docs = render_overlay(OVERLAY)
    state: dict[str, Any] = {
        "bundle": str(bundle),
        "pids": {},
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    STATE.write_text(json.dumps(state, indent=2))
    creds = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{S3_PORT}"}
    state["pids"]["moto_server"] = start_process(
        "moto_server",
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(S3_PORT)],
        env={"S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"},
    )
    STATE.write_text(json.dumps(state, indent=2))
    wait_http(f"http://127.0.0.1:{S3_PORT}/moto-api/", 60, "moto_server")
    uri = storage_uri(docs)
    log(
        f"moto_server on 127.0.0.1:{S3_PORT}; bundle {bundle.name}: {upload_bundle(bundle, uri)} objects -> {uri}"
    )
    ensure_databases(FEAST_DB, MLFLOW_DB)
    state["feast"] = materialize_users(bundle)
    log(f"Feast production store: registry postgresql/{FEAST_DB}, user features in Redis 6379/0")
    state["pids"]["mlflow"] = start_process(
        "mlflow",
        [
            str(VENV_BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            PG.format(host="127.0.0.1", db=MLFLOW_DB),
            "--artifacts-destination",
            f"s3://{uri.removeprefix('s3://').split('/')[0]}/mlflow",
            "--host",
            "127.0.0.1",
            "--port",
            str(MLFLOW_PORT),
            "--workers",
            "1",
        ],
        env={**creds, "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}"},
    )
    STATE.write_text(json.dumps(state, indent=2))
    create_secret(
        "checkout-recs-feast-registry", {"url": PG.format(host=HOST_LOOPBACK, db=FEAST_DB)}
    )
    play = play_documents(docs)
    play_file = STATE_DIR / "play.yaml"
    play_file.write_text(yaml.safe_dump_all(play, sort_keys=False))
    state.update(
        play=str(play_file),
        pods=[d["metadata"]["name"] for d in play if d["kind"] == "Pod"],
        configmaps=[d["metadata"]["name"] for d in play if d["kind"] == "ConfigMap"],
        secrets=["checkout-recs-feast-registry"],
        transformer_url=f"http://127.0.0.1:{TRANSFORMER_PORT}",
        mlflow_url=f"http://127.0.0.1:{MLFLOW_PORT}",
        s3_endpoint=f"http://127.0.0.1:{S3_PORT}",
        storage_uri=uri,
    )
    STATE.write_text(json.dumps(state, indent=2))
    out = podman("kube", "play", "--network", NETWORK, "--replace", str(play_file), check=False)
    if out.returncode != 0:
        sys.exit(f"stack: podman kube play failed: {out.stderr.strip()}")
    log(f"pods {state['pods']} played ({play_file})")
    wait_http(f"http://127.0.0.1:{MLFLOW_PORT}/health", 180, "mlflow server")
    ready = wait_http(
        f"http://127.0.0.1:{TRANSFORMER_PORT}/v2/health/ready",
        args.ready_timeout,
        "the transformer",
    )
    state["transformer_ready_s"] = round(ready, 1)
    state["up_seconds"] = round(time.monotonic() - t0, 1)
    STATE.write_text(json.dumps(state, indent=2))
    log(
        f"stack up in {state['up_seconds']} s: transformer {state['transformer_url']}/v1/models/checkout-recs:predict"
    )


def _stop(pid: int, name: str) -> None:
    """SIGTERM the session ``pid`` leads when its command line is still ``name``'s, then SIGKILL."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return
    if name not in cmdline:
        log(f"pid {pid} is no longer {name}: left alone")
        return
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone (its leader may linger as an unreaped zombie)
        return


def down(_: argparse.Namespace) -> None:
    """Remove what ``up`` made (by name and pid, from the state file)."""
    if not STATE.exists():
        log("no state file: nothing to take down")
        return
    state = json.loads(STATE.read_text())
    if state.get("play") and Path(state["play"]).exists():
        podman("kube", "down", state["play"], check=False)
    for pod in state.get("pods", []):
        podman("pod", "rm", "-f", pod, check=False)
    for name in state.get("configmaps", []):
        podman("volume", "rm", "-f", name, check=False)
    for name in state.get("secrets", []):
        podman("secret", "rm", name, check=False)
    for name, pid in state.get("pids", {}).items():
        _stop(int(pid), name)
    STATE.unlink()
    log("stack down")


def main(argv: list[str] | None = None) -> None:
    """``up`` or ``down``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="serving bundle folder (default: the newest under runs/)",
    )
    u.add_argument(
        "--ready_timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the transformer's readiness",
    )
    sub.add_parser("down")
    args = p.parse_args(argv)
    {"up": up, "down": down}[args.cmd](args)


if __name__ == "__main__":
    main()
