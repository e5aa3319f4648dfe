"""Fuzzing the transformer over real HTTP and gRPC: zero 5xx and zero reset connections.

Three fuzzers share one time budget (``FUZZ_BUDGET_S``, 54 s by default, at most 60):

1. **schemathesis** over ``inference/openapi.yaml`` (generated from ``checkout_recs/contract.py``):
   positive and negative cases of v1 predict and v2 infer: bodies (JSON, broken JSON, lone
   surrogates, invalid UTF-8, binary), headers (``inference-header-content-length``,
   ``x-request-deadline-ms``, content types);
2. **binary tensors**: hypothesis mutations of a valid v2 binary-extension request (header length,
   ``binary_data_size``, datatypes, shapes, truncated / extended / flipped bytes);
3. **gRPC**: bytes that are not a protobuf, valid messages with bytes flipped or cut, and messages
   with out-of-range or ill-typed values.

Every HTTP case is sent on one keep-alive connection, followed on the same connection by a valid
request that must get 200: an error that poisoned the connection (closed or reset) fails the test.
Every gRPC case is followed by a valid call on the same channel. A 503 with ``Retry-After`` to a
request that carried its own ``x-request-deadline-ms`` is the deadline working (the client asked
for an answer within, say, 1 ms), counted apart, not as a 5xx. The counts are printed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import struct
import time
from collections import Counter
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from inference.launch import running_servers
from inference.openapi import OPENAPI_PATH
from tests.fixtures_serving import make_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUDGET_S = min(60.0, float(os.environ.get("FUZZ_BUDGET_S", "54")))
VALID_V1 = json.dumps(
    {"instances": [{"user_id": 3, "purchased_item_ids": [1000], "region": "north"}]}
).encode()
#: gRPC codes no input may cause.
_GRPC_SERVER_FAULTS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}
_CLIENT_HEADERS = {
    "user-agent",
    "accept-encoding",
    "accept",
    "connection",
    "x-schemathesis-testcaseid",
    "content-length",
}


class _Spent(Exception):
    """The fuzzer's share of the budget is used up (ends a hypothesis run early)."""


class Tally:
    """What the fuzzers sent and what came back."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.status: Counter[int] = Counter()
        self.grpc: Counter[str] = Counter()
        self.faults: list[str] = []  # 5xx, INTERNAL / UNKNOWN, resets, closed connections
        self.client_deadline_sheds = 0
        self.unsendable = 0


class Http:
    """One keep-alive connection to the transformer; reconnects (and records why) when it drops."""

    def __init__(self, host: str, port: int, v1_path: str, tally: Tally) -> None:
        self.host, self.port, self.v1_path, self.tally = host, port, v1_path, tally
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def _reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def case(self, label: str, path: str, headers: dict[str, str], body: bytes) -> None:
        """Send one fuzz case, then a valid request on the same connection."""
        try:
            self.conn.putrequest("POST", path, skip_accept_encoding=True)
            for k, v in headers.items():
                self.conn.putheader(k, v)
            self.conn.putheader("Content-Length", str(len(body)))
            self.conn.endheaders(body)
        except (UnicodeEncodeError, ValueError):  # a header http.client cannot put on the wire
            self.tally.unsendable += 1
            self._reconnect()
            return
        self.tally.sent[label] += 1
        try:
            r = self.conn.getresponse()
            r.read()
        except (ConnectionError, http.client.HTTPException) as exc:
            self.tally.faults.append(
                f"{label}: connection failed on the case ({type(exc).__name__}) {path} {headers}"
            )
            self._reconnect()
            return
        self.tally.status[r.status] += 1
        if r.status >= 500:
            shed = (
                r.status == 503
                and r.getheader("retry-after")
                and any(k.lower() == "x-request-deadline-ms" for k in headers)
            )
            if shed:
                self.tally.client_deadline_sheds += 1
            else:
                self.tally.faults.append(f"{label}: {r.status} to {path} {headers} {body[:200]!r}")
        if r.will_close:
            self.tally.faults.append(f"{label}: the server closed the connection after {r.status}")
            self._reconnect()
            return
        self.follow_up(label)

    def follow_up(self, label: str) -> None:
        """A valid v1 request on the same connection: must be 200."""
        try:
            self.conn.request(
                "POST", self.v1_path, body=VALID_V1, headers={"content-type": "application/json"}
            )
            r = self.conn.getresponse()
            r.read()
        except (ConnectionError, http.client.HTTPException) as exc:
            self.tally.faults.append(f"{label}: keep-alive follow-up failed ({type(exc).__name__})")
            self._reconnect()
            return
        self.tally.sent["follow-up"] += 1
        if r.status != 200:
            self.tally.faults.append(f"{label}: keep-alive follow-up got {r.status}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    bundle = make_serving_bundle(root / "bundle")
    targs = ["--inventory", "memory", "--switches", "none", "--request_deadline_ms", "60000"]
    with running_servers(bundle, transformer_args=targs, log_dir=root / "logs") as s:
        yield s


def _run_for(seconds: float, strategy: Any, send: Any) -> None:
    """Draw from ``strategy`` and ``send`` each example until ``seconds`` pass."""
    stop = time.monotonic() + seconds

    @settings(
        max_examples=1_000_000,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(example: Any) -> None:
        if time.monotonic() > stop:
            raise _Spent
        send(example)

    with contextlib.suppress(_Spent):
        run()


def _schemathesis(client: Http, base: str, seconds: float) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_path(str(OPENAPI_PATH))
    ops = [op.ok() for op in schema.get_all_operations()]
    combos = [
        (op, mode) for op in ops for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    for op, mode in combos:
        label = f"schemathesis {op.method.upper()} {op.path.rsplit('/', 1)[-1]} {mode.value}"

        def send(case: Any, label: str = label) -> None:
            kw = case.as_transport_kwargs(base_url=base)
            headers = {
                k: str(v)
                for k, v in (kw.get("headers") or {}).items()
                if k.lower() not in _CLIENT_HEADERS
            }
            if (
                "json" in kw
            ):  # half as \\u escapes (lone surrogates stay escaped), half as raw (surrogates as bytes)
                text = json.dumps(kw["json"], ensure_ascii=client.tally.sent[label] % 2 == 0)
                body = text.encode("utf-8", "surrogatepass")
            else:
                data = kw.get("data", b"")
                body = (
                    data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogatepass")
                )
            client.case(label, case.formatted_path, headers, body)

        _run_for(seconds / len(combos), op.as_strategy(generation_mode=mode), send)


def _binary_request() -> tuple[list[dict], list[bytes]]:
    """A valid binary-extension request: (JSON inputs, binary parts in order)."""
    items = struct.pack("<2q", 1000, 1003)
    region = struct.pack("<I", 5) + b"north"
    inputs = [
        {
            "name": "user_id",
            "datatype": "INT64",
            "shape": [1],
            "parameters": {"binary_data_size": 8},
        },
        {
            "name": "purchased_item_ids",
            "datatype": "INT64",
            "shape": [2],
            "parameters": {"binary_data_size": 16},
        },
        {
            "name": "region",
            "datatype": "BYTES",
            "shape": [1],
            "parameters": {"binary_data_size": len(region)},
        },
    ]
    return inputs, [struct.pack("<q", 3), items, region]


@st.composite
def _binary_cases(draw: Any) -> tuple[dict[str, str], bytes]:
    """A binary-extension request with a few things wrong (or none)."""
    inputs, parts = _binary_request()
    i = draw(st.integers(0, len(inputs) - 1))
    field = draw(st.sampled_from(["size", "datatype", "shape", "part", "none"]))
    if field == "size":
        inputs[i]["parameters"]["binary_data_size"] = draw(
            st.one_of(
                st.integers(-5, 40),
                st.integers(2**31, 2**64),
                st.text(max_size=3),
                st.none(),
                st.floats(),
            )
        )
    elif field == "datatype":
        inputs[i]["datatype"] = draw(
            st.sampled_from(["INT32", "UINT64", "FP32", "FP16", "BOOL", "BYTES", "int64", ""])
        )
    elif field == "shape":
        inputs[i]["shape"] = draw(
            st.lists(st.one_of(st.integers(-3, 5), st.integers(2**62, 2**64)), max_size=9)
        )
    elif field == "part":
        parts[i] = draw(st.binary(max_size=24))
    head = json.dumps(
        {
            "inputs": inputs,
            **draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "id": st.one_of(st.text(max_size=5), st.integers()),
                        "parameters": st.dictionaries(
                            st.sampled_from(["binary_data_output", "x"]),
                            st.one_of(st.booleans(), st.text(max_size=3)),
                        ),
                    },
                )
            ),
        }
    ).encode()
    body = head + b"".join(parts)
    cut = draw(st.one_of(st.none(), st.integers(0, len(body))))
    body = body if cut is None else body[:cut] + draw(st.binary(max_size=8))
    flips = draw(
        st.lists(st.tuples(st.integers(0, max(len(body) - 1, 0)), st.integers(0, 255)), max_size=2)
    )
    raw = bytearray(body)
    for pos, byte in flips:
        if raw:
            raw[pos] = byte
    length = draw(
        st.one_of(
            st.just(str(len(head))),
            st.integers(-3, len(body) + 3).map(str),
            st.sampled_from(["", " 12", "0x10", "1e2", "\u0661"]),
            st.none(),
        )
    )
    headers = {
        "content-type": draw(
            st.sampled_from(["application/octet-stream", "application/json", "text/plain"])
        )
    }
    if length is not None:
        headers["inference-header-content-length"] = length
    return headers, bytes(raw)


def _grpc_message(user: Any, items: Any, region: Any, shape: Any, raw: bool, dtype: str) -> bytes:
    msg = pb.ModelInferRequest(model_name="checkout-recs")
    u = msg.inputs.add(name="user_id", datatype=dtype, shape=shape)
    it = msg.inputs.add(name="purchased_item_ids", datatype="INT64", shape=[len(items)])
    r = msg.inputs.add(name="region", datatype="BYTES", shape=[1])
    if raw:
        msg.raw_input_contents.extend(
            [
                struct.pack("<Q", user % 2**64),
                struct.pack(f"<{len(items)}Q", *[i % 2**64 for i in items]),
                struct.pack("<I", len(region)) + region,
            ]
        )
    else:
        if dtype in ("UINT64",):
            u.contents.uint64_contents.append(user % 2**64)
        elif dtype == "INT64":
            u.contents.int64_contents.append(max(min(user, 2**63 - 1), -(2**63)))
        it.contents.int64_contents.extend([max(min(i, 2**63 - 1), -(2**63)) for i in items])
        r.contents.bytes_contents.append(region)
    return msg.SerializeToString()


@st.composite
def _grpc_cases(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["bytes", "message", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    msg = _grpc_message(
        draw(st.integers(-(2**64), 2**64)),
        draw(st.lists(st.integers(-(2**64), 2**64), max_size=4)),
        draw(st.binary(max_size=12)),
        draw(st.lists(st.integers(-2, 3), max_size=3)),
        draw(st.booleans()),
        draw(st.sampled_from(["INT64", "UINT64", "INT32", "FP32", "BYTES", "X"])),
    )
    if kind == "mutated" and msg:
        cut = draw(st.integers(0, len(msg)))
        msg = msg[:cut] + draw(st.binary(max_size=6))
    return msg


def test_fuzzers_find_no_5xx_and_no_reset_connection(servers, capsys):
    tally = Tally()
    host, port = "127.0.0.1", int(servers.v1_url.split(":")[2].split("/")[0])
    v1_path = "/" + servers.v1_url.split("/", 3)[3]
    v2_path = "/" + servers.v2_url.split("/", 3)[3]
    client = Http(host, port, v1_path, tally)
    t0 = time.monotonic()

    _schemathesis(client, f"http://{host}:{port}", BUDGET_S * 0.55)
    _run_for(BUDGET_S * 0.2, _binary_cases(), lambda c: client.case("binary tensors", v2_path, *c))

    channel = grpc.insecure_channel(servers.transformer_grpc)
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    valid = _grpc_message(3, [1000], b"north", [1], False, "INT64")

    def grpc_case(payload: bytes) -> None:
        tally.sent["gRPC"] += 1
        try:
            infer(payload, timeout=30)
            tally.grpc["OK"] += 1
        except grpc.RpcError as err:
            tally.grpc[err.code().name] += 1
            if err.code() in _GRPC_SERVER_FAULTS:
                tally.faults.append(f"gRPC {err.code().name}: {err.details()} for {payload[:60]!r}")
        try:
            infer(valid, timeout=30)
            tally.sent["gRPC follow-up"] += 1
        except grpc.RpcError as err:
            tally.faults.append(f"gRPC follow-up failed: {err.code().name} {err.details()}")

    _run_for(BUDGET_S - (time.monotonic() - t0), _grpc_cases(), grpc_case)
    channel.close()

    elapsed = time.monotonic() - t0
    cases = sum(n for k, n in tally.sent.items() if "follow-up" not in k)
    with capsys.disabled():
        print(
            f"\nfuzz ({elapsed:.0f} s): {cases} cases sent, each followed by a valid request on the same "
            f"connection / channel ({tally.sent['follow-up'] + tally.sent['gRPC follow-up']} follow-ups)"
        )
        for label, n in sorted(tally.sent.items()):
            if "follow-up" not in label:
                print(f"  {label}: {n}")
        print(
            f"  HTTP statuses {dict(sorted(tally.status.items()))}; gRPC codes {dict(sorted(tally.grpc.items()))}"
        )
        print(
            f"  5xx / INTERNAL / UNKNOWN / reset / closed: {len(tally.faults)}; 503 shed by the client's own "
            f"x-request-deadline-ms: {tally.client_deadline_sheds}; unsendable headers skipped: {tally.unsendable}"
        )
    assert not tally.faults, "\n".join(tally.faults[:20])
    assert tally.sent["binary tensors"] > 20 and tally.sent["gRPC"] > 20
    assert sum(n for k, n in tally.sent.items() if k.startswith("schemathesis")) > 50
    assert elapsed < 60 + 15  # the budget, plus one case in flight per fuzzer


def test_grpc_non_protobuf_and_out_of_range_values_are_invalid_argument(servers):
    channel = grpc.insecure_channel(servers.transformer_grpc)
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    cases = {
        "not a protobuf": b"\xff\xff\xff garbage",
        "user id past int64 (UINT64)": _grpc_message(
            2**64 - 1, [1000], b"north", [1], False, "UINT64"
        ),
        "negative user id": _grpc_message(-5, [1000], b"north", [1], False, "INT64"),
        "basket id past int64 (raw)": _grpc_message(3, [2**63 + 1], b"north", [1], True, "INT64"),
        "shape and values disagree": _grpc_message(3, [1000], b"north", [2], False, "INT64"),
        "region not UTF-8": _grpc_message(3, [1000], b"\xff\xfe", [1], False, "INT64"),
        "unknown datatype": _grpc_message(3, [1000], b"north", [1], False, "X"),
    }
    try:
        for name, payload in cases.items():
            with pytest.raises(grpc.RpcError) as err:
                infer(payload, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.value.details())
            assert err.value.details(), name
    finally:
        channel.close()
