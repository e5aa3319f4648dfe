"""A mounted ConfigMap folder, written the way the kubelet writes one (for the policy reload tests)."""

from __future__ import annotations

from pathlib import Path


def publish_configmap(folder: Path, files: dict[str, str], n: int) -> None:
    """Write ``files`` as the kubelet updates a mounted ConfigMap: a new timestamped folder, then the
    ``..data`` symlink swapped atomically; the visible names link through ``..data``. ``n`` numbers
    the update (distinct per call)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / f"..2026_{n:02d}"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
    tmp = folder / "..data_tmp"
    tmp.symlink_to(stamp.name)
    tmp.replace(folder / "..data")
    for name in files:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
