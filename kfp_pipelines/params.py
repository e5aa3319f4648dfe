"""Per-environment parameter files: ``kfp_pipelines/params/{local,staging,production}.yaml``.

A file has one section per pipeline (``training:``, ``index_refresh:``, ``monitoring:``), each a
mapping of pipeline parameters. Every section is validated by a pydantic model built from the
pipeline function's signature (:func:`params_model`): an unknown key or a value of the wrong
type is a :class:`ParamsError` naming the file, the pipeline and the key. Only the keys a file
sets are returned, so the pipeline's own defaults (and a local run's ``local_defaults``) apply to
the others.
"""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import ErrorDetails

from kfp_pipelines.registry import PIPELINES, get

#: The checked-in parameter files.
PARAMS_DIR = Path(__file__).parent / "params"
ENVIRONMENTS = ("local", "staging", "production")


class ParamsError(ValueError):
    """A parameter file (or an override) that does not fit the pipeline's parameters."""


@cache
def params_model(name: str) -> type[BaseModel]:
    """A strict pydantic model of pipeline ``name``'s parameters (types and defaults from the
    ``@dsl.pipeline`` function's signature; unknown keys forbidden, no type coercion except
    int → float)."""
    func = get(name).load().pipeline_func
    fields: dict[str, Any] = {
        p.name: (p.annotation, p.default) for p in inspect.signature(func).parameters.values()
    }
    return create_model(
        f"{name.title().replace('_', '')}Params",
        __config__=ConfigDict(extra="forbid", strict=True),
        **fields,
    )


def _describe(err: ErrorDetails, section: str, known: list[str]) -> str:
    """One line per pydantic error: where, what was wrong, what was given."""
    where = ".".join([section, *map(str, err["loc"])])
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown parameter (known: {', '.join(known)})"
    return f"{where}: {err['msg']} (got {err['input']!r})"


def validate_params(
    name: str, values: dict[str, Any], origin: str = "parameters"
) -> dict[str, Any]:
    """Check ``values`` against pipeline ``name``'s parameters; returns them (ints given for
    floats become floats). ``ParamsError`` lists every problem, prefixed with ``origin``."""
    model = params_model(name)
    try:
        checked = model.model_validate(values)
    except ValidationError as exc:
        known = sorted(model.model_fields)
        lines = [_describe(e, name, known) for e in exc.errors()]
        raise ParamsError(f"{origin}: " + "; ".join(lines)) from None
    return checked.model_dump(include=set(values))


def read_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """The sections of a parameter file, each validated; ``ParamsError`` when the file is not a
    mapping of known pipeline names to mappings, or a section does not validate."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read parameters: {exc}") from None
    if not isinstance(doc, dict):
        raise ParamsError(f"{path}: expected a mapping of pipeline name -> parameters")
    unknown = sorted(set(doc) - set(PIPELINES))
    if unknown:
        raise ParamsError(
            f"{path}: unknown pipeline section(s) {unknown}; known: {', '.join(sorted(PIPELINES))}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name, section in doc.items():
        if not isinstance(section, dict):
            raise ParamsError(f"{path}: section {name!r} must be a mapping of parameter -> value")
        out[name] = validate_params(name, section, str(path))
    return out


def load_params(path: Path, name: str) -> dict[str, Any]:
    """Pipeline ``name``'s parameters from the file at ``path`` (the whole file is validated);
    ``ParamsError`` when the file has no section for ``name``."""
    sections = read_params_file(path)
    if name not in sections:
        raise ParamsError(
            f"{path}: no {name!r} section (sections: {', '.join(sorted(sections)) or 'none'})"
        )
    return sections[name]


def resolve_params(
    name: str, params_file: Path | None, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The file's section for ``name`` (when a file is given) overridden by ``overrides``.

    With a file, the merged result is validated too, so an override of the wrong type or an
    unknown key fails with the same message; without one, ``overrides`` pass through unchanged.
    """
    if params_file is None:
        return dict(overrides)
    merged = {**load_params(params_file, name), **overrides}
    return validate_params(name, merged, f"{params_file} + --param")
