"""KServe V2 (Open Inference Protocol) REST tensors <-> numpy, including the binary tensor extension.

Used where a stage or server must look inside a body (the reference server, translation,
the prediction log); the gateway's pass-through path never calls it. No torch here.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.errors import BadRequest

HEADER_LENGTH = "Inference-Header-Content-Length"

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}


@dataclass
class Tensor:
    """A named tensor; BYTES tensors are object arrays of ``bytes``."""

    name: str
    datatype: str
    data: np.ndarray[Any, Any]


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, bool] | None = None  # requested output name -> binary?; None: all outputs

    def input(self, name: str) -> Tensor:
        for t in self.inputs:
            if t.name == name:
                return t
        raise BadRequest(f"missing input {name!r}; got {[t.name for t in self.inputs]}")

    @property
    def binary_data_output(self) -> bool:
        """The request-level default for outputs that do not say (``parameters.binary_data_output``)."""
        return bool(self.parameters.get("binary_data_output", False))


def _parameters(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object, got {type(value).__name__}")
    return value


def _shape(name: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not all(type(d) is int and d >= 0 for d in value):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers, got {value!r}")
    return value


def _bytes_elements(name: str, raw: bytes) -> list[bytes]:
    """Splits the binary form of a BYTES tensor: each element is a little-endian uint32 length, then bytes."""
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise BadRequest(f"input {name!r}: BYTES element length prefix is truncated at byte {i}")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise BadRequest(f"input {name!r}: BYTES element of {n} bytes runs past the tensor's data")
        out.append(raw[i:i + n])
        i += n
    return out


def _json_bytes(name: str, data: Any) -> np.ndarray[Any, Any]:
    flat = np.ravel(np.array(data, dtype=object))
    out = np.empty(len(flat), dtype=object)
    for i, x in enumerate(flat):
        if isinstance(x, str):
            out[i] = x.encode()
        else:
            raise BadRequest(f"input {name!r}: BYTES data in JSON must be strings, got {type(x).__name__}")
    return out


# JSON numbers a datatype accepts, by numpy kind: no float silently truncated to an integer,
# no string parsed into a number.
_ACCEPTS = {"b": "b", "u": "biu", "i": "biu", "f": "biuf"}
_KIND_WORDS = {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point", "U": "string"}


def _json_numbers(name: str, datatype: str, data: Any) -> np.ndarray[Any, Any]:
    target = DTYPES[datatype]
    given = np.asarray(data)
    if given.size and given.dtype.kind not in _ACCEPTS[target.kind]:
        kind = _KIND_WORDS.get(given.dtype.kind, "non-numeric or out-of-range")
        raise BadRequest(f"input {name!r}: data does not fit {datatype}: got {kind} values")
    # Converting from the Python values (not from ``given``) makes numpy raise on out-of-range integers.
    return np.array(data, dtype=target).ravel()


def _decode_input(spec: Any, rest: bytes, offset: int) -> tuple[Tensor, int]:
    """One input and the offset of the next input's binary data."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BadRequest("each input must be an object with a 'name'")
    name, datatype = spec["name"], spec.get("datatype")
    if datatype not in DTYPES:
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}; expected one of {sorted(DTYPES)}")
    shape = _shape(name, spec.get("shape"))
    count = int(np.prod(shape)) if shape else 1
    size = _parameters(f"input {name!r}", spec.get("parameters")).get("binary_data_size")
    array: np.ndarray[Any, Any]
    if size is not None:
        if type(size) is not int or size < 0:
            raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
        raw = rest[offset:offset + size]
        if len(raw) != size:
            raise BadRequest(f"input {name!r}: binary data of {size} bytes is missing from the body "
                             f"({len(rest) - offset} bytes left after the JSON header)")
        offset += size
        if datatype == "BYTES":
            array = np.array(_bytes_elements(name, raw), dtype=object)
        else:
            if size != count * DTYPES[datatype].itemsize:
                raise BadRequest(f"input {name!r}: binary_data_size {size} does not make shape {shape} of "
                                 f"{datatype} ({count * DTYPES[datatype].itemsize} bytes)")
            array = np.frombuffer(raw, dtype=DTYPES[datatype].newbyteorder("<"))
    else:
        if "data" not in spec:
            raise BadRequest(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        try:
            if datatype == "BYTES":
                array = _json_bytes(name, spec["data"])
            else:
                array = _json_numbers(name, datatype, spec["data"])
        except (ValueError, TypeError, OverflowError) as e:
            raise BadRequest(f"input {name!r}: data does not fit {datatype}: {e}") from None
    if array.size != count:
        raise BadRequest(f"input {name!r}: {array.size} values do not make shape {shape}")
    return Tensor(name, datatype, array.reshape(shape)), offset


def _requested_outputs(doc: dict[str, Any], default_binary: bool) -> dict[str, bool] | None:
    if doc.get("outputs") is None:
        return None
    if not isinstance(doc["outputs"], list):
        raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
    wanted: dict[str, bool] = {}
    for o in doc["outputs"]:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise BadRequest("each requested output must be an object with a 'name'")
        params = _parameters(f"output {o['name']!r}", o.get("parameters"))
        wanted[o["name"]] = bool(params.get("binary_data", default_binary))
    return wanted


def decode_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parses a V2 infer request; ``header_length`` is the ``Inference-Header-Content-Length`` header, if any.

    Raises ``BadRequest`` with a message naming the input at fault.
    """
    if header_length is not None and not 0 < header_length <= len(body):
        raise BadRequest(f"{HEADER_LENGTH} {header_length} does not fit a body of {len(body)} bytes")
    head, rest = (body, b"") if header_length is None else (body[:header_length], body[header_length:])
    try:
        doc = json.loads(head)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both
        raise BadRequest(f"malformed JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequest("an inference request is a JSON object with an 'inputs' list")
    params = _parameters("request", doc.get("parameters"))
    offset = 0
    inputs: list[Tensor] = []
    for spec in doc["inputs"]:
        tensor, offset = _decode_input(spec, rest, offset)
        inputs.append(tensor)
    if offset != len(rest):
        raise BadRequest(f"{len(rest) - offset} bytes of binary data after the JSON header belong to no input")
    rid = doc.get("id")
    outputs = _requested_outputs(doc, bool(params.get("binary_data_output", False)))
    return InferRequest(rid if isinstance(rid, str) else None, inputs, params, outputs)


def _binary(t: Tensor) -> bytes:
    if t.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (
            x if isinstance(x, bytes) else str(x).encode() for x in t.data.ravel()))
    return np.ascontiguousarray(t.data, dtype=DTYPES[t.datatype].newbyteorder("<")).tobytes()


def encode_infer_response(model_name: str, model_version: str | None, request_id: str | None,
                          outputs: list[Tensor], binary: set[str] | bool = False) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header length (else None).

    ``binary`` names the outputs to send as binary data, or True for all of them.
    """
    specs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for t in outputs:
        if t.datatype not in DTYPES:
            raise ValueError(f"output {t.name!r}: unknown datatype {t.datatype!r}")
        spec: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.data.shape)}
        if binary is True or (isinstance(binary, set) and t.name in binary):
            raw = _binary(t)
            spec["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif t.datatype == "BYTES":
            spec["data"] = [x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in t.data.ravel()]
        else:
            spec["data"] = t.data.ravel().tolist()
        specs.append(spec)
    doc: dict[str, Any] = {"model_name": model_name, "outputs": specs}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
