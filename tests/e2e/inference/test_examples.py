"""The documented examples, run literally against both servers.

Every ``curl`` command in a ``bash`` block of ``docs/integrating.md`` and ``docs/serving.md`` is run
as written (only ``http://127.0.0.1:8080`` becomes the test transformer's address), from the
repository root, so its ``@inference/examples/...`` bodies are the checked-in files. A command
ends with ``# → STATUS`` or ``# → STATUS, inference/examples/NAME.json``: the answer must have
that status, validate against the JSON Schema of its kind (``inference/schemas/``), and match the
recorded example — exactly for error bodies; for 200 answers the same shape, policy and
request id (the six themselves move with exploration and exposure state, and ``latency_ms``).

``CHECKOUT_RECS_RECORD_EXAMPLES=1`` rewrites the recorded answers from this run instead
(then ``tests/code/inference/test_openapi.py`` checks the docs quote them).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import httpx
import jsonschema
import pytest

from inference.launch import running_servers
from inference.openapi import SCHEMA_DIR
from tests.fixtures_serving import make_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
DOCS = (ROOT / "docs" / "integrating.md", ROOT / "docs" / "serving.md")
DOC_BASE = "http://127.0.0.1:8080"
RECORD = os.environ.get("CHECKOUT_RECS_RECORD_EXAMPLES") == "1"
_EXPECT = re.compile(r"\s+#\s*→\s*(\d{3})(?:,\s*(\S+))?\s*$")


def documented_curls() -> list[tuple[str, str, int, str | None]]:
    """(doc, command, expected status, recorded answer path or None) for every curl in a bash block."""
    out = []
    for doc in DOCS:
        blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                if "curl " not in line or DOC_BASE not in line:
                    continue
                m = _EXPECT.search(line)
                assert m, (
                    f"{doc.name}: a curl example must end with '# → STATUS[, answer file]': {line}"
                )
                out.append((doc.name, line[: m.start()].strip(), int(m.group(1)), m.group(2)))
    return out


def schema_for(url_path: str, status: int) -> dict:
    name = (
        "error"
        if status != 200
        else ("v1-response" if url_path.startswith("/v1/") else "v2-response")
    )
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    bundle = make_serving_bundle(root / "bundle")
    with running_servers(bundle, log_dir=root / "logs") as s:
        for _ in range(
            5
        ):  # warm: the first calls of a fresh server are cold, and a budgeted example could shed
            httpx.post(
                s.v1_url, json={"user_id": 7, "region": "north"}, timeout=10
            ).raise_for_status()
        yield s.v1_url.split("/v1/")[0]


CURLS = documented_curls()


def test_the_docs_have_the_examples():
    files = {f for _, _, _, f in CURLS}
    assert {"inference/examples/v1-response.json", "inference/examples/v2-response.json"} <= files
    assert {s for _, _, s, _ in CURLS} >= {200, 400, 413, 415, 503}


@pytest.mark.parametrize(
    ("doc", "command", "status", "answer"),
    CURLS,
    ids=[f"{d}:{s}:{i}" for i, (d, _, s, _) in enumerate(CURLS)],
)
def test_documented_curl(base, tmp_path, doc, command, status, answer):
    cmd = (
        command.replace(DOC_BASE, base)
        + f" -o {shlex.quote(str(tmp_path / 'body'))} -w '%{{http_code}}'"
    )
    run = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    body = json.loads((tmp_path / "body").read_text())
    assert int(run.stdout.strip()) == status, body
    url_path = re.search(r"127\.0\.0\.1:\d+(/\S+)", command.replace(DOC_BASE, base)).group(1)
    jsonschema.validate(body, schema_for(url_path, status))
    if answer is None:
        return
    path = ROOT / answer
    if RECORD:
        path.write_text(json.dumps(body, indent=2) + "\n")
        return
    recorded = json.loads(path.read_text())
    jsonschema.validate(recorded, schema_for(url_path, status))
    if status != 200:
        assert body == recorded
    elif "predictions" in body:
        for got, want in zip(body["predictions"], recorded["predictions"], strict=True):
            assert got.keys() == want.keys()
            assert (got["request_id"], got["policy"], got["fallback_reason"]) == (
                want["request_id"],
                want["policy"],
                want["fallback_reason"],
            )
            assert len({it["listing_id"] for it in got["items"]}) == 6
    else:
        assert [o["name"] for o in body["outputs"]] == [o["name"] for o in recorded["outputs"]]
        assert body["id"] == recorded["id"]
        got = {o["name"]: o["data"] for o in body["outputs"]}
        want = {o["name"]: o["data"] for o in recorded["outputs"]}
        assert (got["policy"], got["fallback_reason"]) == (want["policy"], want["fallback_reason"])
        assert len(set(got["item_ids"])) == 6


def test_a_repeated_request_id_is_answered_again_not_replayed(base):
    """docs/integrating.md, *Idempotency*: no deduplication; each call is a new decision."""
    body = json.loads((ROOT / "inference/examples/v1-request.json").read_text())
    first, second = (
        httpx.post(f"{base}/v1/models/checkout-recs:predict", json=body, timeout=10)
        for _ in range(2)
    )
    assert first.status_code == second.status_code == 200
    rid = body["instances"][0]["request_id"]
    assert (
        first.json()["predictions"][0]["request_id"]
        == second.json()["predictions"][0]["request_id"]
        == rid
    )
