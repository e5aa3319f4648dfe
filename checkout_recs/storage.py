"""Artifact store: a local folder (embedded default) or S3 (production), with atomic publish.

Layout (the same under a local root and under ``s3://bucket/prefix``)::

    <root>/<kind>/<version>/...files...     one immutable version of an artifact
    <root>/<kind>/LATEST                    text file naming the current version

``publish`` writes a version in full before it moves ``LATEST`` (locally: files go to a
temporary sibling folder renamed into place; on S3: objects are uploaded under the version's
prefix, then ``LATEST`` is written last), so a reader that follows ``LATEST`` never sees half
of a version. Versions are never overwritten; publishing an existing version is refused.

The backend is chosen by the root's scheme, in the Feast manner: one abstract base, one class
per backend, one contract test run against both (``tests/code/test_storage.py``).
"""

from __future__ import annotations

import abc
import datetime as dt
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any


class ArtifactStore(abc.ABC):
    """Versioned, atomically published artifacts under one root."""

    root: str

    @abc.abstractmethod
    def publish(self, kind: str, version: str, local_dir: Path) -> str:
        """Publish the files of ``local_dir`` as ``kind/version`` and point ``LATEST`` at it.

        Returns the version's URI. Raises ``FileExistsError`` when the version exists.
        """

    @abc.abstractmethod
    def fetch(self, kind: str, version: str | None, dest: Path) -> Path:
        """Copy ``kind/version`` (``LATEST`` when ``version`` is None) into ``dest``.

        Returns ``dest``. Raises ``FileNotFoundError`` when nothing is published.
        """

    @abc.abstractmethod
    def latest(self, kind: str) -> str | None:
        """The version ``LATEST`` names, or None when nothing is published."""

    @abc.abstractmethod
    def versions(self, kind: str) -> list[str]:
        """Every published version of ``kind``, sorted."""

    def uri(self, kind: str, version: str) -> str:
        """URI of ``kind/version`` under this store's root."""
        return f"{self.root.rstrip('/')}/{kind}/{version}"


class LocalArtifactStore(ArtifactStore):
    """Artifacts in a folder on this machine."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(Path(root).resolve())
        Path(self.root).mkdir(parents=True, exist_ok=True)

    def _kind_dir(self, kind: str) -> Path:
        return Path(self.root) / kind

    def publish(self, kind: str, version: str, local_dir: Path) -> str:
        """See ``ArtifactStore.publish``."""
        target = self._kind_dir(kind) / version
        if target.exists():
            raise FileExistsError(f"{kind}/{version} is already published")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(local_dir, tmp)
        os.rename(tmp, target)  # atomic on one filesystem
        _atomic_write_text(self._kind_dir(kind) / "LATEST", version)
        return str(target)

    def fetch(self, kind: str, version: str | None, dest: Path) -> Path:
        """See ``ArtifactStore.fetch``."""
        version = version or self.latest(kind)
        src = self._kind_dir(kind) / (version or "")
        if not version or not src.is_dir():
            raise FileNotFoundError(f"no published {kind} version {version!r} under {self.root}")
        shutil.copytree(src, dest, dirs_exist_ok=True)
        return dest

    def path(self, kind: str, version: str | None = None) -> Path:
        """Local path of a published version, read in place (no copy)."""
        version = version or self.latest(kind)
        if version is None:
            raise FileNotFoundError(f"no published {kind} under {self.root}")
        return self._kind_dir(kind) / version

    def latest(self, kind: str) -> str | None:
        """See ``ArtifactStore.latest``."""
        f = self._kind_dir(kind) / "LATEST"
        return f.read_text().strip() if f.exists() else None

    def versions(self, kind: str) -> list[str]:
        """See ``ArtifactStore.versions``."""
        d = self._kind_dir(kind)
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


class S3ArtifactStore(ArtifactStore):
    """Artifacts under ``s3://bucket/prefix`` (boto3; ``endpoint_url`` for S3-compatible servers)."""

    def __init__(self, root: str, endpoint_url: str | None = None, client: Any = None) -> None:
        if not root.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {root}")
        self.root = root.rstrip("/")
        bucket, _, prefix = root[len("s3://") :].partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if client is None:
            import boto3  # lazy: boto3 costs ~0.5 s and only s3:// paths need it

            endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def publish(self, kind: str, version: str, local_dir: Path) -> str:
        """See ``ArtifactStore.publish``. ``LATEST`` is written after every object is up."""
        if version in self.versions(kind):
            raise FileExistsError(f"{kind}/{version} is already published")
        files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
        for p in files:
            rel = p.relative_to(local_dir).as_posix()
            self.client.upload_file(str(p), self.bucket, self._key(kind, version, rel))
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(kind, version, ".complete"), Body=b"%d" % len(files)
        )
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(kind, "LATEST"), Body=version.encode()
        )
        return self.uri(kind, version)

    def fetch(self, kind: str, version: str | None, dest: Path) -> Path:
        """See ``ArtifactStore.fetch``."""
        version = version or self.latest(kind)
        if version is None or version not in self.versions(kind):
            raise FileNotFoundError(f"no published {kind} version {version!r} under {self.root}")
        base = self._key(kind, version) + "/"
        for key in self._list(base):
            rel = key[len(base) :]
            if rel == ".complete":
                continue
            out = Path(dest) / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, key, str(out))
        return dest

    def latest(self, kind: str) -> str | None:
        """See ``ArtifactStore.latest``."""
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(kind, "LATEST"))
        except self.client.exceptions.NoSuchKey:
            return None
        return obj["Body"].read().decode().strip()

    def versions(self, kind: str) -> list[str]:
        """See ``ArtifactStore.versions``: only versions whose ``.complete`` marker exists."""
        base = self._key(kind) + "/"
        return sorted(
            k[len(base) :].split("/")[0] for k in self._list(base) if k.endswith("/.complete")
        )

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys


def open_store(root: str | Path, endpoint_url: str | None = None) -> ArtifactStore:
    """The store for ``root``: ``s3://...`` gives ``S3ArtifactStore``, anything else a folder."""
    root = str(root)
    if root.startswith("s3://"):
        return S3ArtifactStore(root, endpoint_url=endpoint_url)
    return LocalArtifactStore(root)


def new_version(prefix: str = "v") -> str:
    """A sortable, unique version name: ``v20261122T162233-1a2b3c``."""

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}{stamp}-{uuid.uuid4().hex[:6]}"


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
