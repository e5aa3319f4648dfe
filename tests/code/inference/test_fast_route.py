"""The fast routes answer valid calls exactly as kserve's FastAPI routes do; malformed ones get a
4xx with a printable reason where kserve's gave 500s; the call's clock is stamped."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

pytest.importorskip("kserve")

from kserve import Model  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402

from inference.asgi import BodyLimit, NeverRaise  # noqa: E402
from inference.deadline import Shed, current_clock  # noqa: E402
from inference.fast_route import FastPredictRoute, is_json_media_type  # noqa: E402

MAX = 2048


class Echo(Model):
    """v1: echoes the instances; ``{"bad": ...}`` -> InvalidInput, ``{"boom": ...}`` -> RuntimeError,
    ``{"shed": ...}`` -> Shed. v2: echoes the inputs as outputs. Records the call's clock."""

    def __init__(self) -> None:
        super().__init__("echo")
        self.ready = True
        self.calls = 0
        self.clock: Any = None

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        self.calls += 1
        self.clock = current_clock()
        if isinstance(payload, InferRequest):
            outs = []
            for i in payload.inputs:
                o = InferOutput(name=i.name, shape=list(i.shape), datatype=i.datatype)
                o.set_data_from_numpy(i.as_numpy(), binary_data=False)
                outs.append(o)
            return InferResponse(
                response_id=payload.id or "x", model_name=self.name, infer_outputs=outs
            )
        if "shed" in payload:
            raise Shed(self.name, "too late")
        if "bad" in payload:
            raise InvalidInput(f"bad input: {payload['bad']}")
        if "boom" in payload:
            raise RuntimeError("exploded")
        return {"predictions": payload.get("instances", [])}


@pytest.fixture(scope="module")
def apps():
    """(kserve's app behind the body limit, the same with the fast route in front, the model)."""
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    repo = ModelRepository()
    model = Echo()
    repo.update(model)
    dp = DataPlane(model_registry=repo)
    rest = RESTServer("kserve.model_server:app", dp, ModelRepositoryExtension(repo), http_port=0)
    rest.create_application()
    from kserve.model_server import app

    plain = BodyLimit(app, MAX)
    return plain, FastPredictRoute(plain, dp, {"echo"}, MAX, handlers=app.exception_handlers), model


async def _post(
    asgi: Any, path: str, content: bytes, headers: dict | None = None
) -> httpx.Response:
    transport = httpx.ASGITransport(
        app=asgi, raise_app_exceptions=False
    )  # as uvicorn: 500 sent, error logged
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post(
            path, content=content, headers=headers or {"content-type": "application/json"}
        )


CASES = [
    ("/v1/models/echo:predict", orjson.dumps({"instances": [1, 2, {"a": "b"}]})),
    ("/v1/models/echo:predict", b"{not json"),
    ("/v1/models/echo:predict", orjson.dumps({"bad": "no user"})),
    ("/v1/models/echo:predict", orjson.dumps({"boom": 1})),
    ("/v1/models/nosuch:predict", orjson.dumps({"instances": []})),
    ("/v1/models/echo:predict", b"{" + b" " * (2 * MAX) + b"}"),
    (
        "/v2/models/echo/infer",
        orjson.dumps(
            {"inputs": [{"name": "a", "datatype": "INT64", "shape": [2], "data": [1, 2]}]}
        ),
    ),
    (
        "/v2/models/echo/infer",
        orjson.dumps(
            {
                "id": "r1",
                "inputs": [
                    {"name": "b", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2.5], [3, 4]]},
                    {"name": "c", "datatype": "BYTES", "shape": [1], "data": ["north"]},
                ],
            }
        ),
    ),
    ("/v2/models/nosuch/infer", orjson.dumps({"inputs": []})),
]


@pytest.mark.parametrize(
    "path,body",
    CASES,
    ids=[
        "ok",
        "not-json",
        "invalid-input",
        "model-error",
        "unknown-model",
        "oversized",
        "v2-json",
        "v2-nested",
        "v2-unknown-model",
    ],
)
def test_fast_route_answers_like_kserve(apps, path, body):
    plain, fast, _ = apps
    a = asyncio.run(_post(plain, path, body))
    b = asyncio.run(_post(fast, path, body))
    assert b.status_code == a.status_code, (b.status_code, b.text, a.status_code, a.text)
    assert b.json() == a.json()
    assert b.headers["content-type"].startswith("application/json")
    if a.status_code >= 400:
        assert "error" in b.json() and b.json()["error"]


def test_fast_route_takes_the_v1_predict_of_its_models_only(apps):
    _, fast, model = apps
    before = model.calls
    r = asyncio.run(_post(fast, "/v1/models/echo:predict", orjson.dumps({"instances": [3]})))
    assert r.status_code == 200 and r.json() == {"predictions": [3]}
    assert model.calls == before + 1
    r = asyncio.run(
        _post(
            fast,
            "/v1/models/echo:predict",
            b"{}",
            {"content-type": "application/json", "content-length": "999999"},
        )
    )
    assert r.status_code == 413 and str(MAX) in r.json()["error"]


@pytest.mark.parametrize(
    "content_type,ok",
    [
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("APPLICATION/JSON ; Charset=UTF-8", True),
        ("application/json;foo=bar", True),
        (None, True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("application/jsonx", False),
    ],
)
def test_v1_takes_every_json_media_type_and_refuses_others_with_415(apps, content_type, ok):
    _, fast, _ = apps
    headers = {"content-type": content_type} if content_type else {}
    transport_headers = headers or {"content-type": ""}
    r = asyncio.run(
        _post(fast, "/v1/models/echo:predict", orjson.dumps({"instances": [1]}), transport_headers)
    )
    assert r.status_code == (200 if ok else 415), r.text
    assert is_json_media_type(content_type) is ok
    if not ok:
        assert "application/json" in r.json()["error"]


@pytest.mark.parametrize(
    "body,headers",
    [
        (b'{"inputs":"\ud800"}', {}),
        (b'{"inputs":[{"name":"\ud800","datatype":"INT64","shape":[1],"data":[1]}]}', {}),
        (b'{"inputs":[{"name":"a","datatype":"INT64","shape":[1],"data":[1.5]}]}', {}),
        (
            b'{"inputs":[{"name":"a","datatype":"INT64","shape":[1],"parameters":{"binary_data_size":8}}]}\x01',
            {"inference-header-content-length": "92"},
        ),
        (b'{"inputs":[]}', {"inference-header-content-length": "abc"}),
        (b'{"inputs":[]}', {"inference-header-content-length": "99999"}),
        (b"\xff\xfe\x00", {}),
    ],
)
def test_malformed_v2_bodies_get_400_with_a_printable_reason(apps, body, headers):
    _, fast, _ = apps
    r = asyncio.run(
        _post(fast, "/v2/models/echo/infer", body, {"content-type": "application/json", **headers})
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_the_call_carries_its_clock_and_the_clients_deadline(apps):
    _, fast, model = apps
    body = orjson.dumps({"instances": [1]})
    r = asyncio.run(
        _post(
            fast,
            "/v1/models/echo:predict",
            body,
            {"content-type": "application/json", "x-request-deadline-ms": "150"},
        )
    )
    assert r.status_code == 200 and model.clock.client_budget_s == pytest.approx(0.15)
    assert model.clock.deadline(1.0) == pytest.approx(model.clock.received + 0.15)
    assert not model.clock.gone()
    r = asyncio.run(
        _post(fast, "/v1/models/echo:predict", body, {"content-type": "application/json"})
    )
    assert model.clock.client_budget_s is None and model.clock.deadline(0.5) == pytest.approx(
        model.clock.received + 0.5
    )
    for bad in ("abc", "0", "-5", "0.5", "60001", "nan"):
        r = asyncio.run(
            _post(
                fast,
                "/v1/models/echo:predict",
                body,
                {"content-type": "application/json", "x-request-deadline-ms": bad},
            )
        )
        assert r.status_code == 400 and "x-request-deadline-ms" in r.json()["error"], bad


def test_a_shed_call_is_503_with_retry_after(apps):
    _, fast, _ = apps
    r = asyncio.run(_post(fast, "/v1/models/echo:predict", orjson.dumps({"shed": 1})))
    assert (
        r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"] == "too late"
    )


def test_never_raise_answers_500_before_a_response_and_swallows_after():
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def raises_first(scope, receive, send_):
        raise RuntimeError("boom")

    async def raises_after(scope, receive, send_):
        await send_({"type": "http.response.start", "status": 500, "headers": []})
        await send_({"type": "http.response.body", "body": b"x"})
        raise RuntimeError("boom")

    scope = {"type": "http", "method": "POST", "path": "/"}
    asyncio.run(NeverRaise(raises_first)(scope, _no_receive, send))
    assert sent[0]["status"] == 500 and b"RuntimeError" in sent[1]["body"]
    sent.clear()
    asyncio.run(
        NeverRaise(raises_after)(scope, _no_receive, send)
    )  # no exception: the connection stays up
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


async def _no_receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}
