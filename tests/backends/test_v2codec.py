"""The V2 tensor codec: JSON and binary round trips, and clear errors for bad bodies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._utils import _get_inference_request

from backends.errors import BadRequest
from backends.v2codec import Tensor, decode_infer_request, encode_infer_response


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
