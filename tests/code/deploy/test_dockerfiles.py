"""Dockerfiles checked from their text (no container runtime here): pinned bases, non-root user,
no secrets, read-only-root friendly, build context complete; and they match the manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkout_recs.deploy.dockerfiles import check, parse
from tests.fixtures_ops import rendered  # noqa: F401

REPO = Path(__file__).resolve().parents[3]
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))


def test_there_is_one_component_image_and_one_per_serving_image():
    assert {p.name for p in DOCKERFILES} == {"components.Dockerfile", "predictor.Dockerfile",
                                             "transformer.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_repository_dockerfiles_pass_every_check(path):
    assert check(path, REPO) == []
    final_user = [i for i in parse(path.read_text()) if i.keyword == "USER"][-1]
    assert final_user.args.split(":")[0] == "10001"


def test_each_check_catches_its_fault(tmp_path):
    (tmp_path / "app.py").write_text("")
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest AS build\n"
                   "ADD https://example.com/tool.tgz /opt/\n"
                   "FROM ubuntu\n"
                   "ARG GITHUB_TOKEN\n"
                   "ENV AWS_SECRET_ACCESS_KEY=abc \\\n    OTHER=1\n"
                   "COPY .env app.py /app/\n"
                   "COPY missing_dir /app/\n"
                   "VOLUME /data\n"
                   "USER root\n"
                   'ENTRYPOINT ["python", "-m", "nowhere.server"]\n')
    found = "\n".join(check(bad, tmp_path))
    for expected in ("python:latest not pinned", "ubuntu not pinned", "ADD from a URL", "GITHUB_TOKEN looks like a secret",
                     "AWS_SECRET_ACCESS_KEY looks like a secret", ".env copies a credential file",
                     "missing_dir missing from the build context", "VOLUME", "USER root is not a numeric non-root uid",
                     "HOME=", "PYTHONDONTWRITEBYTECODE", "nowhere/server not in the build context"):
        assert expected in found, expected
    assert "app.py missing" not in found
    no_user = tmp_path / "nouser.Dockerfile"
    no_user.write_text("FROM python:3.11.7-slim@sha256:" + "a" * 64 + "\nENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1\n")
    assert check(no_user, tmp_path) == ["final stage has no USER: it would run as root"]


def test_every_project_image_in_the_manifests_has_a_dockerfile_with_the_pods_uid(rendered):  # noqa: F811
    images: dict[str, set[int]] = {}

    def walk(node: object, uid: int | None) -> None:
        if isinstance(node, dict):
            uid = node.get("securityContext", {}).get("runAsUser", uid) if isinstance(
                node.get("securityContext"), dict) else uid
            image = node.get("image")
            if isinstance(image, str) and image.startswith("ghcr.io/checkout-recs/"):
                images.setdefault(image.split("/")[-1].split(":")[0], set()).add(uid or 0)
            for v in node.values():
                walk(v, uid)
        elif isinstance(node, list):
            for v in node:
                walk(v, uid)

    for docs in rendered.values():
        for d in docs:
            walk(d, None)
    assert {"transformer", "predictor", "components"} <= set(images)
    for name, uids in images.items():
        path = REPO / "docker" / f"{name}.Dockerfile"
        assert path.exists(), name
        user = [i for i in parse(path.read_text()) if i.keyword == "USER"][-1].args.split(":")[0]
        assert uids == {int(user)}, (name, uids)
