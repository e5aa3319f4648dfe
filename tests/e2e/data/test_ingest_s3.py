"""Ingest from ``s3://bucket/prefix`` served by moto on loopback gives the same result as the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkout_recs.data.ingest import ingest
from checkout_recs.simulate import run_simulation
from tests.fixtures_data import NOW, TINY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture()
def s3_endpoint(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    from moto.server import ThreadedMotoServer

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_source_matches_local_source(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    raw = tmp_path / "raw"
    run_simulation(TINY.model_copy(update={"days": 2}), raw)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="logs")
    for f in sorted(raw.rglob("*.parquet")):
        client.upload_file(str(f), "logs", f"exports/day1/{f.relative_to(raw).as_posix()}")
    remote = ingest(
        "s3://logs/exports/day1", tmp_path / "from_s3", now=NOW, endpoint_url=s3_endpoint
    )
    local = ingest(str(raw), tmp_path / "from_folder", now=NOW)
    for table, r in remote.tables.items():
        assert (r.read, r.accepted, r.quarantined) == (
            local.tables[table].read,
            local.tables[table].accepted,
            local.tables[table].quarantined,
        )
        assert (
            r.read > 0 and r.files and all(f.startswith(f"exports/day1/{table}/") for f in r.files)
        )
    a = (tmp_path / "from_s3" / "validated" / "impressions" / "part-00000.parquet").read_bytes()
    b = (tmp_path / "from_folder" / "validated" / "impressions" / "part-00000.parquet").read_bytes()
    assert a == b


def test_bad_s3_objects_are_quarantined_whole_and_the_rest_ingested(
    s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3
    import pyarrow.parquet as pq

    raw = tmp_path / "raw"
    run_simulation(TINY.model_copy(update={"days": 1}), raw)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="logs")
    for f in sorted(raw.rglob("*.parquet")):
        client.upload_file(str(f), "logs", f"day1/{f.relative_to(raw).as_posix()}")
    good = (raw / "listings" / "part-00000.parquet").read_bytes()
    client.put_object(
        Bucket="logs", Key="day1/listings/late/part-00001.parquet", Body=good[: len(good) // 3]
    )
    client.put_object(Bucket="logs", Key="day1/users/part-00001.parquet", Body=b"<html>403</html>")
    report = ingest("s3://logs/day1", tmp_path / "ing", now=NOW, endpoint_url=s3_endpoint)
    local = ingest(str(raw), tmp_path / "local", now=NOW)
    for table, r in report.tables.items():
        assert (r.read, r.accepted, r.quarantined) == (
            local.tables[table].read,
            local.tables[table].accepted,
            local.tables[table].quarantined,
        ), table
        assert r.files_in == r.files_ok + r.files_quarantined
    manifest = pq.read_table(tmp_path / "ing" / "quarantine" / "files.parquet").to_pylist()
    assert {(m["file"], m["reason"]) for m in manifest} == {
        ("day1/listings/late/part-00001.parquet", "unreadable"),
        ("day1/users/part-00001.parquet", "unreadable"),
    }
    copy = {m["file"]: m["copied_to"] for m in manifest}["day1/listings/late/part-00001.parquet"]
    assert copy == "quarantine/files/listings/late/part-00001.parquet"
    assert (tmp_path / "ing" / copy).read_bytes() == good[: len(good) // 3]


def test_a_missing_bucket_or_an_empty_prefix_is_a_source_error(
    s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    from checkout_recs.data.ingest import SourceError

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="empty")
    with pytest.raises(SourceError, match="cannot list s3://nope/x: .*NoSuchBucket"):
        ingest("s3://nope/x", tmp_path / "a", now=NOW, endpoint_url=s3_endpoint)
    with pytest.raises(SourceError, match="source not found: no object under s3://empty/day9"):
        ingest("s3://empty/day9", tmp_path / "b", now=NOW, endpoint_url=s3_endpoint)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
