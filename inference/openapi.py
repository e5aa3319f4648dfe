"""The transformer's published OpenAPI document, generated from the contract's pydantic models.

Two operations, the ones the checkout page calls (``inference.fast_route`` answers both):

* ``POST /v1/models/<name>:predict`` — ``{"instances": [PostCheckoutRequest, ...]}`` (1..8) or one
  bare ``PostCheckoutRequest``; answer ``{"predictions": [PostCheckoutResponse, ...]}``;
* ``POST /v2/models/<name>/infer`` — Open Inference Protocol tensors (``codec`` names them: INT64
  ``user_id`` [1], ``purchased_item_ids`` [k], BYTES ``region`` / ``device`` / ``request_id`` /
  ``timestamp`` [1]) as JSON, or the binary tensor extension (``application/octet-stream`` with
  ``Inference-Header-Content-Length``).

Both take ``X-Request-Deadline-Ms`` (the client's budget, ``inference.deadline``) and answer 400 /
413 / 415 / 503 (with ``Retry-After``) with ``{"error": reason}``. The request and response schemas
are ``checkout_recs.contract``'s models (their ranges stated once there); the v2 tensor schemas
are the protocol's, below. ``inference/openapi.yaml`` is this document, checked in, and
``inference/schemas/*.schema.json`` are standalone JSON Schemas (draft 2020-12) of the v1 and v2
request and response and of the error body, from the same models; ``tests/code/inference/test_openapi.py``
fails when any of them differs from what this module generates. Literal examples, recorded from the
running servers, are in ``inference/examples/`` (``docs/integrating.md``).

    python -m inference.openapi [--write]     # print the OpenAPI, or rewrite openapi.yaml and schemas/
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from checkout_recs import contract
from checkout_recs.serving.settings import DEFAULT_MODEL_NAME
from inference.codec import DTYPES, MAX_DIMS, MAX_INSTANCES
from inference.deadline import (
    DEADLINE_HEADER,
    MAX_CLIENT_DEADLINE_MS,
    MIN_CLIENT_DEADLINE_MS,
    RETRY_AFTER_S,
)

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
SCHEMA_DIR = Path(__file__).with_name("schemas")
_REF = "#/components/schemas/{model}"


class V1Request(BaseModel):
    """v1 predict body: up to ``MAX_INSTANCES`` checkout requests (one bare request is accepted too)."""

    model_config = ConfigDict(extra="forbid")

    instances: list[contract.PostCheckoutRequest] = Field(min_length=1, max_length=MAX_INSTANCES)
    parameters: dict[str, Any] | None = None


class V1Response(BaseModel):
    """v1 predict answer: one response per instance, in order."""

    predictions: list[contract.PostCheckoutResponse]


class TensorParameters(BaseModel):
    """A tensor's v2 parameters: ``binary_data_size`` (bytes of its binary part) or ``binary_data``."""

    model_config = ConfigDict(extra="allow")

    binary_data_size: int | None = Field(default=None, ge=0)
    binary_data: bool | None = None


class V2Tensor(BaseModel):
    """One v2 input tensor: JSON ``data`` (row-major, values of ``datatype``) or a binary part."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    datatype: str = Field(json_schema_extra={"enum": list(DTYPES)})
    shape: list[int] = Field(
        max_length=MAX_DIMS, json_schema_extra={"items": {"type": "integer", "minimum": 0}}
    )
    parameters: TensorParameters | None = None
    data: list[Any] | None = None


class V2RequestedOutput(BaseModel):
    """An output asked for by name (the transformer answers all of them)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: TensorParameters | None = None


class V2Request(BaseModel):
    """v2 infer body (JSON part of a binary-extension body)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    model_name: str | None = Field(
        default=None, description="ignored (the path names the model); kserve's client sends it"
    )
    model_version: str | None = Field(default=None, description="ignored")
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor] = Field(min_length=1)
    outputs: list[V2RequestedOutput] | None = None


class V2OutputTensor(BaseModel):
    """One v2 output tensor (``item_ids`` INT64 [6], ``scores`` FP64 [6], ... see ``codec``)."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2Response(BaseModel):
    """v2 infer answer (JSON form)."""

    id: str
    model_name: str
    model_version: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2OutputTensor]


class ErrorBody(BaseModel):
    """Every refusal: a printable reason."""

    error: str


_MODELS: tuple[type[BaseModel], ...] = (
    V1Request,
    V1Response,
    V2Request,
    V2Response,
    ErrorBody,
    contract.PostCheckoutRequest,
)


def _schemas() -> dict[str, Any]:
    """Component schemas of ``_MODELS`` (and every model they use), refs into ``components``."""
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    return defs.get("$defs", {})


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
    }
    if retry:
        out["headers"] = {
            "Retry-After": {
                "description": f"seconds before trying again ({RETRY_AFTER_S})",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return out


def _deadline_header() -> dict[str, Any]:
    return {
        "name": DEADLINE_HEADER,
        "in": "header",
        "required": False,
        "description": "The client's own budget, milliseconds: the server's deadline is the smaller of it "
        "and --request_deadline_ms; a call that cannot be answered in time is answered by "
        "the cheap path or refused with 503 + Retry-After.",
        "schema": {
            "type": "number",
            "minimum": MIN_CLIENT_DEADLINE_MS,
            "maximum": MAX_CLIENT_DEADLINE_MS,
        },
    }


def _errors() -> dict[str, Any]:
    return {
        "400": _error("malformed request (the reason says what)"),
        "413": _error("body over --max_body_bytes"),
        "415": _error("v1: the body is not application/json"),
        "503": _error(
            "shed: the call could not be answered within its deadline, fewer than six in-stock "
            "listings are known, or (--inventory_unproven refuse) the listings' stock cannot be "
            "proven now",
            retry=True,
        ),
    }


def build_openapi(model_name: str = DEFAULT_MODEL_NAME) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the transformer serving under ``model_name`` (module docstring)."""
    v1 = {
        "post": {
            "operationId": "v1_predict",
            "summary": "Six recommendations per checkout (v1 JSON)",
            "parameters": [_deadline_header()],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": _REF.format(model="V1Request")},
                                {"$ref": _REF.format(model="PostCheckoutRequest")},
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "one answer per instance",
                    "content": {
                        "application/json": {"schema": {"$ref": _REF.format(model="V1Response")}}
                    },
                },
                **_errors(),
            },
        }
    }
    v2 = {
        "post": {
            "operationId": "v2_infer",
            "summary": "Six recommendations for one checkout (Open Inference Protocol)",
            "parameters": [
                _deadline_header(),
                {
                    "name": "inference-header-content-length",
                    "in": "header",
                    "required": False,
                    "description": "binary tensor extension: bytes of the JSON header at the body's start",
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="V2Request")}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "item_ids, scores, propensities, policy, fallback_reason, "
                    "request_id, reasons, sources",
                    "content": {
                        "application/json": {"schema": {"$ref": _REF.format(model="V2Response")}}
                    },
                },
                **_errors(),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "checkout-recs transformer",
            "version": "1",
            "description": "Generated by inference/openapi.py from checkout_recs/contract.py; do not edit.",
        },
        "paths": {f"/v1/models/{model_name}:predict": v1, f"/v2/models/{model_name}/infer": v2},
        "components": {"schemas": _schemas()},
    }


def build_json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> standalone JSON Schema (draft 2020-12, ``$defs`` inside) of each wire body:
    ``v1-request`` (a ``{"instances": [...]}`` body or one bare request), ``v1-response``,
    ``v2-request`` (the JSON form; with the binary extension, the JSON header part), ``v2-response``
    and ``error`` (every 4xx/503 body)."""

    def one(
        name: str, title: str, model: type[BaseModel] | None, mode: str, **top: Any
    ) -> tuple[str, dict]:
        schema: dict[str, Any] = model.model_json_schema(mode=mode) if model is not None else {}  # type: ignore[arg-type]
        body = {k: v for k, v in schema.items() if k not in ("title", "description")}
        head = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            "description": "Generated by inference/openapi.py from checkout_recs/contract.py; do not edit.",
        }
        return f"{name}.schema.json", {**head, **top, **body}

    _, v1_defs = models_json_schema(
        [(V1Request, "validation"), (contract.PostCheckoutRequest, "validation")]
    )
    v1_request = {
        "oneOf": [{"$ref": "#/$defs/V1Request"}, {"$ref": "#/$defs/PostCheckoutRequest"}],
        "$defs": v1_defs["$defs"],
    }
    return dict(
        [
            one(
                "v1-request",
                "POST /v1/models/<name>:predict request body",
                None,
                "validation",
                **v1_request,
            ),
            one(
                "v1-response",
                "POST /v1/models/<name>:predict 200 answer",
                V1Response,
                "serialization",
            ),
            one(
                "v2-request",
                "POST /v2/models/<name>/infer request body (JSON)",
                V2Request,
                "validation",
            ),
            one(
                "v2-response",
                "POST /v2/models/<name>/infer 200 answer (JSON)",
                V2Response,
                "serialization",
            ),
            one(
                "error",
                'Every refusal (400, 413, 415, 503): {"error": reason}',
                ErrorBody,
                "serialization",
            ),
        ]
    )


def render_json(schema: dict[str, Any]) -> str:
    """``schema`` as the checked-in JSON text."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render(doc: dict[str, Any]) -> str:
    """``doc`` as the checked-in YAML text."""
    return yaml.safe_dump(copy.deepcopy(doc), sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> None:
    """Print the document, or write it to ``inference/openapi.yaml`` and the JSON Schemas to
    ``inference/schemas/`` with ``--write``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--write", action="store_true", help=f"rewrite {OPENAPI_PATH.name} and {SCHEMA_DIR.name}/"
    )
    args = p.parse_args(argv)
    text = render(build_openapi())
    if args.write:
        OPENAPI_PATH.write_text(text)
        print(f"wrote {OPENAPI_PATH}")
        SCHEMA_DIR.mkdir(exist_ok=True)
        for name, schema in build_json_schemas().items():
            (SCHEMA_DIR / name).write_text(render_json(schema))
            print(f"wrote {SCHEMA_DIR / name}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
