"""Strict wire formats: the request model's ranges, v2 tensors (JSON, binary, gRPC-style), reasons."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferInput, InferRequest

from checkout_recs import contract
from inference import codec
from inference.grpc_guard import _decode

GOOD = [
    {"name": "user_id", "datatype": "INT64", "shape": [1], "data": [1059]},
    {"name": "region", "datatype": "BYTES", "shape": [1], "data": ["north"]},
]


def _v2(*inputs: dict, **top) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **top})


def _binary(head_inputs: list[dict], parts: list[bytes]) -> tuple[bytes, str]:
    head = orjson.dumps({"inputs": head_inputs})
    return head + b"".join(parts), str(len(head))


@pytest.mark.parametrize("value", ["1059", True, 1059.0, 1059.5, -1, 2**63, 2**64 - 1, None])
def test_request_ids_are_strict_integers_within_int64(value):
    with pytest.raises(InvalidInput, match="user_id"):
        codec.parse_v1({"instances": [{"user_id": value, "region": "north"}]})
    with pytest.raises(InvalidInput, match="purchased_item_ids"):
        codec.parse_v1({"user_id": 1, "region": "north", "purchased_item_ids": [1, value]})


def test_request_bounds_are_the_contracts():
    top = contract.ID_MAX
    req = codec.parse_v1({"user_id": top, "region": "north", "purchased_item_ids": [0, top]})[0]
    assert req.user_id == top and req.purchased_item_ids == [0, top]


@pytest.mark.parametrize(
    "ts",
    [
        "2300-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        1700000000,
        "1700000000",
        True,
        "yesterday",
    ],
)
def test_timestamps_are_iso_strings_within_the_contract_range(ts):
    with pytest.raises(InvalidInput, match="timestamp"):
        codec.parse_v1({"user_id": 1, "region": "north", "timestamp": ts})


def test_timestamps_inside_the_range_are_kept_naive_as_utc():
    req = codec.parse_v1({"user_id": 1, "region": "north", "timestamp": "2199-12-31T10:00:00"})[0]
    assert (
        req.timestamp is not None
        and req.timestamp.year == 2199
        and req.timestamp.utcoffset().total_seconds() == 0
    )


@pytest.mark.parametrize("rid", ["a b", "", "x" * 65, "caf\u00e9", "tab\there"])
def test_request_ids_are_visible_ascii(rid):
    with pytest.raises(InvalidInput, match="request_id"):
        codec.parse_v1({"user_id": 1, "region": "north", "request_id": rid})


def test_reasons_are_printable_whatever_the_input():
    for key in ("\ud800", "typo\x00"):
        with pytest.raises(InvalidInput) as err:
            codec.parse_v1({"user_id": 1, "region": "north", key: 1})
        str(err.value).encode("utf-8")  # no lone surrogate left
        assert "\x00" not in str(err.value)
    assert codec.printable("a\ud800b\x00") == "a\\ud800b\\x00"
    assert len(codec.printable("x" * 1000)) == codec.MAX_REASON


def test_v2_json_request_parses():
    req = codec.parse_v2(codec.decode_v2_rest(_v2(*GOOD), None, "m"))
    assert req.user_id == 1059 and req.region == "north"


@pytest.mark.parametrize(
    "user_id_tensor,fragment",
    [
        ({"data": [1059.5]}, "INT64"),
        ({"data": [True]}, "INT64"),
        ({"data": ["1059"]}, "INT64"),
        ({"data": [2**63]}, "INT64"),
        ({"shape": [-1]}, "shape"),
        ({"shape": [2, 3]}, "needs 6"),
        ({"shape": [True]}, "shape"),
        ({"data": [[1059]]}, "nested"),
        ({"datatype": "INT128"}, "datatype"),
        ({"data": 1059}, "list"),
    ],
)
def test_v2_json_tensors_are_strict(user_id_tensor, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        codec.parse_v2(codec.decode_v2_rest(_v2({**GOOD[0], **user_id_tensor}, GOOD[1]), None, "m"))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"inputs": []}',
        b'{"inputs": "\\ud800"}',
        b'{"inputs": [1]}',
        b'{"inputs": [{}]}',
        b'{"typo": 1, "inputs": []}',
        _v2(*GOOD, id=5),
        _v2(*GOOD, parameters={"binary_data_output": "yes"}),
        _v2(*GOOD, outputs=[{"nom": "x"}]),
        _v2({**GOOD[1], "data": [5]}, GOOD[0]),
        b"\xff\xfe",
    ],
)
def test_malformed_v2_bodies_are_invalid_input(body):
    with pytest.raises(InvalidInput) as err:
        codec.parse_v2(codec.decode_v2_rest(body, None, "m"))
    str(err.value).encode("utf-8")


def test_v2_binary_tensors_parse_and_must_use_the_body_exactly():
    uid = {
        "name": "user_id",
        "datatype": "INT64",
        "shape": [1],
        "parameters": {"binary_data_size": 8},
    }
    region = {
        "name": "region",
        "datatype": "BYTES",
        "shape": [1],
        "parameters": {"binary_data_size": 9},
    }
    body, n = _binary([uid, region], [struct.pack("<q", 1059), struct.pack("<I", 5) + b"north"])
    req = codec.parse_v2(codec.decode_v2_rest(body, n, "m"))
    assert (req.user_id, req.region) == (1059, "north")
    for bad_body, bad_n, fragment in [
        (body + b"x", n, "follow"),  # bytes after the declared parts
        (body[:-1], n, "runs past"),  # a part cut short
        (body, "abc", "byte count"),
        (body, "-5", "byte count"),
        (body, "0", "byte count"),
        (body, str(len(body) + 1), "byte count"),
        (body, "\u0661", "byte count"),
        (body, str(int(n) - 3), "Unrecognized request format"),
    ]:
        with pytest.raises(InvalidInput, match=fragment):
            codec.decode_v2_rest(bad_body, bad_n, "m")


@pytest.mark.parametrize(
    "raw,fragment",
    [
        (struct.pack("<I", 5) + b"nor", "says 5 bytes"),
        (b"\x05\x00", "truncated"),
        (struct.pack("<I", 5) + b"north" + struct.pack("<I", 0), "2 BYTES elements"),
        (struct.pack("<I", 2) + b"\xff\xfe", "UTF-8"),
    ],
)
def test_binary_bytes_tensors_check_every_length_prefix(raw, fragment):
    uid = {"name": "user_id", "datatype": "INT64", "shape": [1], "data": [1]}
    region = {
        "name": "region",
        "datatype": "BYTES",
        "shape": [1],
        "parameters": {"binary_data_size": len(raw)},
    }
    body, n = _binary([uid, region], [raw])
    with pytest.raises(InvalidInput, match=fragment):
        codec.parse_v2(codec.decode_v2_rest(body, n, "m"))


def test_binary_int_tensor_size_must_match_its_shape():
    uid = {
        "name": "user_id",
        "datatype": "INT64",
        "shape": [1],
        "parameters": {"binary_data_size": 3},
    }
    body, n = _binary([uid, GOOD[1]], [b"\x03\x00\x00"])
    with pytest.raises(InvalidInput, match="binary part of 3 bytes"):
        codec.decode_v2_rest(body, n, "m")


def test_decoded_json_tensors_are_flat_for_kserve_models():
    t = {"name": "features", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2.5], [3, 4]]}
    req = codec.decode_v2_rest(_v2(t), None, "m")
    np.testing.assert_array_equal(
        req.inputs[0].as_numpy(), np.array([[1, 2.5], [3, 4]], np.float32)
    )


def _grpc(
    user_ids: list[int] | None = None, raw: bytes | None = None, shape: tuple[int, ...] = (1,)
) -> InferRequest:
    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="user_id", datatype="INT64", shape=list(shape))
    if raw is None:
        t.contents.int64_contents.extend(user_ids or [])
    r = msg.inputs.add(name="region", datatype="BYTES", shape=[1])
    if raw is None:
        r.contents.bytes_contents.append(b"north")
    else:
        msg.raw_input_contents.extend([raw, struct.pack("<I", 5) + b"north"])
    return _decode(msg)


def test_grpc_tensors_are_checked_like_rest_ones():
    assert codec.parse_v2(_grpc([7])).user_id == 7
    assert codec.parse_v2(_grpc(raw=struct.pack("<q", 8))).user_id == 8
    for req, fragment in [
        (_grpc([7, 8]), "needs 1"),
        (_grpc(raw=b"\x01\x02"), "binary part"),
        (_grpc([7], shape=(-3,)), "shape"),
        (_grpc([-5]), "user_id"),
    ]:
        with pytest.raises(InvalidInput, match=fragment):
            codec.parse_v2(req)


def test_grpc_undecodable_request_is_invalid_input():
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="user_id", datatype="NOPE", shape=[1])
    with pytest.raises(InvalidInput):
        _decode(msg)


def test_tensor_values_refuse_fp16_json_and_unknown_types():
    with pytest.raises(InvalidInput, match="FP16"):
        codec.tensor_values(InferInput("x", [1], "FP16", data=[1.0]))
    with pytest.raises(InvalidInput, match="datatype"):
        codec.tensor_values(InferInput("x", [1], "COMPLEX", data=[1.0]))
