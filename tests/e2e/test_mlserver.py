"""meshgate in front of a real MLServer, driven by the real tritonclient.

MLServer (its own virtualenv, a subprocess) serves the tiny ``scorer`` runtime from
``tests/fixtures/mlserver/``; the gateway runs in-process and exposes it as ``scorer-public``,
so every call through the gateway also proves the model-name rewrite.

MLServer rejects tritonclient's binary-tensor HTTP bodies and the gateway passes bodies through
untouched, so inputs and outputs here are JSON (``binary_data=False``). The aio client posts its
body as ``application/octet-stream`` (aiohttp's default for bytes), which MLServer's FastAPI app
does not parse as JSON (422 "Input should be a valid dictionary"): every infer names
``Content-Type: application/json`` itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import aiohttp
import numpy as np
import pytest
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.fixtures.gateway import running_gateway
from tests.fixtures.mlserver_server import MODEL_NAME, start_mlserver

pytestmark = pytest.mark.e2e
PUBLIC = "scorer-public"
JSON = {"Content-Type": "application/json"}
# MLServer gzips answers of 500 bytes and more for clients that accept it; these ask for none.
JSON_IDENTITY = {**JSON, "Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_mlserver(tmp_path_factory.mktemp("mlserver")) as (http_address, _grpc_address, _process):
        yield http_address


@pytest.fixture
async def gateway(mlserver: str) -> AsyncIterator[str]:
    policy = f"""
backends:
  ml: {{endpoints: ["{mlserver}"], model: {MODEL_NAME}, timeout: 5s}}
routes:
  - {{model: {PUBLIC}, backend: ml}}
"""
    async with running_gateway(policy) as gw:
        yield f"127.0.0.1:{gw.http_port}"


@pytest.fixture
async def clients(gateway: str, mlserver: str) -> AsyncIterator[tuple[aioclient.InferenceServerClient,
                                                                    aioclient.InferenceServerClient]]:
    through = aioclient.InferenceServerClient(gateway)
    direct = aioclient.InferenceServerClient(mlserver)
    try:
        yield through, direct
    finally:
        await through.close()
        await direct.close()


def _inputs(x: np.ndarray) -> list[aioclient.InferInput]:
    inp = aioclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    return [inp]


def _outputs() -> list[aioclient.InferRequestedOutput]:
    return [aioclient.InferRequestedOutput("y", binary_data=False)]


async def test_infer_through_gateway_equals_direct(clients) -> None:
    through, direct = clients
    for rows in (1, 5, 64):
        x = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
        via_gateway = await through.infer(PUBLIC, _inputs(x), outputs=_outputs(), headers=JSON_IDENTITY)
        via_mlserver = await direct.infer(MODEL_NAME, _inputs(x), outputs=_outputs(), headers=JSON_IDENTITY)
        y = via_gateway.as_numpy("y")
        assert y is not None and y.shape == (rows, 2) and y.dtype == np.float32
        np.testing.assert_array_equal(y, via_mlserver.as_numpy("y"))
        assert via_gateway.get_response()["model_name"] == MODEL_NAME  # the body is MLServer's, untouched
    # Rows are independent: a row scored alone gives the same answer.
    single = await through.infer(PUBLIC, _inputs(x[2:3]), outputs=_outputs(), headers=JSON)
    np.testing.assert_allclose(single.as_numpy("y")[0], y[2], rtol=1e-6)


async def test_metadata_and_readiness_through_gateway(clients) -> None:
    through, direct = clients
    meta = await through.get_model_metadata(PUBLIC)
    upstream = await direct.get_model_metadata(MODEL_NAME)
    assert meta["name"] == PUBLIC  # the client's name, not the backend's
    assert upstream["name"] == MODEL_NAME
    assert meta["inputs"] == upstream["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == upstream["outputs"]
    assert await through.is_model_ready(PUBLIC) is True
    assert await through.is_server_ready() is True
    assert await through.is_model_ready("no-such-model") is False


async def test_unknown_model_is_404_with_v2_error(clients, gateway: str) -> None:
    through, _ = clients
    x = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as raised:
        await through.infer("no-such-model", _inputs(x), outputs=_outputs(), headers=JSON)
    assert raised.value.status() == "404"
    async with aiohttp.ClientSession() as session:
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
        async with session.post(f"http://{gateway}/v2/models/no-such-model/infer", data=body,
                                headers={"content-type": "application/json"}) as response:
            assert response.status == 404
            assert response.headers["content-type"].startswith("application/json")
            error = await response.json()
        async with session.get(f"http://{gateway}/v2/models/no-such-model") as response:
            assert response.status == 404
            meta_error = await response.json()
    assert set(error) == {"error"} and isinstance(error["error"], str) and error["error"]
    assert set(meta_error) == {"error"} and isinstance(meta_error["error"], str)


async def test_malformed_json_is_a_v2_error_and_gateway_keeps_serving(clients, gateway: str) -> None:
    through, _ = clients
    async with aiohttp.ClientSession() as session:
        for bad in (b"{not json", b'{"inputs": 3}'):
            async with session.post(f"http://{gateway}/v2/models/{PUBLIC}/infer", data=bad,
                                    headers={"content-type": "application/json"}) as response:
                assert 400 <= response.status < 500, (bad, response.status, await response.text())
                assert response.headers["content-type"].startswith("application/json")
                error = await response.json()
            assert isinstance(error.get("error"), str) and error["error"], error
        # Same connection pool, next request: the gateway still serves.
        async with session.get(f"http://{gateway}/v2/models/{PUBLIC}/ready") as response:
            assert response.status == 200
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = await through.infer(PUBLIC, _inputs(x), outputs=_outputs(), headers=JSON)
    assert result.as_numpy("y").shape == (2, 2)


async def test_gzipped_upstream_answer_reaches_client_decodable(clients) -> None:
    """tritonclient.http.aio (aiohttp) sends ``Accept-Encoding: gzip, deflate, br`` by default and
    MLServer gzips any answer of 500 bytes or more; the client must still get an answer it can read."""
    through, direct = clients
    x = np.random.default_rng(3).standard_normal((64, 4)).astype(np.float32)
    expected = (await direct.infer(MODEL_NAME, _inputs(x), outputs=_outputs(), headers=JSON)).as_numpy("y")
    result = await through.infer(PUBLIC, _inputs(x), outputs=_outputs(), headers=JSON)
    np.testing.assert_array_equal(result.as_numpy("y"), expected)
