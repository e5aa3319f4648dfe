"""One contract test for every artifact-store backend: a folder, and S3 on a loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from checkout_recs.storage import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    new_version,
    open_store,
)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "store")
    import boto3

    endpoint = request.getfixturevalue("s3_endpoint")
    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    bucket = f"b-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return S3ArtifactStore(f"s3://{bucket}/prefix", endpoint_url=endpoint)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_publish_fetch_roundtrip_and_latest(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"\x00\x01")
    (src / "sub" / "b.json").write_text('{"k": 1}')
    assert store.latest("bundle") is None
    uri = store.publish("bundle", "v1", src)
    assert uri.endswith("bundle/v1")
    assert store.latest("bundle") == "v1" and store.versions("bundle") == ["v1"]
    got = store.fetch("bundle", None, tmp_path / "out")
    assert _files(got) == _files(src)


def test_versions_are_immutable_and_latest_moves(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x").write_text("1")
    store.publish("model", "v1", src)
    with pytest.raises(FileExistsError):
        store.publish("model", "v1", src)
    (src / "x").write_text("2")
    store.publish("model", "v2", src)
    assert store.latest("model") == "v2" and store.versions("model") == ["v1", "v2"]
    assert (store.fetch("model", "v1", tmp_path / "o1") / "x").read_text() == "1"


def test_fetch_of_missing_version_raises(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.fetch("nothing", None, tmp_path / "o")


def test_local_half_written_version_is_invisible(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "s")
    (tmp_path / "s" / "bundle" / ".tmp-v9-abc").mkdir(parents=True)
    assert store.versions("bundle") == [] and store.latest("bundle") is None


def test_open_store_picks_backend_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path), LocalArtifactStore)
    assert new_version().startswith("v") and new_version() != new_version()
