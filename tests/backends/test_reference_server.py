"""The reference model server: a real subprocess driven by the real tritonclient, plus in-process
checks of readiness and failures with an injected model (no torch there)."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from aiohttp import test_utils
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from backends.reference.server import ReferenceServer
from tests.fixtures.reference import ReferenceProcess, start_reference_server

FEATURES = np.random.default_rng(7).normal(size=(64, 16)).astype(np.float32)


def _infer(address: str, x: np.ndarray, *, binary_in: bool = True, binary_out: bool | None = True,
           outputs: tuple[str, ...] = ("probabilities", "label"), request_id: str = "") -> httpclient.InferResult:
    """``binary_out=None`` asks for no outputs by name (the server sends all, as the request says)."""
    client = httpclient.InferenceServerClient(address)
    try:
        i = httpclient.InferInput("features", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary_in)
        requested = None if binary_out is None else [httpclient.InferRequestedOutput(n, binary_data=binary_out)
                                                     for n in outputs]
        return client.infer("demo", [i], outputs=requested, request_id=request_id)
    finally:
        client.close()


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {f"{s.name}{json.dumps(s.labels, sort_keys=True) if s.labels else ''}": s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def variant2() -> Iterator[ReferenceProcess]:
    with start_reference_server(variant=2) as server:
        yield server


# ---- through tritonclient, against the real process -------------------------------------------------------


def test_metadata_and_readiness_through_tritonclient(reference_endpoint: ReferenceProcess) -> None:
    client = httpclient.InferenceServerClient(reference_endpoint.address)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("demo") and client.is_model_ready("demo", "1")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        meta = client.get_model_metadata("demo")
        assert meta == client.get_model_metadata("demo", "1")
    finally:
        client.close()
    assert meta["name"] == "demo" and meta["versions"] == ["1"] and meta["platform"] == "pytorch"
    assert meta["parameters"]["variant"] == 1
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 4]},
                               {"name": "label", "datatype": "INT64", "shape": [-1]}]


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False, None])
def test_infer_json_and_binary(reference_endpoint: ReferenceProcess, binary_in: bool, binary_out: bool | None) -> None:
    x = FEATURES[:5]
    result = _infer(reference_endpoint.address, x, binary_in=binary_in, binary_out=binary_out, request_id="r-42")
    probabilities, labels = result.as_numpy("probabilities"), result.as_numpy("label")
    assert probabilities.shape == (5, 4) and probabilities.dtype == np.float32
    assert labels.shape == (5,) and labels.dtype == np.int64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))
    response = result.get_response()
    assert response["id"] == "r-42" and response["model_name"] == "demo" and response["model_version"] == "1"
    wire = {o["name"]: "binary_data_size" in o.get("parameters", {}) for o in response["outputs"]}
    # No outputs named: tritonclient sets binary_data_output, so everything comes back binary.
    assert wire == dict.fromkeys(("probabilities", "label"), binary_out is not False)


def test_same_rows_same_answer_whatever_the_encoding(reference_endpoint: ReferenceProcess) -> None:
    a = _infer(reference_endpoint.address, FEATURES[:8], binary_in=True, binary_out=True)
    b = _infer(reference_endpoint.address, FEATURES[:8], binary_in=False, binary_out=False)
    np.testing.assert_allclose(a.as_numpy("probabilities"), b.as_numpy("probabilities"), rtol=1e-6)
    np.testing.assert_array_equal(a.as_numpy("label"), b.as_numpy("label"))


def test_only_the_requested_outputs_come_back(reference_endpoint: ReferenceProcess) -> None:
    result = _infer(reference_endpoint.address, FEATURES[:3], outputs=("label",))
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("probabilities") is None


def test_variant_2_is_close_to_variant_1_but_not_equal(reference_endpoint: ReferenceProcess,
                                                       variant2: ReferenceProcess) -> None:
    one = _infer(reference_endpoint.address, FEATURES)
    two = _infer(variant2.address, FEATURES)
    p1, p2 = one.as_numpy("probabilities"), two.as_numpy("probabilities")
    assert not np.allclose(p1, p2, atol=1e-4)
    assert np.abs(p1 - p2).mean() < 0.05
    assert (one.as_numpy("label") == two.as_numpy("label")).mean() >= 0.8


@pytest.mark.parametrize(("shape", "datatype", "message"), [
    ([2, 8], "FP32", r"shape \[n, 16\]"),
    ([16], "FP32", r"shape \[n, 16\]"),
    ([1, 16], "FP64", "must be FP32"),
])
def test_wrong_input_is_400_through_tritonclient(reference_endpoint: ReferenceProcess, shape: list[int],
                                                 datatype: str, message: str) -> None:
    client = httpclient.InferenceServerClient(reference_endpoint.address)
    try:
        i = httpclient.InferInput("features", shape, datatype)
        i.set_data_from_numpy(np.zeros(shape, dtype=np.float64 if datatype == "FP64" else np.float32))
        with pytest.raises(InferenceServerException, match=message) as e:
            client.infer("demo", [i])
    finally:
        client.close()
    assert e.value.status() == "400"


@pytest.mark.parametrize(("body", "message"), [
    (b"{nope", "malformed JSON"),
    (b'{"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [' + b"0," * 15 + b"0]}]}",
     "missing input 'features'"),
    (b'{"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [1, 2]}]}',
     "do not make shape"),
])
def test_bad_bodies_are_400_with_v2_error_json(reference_endpoint: ReferenceProcess, body: bytes,
                                               message: str) -> None:
    status, doc = _http("POST", f"{reference_endpoint.url}/v2/models/demo/infer", body)
    assert status == 400 and message in doc["error"]


@pytest.mark.parametrize("path", ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/demo/versions/2",
                                  "/v2/models/demo/versions/2/ready"])
def test_unknown_model_or_version_is_404(reference_endpoint: ReferenceProcess, path: str) -> None:
    status, doc = _http("GET", reference_endpoint.url + path)
    assert status == 404 and "unknown" in doc["error"]


@pytest.mark.parametrize("version", ["", "2"])
def test_infer_on_unknown_model_or_version_is_404(reference_endpoint: ReferenceProcess, version: str) -> None:
    client = httpclient.InferenceServerClient(reference_endpoint.address)
    try:
        i = httpclient.InferInput("features", [1, 16], "FP32")
        i.set_data_from_numpy(FEATURES[:1])
        with pytest.raises(InferenceServerException, match="unknown") as e:
            client.infer("nope" if not version else "demo", [i], model_version=version)
    finally:
        client.close()
    assert e.value.status() == "404"


def test_concurrent_requests_form_one_batch_after_the_delay_hook() -> None:
    # The queue delay is long and the batch small: four concurrent rows fill it, so it runs at once.
    with start_reference_server(delay_ms=200, max_batch_size=4, max_queue_delay_ms=20_000) as server:
        client = httpclient.InferenceServerClient(server.address, concurrency=4)
        try:
            started = time.monotonic()
            pending = []
            for row in range(4):
                i = httpclient.InferInput("features", [1, 16], "FP32")
                i.set_data_from_numpy(FEATURES[row:row + 1])
                pending.append(client.async_infer("demo", [i]))
            results = [p.get_result(timeout=30) for p in pending]
            elapsed = time.monotonic() - started
        finally:
            client.close()
        metrics = _metrics(server.url)
    assert all(r.as_numpy("probabilities").shape == (1, 4) for r in results)
    assert 0.2 <= elapsed < 15  # the 200 ms hook was paid; the 20 s queue delay was not
    assert metrics["meshgate_reference_batch_size_count"] == 1
    assert metrics["meshgate_reference_batch_size_sum"] == 4
    assert metrics["meshgate_reference_queue_depth"] == 0
    assert metrics['meshgate_reference_requests_total{"code": "200"}'] == 4
    assert metrics["meshgate_reference_request_duration_seconds_count"] == 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_queued_request_finish_and_exits_0(sig: signal.Signals) -> None:
    with start_reference_server(max_batch_size=4, max_queue_delay_ms=1500) as server:
        answer: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: answer.update(result=_infer(server.address, FEATURES[:1])))
        worker.start()
        deadline = time.monotonic() + 10
        while _metrics(server.url)["meshgate_reference_queue_depth"] != 1:  # queued, waiting for company
            assert time.monotonic() < deadline, "the request never showed in the queue depth gauge"
            time.sleep(0.02)
        server.process.send_signal(sig)
        worker.join(15)
        assert server.process.wait(15) == 0
    assert answer["result"].as_numpy("label").shape == (1,)


# ---- in process, with an injected model: readiness and failures -------------------------------------------


def _fake_model(gate: threading.Event, fail: bool = False) -> Any:
    def load() -> Any:
        gate.wait(10)

        def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if fail:
                raise RuntimeError("out of cheese")
            p = np.full((len(x), 4), 0.25, np.float32)
            return p, np.zeros(len(x), np.int64)
        return run
    return load


def _body(rows: int = 1) -> bytes:
    return json.dumps({"inputs": [{"name": "features", "shape": [rows, 16], "datatype": "FP32",
                                   "data": [0.0] * (16 * rows)}]}).encode()


async def test_not_ready_until_the_model_is_loaded() -> None:
    gate = threading.Event()
    server = ReferenceServer("demo", load=_fake_model(gate))
    async with test_utils.TestClient(test_utils.TestServer(server.app())) as client:
        loading = server.start_loading()
        assert (await client.get("/v2/health/live")).status == 200
        assert (await client.get("/v2/health/ready")).status == 503
        assert (await client.get("/v2/models/demo/ready")).status == 503
        r = await client.post("/v2/models/demo/infer", data=_body())
        assert r.status == 503 and "not ready" in (await r.json())["error"]
        gate.set()
        await loading
        assert (await client.get("/v2/health/ready")).status == 200
        r = await client.post("/v2/models/demo/infer", data=_body(2))
        assert r.status == 200
        assert (await r.json())["outputs"][0]["shape"] == [2, 4]
    assert server.batcher.queue_depth == 0


async def test_model_failure_is_500_json_and_unknown_paths_are_json_too() -> None:
    gate = threading.Event()
    gate.set()
    server = ReferenceServer("demo", load=_fake_model(gate, fail=True))
    async with test_utils.TestClient(test_utils.TestServer(server.app())) as client:
        await server.start_loading()
        r = await client.post("/v2/models/demo/infer", data=_body())
        assert r.status == 500 and "out of cheese" in (await r.json())["error"]
        r = await client.get("/v2/nowhere")
        assert r.status == 404 and "/v2/nowhere" in (await r.json())["error"]
        r = await client.post("/v2/models/demo/infer", data=_body(), headers={"Inference-Header-Content-Length": "x"})
        assert r.status == 400 and "must be an integer" in (await r.json())["error"]
    assert server.registry.get_sample_value("meshgate_reference_requests_total", {"code": "500"}) == 1
