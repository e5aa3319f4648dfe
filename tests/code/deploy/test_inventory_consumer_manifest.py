"""The inventory consumer's Deployment: in every overlay, the transformer's image, non-root, a
read-only root filesystem, the transformer's Redis URL (from the same Secret in production), and
an entry point that exists in the image."""

from __future__ import annotations

import pytest

from inference.inventory_consumer import build_parser
from tests.fixtures_ops import find, rendered  # noqa: F401

OVERLAYS = (
    "overlays/local",
    "overlays/staging",
    "overlays/production",
    "overlays/staging-collocated",
)


def _consumer(docs: list[dict]) -> dict:
    return find(docs, "Deployment", "checkout-recs-inventory-consumer")


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


@pytest.mark.parametrize("target", OVERLAYS)
def test_consumer_runs_the_transformer_image_locked_down(target, rendered):  # noqa: F811
    docs = rendered[target]
    pod = _consumer(docs)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    images = {
        x["image"]
        for comp in ("transformer", "predictor")
        for x in find(docs, "InferenceService")["spec"].get(comp, {}).get("containers", [])
        if "transformer" in x["image"]
    }
    assert c["image"] in images
    assert (
        pod["securityContext"]["runAsUser"] == 10001
        and pod["securityContext"]["runAsNonRoot"] is True
    )
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["command"] == ["python", "-m", "inference.inventory_consumer"]
    build_parser().parse_args(
        [a.replace("$(", "").replace(")", "") for a in c["args"]]
    )  # every flag exists


@pytest.mark.parametrize("target", OVERLAYS)
def test_consumer_uses_the_transformers_redis_url(target, rendered):  # noqa: F811
    docs = rendered[target]
    (c,) = _consumer(docs)["spec"]["template"]["spec"]["containers"]
    isvc = find(docs, "InferenceService")["spec"]
    t = next(
        x
        for comp in ("transformer", "predictor")
        for x in isvc.get(comp, {}).get("containers", [])
        if "CHECKOUT_RECS_REDIS_URL" in _env(x)
    )
    assert (
        "--redis_url=$(CHECKOUT_RECS_REDIS_URL)" in c["args"]
    )  # the URL only: no credential in it
    ce, te = _env(c), _env(t)
    assert ce["CHECKOUT_RECS_REDIS_URL"] == te["CHECKOUT_RECS_REDIS_URL"]
    assert ("CHECKOUT_RECS_REDIS_PASSWORD" in ce) == ("CHECKOUT_RECS_REDIS_PASSWORD" in te)
    if (
        "CHECKOUT_RECS_REDIS_PASSWORD" in te
    ):  # production: the AUTH token from the same Secret, through env
        assert ce["CHECKOUT_RECS_REDIS_PASSWORD"] == te["CHECKOUT_RECS_REDIS_PASSWORD"]
        assert "secretKeyRef" in ce["CHECKOUT_RECS_REDIS_PASSWORD"]["valueFrom"]


def test_transformers_use_the_replica_and_refuse_unproven_stock(rendered):  # noqa: F811
    """Every overlay's transformer tails the replica and, when the stock cannot be proven (Redis
    stalled or down), refuses (503) rather than answer from the known state; the settings the
    transformer resolves from that environment say so."""
    from checkout_recs.serving.settings import ServingSettings

    for target in OVERLAYS:
        isvc = find(rendered[target], "InferenceService")["spec"]
        envs = [
            {k: e.get("value") for k, e in _env(x).items()}
            for comp in ("transformer", "predictor")
            for x in isvc.get(comp, {}).get("containers", [])
            if "transformer" in x["image"]
        ]
        assert [e.get("CHECKOUT_RECS_INVENTORY_BACKEND") for e in envs] == ["replica"], target
        plain = {k: v for k, v in envs[0].items() if v is not None}
        s = ServingSettings.from_sources({}, plain)
        assert (s.inventory, s.inventory_unproven) == ("replica", "refuse"), target
