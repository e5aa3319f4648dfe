"""The contract between the rendered manifests and the code: what each container runs, checked.

For every container of our images in a rendered build (``ghcr.io/checkout-recs/<name>``):

1. **the command line** — the image's ``ENTRYPOINT`` (``docker/<name>.Dockerfile``) or the
   container's ``command``, then its ``args`` with ``$(VAR)`` expanded from the container's env,
   plus what KServe appends to a transformer component (``kserve_injected_args``) — must be
   accepted by the ``python -m MODULE`` entry point's parser (``EntryPoint.parse``, strict: an
   unknown flag, a bad choice or a missing required flag fails);
2. **the environment** — every variable the container gets must be read by that entry point
   (``EntryPoint.env``), by the platform (``PLATFORM_ENV``: KServe's storage initializer, boto3,
   BLAS), or be used as ``$(VAR)`` by another value of the container;
3. **what production needs** — ``EntryPoint.missing(args, env)`` (the transformer:
   ``ServingSettings.missing``) must be empty.

The core does not import the entry points: the caller passes ``load(module) -> EntryPoint``
(``cli/manifest_contract.py`` imports the module and reads its ``build_parser``, ``ENV_VARS`` and
``missing_settings``). Findings use ``semantics.Finding`` with check ``"contract"``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkout_recs.deploy.dockerfiles import parse as parse_dockerfile
from checkout_recs.deploy.semantics import Finding, PodLike, pod_specs

#: Image repository prefix of the images this repository builds.
OUR_IMAGES = "ghcr.io/checkout-recs/"
#: Variables read by the platform, not by our code: KServe's storage initializer, BLAS threads.
PLATFORM_ENV = frozenset(
    {"STORAGE_URI", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}
)
#: Prefixes of variables read by libraries (boto3 / botocore: credentials, region, endpoints).
PLATFORM_ENV_PREFIXES = ("AWS_",)
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class EntryPoint:
    """What one module accepts.

    parse : argv (after ``-m MODULE``) -> parsed namespace; ``ValueError`` with the parser's message.
    env : environment variables the module reads.
    missing : (parsed namespace, env) -> what a cluster deployment lacks; None when nothing is required.
    """

    parse: Callable[[list[str]], Any]
    env: frozenset[str]
    missing: Callable[[Any, Mapping[str, str]], list[str]] | None = None


@dataclass(frozen=True)
class Invocation:
    """What one container will run: its argv (command + args, ``$(VAR)`` expanded) and env."""

    owner: str
    where: str
    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    refs: frozenset[str]

    @property
    def module(self) -> str | None:
        """The module after ``-m`` (``python -m X``, ``torchrun ... -m X``), None when there is none."""
        argv = list(self.argv)
        return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None

    @property
    def module_args(self) -> list[str]:
        """The arguments after ``-m MODULE``."""
        argv = list(self.argv)
        return argv[argv.index("-m") + 2 :] if self.module else []


#: An image's default command line: (ENTRYPOINT argv, CMD argv).
ImageDefaults = tuple[list[str], list[str]]


def image_entrypoints(docker_dir: Path) -> dict[str, ImageDefaults]:
    """``{"ghcr.io/checkout-recs/<name>": (ENTRYPOINT, CMD)}`` from ``docker/<name>.Dockerfile``
    (the final stage's last of each, exec or shell form)."""
    out = {}
    for path in sorted(docker_dir.glob("*.Dockerfile")):
        ins = parse_dockerfile(path.read_text())
        last = max((i.stage for i in ins), default=0)
        final = {
            i.keyword: i.args for i in ins if i.stage == last and i.keyword in ("ENTRYPOINT", "CMD")
        }
        out[OUR_IMAGES + path.name.removesuffix(".Dockerfile")] = (
            _argv(final.get("ENTRYPOINT")),
            _argv(final.get("CMD")),
        )
    return out


def command_line(container: dict[str, Any], defaults: ImageDefaults, args: list[str]) -> list[str]:
    """Kubernetes' rule: ``command`` replaces ENTRYPOINT (and drops CMD), ``args`` replaces CMD."""
    entrypoint, cmd = defaults
    if container.get("command"):
        return [str(c) for c in container["command"]] + args
    return entrypoint + (args if container.get("args") is not None else cmd)


def _argv(text: str | None) -> list[str]:
    if not text:
        return []
    return (
        [str(a) for a in json.loads(text)] if text.lstrip().startswith("[") else shlex.split(text)
    )


def kserve_injected_args(doc: dict[str, Any], component: str, args: list[str]) -> list[str]:
    """What KServe appends to a transformer component's first container (``CustomTransformer.
    GetContainer``): each of ``--model_name <isvc>``, ``--predictor_host <isvc>-predictor.<ns>``,
    ``--http_port 8080`` and ``--workers <containerConcurrency>`` unless an arg already starts with it."""
    if component != "transformer":
        return []
    meta, spec = doc.get("metadata") or {}, (doc.get("spec") or {}).get("transformer") or {}
    name, ns = meta.get("name", ""), meta.get("namespace", "default")
    wanted = [
        ("--model_name", name),
        ("--predictor_host", f"{name}-predictor.{ns}"),
        ("--http_port", "8080"),
    ]
    if spec.get("containerConcurrency") is not None:
        wanted.append(("--workers", str(spec["containerConcurrency"])))
    return [
        x
        for flag, value in wanted
        if not any(a.startswith(flag) for a in args)
        for x in (flag, value)
    ]


def _env_values(container: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Literal env values (a Secret's as ``<secret:name/key>``, a field's as ``<field:path>``) and
    the names used as ``$(VAR)`` by the container's env values, args or command."""
    env: dict[str, str] = {}
    for e in container.get("env") or []:
        src = e.get("valueFrom") or {}
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            env[e["name"]] = f"<secret:{ref.get('name')}/{ref.get('key')}>"
        elif "fieldRef" in src:
            env[e["name"]] = f"<field:{src['fieldRef'].get('fieldPath')}>"
        elif src:
            env[e["name"]] = f"<{next(iter(src))}>"
        else:
            env[e["name"]] = _expand(str(e.get("value", "")), env)
    texts = [str(e.get("value") or "") for e in container.get("env") or []]
    texts += [str(a) for a in (container.get("args") or []) + (container.get("command") or [])]
    return env, {r for t in texts for r in _VAR_REF.findall(t)}


def _expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` replaced by ``env[VAR]`` where defined (Kubernetes leaves the others as written)."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def image_repository(image: str) -> str:
    """``registry/name`` of ``registry/name:tag`` or ``registry/name@sha256:...``."""
    base = image.split("@")[0]
    return base.rsplit(":", 1)[0] if ":" in base.rsplit("/", 1)[-1] else base


def _isvc_component(pod: PodLike) -> str | None:
    return pod.path.removeprefix("spec.") if pod.owner.startswith("InferenceService/") else None


def invocations(
    docs: list[dict[str, Any]], entrypoints: Mapping[str, ImageDefaults]
) -> Iterator[Invocation]:
    """Every container of our images in ``docs``, as it will run (init containers included).

    A KubeRay ``RayJob`` runs its ``spec.entrypoint`` (on the head, with the head container's
    environment); its pods' own commands are the operator's (``ray start``, ``ray job submit``).
    """
    for doc in docs:
        if doc.get("kind") == "RayJob":
            yield from _rayjob_invocation(doc)
            continue
        for pod in pod_specs(doc):
            comp = _isvc_component(pod)
            for i, c in enumerate(pod.containers):
                repo = image_repository(str(c.get("image") or ""))
                if not repo.startswith(OUR_IMAGES):
                    continue
                env, refs = _env_values(c)
                args = [_expand(str(a), env) for a in c.get("args") or []]
                if comp and i == 0:
                    args += kserve_injected_args(doc, comp, args)
                if comp and i == 0 and c.get("args") is None:
                    c = {**c, "args": []}  # KServe's arguments replace the image's CMD
                argv = command_line(c, entrypoints.get(repo, ([], [])), args)
                yield Invocation(
                    pod.owner,
                    f"{pod.path} {c.get('name')}",
                    repo,
                    tuple(argv),
                    env,
                    frozenset(refs),
                )


def _rayjob_invocation(doc: dict[str, Any]) -> Iterator[Invocation]:
    """The ``RayJob``'s entrypoint as an invocation of its head container's image and env."""
    spec = doc.get("spec", {}) or {}
    head = (spec.get("rayClusterSpec") or {}).get("headGroupSpec") or {}
    containers = ((head.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    repo = image_repository(str(containers[0].get("image") or ""))
    if not repo.startswith(OUR_IMAGES):
        return
    env, refs = _env_values(containers[0])
    argv = [_expand(a, env) for a in shlex.split(str(spec.get("entrypoint") or ""))]
    owner = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    yield Invocation(owner, "spec.entrypoint", repo, tuple(argv), env, frozenset(refs))


def check_invocation(inv: Invocation, load: Callable[[str], EntryPoint]) -> list[Finding]:
    """The three checks of the module docstring for one container."""
    where = f"{inv.where} ({inv.image})"
    if inv.module is None:
        return [
            Finding(inv.owner, "contract", f"{where}: no 'python -m MODULE' in {list(inv.argv)}")
        ]
    try:
        ep = load(inv.module)
    except (ImportError, LookupError) as exc:
        return [Finding(inv.owner, "contract", f"{where}: entry point {inv.module}: {exc}")]
    out = []
    try:
        parsed = ep.parse(inv.module_args)
    except ValueError as exc:
        return [
            Finding(
                inv.owner, "contract", f"{where}: {inv.module} refuses {inv.module_args}: {exc}"
            )
        ]
    for name in sorted(inv.env):
        known = name in ep.env or name in PLATFORM_ENV or name.startswith(PLATFORM_ENV_PREFIXES)
        if not known and name not in inv.refs:
            out.append(
                Finding(
                    inv.owner, "contract", f"{where}: env {name} is read by nothing ({inv.module})"
                )
            )
    if ep.missing is not None:
        out += [
            Finding(inv.owner, "contract", f"{where}: {m}") for m in ep.missing(parsed, inv.env)
        ]
    return out


def check_contract(
    docs: list[dict[str, Any]],
    entrypoints: Mapping[str, ImageDefaults],
    load: Callable[[str], EntryPoint],
) -> list[Finding]:
    """Every contract finding of one rendered build (empty list when code and manifests agree).

    Parameters
    ----------
    docs : the resources of one kustomize build.
    entrypoints : image repository -> (ENTRYPOINT, CMD) (``image_entrypoints``).
    load : module name -> its ``EntryPoint``; raises ImportError / LookupError when it has none.
    """
    return [f for inv in invocations(docs, entrypoints) for f in check_invocation(inv, load)]
