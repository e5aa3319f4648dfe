"""``python -m monitoring.exporter`` as the drift-exporter Deployment runs it: the rendered
container's own args and env, a published drift report on /metrics, JSON log lines, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from checkout_recs.deploy.entrypoints import command_line, image_entrypoints
from checkout_recs.storage import LocalArtifactStore
from inference.launch import free_port
from monitoring.drift_metrics import write_drift_metrics
from tests.code.monitoring.test_drift_metrics import _table
from tests.fixtures_ops import find, rendered  # noqa: F401

REPO = Path(__file__).resolve().parents[3]


def test_the_deployments_command_serves_the_newest_report(rendered, tmp_path):  # noqa: F811
    dep = find(rendered["overlays/production"], "Deployment", "checkout-recs-drift-exporter")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CHECKOUT_RECS_ARTIFACT_ROOT"] == "s3://checkout-recs-prod-artifacts"
    image = container["image"].split(":")[0]
    argv = command_line(container, image_entrypoints(REPO / "docker")[image], container["args"])
    assert argv[:3] == ["python", "-m", "monitoring.exporter"]
    store = LocalArtifactStore(tmp_path / "store")
    folder = tmp_path / "drift-1"
    folder.mkdir()
    write_drift_metrics(_table(True), folder)
    store.publish("drift", "drift-1", folder)
    port = free_port()
    # the pod's command line, with the store and the address of this machine
    args = [
        a
        for a in argv[3:]
        if not a.startswith(("--artifact_root", "--host", "--port", "--refresh_s"))
    ] + ["--host=127.0.0.1", f"--port={port}", "--refresh_s=1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitoring.exporter", *args],
        cwd=REPO,
        env={**os.environ, "CHECKOUT_RECS_ARTIFACT_ROOT": str(tmp_path / "store")},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:  # noqa: S310 - loopback
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert 'checkout_recs_drift_exporter_reports{version="drift-1"} 1' in body
        assert "checkout_recs_drift_detected 1.0" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in err.splitlines() if x.strip()]
    assert lines and all({"request_id", "bundle_version"} <= set(x) for x in lines)
    assert any(f":{port}/metrics" in x["message"] for x in lines)
