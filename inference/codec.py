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

Tensors are strict: a shape is a list of non-negative integers whose product is the number of
values; JSON values must be of the datatype (integers for INT*, no bools, no floats such as
``1059.5`` and no strings; strings for BYTES), within its range; binary parts (REST's binary
extension, gRPC's ``raw_input_contents``) must have exactly the bytes the shape needs.
``decode_v2_rest`` reads a REST v2 body (JSON, or a JSON header of ``inference-header-content-length``
bytes followed by the binary parts) into an ``InferRequest`` with those checks; ``tensor_values``
applies them to any ``InferInput`` (gRPC's too).

Every malformed input raises ``kserve.errors.InvalidInput`` with a printable reason (HTTP 400, gRPC
INVALID_ARGUMENT); nothing here can raise anything else on bad input.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)
from pydantic import ValidationError

from checkout_recs import contract

MAX_INSTANCES = 8
_INT_INPUTS = {"user_id", "purchased_item_ids"}
_STR_INPUTS = {"region", "device", "request_id", "timestamp"}
#: v2 datatypes: numpy little-endian dtype of the fixed-size ones (BYTES: length-prefixed strings).
DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BYTES": "O",
}
#: Most dimensions a tensor may have.
MAX_DIMS = 8
#: Longest reason text sent back, characters.
MAX_REASON = 300
_TENSOR_KEYS = {"name", "shape", "datatype", "parameters", "data"}
#: Top-level keys of a v2 request: the protocol's, and the model's name / version that kserve's
#: client adds (ignored: the path names the model).
_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs", "model_name", "model_version"}


def printable(text: str, limit: int = MAX_REASON) -> str:
    """``text`` safe to send in any answer: lone surrogates and control characters escaped, cut at
    ``limit`` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in safe)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return printable("invalid checkout request: " + "; ".join(parts))


def validate_request(obj: Any) -> contract.PostCheckoutRequest:
    """One ``contract.PostCheckoutRequest`` from a decoded JSON object; InvalidInput otherwise."""
    if not isinstance(obj, dict):
        raise InvalidInput(f"a checkout request must be a JSON object, got {type(obj).__name__}")
    try:
        return contract.PostCheckoutRequest.model_validate(obj)
    except ValidationError as exc:
        raise InvalidInput(_reason(exc)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(printable(f"invalid checkout request: {exc}")) from None


def parse_v1(payload: Any) -> list[contract.PostCheckoutRequest]:
    """Requests from a v1 body (``{"instances": [...]}`` or one bare request object)."""
    if not isinstance(payload, dict):
        raise InvalidInput("the v1 body must be a JSON object")
    if "instances" not in payload:
        return [validate_request(payload)]
    inst = payload["instances"]
    if set(payload) - {"instances", "parameters"}:
        raise InvalidInput(
            printable(
                f"unexpected top-level fields {sorted(set(payload) - {'instances', 'parameters'})}"
            )
        )
    if not isinstance(inst, list) or not inst:
        raise InvalidInput('"instances" must be a non-empty list of checkout requests')
    if len(inst) > MAX_INSTANCES:
        raise InvalidInput(
            f'"instances" holds {len(inst)} requests; at most {MAX_INSTANCES} per call'
        )
    return [validate_request(i) for i in inst]


def _shape(shape: Any, name: str) -> list[int]:
    """The tensor's shape as ints; InvalidInput unless a list of at most ``MAX_DIMS`` integers >= 0."""
    if (
        not isinstance(shape, list | tuple)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise InvalidInput(
            printable(
                f"input {name!r}: shape must be a list of at most {MAX_DIMS} integers >= 0, "
                f"got {shape!r}"
            )
        )
    return list(shape)


def _flat(data: Any, depth: int, name: str) -> list[Any]:
    """``data`` (a list, nested at most ``depth`` deep) flattened row-major."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).tolist()
    if not isinstance(data, list | tuple):
        raise InvalidInput(
            printable(f"input {name!r}: data must be a list, got {type(data).__name__}")
        )
    out: list[Any] = []
    for v in data:
        if isinstance(v, list | tuple):
            if depth <= 1:
                raise InvalidInput(f"input {name!r}: data is nested deeper than its shape")
            out.extend(_flat(v, depth - 1, name))
        else:
            out.append(v)
    return out


def _fits(v: Any, datatype: str) -> bool:
    """Whether the JSON / protobuf value ``v`` is a value of ``datatype`` (no bool for a number, no
    float for an integer, no number for a string, integers within the type's range)."""
    if datatype == "BYTES":
        return isinstance(v, str | bytes)
    if datatype == "BOOL":
        return type(v) is bool
    if datatype.startswith("FP"):
        return (type(v) is float and math.isfinite(v)) or (type(v) is int and abs(v) < 2**64)
    info = np.iinfo(DTYPES[datatype])
    return type(v) is int and int(info.min) <= v <= int(info.max)


def _check_values(values: list[Any], datatype: str, name: str) -> None:
    """InvalidInput unless every value ``_fits`` ``datatype``."""
    bad = next((v for v in values if not _fits(v, datatype)), _OK)
    if bad is not _OK:
        raise InvalidInput(
            printable(f"input {name!r}: every value must be {datatype}, got {bad!r}")
        )


_OK = object()


def _from_raw(raw: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    """Values of a binary tensor part: exactly ``count`` of them in exactly ``len(raw)`` bytes."""
    if datatype == "BYTES":
        return _bytes_elements(raw, count, name)
    dtype = np.dtype(DTYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"input {name!r}: binary part of {len(raw)} bytes, shape needs {count} x "
            f"{dtype.itemsize} = {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype)


def _bytes_elements(raw: bytes, count: int, name: str) -> np.ndarray:
    """BYTES elements of a binary part: each a 4-byte little-endian length then that many bytes."""
    out, off = [], 0
    while off < len(raw):
        if off + 4 > len(raw):
            raise InvalidInput(
                f"input {name!r}: BYTES element at byte {off} has a truncated length prefix"
            )
        (n,) = struct.unpack_from("<I", raw, off)
        if off + 4 + n > len(raw):
            raise InvalidInput(
                f"input {name!r}: BYTES element at byte {off} says {n} bytes, "
                f"{len(raw) - off - 4} remain"
            )
        out.append(raw[off + 4 : off + 4 + n])
        off += 4 + n
    if len(out) != count:
        raise InvalidInput(f"input {name!r}: {len(out)} BYTES elements, shape needs {count}")
    return np.array(out, dtype=object)


def tensor_values(inp: InferInput) -> np.ndarray:
    """The values of ``inp`` flattened: (prod(shape),) of its datatype (object for BYTES); raises
    InvalidInput unless the shape, the datatype and the values (JSON or binary) agree."""
    name = inp.name if isinstance(inp.name, str) else "?"
    if inp.datatype not in DTYPES:
        raise InvalidInput(printable(f"input {name!r}: unknown datatype {inp.datatype!r}"))
    shape = _shape(inp.shape, name)
    count = math.prod(shape)
    raw = getattr(inp, "_raw_data", None)
    if raw is not None:
        return _from_raw(bytes(raw), inp.datatype, count, name)
    if inp.datatype == "FP16":
        raise InvalidInput(f"input {name!r}: FP16 travels as binary data only")
    values = _flat(inp.data if inp.data is not None else [], max(len(shape), 1), name)
    if len(values) != count:
        raise InvalidInput(f"input {name!r}: {len(values)} values, shape {shape} needs {count}")
    _check_values(values, inp.datatype, name)
    return (
        np.array(values, dtype=DTYPES[inp.datatype])
        if inp.datatype != "BYTES"
        else np.array(values, dtype=object)
    )


def _tensor(req: InferRequest, name: str) -> np.ndarray | None:
    inp = req.get_input_by_name(name)
    if inp is None:
        return None
    want = "INT64" if name in _INT_INPUTS else "BYTES"
    if inp.datatype not in ({want, "INT32"} if want == "INT64" else {want}):
        raise InvalidInput(printable(f"input {name!r} must be {want}, got {inp.datatype}"))
    return tensor_values(inp)


def _text(arr: np.ndarray | None, name: str) -> str | None:
    if arr is None:
        return None
    if arr.size != 1:
        raise InvalidInput(f"input {name!r} must hold exactly one value, got {arr.size}")
    v = arr[0]
    if isinstance(v, str):
        return v
    try:
        return bytes(v).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r} is not UTF-8") from None


def parse_v2(req: InferRequest) -> contract.PostCheckoutRequest:
    """One request from v2 tensors (see module docstring)."""
    names = [i.name for i in req.inputs]
    if not all(isinstance(n, str) for n in names):
        raise InvalidInput("input names must be strings")
    unknown = set(names) - _INT_INPUTS - _STR_INPUTS
    if unknown:
        raise InvalidInput(printable(f"unexpected inputs {sorted(unknown)}"))
    if len(set(names)) != len(names):
        raise InvalidInput("an input name appears twice")
    uid = _tensor(req, "user_id")
    if uid is None or uid.size != 1:
        raise InvalidInput("input 'user_id' (INT64, shape [1]) is required")
    items = _tensor(req, "purchased_item_ids")
    obj: dict[str, Any] = {
        "user_id": uid.tolist()[0],
        "purchased_item_ids": [] if items is None else items.tolist(),
    }
    for name in ("region", "device", "request_id", "timestamp"):
        val = _text(_tensor(req, name), name)
        if val is not None:
            obj[name] = val
    return validate_request(obj)


def _json_length(header_length: str, size: int) -> int:
    """The JSON header's length from ``inference-header-content-length``: digits, within the body."""
    text = header_length.strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= size:
        raise InvalidInput(
            printable(
                f"inference-header-content-length must be a byte count in (0, {size}] "
                f"(the body's size), got {header_length[:40]!r}"
            )
        )
    return int(text)


def _parameters(obj: Any, where: str) -> dict[str, Any] | None:
    """A v2 ``parameters`` object: None or a dict of strings to scalars."""
    if obj is None:
        return None
    if not isinstance(obj, dict) or not all(
        isinstance(v, str | int | float | bool) for v in obj.values()
    ):
        raise InvalidInput(f"{where}: parameters must be an object of strings, numbers or booleans")
    if "binary_data_output" in obj and type(obj["binary_data_output"]) is not bool:
        raise InvalidInput(f"{where}: binary_data_output must be true or false")
    return obj


def _input(t: Any, i: int) -> tuple[InferInput, int | None]:
    """An ``InferInput`` from the request's ``inputs[i]`` and the size of its binary part (None: JSON data)."""
    where = f"inputs[{i}]"
    if not isinstance(t, dict) or set(t) - _TENSOR_KEYS:
        raise InvalidInput(printable(f"{where} must be an object with {sorted(_TENSOR_KEYS)}"))
    name, datatype = t.get("name"), t.get("datatype")
    if not isinstance(name, str) or not 0 < len(name) <= 128:
        raise InvalidInput(f"{where}: name must be a string of 1..128 characters")
    if datatype not in DTYPES:
        raise InvalidInput(
            printable(f"{where}: datatype must be one of {sorted(DTYPES)}, got {datatype!r}")
        )
    shape = _shape(t.get("shape"), name)
    params = _parameters(t.get("parameters"), where)
    size = (params or {}).get("binary_data_size")
    if ("data" in t) == (size is not None):
        raise InvalidInput(
            printable(f"input {name!r}: give either data or parameters.binary_data_size")
        )
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidInput(printable(f"input {name!r}: binary_data_size must be an integer >= 0"))
    return InferInput(
        name=name, shape=shape, datatype=datatype, data=t.get("data"), parameters=params
    ), size


def _outputs(obj: Any) -> list[RequestedOutput] | None:
    if obj is None:
        return None
    if not isinstance(obj, list) or not all(
        isinstance(o, dict)
        and isinstance(o.get("name"), str)
        and not set(o) - {"name", "parameters"}
        for o in obj
    ):
        raise InvalidInput("outputs must be a list of objects with a string name (and parameters)")
    return [
        RequestedOutput(
            name=o["name"], parameters=_parameters(o.get("parameters"), f"output {o['name']!r}")
        )
        for o in obj
    ]


def decode_v2_rest(body: bytes, header_length: str | None, model_name: str) -> InferRequest:
    """An ``InferRequest`` from a REST v2 infer body (module docstring): JSON, or with
    ``header_length`` (``inference-header-content-length``) a JSON header then the binary parts in
    input order, which must use up the body exactly. Every tensor is checked (``tensor_values``)."""
    n = len(body) if header_length is None else _json_length(header_length, len(body))
    try:
        head = orjson.loads(body[:n])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(printable(f"Unrecognized request format: {exc}")) from None
    if not isinstance(head, dict) or set(head) - _REQUEST_KEYS:
        raise InvalidInput(f"a v2 infer request is a JSON object with {sorted(_REQUEST_KEYS)}")
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput('"inputs" must be a non-empty list of tensors')
    for key in ("id", "model_name", "model_version"):
        if head.get(key) is not None and not isinstance(head[key], str):
            raise InvalidInput(f'"{key}" must be a string')
    rid = head.get("id")
    params = _parameters(head.get("parameters"), "request")
    offset, tensors = n, []
    for i, t in enumerate(inputs):
        inp, size = _input(t, i)
        if size is not None:
            if offset + size > len(body):
                raise InvalidInput(
                    printable(
                        f"input {inp.name!r}: binary_data_size {size} runs past the body "
                        f"({len(body) - offset} bytes left)"
                    )
                )
            inp._raw_data = body[offset : offset + size]
            offset += size
        values = tensor_values(inp)
        if size is None:
            inp.data = values.tolist()  # flat and checked: ``InferInput.as_numpy`` reshapes it
        tensors.append(inp)
    if offset != len(body):
        raise InvalidInput(f"{len(body) - offset} bytes follow the declared binary tensors")
    return InferRequest(
        model_name=model_name,
        infer_inputs=tensors,
        request_id=rid,
        parameters=params,
        request_outputs=_outputs(head.get("outputs")),
    )


def encode_v1(responses: list[contract.PostCheckoutResponse]) -> dict[str, Any]:
    """``{"predictions": [...]}`` with each response as JSON."""
    return {"predictions": [r.model_dump(mode="json") for r in responses]}


def encode_v2(
    resp: contract.PostCheckoutResponse, model_name: str, binary: bool = False
) -> InferResponse:
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
    return InferResponse(
        response_id=resp.request_id,
        model_name=model_name,
        infer_outputs=outputs,
        use_binary_outputs=binary,
        parameters={
            "model_version": resp.model_version or "",
            "index_version": resp.index_version or "",
        },
    )
