"""Fake servers of the ops tests, on loopback: a Kubernetes API with a tiny KServe controller, a
Kubeflow Pipelines API, and a Prometheus text endpoint fed by a traffic simulator (scraped by a
real Prometheus: ``tests.fixtures_prometheus.kube_prometheus``). Import
explicitly: ``from tests.fixtures_ops_servers import fake_kube, fake_kfp, ...``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.fixtures_ops import MANIFESTS, find

# ------------------------------------------------------------------------ fake Kubernetes API server


ISVC_PREFIX = "/apis/serving.kserve.io/v1beta1/namespaces/"
CM_PREFIX = "/api/v1/namespaces/"


def merge_patch(target, patch):  # noqa: ANN001, ANN201 - RFC 7386
    """JSON merge patch: dicts merge, ``None`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(target: dict, ops: list[dict]) -> dict:
    """The ``add``/``replace``/``remove`` subset of RFC 6902 on object members."""
    out = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if op["op"] in ("add", "replace"):
            node[parts[-1]] = op["value"]
        elif op["op"] == "remove":
            node.pop(parts[-1], None)
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return out


class Denied(ValueError):
    """A patch KServe's validating webhook would refuse (the fake answers 403 with the reason)."""


def kserve_admission(obj: dict) -> str | None:
    """Why KServe's webhook refuses ``obj``, or None: the collocation rule it enforces
    (``validateCollocationStorageURI``: no STORAGE_URI in ``transformer-container``)."""
    for c in (obj.get("spec", {}).get("predictor") or {}).get("containers") or []:
        if c.get("name") == "transformer-container" and any(
            e.get("name") == "STORAGE_URI" for e in c.get("env") or []
        ):
            return "the STORAGE_URI env variable is not allowed in the transformer-container"
    return None


class FakeKube:
    """State of the fake API server plus a tiny KServe controller.

    After each InferenceService patch the controller (after ``reconcile_delay`` seconds, on a
    timer, so clients must watch) creates a revision when a component's spec changed, splits
    traffic by ``canaryTrafficPercent`` between the latest and the last rolled-out revision,
    promotes when the field is removed, and marks the object Ready for its generation. A
    collocated predictor (both containers in its pod) is one component: one revision per change
    of either container. A patch KServe's webhook would refuse (``kserve_admission``) is answered
    403 and changes nothing. ``reconcile=False`` freezes the controller (a cluster that never
    becomes ready).
    """

    def __init__(self, reconcile_delay: float = 0.05) -> None:
        self.lock = threading.Condition()
        self.rv = 100
        self.isvcs: dict[tuple[str, str], dict] = {}
        self.configmaps: dict[tuple[str, str], dict] = {}
        self.events: list[tuple[int, str, str, dict]] = []  # (rv, ns/name, type, object)
        self.history: list[dict] = []
        self.reconcile_delay, self.reconcile = reconcile_delay, True
        self.revisions: dict[tuple[str, str, str], dict] = {}  # (ns, name, comp) -> state

    # ---------------------------------------------------------------------------- state
    def _bump(self, key: tuple[str, str], obj: dict, kind: str) -> dict:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, "/".join(key), kind, copy.deepcopy(obj)))
        self.lock.notify_all()
        return obj

    def add_isvc(self, obj: dict) -> None:
        """Create an InferenceService already rolled out (as if applied and reconciled)."""
        obj = copy.deepcopy(obj)
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        obj["metadata"]["generation"] = 1
        with self.lock:
            self.isvcs[key] = obj
            self._reconcile(key)

    def add_configmap(self, obj: dict) -> None:
        with self.lock:
            self.configmaps[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = (
                copy.deepcopy(obj)
            )

    def patch_isvc(self, key: tuple[str, str], body: dict) -> dict:
        with self.lock:
            old = self.isvcs[key]
            new = merge_patch(old, body)
            if (why := kserve_admission(new)) is not None:
                raise Denied(why)
            if new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            self.isvcs[key] = self._bump(key, new, "MODIFIED")
        if self.reconcile:
            threading.Timer(self.reconcile_delay, self._reconcile_locked, args=(key,)).start()
        return copy.deepcopy(new)

    def _reconcile_locked(self, key: tuple[str, str]) -> None:
        with self.lock:
            self._reconcile(key)

    def _reconcile(self, key: tuple[str, str]) -> None:
        obj = self.isvcs[key]
        comps = {}
        for comp in ("transformer", "predictor"):
            spec = obj.get("spec", {}).get(comp)
            if spec:
                comps[comp] = self._component_status(key, comp, spec)
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "components": comps,
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        self._bump(key, obj, "MODIFIED")

    def _component_status(self, key: tuple[str, str], comp: str, spec: dict) -> dict:
        st = self.revisions.setdefault(
            (*key, comp), {"n": 0, "latest": None, "rolled_out": None, "spec": None}
        )
        body = {k: v for k, v in spec.items() if k != "canaryTrafficPercent"}
        if body != st["spec"]:
            st["n"] += 1
            st["spec"], st["latest"] = copy.deepcopy(body), f"{key[1]}-{comp}-{st['n']:05d}"
        pct = spec.get("canaryTrafficPercent")
        if st["rolled_out"] is None or pct is None or st["latest"] == st["rolled_out"]:
            st["rolled_out"] = st["latest"]
            traffic = [
                {
                    "revisionName": st["latest"],
                    "percent": 100,
                    "latestRevision": True,
                    "tag": "latest",
                }
            ]
        else:
            traffic = [
                {
                    "revisionName": st["latest"],
                    "percent": pct,
                    "latestRevision": True,
                    "tag": "latest",
                },
                {
                    "revisionName": st["rolled_out"],
                    "percent": 100 - pct,
                    "latestRevision": False,
                    "tag": "prev",
                },
            ]
        return {
            "latestCreatedRevision": st["latest"],
            "latestReadyRevision": st["latest"],
            "latestRolledoutRevision": st["rolled_out"],
            "traffic": traffic,
        }

    def traffic(self, namespace: str, name: str, comp: str | None = None) -> dict[str, int]:
        """``{revision: percent}`` of a component now; by default the one requests enter through
        (the transformer component when there is one, else the predictor)."""
        with self.lock:
            comps = self.isvcs[(namespace, name)].get("status", {}).get("components", {})
            t = comps.get(comp or ("transformer" if "transformer" in comps else "predictor"), {})
            return {e["revisionName"]: e["percent"] for e in t.get("traffic", [])}

    def patches(self, kind: str = "inferenceservices") -> list[dict]:
        """Bodies of every PATCH to ``kind``, in order."""
        return [
            h["body"] for h in self.history if h["method"] == "PATCH" and f"/{kind}/" in h["path"]
        ]

    def watch_events(self, key: str, since: int, timeout: float) -> Iterator[dict]:
        deadline = time.monotonic() + timeout
        sent = since
        while time.monotonic() < deadline:
            with self.lock:
                new = [e for e in self.events if e[0] > sent and e[1] == key]
                if not new:
                    self.lock.wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
                    continue
            for rv, _, kind, obj in new:
                sent = rv
                yield {"type": kind, "object": obj}


def _make_handler(
    fake: FakeKube, metrics: Callable[[], str] | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, obj: object) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _not_found(self, what: str) -> None:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "message": f"{what} not found",
                    "code": 404,
                },
            )

        def _record(self, body: object = None) -> tuple[str, dict]:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            fake.history.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "body": body,
                    "content_type": self.headers.get("Content-Type"),
                }
            )
            return url.path, query

        def do_GET(self) -> None:  # noqa: N802
            path, query = self._record()
            if path == "/metrics" and metrics is not None:
                data = metrics().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif path.startswith(ISVC_PREFIX):
                self._get_isvc(path, query)
            elif path.startswith(CM_PREFIX) and "/configmaps/" in path:
                ns, _, name = path[len(CM_PREFIX) :].partition("/configmaps/")
                cm = fake.configmaps.get((ns, name))
                self._send(200, cm) if cm else self._not_found(f"configmap {name}")
            else:
                self._not_found(path)

        def _get_isvc(self, path: str, query: dict) -> None:
            ns, _, rest = path[len(ISVC_PREFIX) :].partition("/inferenceservices")
            name = rest.strip("/")
            if name:
                obj = fake.isvcs.get((ns, name))
                return self._send(200, obj) if obj else self._not_found(f"inferenceservice {name}")
            selected = query.get("fieldSelector", "").removeprefix("metadata.name=")
            if query.get("watch") not in ("true", "1", "True"):
                items = [
                    o
                    for (n, k), o in fake.isvcs.items()
                    if n == ns and (not selected or k == selected)
                ]
                return self._send(
                    200, {"kind": "InferenceServiceList", "items": items, "metadata": {}}
                )
            self._stream(f"{ns}/{selected}", query)

        def _chunk(self, obj: object) -> None:
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _stream(self, key: str, query: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header(
                "Transfer-Encoding", "chunked"
            )  # one chunk per event, like the API server
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            since = int(query.get("resourceVersion") or 0)
            try:
                if not since:  # like the API server: the current object first
                    with fake.lock:
                        obj = copy.deepcopy(fake.isvcs.get(tuple(key.split("/", 1))))
                        since = fake.rv
                    if obj:
                        self._chunk({"type": "ADDED", "object": obj})
                for event in fake.watch_events(key, since, float(query.get("timeoutSeconds", 5))):
                    self._chunk(event)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_PATCH(self) -> None:  # noqa: N802
            body = json.loads(
                self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null"
            )
            path, _ = self._record(body)
            ctype = self.headers.get("Content-Type", "")
            if path.startswith(ISVC_PREFIX):
                ns, _, name = path[len(ISVC_PREFIX) :].partition("/inferenceservices/")
                if (ns, name) not in fake.isvcs:
                    return self._not_found(f"inferenceservice {name}")
                if "merge-patch" not in ctype:
                    return self._send(
                        415, {"kind": "Status", "code": 415, "message": f"unsupported {ctype}"}
                    )
                try:
                    return self._send(200, fake.patch_isvc((ns, name), body))
                except Denied as e:
                    return self._send(
                        403,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "code": 403,
                            "message": f"admission webhook denied the request: {e}",
                        },
                    )
            if path.startswith(CM_PREFIX) and "/configmaps/" in path:
                ns, _, name = path[len(CM_PREFIX) :].partition("/configmaps/")
                if (ns, name) not in fake.configmaps:
                    return self._not_found(f"configmap {name}")
                with fake.lock:
                    old = fake.configmaps[(ns, name)]
                    new = json_patch(old, body) if "json-patch" in ctype else merge_patch(old, body)
                    fake.configmaps[(ns, name)] = fake._bump((ns, name), new, "MODIFIED")
                return self._send(200, new)
            self._not_found(path)

    return Handler


@pytest.fixture(scope="session")
def staging_docs() -> list[dict]:
    """The staging overlay in production's layout (``staging-collocated``: transformer and ranker in
    one predictor pod), rendered once: what the fake API server starts with."""
    from checkout_recs.deploy.manifests import build

    return build(MANIFESTS / "overlays" / "staging-collocated")


@pytest.fixture(scope="session")
def split_docs() -> list[dict]:
    """The staging overlay with transformer and predictor as two components (the split layout)."""
    from checkout_recs.deploy.manifests import build

    return build(MANIFESTS / "overlays" / "staging")


@contextlib.contextmanager
def serving_fake(docs: list[dict]) -> Iterator[tuple[FakeKube, str, Callable]]:
    """A fake API server on loopback holding the InferenceService and policy ConfigMap of ``docs``;
    yields ``(fake, host, set_metrics)``."""
    fake = FakeKube()
    docs = copy.deepcopy(docs)
    fake.add_isvc(find(docs, "InferenceService"))
    fake.add_configmap(find(docs, "ConfigMap", "checkout-recs-policy"))
    holder: dict[str, Callable[[], str]] = {"fn": lambda: ""}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(fake, lambda: holder["fn"]()))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def set_metrics(fn: Callable[[], str]) -> None:
        holder["fn"] = fn

    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}", set_metrics
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_kube(staging_docs) -> Iterator[tuple[FakeKube, str, Callable]]:  # noqa: F811
    """A fake API server holding staging in production's collocated layout (``serving_fake``).

    Yields ``(fake, host, set_metrics)``; ``set_metrics(fn)`` makes ``GET /metrics`` return
    ``fn()`` (Prometheus text).
    """
    with serving_fake(staging_docs) as served:
        yield served


@pytest.fixture
def fake_kube_split(split_docs) -> Iterator[tuple[FakeKube, str, Callable]]:  # noqa: F811
    """``fake_kube`` with the split layout (a transformer component and a predictor component)."""
    with serving_fake(split_docs) as served:
        yield served


class TrafficSimulator:
    """Prometheus text for a canary: each scrape adds ``per_scrape`` requests split by the fake's
    current traffic; the canary's error rate is ``error_rate(canary_percent)``.

    Series are Knative queue-proxy-like (``revision_app_request_count``, latencies in ms) plus
    the transformer's answers/fallbacks and an exporter's GMV/sessions, all per revision.
    """

    def __init__(
        self,
        fake: FakeKube,
        namespace: str,
        name: str,
        error_rate: Callable[[int], float],
        per_scrape: int = 2000,
        canary_p95_ms: float = 20.0,
    ) -> None:
        self.fake, self.ns, self.name = fake, namespace, name
        self.error_rate, self.per_scrape, self.canary_ms = error_rate, per_scrape, canary_p95_ms
        self.totals: dict[str, dict[str, float]] = {}

    def __call__(self) -> str:
        traffic = self.fake.traffic(self.ns, self.name)
        latest = max(traffic, key=lambda r: int(r.rsplit("-", 1)[1]))
        canary_pct = traffic[latest] if len(traffic) > 1 else 0
        for rev, pct in traffic.items():
            n = self.per_scrape * pct / 100
            t = self.totals.setdefault(
                rev, {"ok": 0, "err": 0, "fb": 0, "gmv": 0, "sess": 0, "fast": 0}
            )
            err = self.error_rate(canary_pct) if rev == latest and len(traffic) > 1 else 0.001
            t["err"] += n * err
            t["ok"] += n * (1 - err)
            t["fb"] += n * 0.02
            t["sess"] += n
            t["gmv"] += n * 1.5
            t["fast"] += n * 0.97
        lines = []
        for rev, t in self.totals.items():
            lab = f'revision_name="{rev}"'
            lines += [
                f'revision_app_request_count{{{lab},response_code_class="2xx"}} {t["ok"]}',
                f'revision_app_request_count{{{lab},response_code_class="5xx"}} {t["err"]}',
                f'revision_app_request_latencies_bucket{{{lab},le="10"}} {t["fast"] * 0.5}',
                f'revision_app_request_latencies_bucket{{{lab},le="50"}} {t["fast"]}',
                f'revision_app_request_latencies_bucket{{{lab},le="250"}} {t["ok"] + t["err"]}',
                f'revision_app_request_latencies_bucket{{{lab},le="+Inf"}} {t["ok"] + t["err"]}',
                f'checkout_recs_answers_total{{{lab},policy="ranker"}} {t["ok"]}',
                f'checkout_recs_fallback_total{{{lab},reason="unknown_user"}} {t["fb"]}',
                f"checkout_recs_attributed_gmv_total{{{lab}}} {t['gmv']}",
                f"checkout_recs_sessions_total{{{lab}}} {t['sess']}",
            ]
        return "\n".join(lines) + "\n"


#: Redis database reserved for the ops tests (other areas use other numbers); cleaned after use.
OPS_REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def ops_redis() -> Iterator:
    """A client on the ops test database; the kill-switch key is removed before and after."""
    import redis

    from checkout_recs.serving.switches import KILL_SWITCH_KEY

    client = redis.Redis.from_url(OPS_REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.skip(f"Redis not answering at {OPS_REDIS_URL}: {e}")
    client.delete(KILL_SWITCH_KEY)
    yield client
    client.delete(KILL_SWITCH_KEY)


# ------------------------------------------------------------------- fake Kubeflow Pipelines API


@pytest.fixture
def fake_kfp() -> Iterator[tuple[str, list[dict]]]:
    """A fake KFP v2beta1 API server on loopback; yields ``(host, requests)``.

    Implements healthz, experiments (list by filter, create), runs and recurring runs (create),
    and records every request's method, path, query and JSON body.
    """
    requests: list[dict] = []
    experiments: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, obj: object, code: int = 200) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> tuple[str, dict, object]:
            url = urlparse(self.path)
            n = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(n)) if n else None
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            requests.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "body": body,
                    "auth": self.headers.get("Authorization"),
                }
            )
            return url.path, query, body

        def do_GET(self) -> None:  # noqa: N802
            path, query, _ = self._record()
            if path == "/apis/v2beta1/healthz":
                return self._send({"multi_user": False})
            if path == "/apis/v2beta1/experiments":
                wanted = (
                    json.loads(query.get("filter", "{}"))
                    .get("predicates", [{}])[0]
                    .get("stringValue")
                )
                return self._send(
                    {"experiments": [e for e in experiments if e["display_name"] == wanted]}
                )
            self._send({"error": f"no route {path}"}, 404)

        def do_POST(self) -> None:  # noqa: N802
            path, _, body = self._record()
            if path == "/apis/v2beta1/experiments":
                exp = {**body, "experiment_id": f"exp-{len(experiments) + 1}"}
                experiments.append(exp)
                return self._send(exp)
            if path == "/apis/v2beta1/runs":
                return self._send({**body, "run_id": "run-1", "state": "PENDING"})
            if path == "/apis/v2beta1/recurringruns":
                return self._send({**body, "recurring_run_id": "rr-1", "status": "ENABLED"})
            self._send({"error": f"no route {path}"}, 404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def custom_jobs_api(op: Any, jobs: re.Pattern[str]) -> Iterator[str]:
    """A fake Kubernetes API server on loopback for one plural of custom objects (a
    ``PyTorchJob``, a ``RayJob``) whose operator is ``op``: ``POST`` to the collection of
    ``jobs`` (groups: namespace, name) creates through ``op.create(namespace, obj)``, ``GET`` of
    an object returns ``op.jobs[(namespace, name)]`` read under ``op.lock``; anything else 404.
    Yields the server's URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, obj: object) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            m = jobs.fullmatch(self.path.split("?")[0])
            if m is None or m.group(2):
                return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            obj = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._send(201, op.create(m.group(1), obj))

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            m = jobs.fullmatch(self.path.split("?")[0])
            with op.lock:
                obj = op.jobs.get((m.group(1), m.group(2))) if m else None
                body = json.loads(json.dumps(obj)) if obj else None
            if body is None:
                return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            self._send(200, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class FakeJobOperator:
    """The custom-object part of an API server for one kind of job, and its operator:
    ``create`` stores the object with ``initial_status`` and runs the job (``run``, a subclass's)
    on a thread; ``jobs`` and ``lock`` are what ``custom_jobs_api`` reads."""

    initial_status: dict[str, Any] = {}

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()

    def create(self, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as created in ``namespace`` and start running it; the stored object."""
        name = obj["metadata"]["name"]
        obj = {**obj, "status": copy.deepcopy(self.initial_status)}
        with self.lock:
            self.jobs[(namespace, name)] = obj
        threading.Thread(target=self.run, args=(namespace, name), daemon=True).start()
        return obj

    def run(self, namespace: str, name: str) -> None:
        """Run the job and set its final status (under ``lock``)."""
        raise NotImplementedError


class ScriptedJobs:
    """A ``CustomObjects`` whose ``get_custom`` returns ``states`` one call after another (the
    last one from then on); ``expect``: the (group, version, plural) every call must name."""

    def __init__(self, states: list[dict], expect: tuple[str, str, str] | None = None) -> None:
        self.states, self.expect, self.calls = states, expect, 0

    def create_custom(self, *args: Any) -> dict:
        raise AssertionError("not used")

    def get_custom(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict:
        if self.expect is not None:
            assert (group, version, plural) == self.expect
        self.calls += 1
        return self.states[min(self.calls, len(self.states)) - 1]
