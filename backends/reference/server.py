"""The reference model server's KServe V2 REST API (aiohttp) and its Prometheus ``/metrics``.

``serve_main(argv: list[str]) -> int`` is what ``meshgate backend serve`` and ``python -m
backends.reference`` run; argv is ``--model NAME --port P [--host H] [--device auto|cpu|cuda]
[--variant K] [--max-batch-size N] [--max-queue-delay-ms MS] [--delay-ms MS]``; it returns 0 after
SIGTERM/SIGINT, 1 when the port cannot be bound or the model cannot be loaded. Not a gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
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

from backends.errors import BadRequest, GatewayError, ModelNotFound
from backends.reference.batcher import BatcherStopped, DynamicBatcher
from backends.v2codec import HEADER_LENGTH, Tensor, decode_infer_request, encode_infer_response

log = logging.getLogger("meshgate.reference")

VERSION = "1"  # the only version served; variants are separate servers, told apart in metadata
FEATURES = 16  # repeated from models.py so this module does not import torch
INPUT = "features"
OUTPUTS = {"probabilities": "FP32", "label": "INT64"}

QUEUE_DEPTH = "meshgate_reference_queue_depth"
BATCH_SIZE = "meshgate_reference_batch_size"
REQUESTS = "meshgate_reference_requests"  # exposed as ..._total
REQUEST_DURATION = "meshgate_reference_request_duration_seconds"

Model = Callable[[np.ndarray[Any, Any]], Sequence[np.ndarray[Any, Any]]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _v2_errors(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every error, ours or aiohttp's (unknown path, body too large), is V2 error JSON."""
    try:
        return await handler(request)
    except GatewayError as e:
        return _error(e.http_status, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error(e.status, _http_message(request, e))


def _http_message(request: web.Request, e: web.HTTPException) -> str:
    # aiohttp's own text is "404: Not Found"-style unless it has something specific to say.
    if e.text and not e.text.startswith(f"{e.status}:"):
        return e.text
    return f"{e.reason}: {request.method} {request.path}"


def load_classifier(variant: int, device: str) -> Model:
    """Builds and warms the MLP (blocking: run it in a thread); torch is imported here, not at module load."""
    from backends.reference.models import Classifier, pick_device

    classifier = Classifier(variant, pick_device(device))
    classifier(np.zeros((1, FEATURES), np.float32))  # first call pays for lazy init, not the first client
    log.info("model variant %d built and warmed on %s", variant, classifier.device)
    return classifier


class ReferenceServer:
    """One model behind the V2 REST API. ``start_loading()`` once listening; the app's cleanup stops it."""

    def __init__(self, model: str, *, variant: int = 1, device: str = "auto", max_batch_size: int = 32,
                 max_queue_delay: float = 0.002, delay: float = 0.0,
                 load: Callable[[], Model] | None = None) -> None:
        self.model_name = model
        self.variant = variant
        self.delay = delay
        self._load_model = load or (lambda: load_classifier(variant, device))
        self.registry = CollectorRegistry()  # its own, so tests and embedders never collide on names
        self.batch_size = Histogram(BATCH_SIZE, "Rows per executed batch", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.requests = Counter(REQUESTS, "Inference requests by HTTP status", ["code"], registry=self.registry)
        self.duration = Histogram(REQUEST_DURATION, "Inference request time, queueing included",
                                  registry=self.registry)
        self.batcher = DynamicBatcher(self._run, max_batch_size=max_batch_size, max_queue_delay=max_queue_delay,
                                      on_batch=self.batch_size.observe)
        queue_depth = Gauge(QUEUE_DEPTH, "Requests waiting in the dynamic batcher", registry=self.registry)
        queue_depth.set_function(lambda: self.batcher.queue_depth)
        self._model: Model | None = None
        self.loading: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._model is not None

    def _run(self, batch: np.ndarray[Any, Any]) -> Sequence[np.ndarray[Any, Any]]:
        assert self._model is not None  # the batcher starts only once the model is loaded
        return self._model(batch)

    # lifecycle
    def start_loading(self) -> asyncio.Task[None]:
        """Loads the model in a thread; the server answers (503 on ready) meanwhile."""
        if self.loading is None:
            self.loading = asyncio.create_task(self._load(), name="reference-model-load")
        return self.loading

    async def _load(self) -> None:
        model = await asyncio.to_thread(self._load_model)
        self.batcher.start()
        self._model = model
        log.info("model %s (variant %d) ready", self.model_name, self.variant)

    async def stop(self, _: web.Application | None = None) -> None:
        if self.loading is not None and not self.loading.done():
            self.loading.cancel()
            await asyncio.gather(self.loading, return_exceptions=True)
        await self.batcher.stop()

    # API
    def _model_from(self, request: web.Request) -> None:
        name = request.match_info["model"]
        version = request.match_info.get("version")
        if name != self.model_name:
            raise ModelNotFound(f"unknown model {name!r}; this server serves {self.model_name!r}")
        if version not in (None, VERSION):
            raise ModelNotFound(f"unknown version {version!r} of model {name!r}; versions: [{VERSION!r}]")

    def metadata(self) -> dict[str, Any]:
        return {"name": self.model_name, "versions": [VERSION], "platform": "pytorch",
                "parameters": {"variant": self.variant, "max_batch_size": self.batcher.max_batch_size},
                "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, FEATURES]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 4]},
                            {"name": "label", "datatype": "INT64", "shape": [-1]}]}

    async def model_metadata(self, request: web.Request) -> web.Response:
        self._model_from(request)
        return web.json_response(self.metadata())

    async def model_ready(self, request: web.Request) -> web.Response:
        self._model_from(request)
        return web.json_response({"name": self.model_name, "ready": self.ready}, status=200 if self.ready else 503)

    async def infer(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            response = await self._infer(request)
        except GatewayError as e:
            response = _error(e.http_status, e.message)
        except web.HTTPException as e:  # aiohttp's own, e.g. a body over client_max_size
            response = _error(e.status, _http_message(request, e))
        except BatcherStopped as e:
            response = _error(503, str(e))
        except Exception as e:  # the model failed: answer V2 error JSON, not a bare 500 page
            log.exception("inference failed")
            response = _error(500, f"inference failed: {e}")
        self.duration.observe(time.perf_counter() - started)
        self.requests.labels(str(response.status)).inc()
        return response

    async def _infer(self, request: web.Request) -> web.Response:
        self._model_from(request)
        if not self.ready:
            return _error(503, f"model {self.model_name!r} is not ready")
        header = request.headers.get(HEADER_LENGTH)
        try:
            header_length = int(header) if header is not None else None
        except ValueError:
            raise BadRequest(f"{HEADER_LENGTH} must be an integer, got {header!r}") from None
        req = decode_infer_request(await request.read(), header_length)
        features = req.input(INPUT)
        if features.datatype != "FP32":
            raise BadRequest(f"input {INPUT!r} must be FP32, got {features.datatype}")
        if features.data.ndim != 2 or features.data.shape[1] != FEATURES:
            raise BadRequest(f"input {INPUT!r} must have shape [n, {FEATURES}], got {list(features.data.shape)}")
        wanted = req.outputs if req.outputs is not None else dict.fromkeys(OUTPUTS, req.binary_data_output)
        unknown = set(wanted) - set(OUTPUTS)
        if unknown:
            raise BadRequest(f"unknown output(s) {sorted(unknown)}; this model has {list(OUTPUTS)}")
        if self.delay:
            await asyncio.sleep(self.delay)
        results = dict(zip(OUTPUTS, await self.batcher.submit(features.data), strict=True))
        body, header_length = encode_infer_response(
            self.model_name, VERSION, req.id, [Tensor(n, OUTPUTS[n], results[n]) for n in wanted],
            {n for n, binary in wanted.items() if binary})
        if header_length is None:
            return web.Response(body=body, content_type="application/json")
        return web.Response(body=body, content_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(header_length)})

    def app(self) -> web.Application:
        async def live(_: web.Request) -> web.Response:
            return web.json_response({"live": True})

        async def ready(_: web.Request) -> web.Response:
            return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)

        async def server_metadata(_: web.Request) -> web.Response:
            return web.json_response({"name": "meshgate-reference", "version": "0.1.0",
                                      "extensions": ["binary_tensor_data"]})

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application(client_max_size=64 * 2**20, middlewares=[_v2_errors])
        app.on_cleanup.append(self.stop)
        r = app.router
        r.add_get("/v2/health/live", live, allow_head=False)
        r.add_get("/v2/health/ready", ready, allow_head=False)
        r.add_get("/v2", server_metadata, allow_head=False)
        r.add_get("/metrics", metrics, allow_head=False)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            r.add_get(base, self.model_metadata, allow_head=False)
            r.add_get(base + "/ready", self.model_ready, allow_head=False)
            r.add_post(base + "/infer", self.infer)
        return app


async def serve(server: ReferenceServer, host: str, port: int) -> int:
    """Listens, then loads; returns 0 on SIGTERM/SIGINT, 1 if the port or the model fails."""
    runner = web.AppRunner(server.app(), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, shutdown_timeout=5.0).start()
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", host, port, e)
        await runner.cleanup()
        return 1
    log.info("listening on http://%s:%d, loading model %s", host, port, server.model_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait(), name="reference-stop-signal")
    loading = server.start_loading()
    code = 0
    try:
        await asyncio.wait({stopping, loading}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done() and not loading.cancelled() and loading.exception() is not None:
            log.error("model failed to load: %s", loading.exception())
            code = 1
        else:
            await stopping
    finally:
        stopping.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("shutting down")
        await runner.cleanup()  # stops accepting, lets in-flight requests finish, then stops the batcher
    return code


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="meshgate backend serve", description="reference model server (V2 REST)")
    parser.add_argument("--model", required=True, help="the model name it serves")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--variant", type=int, default=1, help="model variant; 2 is close to 1 but not equal")
    parser.add_argument("--max-batch-size", type=int, default=32, help="rows per batch")
    parser.add_argument("--max-queue-delay-ms", type=float, default=2.0,
                        help="how long the first queued request waits for others to join its batch")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="extra latency per inference (for tests)")
    args = parser.parse_args(argv)
    if args.variant < 1 or args.max_batch_size < 1 or args.max_queue_delay_ms < 0 or args.delay_ms < 0:
        parser.error("--variant and --max-batch-size must be at least 1; delays must not be negative")
    return args


def serve_main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = ReferenceServer(args.model, variant=args.variant, device=args.device,
                             max_batch_size=args.max_batch_size, max_queue_delay=args.max_queue_delay_ms / 1000,
                             delay=args.delay_ms / 1000)
    try:
        import uvloop
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(server, args.host, args.port))
