"""The fast v1 predict route answers exactly as kserve's FastAPI route does, errors included."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

pytest.importorskip("kserve")

from kserve import Model  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402

from inference.asgi import BodyLimit  # noqa: E402
from inference.fast_route import FastPredictRoute  # noqa: E402

MAX = 2048


class Echo(Model):
    """v1 model: echoes the instances; ``{"bad": ...}`` -> InvalidInput, ``{"boom": ...}`` -> RuntimeError."""

    def __init__(self) -> None:
        super().__init__("echo")
        self.ready = True
        self.calls = 0

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        self.calls += 1
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


async def _post(asgi: Any, path: str, content: bytes, headers: dict | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)  # as uvicorn: 500 sent, error logged
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post(path, content=content, headers=headers or {"content-type": "application/json"})


CASES = [
    ("/v1/models/echo:predict", orjson.dumps({"instances": [1, 2, {"a": "b"}]})),
    ("/v1/models/echo:predict", b"{not json"),
    ("/v1/models/echo:predict", orjson.dumps({"bad": "no user"})),
    ("/v1/models/echo:predict", orjson.dumps({"boom": 1})),
    ("/v1/models/nosuch:predict", orjson.dumps({"instances": []})),
    ("/v1/models/echo:predict", b"{" + b" " * (2 * MAX) + b"}"),
    ("/v2/models/echo/infer", orjson.dumps({"inputs": []})),
]


@pytest.mark.parametrize("path,body", CASES, ids=["ok", "not-json", "invalid-input", "model-error",
                                                   "unknown-model", "oversized", "v2-passes-through"])
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
    r = asyncio.run(_post(fast, "/v1/models/echo:predict", b"{}", {"content-type": "application/json",
                                                                  "content-length": "999999"}))
    assert r.status_code == 413 and str(MAX) in r.json()["error"]
