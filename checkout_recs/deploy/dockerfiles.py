"""Static checks of the Dockerfiles (``docker/*.Dockerfile``): no container runtime needed.

This repository cannot build its images (no Docker on the development machines), so what a build
would not tell us anyway is checked from the text:

* every base image pinned by a tag other than ``latest`` or by a ``@sha256:`` digest;
* the final stage's last ``USER`` is a numeric, non-root uid (Kubernetes can only verify
  ``runAsNonRoot`` for a numeric uid);
* no secret baked in: no ``ENV``/``ARG`` whose name looks like a credential, no ``COPY``/``ADD``
  of key or credential files, no ``ADD`` from a URL (unverified download);
* read-only root filesystem friendly: ``HOME`` under ``/tmp`` (the writable ``emptyDir``),
  ``PYTHONDONTWRITEBYTECODE=1``, no ``VOLUME``;
* the build context has every ``COPY`` source, and a ``python -m MODULE`` entry point exists.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSW(OR)?D|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
SECRET_FILE = re.compile(r"(^|/)(\.env|\.netrc|\.aws|\.ssh|id_rsa|credentials|[^/]*\.(pem|key|p12))(/|$)", re.I)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``args`` as written, 1-based ``line``."""

    keyword: str
    args: str
    line: int
    stage: int


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile (comments dropped, ``\\`` continuations joined); ``stage``
    counts ``FROM`` lines from 0."""
    out: list[Instruction] = []
    buf, start, stage = "", 0, -1
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), args.strip(), start, stage))
        buf = ""
    return out


def _env_pairs(args: str) -> dict[str, str]:
    parts = shlex.split(args)
    if len(parts) >= 2 and "=" not in parts[0]:  # legacy form: ENV NAME value
        return {parts[0]: " ".join(parts[1:])}
    return dict(p.split("=", 1) for p in parts if "=" in p)


def _image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def check(path: Path, context: Path) -> list[str]:
    """Findings for one Dockerfile (empty = passes); ``context`` is the build context (repo root)."""
    ins = parse(Path(path).read_text())
    findings: list[str] = []
    stages: list[str] = []
    for i in ins:
        if i.keyword == "FROM":
            words = i.args.split()
            words = [w for w in words if not w.startswith("--")]
            image = words[0]
            if image not in stages and not _image_pinned(image):
                findings.append(f"line {i.line}: base image {image} not pinned by tag or digest")
            stages.append(words[2] if len(words) >= 3 and words[1].upper() == "AS" else image)
    last = max((i.stage for i in ins), default=-1)
    final = [i for i in ins if i.stage == last]
    findings += _user_findings(final)
    findings += _secret_findings(ins)
    findings += _readonly_findings(final)
    findings += _context_findings(ins, Path(context))
    return findings


def _user_findings(final: list[Instruction]) -> list[str]:
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        return ["final stage has no USER: it would run as root"]
    uid = users[-1].args.split(":")[0]
    if uid.isdigit() and int(uid) != 0:
        return []
    return [f"line {users[-1].line}: USER {users[-1].args} is not a numeric non-root uid"]


def _secret_findings(ins: list[Instruction]) -> list[str]:
    out = []
    for i in ins:
        if i.keyword in ("ENV", "ARG"):
            names = _env_pairs(i.args) if i.keyword == "ENV" else {i.args.split("=", 1)[0]: ""}
            out += [f"line {i.line}: {i.keyword} {n} looks like a secret" for n in names if SECRET_NAME.search(n)]
        if i.keyword in ("COPY", "ADD"):
            srcs = [w for w in i.args.split() if not w.startswith("--")][:-1]
            out += [f"line {i.line}: {i.keyword} {s} copies a credential file" for s in srcs if SECRET_FILE.search(s)]
            if i.keyword == "ADD" and any(s.startswith(("http://", "https://")) for s in srcs):
                out.append(f"line {i.line}: ADD from a URL (unverified download)")
    return out


def _readonly_findings(final: list[Instruction]) -> list[str]:
    env: dict[str, str] = {}
    for i in final:
        if i.keyword == "ENV":
            env.update(_env_pairs(i.args))
    out = []
    if not env.get("HOME", "").startswith("/tmp"):
        out.append(f"final stage HOME={env.get('HOME', '(unset: the user has none)')} is not under /tmp "
                   "(the writable emptyDir of a read-only root filesystem)")
    if env.get("PYTHONDONTWRITEBYTECODE") != "1":
        out.append("final stage does not set PYTHONDONTWRITEBYTECODE=1 (Python would write .pyc files)")
    out += [f"line {i.line}: VOLUME in the image" for i in final if i.keyword == "VOLUME"]
    return out


def _context_findings(ins: list[Instruction], context: Path) -> list[str]:
    out = []
    for i in ins:
        if i.keyword == "COPY" and "--from" not in i.args:
            for src in [w for w in i.args.split() if not w.startswith("--")][:-1]:
                if not (context / src).exists():
                    out.append(f"line {i.line}: COPY source {src} missing from the build context")
        if i.keyword in ("ENTRYPOINT", "CMD") and i.args.startswith("["):
            argv = json.loads(i.args)
            if "-m" in argv:
                module = argv[argv.index("-m") + 1].replace(".", "/")
                if not ((context / f"{module}.py").exists() or (context / module / "__main__.py").exists()):
                    out.append(f"line {i.line}: entry point module {module} not in the build context")
    return out
