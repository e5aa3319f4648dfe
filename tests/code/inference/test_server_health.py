"""inference.server: health means the served models are ready; the model repository is closed."""

from __future__ import annotations

import asyncio

from kserve import Model
from kserve.model_repository import ModelRepository

from inference.server import ClosedRepository, _ServedDataPlane


class _M(Model):
    def __init__(self, name: str, ready: bool) -> None:
        super().__init__(name)
        self.ready = ready


def _plane(*models: _M, served: tuple[str, ...]) -> _ServedDataPlane:
    repo = ModelRepository()
    for m in models:
        repo.update(m)
    plane = _ServedDataPlane(model_registry=repo)
    plane.served = served
    return plane


def test_live_and_ready_follow_the_served_models():
    ok = _plane(_M("a", True), served=("a",))
    assert asyncio.run(ok.live()) == {"status": "alive"} and asyncio.run(ok.ready())
    unready = _plane(_M("a", False), served=("a",))
    assert asyncio.run(unready.live())["status"] != "alive" and not asyncio.run(unready.ready())
    unloaded = _plane(served=("a",))  # what an unload would have left: no model, kserve said ready
    assert asyncio.run(unloaded.live())["status"] != "alive" and not asyncio.run(unloaded.ready())
    assert not asyncio.run(_plane(_M("a", True), served=()).ready())


def test_the_repository_guard_answers_404_and_passes_the_rest():
    seen: list[str] = []

    async def app(scope, receive, send):  # noqa: ANN001
        seen.append(scope["path"])

    sent: list[dict] = []

    async def send(msg):  # noqa: ANN001
        sent.append(msg)

    guard = ClosedRepository(app)
    for path in (
        "/v2/repository/models/checkout-recs/unload",
        "/v2/repository/models/x/load",
        "/v2/repository/index",
    ):
        asyncio.run(guard({"type": "http", "path": path, "method": "POST"}, None, send))
    assert seen == [] and [m["status"] for m in sent if "status" in m] == [404, 404, 404]
    asyncio.run(
        guard(
            {"type": "http", "path": "/v2/models/checkout-recs/infer", "method": "POST"}, None, send
        )
    )
    assert seen == ["/v2/models/checkout-recs/infer"]
