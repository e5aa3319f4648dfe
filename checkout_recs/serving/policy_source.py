"""Policy knobs from the mounted ConfigMap ``checkout-recs-policy``: read, validate, re-read on change.

The ConfigMap is mounted at ``CHECKOUT_RECS_POLICY_DIR`` (``ServingSettings.policy_dir``). It holds:

* ``policy.json`` — one ``PolicyConfig`` document (JSON; unknown fields refused), the only format;
* ``kill_switch`` — ``"true"`` / ``"false"``, written by ``checkout-recs deploy kill-switch`` with the
  Redis key serving reads (``kill_switch_by|reason|at`` beside it are the audit record, not read).

Kubernetes updates a mounted ConfigMap by swapping the folder's ``..data`` symlink, so a file's
resolved path (and its mtime and size) is a fingerprint that moves when the ConfigMap does.
``PolicyDir.changed`` compares fingerprints; ``PolicyReloader.apply`` validates and applies:

* a valid ``policy.json`` goes to ``Recommender.apply_config`` (state kept; fields that need a
  restart keep their running value and are named in the status);
* a missing or invalid one keeps the last good config (the code's defaults at start) and says so
  in the status (``valid=False`` with the reason), which the transformer puts on ``/metrics``
  (``checkout_recs_policy_config_valid``) and in its log;
* ``kill_switch`` sets ``Switches.pinned_kill``.

File reads run wherever the caller puts them (the transformer: a worker thread every
``policy_poll_s`` seconds); ``apply`` must run between requests (the transformer: its event loop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from checkout_recs.policy.config import PolicyConfig
from checkout_recs.serving.switches import Switches

POLICY_FILE = "policy.json"
KILL_SWITCH_FILE = "kill_switch"
log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, str, int, int], ...]


def config_version(cfg: PolicyConfig) -> str:
    """Short content hash of a config (12 hex digits of sha256 over its canonical JSON)."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_policy(text: str) -> PolicyConfig:
    """A ``policy.json`` document as a ``PolicyConfig``; ``ValueError`` saying what is wrong."""
    try:
        return PolicyConfig.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{POLICY_FILE} is not JSON: {exc}") from None
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{POLICY_FILE} is not a PolicyConfig: {errors}") from None


@dataclass(frozen=True)
class PolicyRead:
    """One read of the folder: the config (None when missing or invalid), why not, the kill switch."""

    config: PolicyConfig | None
    error: str | None
    kill_switch: bool
    fingerprint: Fingerprint


class PolicyDir:
    """The mounted policy folder (see module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._seen: Fingerprint | None = None

    def fingerprint(self) -> Fingerprint:
        """(name, resolved path, mtime ns, size) of each known file present."""
        out = []
        for name in (POLICY_FILE, KILL_SWITCH_FILE):
            path = self.folder / name
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((name, os.path.realpath(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def read(self) -> PolicyRead:
        """Read and validate both files now (and remember their fingerprint)."""
        fp = self.fingerprint()
        self._seen = fp
        kill = _read_text(self.folder / KILL_SWITCH_FILE).strip().lower() == "true"
        path = self.folder / POLICY_FILE
        if not path.is_file():
            return PolicyRead(None, f"no {POLICY_FILE} in {self.folder}", kill, fp)
        try:
            return PolicyRead(parse_policy(_read_text(path)), None, kill, fp)
        except ValueError as exc:
            return PolicyRead(None, str(exc), kill, fp)

    def changed(self) -> PolicyRead | None:
        """``read()`` when a file changed since the last read, else None (one ``stat`` per file)."""
        return self.read() if self.fingerprint() != self._seen else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class PolicyTarget(Protocol):
    """What the reloader drives (``Recommender``)."""

    switches: Switches

    def apply_config(self, cfg: PolicyConfig) -> list[str]:
        """Use ``cfg`` from the next request on; returns fields kept at their running value."""
        ...


@dataclass
class PolicyStatus:
    """The config in force and the last read of the folder, for ``/metrics`` and the log."""

    version: str
    valid: bool = True
    error: str | None = None
    kept: list[str] = field(default_factory=list)
    kill_switch: bool = False
    loaded_at: float = field(default_factory=time.time)


class PolicyReloader:
    """Applies ``PolicyDir`` reads to a ``PolicyTarget``; bad reads keep the last good config.

    Parameters
    ----------
    source : the mounted folder.
    target : what serves (``Recommender``).
    prepare : turns a file's config into the one to apply (the transformer fills in its serving
        ledger settings, as it did at start); identity by default.
    on_status : called with the status after each apply (metrics).
    """

    def __init__(
        self,
        source: PolicyDir,
        target: PolicyTarget,
        prepare: Callable[[PolicyConfig], PolicyConfig] | None = None,
        on_status: Callable[[PolicyStatus], None] | None = None,
        current: PolicyConfig | None = None,
    ) -> None:
        self.source, self.target = source, target
        self.prepare = prepare or (lambda c: c)
        self.on_status = on_status
        self.status = PolicyStatus(version=config_version(current or PolicyConfig()))

    def apply(self, read: PolicyRead) -> PolicyStatus:
        """Apply one read (see module docstring); returns the new status."""
        self.target.switches.pinned_kill = read.kill_switch
        if read.config is None:
            log.error(
                "policy config in %s refused, keeping version %s: %s",
                self.source.folder,
                self.status.version,
                read.error,
            )
            self.status = PolicyStatus(
                self.status.version, False, read.error, self.status.kept, read.kill_switch
            )
        else:
            cfg = self.prepare(read.config)
            kept = self.target.apply_config(cfg)
            self.status = PolicyStatus(
                config_version(read.config), True, None, kept, read.kill_switch
            )
            log.info(
                "policy config version %s applied from %s%s",
                self.status.version,
                self.source.folder,
                f" (kept until restart: {', '.join(kept)})" if kept else "",
            )
        if self.on_status is not None:
            self.on_status(self.status)
        return self.status

    def check(self) -> PolicyStatus | None:
        """Read and apply if the folder changed (synchronous form, tests); None when unchanged."""
        read = self.source.changed()
        return self.apply(read) if read is not None else None
