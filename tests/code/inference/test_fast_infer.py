"""The predictor's fast v2 binary-tensor route answers exactly as kserve's app does, and hands
everything it cannot answer identically (JSON, bad tensors, errors) to kserve."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

pytest.importorskip("kserve")

from inference.asgi import BodyLimit  # noqa: E402
from inference.fast_infer import FastInferRoute  # noqa: E402
from inference.predictor import MAX_ROWS, RankerPredictor  # noqa: E402
from tests.fixtures_serving import make_snapshot, make_users, train_tiny_ranker  # noqa: E402

MAX = 512 * 1024


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """(kserve's app behind the body limit, the same with the fast route in front, the predictor)."""
    from fastapi import FastAPI
    from fastapi.responses import ORJSONResponse
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    bundle = tmp_path_factory.mktemp("fast-infer-bundle")
    train_tiny_ranker(make_snapshot(500), make_users(50), bundle / "model" / "ranker")
    model = RankerPredictor(bundle)
    model.load()
    repo = ModelRepository()
    repo.update(model)
    dp = DataPlane(model_registry=repo)
    with (
        pytest.MonkeyPatch.context() as mp
    ):  # a fresh app configured as kserve's (other tests register theirs)
        mp.setattr("kserve.model_server.app", FastAPI(default_response_class=ORJSONResponse))
        RESTServer(
            "kserve.model_server:app", dp, ModelRepositoryExtension(repo), http_port=0
        ).create_application()
        from kserve import model_server

        app = model_server.app
    plain = BodyLimit(app, MAX)
    return plain, FastInferRoute(plain, {model.name: model}, MAX), model


def _binary(
    x: np.ndarray, outputs: list[str] | None = None, rid: str | None = None, size: int | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = np.ascontiguousarray(x, "<f4").tobytes()
    head: dict[str, Any] = {
        "inputs": [
            {
                "name": "features",
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw) if size is None else size},
            }
        ],
        "outputs": [
            {"name": n, "parameters": {"binary_data": True}}
            for n in (outputs or ["p_click", "p_purchase"])
        ],
    }
    if rid is not None:
        head["id"] = rid
    h = orjson.dumps(head)
    return h + raw, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(h)),
    }


async def _post(asgi: Any, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post(path, content=content, headers=headers)


def _decode(r: httpx.Response) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON header, outputs) of a v2 answer, binary or JSON."""
    n = r.headers.get("inference-header-content-length")
    if n is None:
        body = r.json()
        return body, {o["name"]: np.asarray(o["data"], np.float32) for o in body.get("outputs", [])}
    head, pos, outs = orjson.loads(r.content[: int(n)]), int(n), {}
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        outs[o["name"]] = np.frombuffer(r.content[pos : pos + size], "<f4")
        pos += size
    return head, outs


def _x(model: RankerPredictor, n: int = 37, extra: int = 0) -> np.ndarray:
    d = len(model.feature_names) + extra
    return np.random.default_rng(n).random((n, d), dtype=np.float32)


def _cases(model: RankerPredictor) -> dict[str, tuple[str, bytes, dict[str, str], bool]]:
    """name -> (path, body, headers, whether the fast route answers it itself)."""
    x = _x(model)
    json_body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
    )
    wide, _ = _binary(_x(model, extra=1))
    return {
        "binary": ("/v2/models/ranker/infer", *_binary(x), True),
        "binary-with-id": ("/v2/models/ranker/infer", *_binary(x, rid="req-7"), True),
        "json": ("/v2/models/ranker/infer", json_body, {"content-type": "application/json"}, False),
        "wrong-width": ("/v2/models/ranker/infer", wide, _binary(_x(model, extra=1))[1], False),
        "too-many-rows": (
            "/v2/models/ranker/infer",
            *_binary(np.zeros((MAX_ROWS + 1, x.shape[1]), np.float32)),
            False,
        ),
        "one-output": ("/v2/models/ranker/infer", *_binary(x, outputs=["p_click"]), False),
        "unknown-model": ("/v2/models/nosuch/infer", *_binary(x), False),
    }


CASE_NAMES = [
    "binary",
    "binary-with-id",
    "json",
    "wrong-width",
    "too-many-rows",
    "one-output",
    "unknown-model",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_fast_infer_answers_like_kserve(apps, case):
    plain, fast, model = apps
    path, body, headers, ours = _cases(model)[case]
    before = fast.answered
    want = asyncio.run(_post(plain, path, body, headers))
    got = asyncio.run(_post(fast, path, body, headers))
    assert fast.answered - before == int(ours), case
    assert got.status_code == want.status_code, (case, got.text[:200], want.text[:200])
    assert got.status_code < 500
    for h in ("content-type", "inference-header-content-length"):
        assert got.headers.get(h) == want.headers.get(h), (case, h)
    (gh, go), (wh, wo) = _decode(got), _decode(want)
    if want.status_code != 200:
        assert gh == wh, case  # kserve's own error answer, reason included
        return
    if "id" not in orjson.loads(
        body[: int(headers.get("inference-header-content-length", len(body)))]
    ):
        gh.pop("id"), wh.pop("id")  # kserve leaves it empty or fills in a uuid; both are allowed
    assert gh == wh, case
    assert go.keys() == wo.keys() and go.keys() <= {"p_click", "p_purchase"}
    for k in go:
        np.testing.assert_array_equal(go[k], wo[k])


def test_fast_infer_scores_are_the_models(apps):
    plain, fast, model = apps
    x = _x(model, n=11)
    _, outs = _decode(asyncio.run(_post(fast, "/v2/models/ranker/infer", *_binary(x))))
    pc, pp = model.score(x)
    np.testing.assert_array_equal(outs["p_click"], pc)
    np.testing.assert_array_equal(outs["p_purchase"], pp)


def test_fast_infer_refuses_oversized_bodies_like_the_body_limit(apps):
    plain, fast, model = apps
    body, headers = _binary(np.zeros((MAX // 4 // 31 + 10, 31), np.float32))
    want = asyncio.run(_post(plain, "/v2/models/ranker/infer", body, headers))
    got = asyncio.run(_post(fast, "/v2/models/ranker/infer", body, headers))
    assert got.status_code == want.status_code == 413
    assert got.json() == want.json() and "exceeds" in got.json()["error"]


@pytest.mark.parametrize("size,header_length", [(8, None), (None, "99999"), (None, "x")])
def test_fast_infer_answers_inconsistent_sizes_with_400_and_a_reason(apps, size, header_length):
    """Where kserve's app answers 500 (a failed reshape), the fast route says what is wrong."""
    plain, fast, model = apps
    body, headers = _binary(_x(model), size=size)
    if header_length is not None:
        headers["inference-header-content-length"] = header_length
    r = asyncio.run(_post(fast, "/v2/models/ranker/infer", body, headers))
    assert r.status_code == 400
    assert (
        "binary_data_size" in r.json()["error"]
        or "inference-header-content-length" in r.json()["error"]
    )


def test_fast_infer_answers_zero_rows_with_empty_outputs(apps):
    """Zero candidates: 200 and two empty outputs (kserve's app fails encoding empty binary outputs)."""
    plain, fast, model = apps
    r = asyncio.run(_post(fast, "/v2/models/ranker/infer", *_binary(_x(model)[:0])))
    head, outs = _decode(r)
    assert r.status_code == 200 and head["model_name"] == "ranker"
    assert {k: len(v) for k, v in outs.items()} == {"p_click": 0, "p_purchase": 0}
