"""KServe V2 (Open Inference Protocol) REST tensors <-> numpy, including the binary tensor extension.

Used where a stage or server must look inside a body (the reference server, translation,
the prediction log); the gateway's pass-through path never calls it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.errors import BadRequest

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}


@dataclass
class Tensor:
    name: str
    datatype: str
    data: np.ndarray[Any, Any]


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, bool] | None = None  # requested output name -> binary?

    def input(self, name: str) -> Tensor:
        for t in self.inputs:
            if t.name == name:
                return t
        raise BadRequest(f"missing input {name!r}; got {[t.name for t in self.inputs]}")


def _shape(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value):
        raise BadRequest(f"shape must be a list of non-negative integers, got {value!r}")
    return value


def _bytes_elements(raw: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise BadRequest("BYTES tensor data is truncated")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        out.append(raw[i:i + n])
        i += n
    return out


def decode_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    head, rest = (body, b"") if header_length is None else (body[:header_length], body[header_length:])
    if header_length is not None and not 0 < header_length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length {header_length} does not fit a body of {len(body)} bytes")
    try:
        doc = json.loads(head)
    except ValueError as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequest("an inference request is a JSON object with an 'inputs' list")
    offset = 0
    inputs: list[Tensor] = []
    for spec in doc["inputs"]:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest("each input needs a 'name'")
        name, datatype = spec["name"], spec.get("datatype")
        if datatype not in DTYPES:
            raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
        shape = _shape(spec.get("shape"))
        count = int(np.prod(shape)) if shape else 1
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = rest[offset:offset + size]
            if len(raw) != size:
                raise BadRequest(f"input {name!r}: binary data of {size} bytes is missing from the body")
            offset += size
            if datatype == "BYTES":
                array = np.array(_bytes_elements(raw), dtype=object)
            else:
                if size != count * DTYPES[datatype].itemsize:
                    raise BadRequest(f"input {name!r}: {size} bytes do not make shape {shape} of {datatype}")
                array = np.frombuffer(raw, dtype=DTYPES[datatype].newbyteorder("<"))
        else:
            data = spec.get("data")
            if data is None:
                raise BadRequest(f"input {name!r} has no 'data'")
            try:
                if datatype == "BYTES":
                    flat = np.array([d.encode() if isinstance(d, str) else d for d in np.ravel(
                        np.array(data, dtype=object))], dtype=object)
                    array = flat
                else:
                    array = np.array(data, dtype=DTYPES[datatype]).ravel()
            except (ValueError, TypeError) as e:
                raise BadRequest(f"input {name!r}: data does not fit {datatype}: {e}") from None
        if array.size != count:
            raise BadRequest(f"input {name!r}: {array.size} values do not make shape {shape}")
        inputs.append(Tensor(name, datatype, array.reshape(shape)))
    if offset != len(rest):
        raise BadRequest(f"{len(rest) - offset} bytes of binary data belong to no input")
    params = doc.get("parameters") or {}
    outputs = None
    if isinstance(doc.get("outputs"), list):
        default = bool(params.get("binary_data_output", False))
        outputs = {o["name"]: bool((o.get("parameters") or {}).get("binary_data", default))
                   for o in doc["outputs"] if isinstance(o, dict) and isinstance(o.get("name"), str)}
    rid = doc.get("id")
    return InferRequest(rid if isinstance(rid, str) else None, inputs, params, outputs)


def encode_infer_response(model_name: str, model_version: str | None, request_id: str | None,
                          outputs: list[Tensor], binary: set[str] | bool = False) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header length."""
    specs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for t in outputs:
        spec: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.data.shape)}
        if binary is True or (isinstance(binary, set) and t.name in binary):
            if t.datatype == "BYTES":
                raw = b"".join(struct.pack("<I", len(b)) + b for b in (
                    x if isinstance(x, bytes) else str(x).encode() for x in t.data.ravel()))
            else:
                raw = np.ascontiguousarray(t.data, dtype=DTYPES[t.datatype].newbyteorder("<")).tobytes()
            spec["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif t.datatype == "BYTES":
            spec["data"] = [x.decode(errors="replace") if isinstance(x, bytes) else x for x in t.data.ravel()]
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
