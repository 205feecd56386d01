"""The V2 tensor codec: JSON and binary round trips, and clear errors for bad bodies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._utils import _get_inference_request

from backends.errors import BadRequest
from backends.v2codec import DTYPES, Tensor, decode_infer_request, encode_infer_response


def _client_body(arrays: dict[str, np.ndarray], binary: bool) -> tuple[bytes, int | None]:
    """The exact body tritonclient sends for these inputs."""
    inputs = []
    for name, a in arrays.items():
        dtype = "BYTES" if a.dtype == object else {np.float32: "FP32", np.int64: "INT64", np.float16: "FP16",
                                                   np.bool_: "BOOL", np.uint8: "UINT8"}[a.dtype.type]
        i = httpclient.InferInput(name, list(a.shape), dtype)
        i.set_data_from_numpy(a, binary_data=binary)
        inputs.append(i)
    return _get_inference_request(inputs, "", None, 0, False, False, 0, None, None)


@pytest.mark.parametrize("binary", [True, False])
def test_decodes_what_tritonclient_sends(binary: bool) -> None:
    arrays = {"f": np.arange(12, dtype=np.float32).reshape(3, 4), "i": np.array([[1], [-2]], dtype=np.int64),
              "h": np.array([0.5, 1.5], dtype=np.float16), "b": np.array([True, False]),
              "s": np.array([b"ab", b"", b"xyz"], dtype=object)}
    body, header_length = _client_body(arrays, binary)
    req = decode_infer_request(body, header_length)
    assert [t.name for t in req.inputs] == list(arrays)
    for t in req.inputs:
        np.testing.assert_array_equal(t.data, arrays[t.name])
        assert t.data.shape == arrays[t.name].shape
    assert req.parameters.get("binary_data_output") is True


def test_encode_binary_response_reads_back_with_tritonclient() -> None:
    probs = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    labels = np.array([3, 1], dtype=np.int64)
    body, header_length = encode_infer_response("m", "1", "rid", [Tensor("p", "FP32", probs),
                                                                  Tensor("l", "INT64", labels)], {"p"})
    assert header_length is not None
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("p"), probs)
    np.testing.assert_array_equal(result.as_numpy("l"), labels)
    assert result.get_response()["id"] == "rid"


def test_json_response_has_no_header_length() -> None:
    body, header_length = encode_infer_response("m", None, None, [Tensor("x", "FP32", np.ones((1, 2), np.float32))])
    assert header_length is None
    assert json.loads(body)["outputs"][0] == {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 1.0]}


@pytest.mark.parametrize(("body", "header_length", "message"), [
    (b"{nope", None, "malformed JSON"),
    (b'{"inputs": 3}', None, "'inputs' list"),
    (b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP99","data":[1,2]}]}', None, "unknown datatype"),
    (b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}', None, "do not make shape"),
    (b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":["a","b"]}]}', None, "does not fit FP32"),
    (b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}1234', 91,
     "missing from the body"),
    (b'{"inputs":[]}', 99, "does not fit"),
])
def test_bad_bodies_raise_bad_request(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode_infer_request(body, header_length)


def test_flat_and_nested_json_data_decode_alike() -> None:
    def body(data: object) -> bytes:
        return json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT32", "data": data}]}).encode()

    flat = decode_infer_request(body([1, 2, 3, 4, 5, 6])).input("x").data
    nested = decode_infer_request(body([[1, 2, 3], [4, 5, 6]])).input("x").data
    np.testing.assert_array_equal(flat, nested)
    assert flat.shape == (2, 3) and flat.dtype == np.int32


@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_round_trips_through_the_response(binary: bool) -> None:
    rng = np.random.default_rng(1)
    tensors = [Tensor(name, name, rng.integers(0, 100, (2, 3)).astype(DTYPES[name]))
               for name in DTYPES if name != "BYTES"]
    tensors.append(Tensor("BYTES", "BYTES", np.array([b"a", b"", "\u00e9".encode(), b"xyz"], dtype=object).reshape(2, 2)))
    body, header_length = encode_infer_response("m", "1", None, tensors, binary)
    assert (header_length is not None) is binary
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    for t in tensors:
        got = result.as_numpy(t.name)
        assert got.shape == t.data.shape
        if t.datatype == "BYTES":
            # tritonclient reads JSON BYTES back as str, binary BYTES as bytes
            assert [x if isinstance(x, bytes) else x.encode() for x in got.ravel()] == list(t.data.ravel())
        else:
            np.testing.assert_array_equal(got, t.data)


def test_binary_response_keeps_output_order_and_sizes() -> None:
    a, b = np.arange(3, dtype=np.int16), np.array([b"hi", b"there"], dtype=object)
    body, header_length = encode_infer_response("m", "1", None, [Tensor("a", "INT16", a), Tensor("b", "BYTES", b)],
                                                True)
    assert header_length is not None
    head = json.loads(body[:header_length])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sizes == [6, 4 + 2 + 4 + 5] and len(body) == header_length + sum(sizes)
    assert body[header_length:header_length + 6] == a.astype("<i2").tobytes()


def test_requested_outputs_take_their_own_binary_flag_or_the_request_default() -> None:
    doc = {"inputs": [], "parameters": {"binary_data_output": True},
           "outputs": [{"name": "p"}, {"name": "l", "parameters": {"binary_data": False}}]}
    req = decode_infer_request(json.dumps(doc).encode())
    assert req.outputs == {"p": True, "l": False} and req.binary_data_output
    assert decode_infer_request(b'{"inputs": []}').outputs is None


def test_id_and_parameters_are_kept() -> None:
    req = decode_infer_request(b'{"id": "abc", "parameters": {"k": 1}, "inputs": []}')
    assert req.id == "abc" and req.parameters == {"k": 1}


def test_bytes_in_json_are_utf8_encoded() -> None:
    body = b'{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["hi","\\u00e9"]}]}'
    assert list(decode_infer_request(body).input("s").data) == [b"hi", "\u00e9".encode()]


def _binary_body(spec: dict[str, object], data: bytes) -> tuple[bytes, int]:
    head = json.dumps({"inputs": [spec]}).encode()
    return head + data, len(head)


@pytest.mark.parametrize(("spec", "data", "message"), [
    ({"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}, b"12345678extra",
     "5 bytes of binary data .* belong to no input"),
    ({"name": "x", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 8}}, b"12345678",
     "does not make shape"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": "4"}}, b"1234",
     "non-negative integer"),
    ({"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}, b"\x05\x00\x00\x00ab",
     "runs past"),
    ({"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}, b"\x00\x00\x00\x00ab",
     "truncated"),
    ({"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}, b"\x01\x00\x00\x00a",
     "1 values do not make shape"),
])
def test_binary_sizes_that_do_not_add_up_are_bad_requests(spec: dict[str, object], data: bytes,
                                                          message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode_infer_request(*_binary_body(spec, data))


@pytest.mark.parametrize(("doc", "message"), [
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1.5]}]}, "floating-point"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "UINT8", "data": [300]}]}, "does not fit UINT8"),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [2, 3]]}]}, "does not fit FP32"),
    ({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "data": [7]}]}, "must be strings"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, "neither 'data'"),
    ({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}, "non-negative integers"),
    ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, "each input must be an object with a 'name'"),
    ({"inputs": [], "parameters": []}, "'parameters' must be an object"),
    ({"inputs": [], "outputs": [{"nom": "p"}]}, "requested output"),
])
def test_json_that_does_not_fit_is_a_bad_request(doc: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode_infer_request(json.dumps(doc).encode())


def test_missing_input_names_what_was_given() -> None:
    req = decode_infer_request(b'{"inputs":[{"name":"a","shape":[1],"datatype":"BOOL","data":[true]}]}')
    with pytest.raises(BadRequest, match=r"missing input 'features'; got \['a'\]"):
        req.input("features")
