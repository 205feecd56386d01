"""tritonclient.http through meshgate to real reference servers: the same answers as calling them directly."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.fixtures.gateway import running_gateway
from tests.fixtures.reference import reference_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet():
    with reference_server(variant=1) as v1a, reference_server(variant=1) as v1b, reference_server(variant=2) as v2:
        yield {"v1": [v1a, v1b], "v2": [v2]}


def _policy(fleet: dict[str, list[str]]) -> str:
    return f"""
backends:
  demo-v1: {{endpoints: [{", ".join(fleet["v1"])}], model: demo, timeout: 10s}}
  demo-v2: {{endpoints: [{fleet["v2"][0]}], model: demo, timeout: 10s}}
routes:
  - {{model: classifier, backend: demo-v1}}
  - {{model: classifier-next, backend: demo-v2}}
"""


def _inputs(x: np.ndarray, binary: bool) -> list[aioclient.InferInput]:
    i = aioclient.InferInput("features", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    return [i]


def _outputs(binary: bool) -> list[aioclient.InferRequestedOutput]:
    return [aioclient.InferRequestedOutput("probabilities", binary_data=binary),
            aioclient.InferRequestedOutput("label", binary_data=binary)]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_outputs_equal_direct_calls(fleet, binary: bool) -> None:
    x = np.random.default_rng(7).random((5, 16), dtype=np.float32)
    async with running_gateway(_policy(fleet)) as gw:
        through = aioclient.InferenceServerClient(f"127.0.0.1:{gw.http_port}")
        direct = aioclient.InferenceServerClient(fleet["v1"][0])
        try:
            for _ in range(4):  # both replicas of v1 answer (round-robin): every answer is the same
                got = await through.infer("classifier", _inputs(x, binary), outputs=_outputs(binary))
                want = await direct.infer("demo", _inputs(x, binary), outputs=_outputs(binary))
                np.testing.assert_array_equal(got.as_numpy("probabilities"), want.as_numpy("probabilities"))
                np.testing.assert_array_equal(got.as_numpy("label"), want.as_numpy("label"))
        finally:
            await through.close()
            await direct.close()


def test_sync_client_default_binary_outputs_and_metadata(fleet) -> None:
    async def run() -> None:
        async with running_gateway(_policy(fleet)) as gw:
            def calls() -> None:
                client = httpclient.InferenceServerClient(f"127.0.0.1:{gw.http_port}")
                x = np.random.default_rng(1).random((3, 16), dtype=np.float32)
                i = httpclient.InferInput("features", [3, 16], "FP32")
                i.set_data_from_numpy(x)
                v1 = client.infer("classifier", [i]).as_numpy("probabilities")
                v2 = client.infer("classifier-next", [i]).as_numpy("probabilities")
                assert v1.shape == v2.shape == (3, 4)
                assert not np.array_equal(v1, v2)  # the variants differ...
                np.testing.assert_allclose(v1, v2, atol=0.2)  # ...but only a little
                meta = client.get_model_metadata("classifier")
                assert meta["name"] == "classifier"
                assert meta["inputs"][0] == {"name": "features", "datatype": "FP32", "shape": [-1, 16]}
                assert client.is_model_ready("classifier")
                assert client.is_server_ready() and client.is_server_live()
                with pytest.raises(InferenceServerException, match="unknown model"):
                    client.infer("nope", [i])
                client.close()
            await asyncio.to_thread(calls)
    asyncio.run(run())


async def test_bad_inputs_get_v2_errors_and_the_gateway_keeps_serving(fleet) -> None:
    async with running_gateway(_policy(fleet)) as gw, aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{gw.http_port}/v2/models/classifier/infer"
        bad = [b"{not json", json.dumps({"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32",
                                                    "data": [1, 2, 3]}]}).encode(),
               json.dumps({"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32",
                                       "data": [1, 2]}]}).encode()]
        for body in bad:
            async with s.post(url, data=body, headers={"content-type": "application/json"}) as r:
                assert r.status == 400
                assert (await r.json())["error"]
        good = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
        async with s.post(url, json=good) as r:
            assert r.status == 200
            out = await r.json()
            assert {o["name"] for o in out["outputs"]} == {"probabilities", "label"}
