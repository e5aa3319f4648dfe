"""Wire formats of the transformer: v1 JSON instances and v2 (Open Inference Protocol) tensors.

v1  request  ``{"instances": [{"user_id": 7, "purchased_item_ids": [1, 2], "region": "north",
             "device": "ios"}]}`` (or one bare object); response ``{"predictions": [<response>]}``
             where ``<response>`` is ``contract.PostCheckoutResponse`` as JSON.
v2  request  tensors ``user_id`` INT64 [1], ``purchased_item_ids`` INT64 [k] (k may be 0),
             ``region`` BYTES [1], ``device`` BYTES [1] (optional), ``request_id`` BYTES [1]
             (optional), ``timestamp`` BYTES [1] ISO-8601 (optional);
    response tensors ``item_ids`` INT64 [6], ``scores`` FP64 [6], ``propensities`` FP64 [6],
             ``policy`` BYTES [1], ``fallback_reason`` BYTES [1] ("" when none),
             ``request_id`` BYTES [1], ``reasons`` BYTES [6], ``sources`` BYTES [6].

Every malformed input raises ``kserve.errors.InvalidInput`` with the reason (HTTP 400, gRPC
INVALID_ARGUMENT); nothing here can raise anything else on bad input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from pydantic import ValidationError

from checkout_recs import contract

MAX_INSTANCES = 8
_INT_INPUTS = {"user_id", "purchased_item_ids"}
_STR_INPUTS = {"region", "device", "request_id", "timestamp"}


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid checkout request: " + "; ".join(parts)


def validate_request(obj: Any) -> contract.PostCheckoutRequest:
    """One ``contract.PostCheckoutRequest`` from a decoded JSON object; InvalidInput otherwise."""
    if not isinstance(obj, dict):
        raise InvalidInput(f"a checkout request must be a JSON object, got {type(obj).__name__}")
    try:
        return contract.PostCheckoutRequest.model_validate(obj)
    except ValidationError as exc:
        raise InvalidInput(_reason(exc)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"invalid checkout request: {exc}") from None


def parse_v1(payload: Any) -> list[contract.PostCheckoutRequest]:
    """Requests from a v1 body (``{"instances": [...]}`` or one bare request object)."""
    if not isinstance(payload, dict):
        raise InvalidInput("the v1 body must be a JSON object")
    if "instances" not in payload:
        return [validate_request(payload)]
    inst = payload["instances"]
    if set(payload) - {"instances", "parameters"}:
        raise InvalidInput(f"unexpected top-level fields {sorted(set(payload) - {'instances', 'parameters'})}")
    if not isinstance(inst, list) or not inst:
        raise InvalidInput('"instances" must be a non-empty list of checkout requests')
    if len(inst) > MAX_INSTANCES:
        raise InvalidInput(f'"instances" holds {len(inst)} requests; at most {MAX_INSTANCES} per call')
    return [validate_request(i) for i in inst]


def _tensor(req: InferRequest, name: str) -> np.ndarray | None:
    inp = req.get_input_by_name(name)
    if inp is None:
        return None
    want = "INT64" if name in _INT_INPUTS else "BYTES"
    if inp.datatype not in ({want, "INT32"} if want == "INT64" else {want}):
        raise InvalidInput(f"input {name!r} must be {want}, got {inp.datatype}")
    try:
        arr = np.asarray(inp.as_numpy()).reshape(-1)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the caller's bad input
        raise InvalidInput(f"input {name!r} could not be decoded: {exc}") from None
    return arr


def _text(arr: np.ndarray | None, name: str) -> str | None:
    if arr is None:
        return None
    if arr.size != 1:
        raise InvalidInput(f"input {name!r} must hold exactly one value, got {arr.size}")
    v = arr[0]
    try:
        return v.decode("utf-8") if isinstance(v, bytes | np.bytes_) else str(v)
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r} is not UTF-8") from None


def parse_v2(req: InferRequest) -> contract.PostCheckoutRequest:
    """One request from v2 tensors (see module docstring)."""
    names = [i.name for i in req.inputs]
    unknown = set(names) - _INT_INPUTS - _STR_INPUTS
    if unknown:
        raise InvalidInput(f"unexpected inputs {sorted(unknown)}")
    if len(set(names)) != len(names):
        raise InvalidInput("an input name appears twice")
    uid = _tensor(req, "user_id")
    if uid is None or uid.size != 1:
        raise InvalidInput("input 'user_id' (INT64, shape [1]) is required")
    items = _tensor(req, "purchased_item_ids")
    obj: dict[str, Any] = {"user_id": int(uid[0]),
                           "purchased_item_ids": [] if items is None else [int(x) for x in items.tolist()]}
    for name in ("region", "device", "request_id", "timestamp"):
        val = _text(_tensor(req, name), name)
        if val is not None:
            obj[name] = val
    return validate_request(obj)


def encode_v1(responses: list[contract.PostCheckoutResponse]) -> dict[str, Any]:
    """``{"predictions": [...]}`` with each response as JSON."""
    return {"predictions": [r.model_dump(mode="json") for r in responses]}


def encode_v2(resp: contract.PostCheckoutResponse, model_name: str, binary: bool = False) -> InferResponse:
    """v2 response tensors (see module docstring); ``binary`` for the binary tensor extension."""
    items = resp.items

    def out(name: str, dtype: str, arr: np.ndarray) -> InferOutput:
        o = InferOutput(name=name, shape=list(arr.shape), datatype=dtype)
        o.set_data_from_numpy(arr, binary_data=binary)
        return o

    def text(values: list[str]) -> np.ndarray:
        return np.array([v.encode() for v in values], dtype=object)

    outputs = [
        out("item_ids", "INT64", np.array([i.listing_id for i in items], dtype=np.int64)),
        out("scores", "FP64", np.array([i.score for i in items], dtype=np.float64)),
        out("propensities", "FP64", np.array([i.propensity for i in items], dtype=np.float64)),
        out("policy", "BYTES", text([resp.policy])),
        out("fallback_reason", "BYTES", text([resp.fallback_reason or ""])),
        out("request_id", "BYTES", text([resp.request_id])),
        out("reasons", "BYTES", text([i.reason for i in items])),
        out("sources", "BYTES", text([i.source for i in items])),
    ]
    return InferResponse(response_id=resp.request_id, model_name=model_name, infer_outputs=outputs,
                         use_binary_outputs=binary,
                         parameters={"model_version": resp.model_version or "",
                                     "index_version": resp.index_version or ""})
