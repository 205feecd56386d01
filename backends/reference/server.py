"""The reference model server's KServe V2 REST API (aiohttp) and its Prometheus ``/metrics``.

``serve_main(argv)`` is what ``meshgate backend serve`` and ``python -m backends.reference`` run;
it takes ``--model NAME --port P [--host H] [--device auto|cpu|cuda] [--variant K]
[--max-batch-size N] [--max-queue-delay-ms MS] [--delay-ms MS]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from backends.errors import BadRequest
from backends.v2codec import Tensor, decode_infer_request, encode_infer_response

log = logging.getLogger("meshgate.reference")
INPUT = "features"
OUTPUTS = ("probabilities", "label")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ReferenceServer:
    def __init__(self, model: str, *, variant: int = 1, device: str = "auto", max_batch_size: int = 32,
                 max_queue_delay: float = 0.002, delay: float = 0.0) -> None:
        self.model_name = model
        self.variant = variant
        self.device_name = device
        self.delay = delay
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge("meshgate_reference_queue_depth", "Requests waiting in the dynamic batcher",
                                 registry=self.registry)
        self.batch_size = Histogram("meshgate_reference_batch_size", "Rows per executed batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.requests = Counter("meshgate_reference_requests", "Inference requests by status", ["code"],
                                registry=self.registry)
        self.duration = Histogram("meshgate_reference_request_duration_seconds", "Inference request time",
                                  registry=self.registry)
        self.batcher: Any = None
        self.ready = False
        self._loading: asyncio.Task[None] | None = None

    # lifecycle
    async def _load(self) -> None:
        from backends.reference.batcher import DynamicBatcher
        from backends.reference.models import FEATURES, Classifier, pick_device

        device = pick_device(self.device_name)
        classifier = await asyncio.to_thread(Classifier, self.variant, device)
        await asyncio.to_thread(classifier, np.zeros((1, FEATURES), np.float32))  # warm-up
        self.batcher = DynamicBatcher(classifier, max_batch_size=self.max_batch_size,
                                      max_queue_delay=self.max_queue_delay, on_batch=self.batch_size.observe)
        self.batcher.start()
        self.queue_depth.set_function(lambda: self.batcher.queue_depth)
        self.ready = True
        log.info("model %s variant %d ready on %s", self.model_name, self.variant, device)

    async def on_startup(self, _: web.Application) -> None:
        self._loading = asyncio.create_task(self._load())  # serve health while loading: ready turns true later

    async def on_cleanup(self, _: web.Application) -> None:
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.stop()

    # API
    def _check_model(self, request: web.Request) -> None:
        name = request.match_info["model"]
        version = request.match_info.get("version")
        if name != self.model_name or version not in (None, "1"):
            raise web.HTTPNotFound(text=json.dumps({"error": f"unknown model {name!r}"
                                                    + (f" version {version!r}" if version else "")}),
                                   content_type="application/json")

    def metadata(self) -> dict[str, Any]:
        return {"name": self.model_name, "versions": ["1"], "platform": "pytorch",
                "parameters": {"variant": self.variant},
                "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, 16]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 4]},
                            {"name": "label", "datatype": "INT64", "shape": [-1]}]}

    async def model_metadata(self, request: web.Request) -> web.Response:
        self._check_model(request)
        return web.json_response(self.metadata())

    async def model_ready(self, request: web.Request) -> web.Response:
        self._check_model(request)
        return web.json_response({"name": self.model_name, "ready": self.ready}, status=200 if self.ready else 503)

    async def infer(self, request: web.Request) -> web.Response:
        self._check_model(request)
        with self.duration.time():
            response = await self._infer(request)
        self.requests.labels(str(response.status)).inc()
        return response

    async def _infer(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _error(503, f"model {self.model_name!r} is not ready")
        body = await request.read()
        header = request.headers.get("Inference-Header-Content-Length")
        try:
            req = decode_infer_request(body, int(header) if header else None)
            features = req.input(INPUT)
            if features.datatype != "FP32":
                raise BadRequest(f"input {INPUT!r} must be FP32, got {features.datatype}")
            if features.data.ndim != 2 or features.data.shape[1] != 16:
                raise BadRequest(f"input {INPUT!r} must have shape [n, 16], got {list(features.data.shape)}")
            wanted = req.outputs if req.outputs is not None else dict.fromkeys(
                OUTPUTS, bool(req.parameters.get("binary_data_output", False)))
            unknown = set(wanted) - set(OUTPUTS)
            if unknown:
                raise BadRequest(f"unknown output(s) {sorted(unknown)}; this model has {list(OUTPUTS)}")
        except (BadRequest, ValueError) as e:
            return _error(400, getattr(e, "message", str(e)))
        if self.delay:
            await asyncio.sleep(self.delay)
        probabilities, labels = await self.batcher.submit(features.data)
        tensors = {"probabilities": Tensor("probabilities", "FP32", probabilities),
                   "label": Tensor("label", "INT64", labels)}
        out, header_length = encode_infer_response(self.model_name, "1", req.id, [tensors[n] for n in wanted],
                                                   {n for n, b in wanted.items() if b})
        headers = {"Content-Type": "application/json" if header_length is None else "application/octet-stream"}
        if header_length is not None:
            headers["Inference-Header-Content-Length"] = str(header_length)
        return web.Response(body=out, headers=headers)

    def app(self) -> web.Application:
        async def live(_: web.Request) -> web.Response:
            return web.json_response({"live": True})

        async def ready(_: web.Request) -> web.Response:
            return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)

        async def server_metadata(_: web.Request) -> web.Response:
            return web.json_response({"name": "meshgate-reference", "version": "1",
                                      "extensions": ["binary_tensor_data"]})

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application(client_max_size=64 * 2**20)
        app.on_startup.append(self.on_startup)
        app.on_cleanup.append(self.on_cleanup)
        r = app.router
        r.add_get("/v2/health/live", live)
        r.add_get("/v2/health/ready", ready)
        r.add_get("/v2", server_metadata)
        r.add_get("/metrics", metrics)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            r.add_get(base, self.model_metadata)
            r.add_get(base + "/ready", self.model_ready)
            r.add_post(base + "/infer", self.infer)
        return app


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="meshgate backend serve", description="reference model server (V2 REST)")
    parser.add_argument("--model", required=True, help="the model name it serves")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--variant", type=int, default=1, help="model variant; 2 is close to 1 but not equal")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-ms", type=float, default=2.0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="extra latency per request (for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    server = ReferenceServer(args.model, variant=args.variant, device=args.device,
                             max_batch_size=args.max_batch_size, max_queue_delay=args.max_queue_delay_ms / 1000,
                             delay=args.delay_ms / 1000)
    web.run_app(server.app(), host=args.host, port=args.port, access_log=None, print=None,
                handle_signals=True, shutdown_timeout=5.0)
    return 0


