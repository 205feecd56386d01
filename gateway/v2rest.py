"""KServe V2 (Open Inference Protocol) over REST: translates HTTP requests to data-plane calls.

Also the one place where meshgate's errors become V2 error JSON with an HTTP status.
"""

from __future__ import annotations

import json
import time
import zlib
from urllib.parse import unquote

from backends.call import InferCall
from backends.errors import BadRequest, GatewayError, ModelNotFound
from backends.http1 import UpstreamResponse
from gateway import __version__
from gateway.http1 import Request, Response
from gateway.pipeline import DataPlane
from gateway.requestid import RequestIds
from policies.units import parse_duration
from telemetry.metrics import GatewayMetrics

# Headers that describe the client's connection or that meshgate sets itself.
_NOT_FORWARDED = frozenset({
    b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer",
    b"upgrade", b"proxy-authorization", b"proxy-connection", b"expect", b"x-request-id", b"content-type",
    b"inference-header-content-length", b"x-meshgate-timeout",
})
_JSON = b"application/json"
_SERVER_METADATA = json.dumps({"name": "meshgate", "version": __version__,
                               "extensions": ["binary_tensor_data"]}).encode()


def error_response(status: int, message: str, request_id: bytes | None = None,
                   retry_after: float | None = None) -> Response:
    headers = [(b"content-type", _JSON)]
    if retry_after is not None:
        headers.append((b"retry-after", b"%d" % max(1, round(retry_after))))
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    return Response(status, headers, json.dumps({"error": message}).encode())


class V2Rest:
    def __init__(self, dataplane: DataPlane, metrics: GatewayMetrics, request_ids: RequestIds | None = None) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.ids = request_ids or RequestIds()

    async def handle(self, req: Request) -> Response:
        request_id = self.ids.take(req.headers.get(b"x-request-id"))
        parts = req.path.split(b"/")
        # b"/v2/models/m/infer" -> [b"", b"v2", b"models", b"m", b"infer"]
        if len(parts) >= 5 and parts[2] == b"models" and parts[-1] == b"infer" and parts[1] == b"v2":
            return await self._infer(req, parts, request_id)
        try:
            return await self._other(req, parts, request_id)
        except GatewayError as e:
            return error_response(e.http_status, e.message, request_id)

    async def _infer(self, req: Request, parts: list[bytes], request_id: bytes) -> Response:
        start = time.perf_counter()  # uvloop's loop.time() ticks in whole milliseconds
        call = None
        try:
            if req.method != b"POST":
                raise _MethodNotAllowed("infer takes POST")
            model, version = _model_and_version(parts[3:-1])
            headers = req.headers
            forward = b"".join([name + b": " + value + b"\r\n" for name, value in headers.items()
                                if name not in _NOT_FORWARDED])
            call = InferCall(request_id, model, version, req.body, headers.get(b"content-type"),
                             headers.get(b"inference-header-content-length"), forward, start, headers)
            deadline = headers.get(b"x-meshgate-timeout")
            if deadline is not None:
                call.timeout = _client_timeout(deadline)
            upstream = await self.dataplane.infer(call)
            response = _relay(upstream, request_id, call.backend)
        except GatewayError as e:
            response = error_response(e.http_status, e.message, request_id, getattr(e, "retry_after", None))
        if call is not None:
            if call.variant:
                response.headers.append((b"x-meshgate-variant", call.variant.encode()))
            self.metrics.request("rest", call.route, call.variant, call.backend, response.status,
                                 time.perf_counter() - start)
        return response

    async def _other(self, req: Request, parts: list[bytes], request_id: bytes) -> Response:
        if req.method != b"GET":
            raise _MethodNotAllowed(f"{req.method.decode()} is not allowed on {req.path.decode(errors='replace')}")
        path = parts[1:]
        if path == [b"v2", b"health", b"live"]:
            return _json(200, b'{"live":true}', request_id)
        if path == [b"v2", b"health", b"ready"]:
            ready = self.dataplane.ready()
            return _json(200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}', request_id)
        if path == [b"v2"] or path == [b"v2", b""]:
            return _json(200, _SERVER_METADATA, request_id)
        if len(path) >= 3 and path[0] == b"v2" and path[1] == b"models":
            rest = path[2:]
            if rest[-1] == b"ready":
                model, version = _model_and_version(rest[:-1])
                upstream = await self.dataplane.model_ready(model, version, request_id)
                return _relay(upstream, request_id, model)
            model, version = _model_and_version(rest)
            upstream = await self.dataplane.model_metadata(model, version, request_id)
            return _relay(_rename(upstream, model), request_id, model)
        raise ModelNotFound(f"no such path: {req.path.decode(errors='replace')}")


class _MethodNotAllowed(BadRequest):
    http_status = 405


def _model_and_version(parts: list[bytes]) -> tuple[str, str | None]:
    """[m] or [m, b"versions", v] -> (m, v)."""
    try:
        if len(parts) == 1 and parts[0]:
            return _text(parts[0]), None
        if len(parts) == 3 and parts[1] == b"versions" and parts[0] and parts[2]:
            return _text(parts[0]), _text(parts[2])
    except UnicodeDecodeError:
        raise BadRequest("model name and version must be UTF-8") from None
    raise ModelNotFound("no such path: expected /v2/models/{model}[/versions/{version}]/...")


def _client_timeout(value: bytes) -> float:
    """The client's own deadline (``x-meshgate-timeout: 250ms``): it shrinks the backend's timeout."""
    try:
        return parse_duration(value.decode())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"x-meshgate-timeout {value.decode(errors='replace')!r} is not a duration such as "
                         "250ms or 2s") from None


def _text(part: bytes) -> str:
    return unquote(part.decode()) if b"%" in part else part.decode()


def _json(status: int, body: bytes, request_id: bytes) -> Response:
    return Response(status, [(b"content-type", _JSON), (b"x-request-id", request_id)], body)


_RELAYED = frozenset({b"content-type", b"inference-header-content-length", b"content-encoding"})


def _relay(upstream: UpstreamResponse, request_id: bytes, backend: str) -> Response:
    """The upstream's answer as the client's: body untouched; errors in V2 shape whatever the upstream sent."""
    status = upstream.status
    body = upstream.body
    headers = [(b"x-request-id", request_id)]
    for name, value in upstream.headers:
        lower = name.lower()
        if lower in _RELAYED:
            headers.append((lower, value))
    if status >= 400:
        plain = _decoded(body, upstream.header(b"content-encoding"))
        if not _is_v2_error(plain):
            text = plain[:300].decode(errors="replace").strip()
            return error_response(status, f"backend {backend!r} answered {status}" + (f": {text}" if text else ""),
                                  request_id)
    return Response(status, headers, body)


def _decoded(body: bytes, encoding: bytes | None) -> bytes:
    """An error body as text, whatever compression the backend chose (error path only)."""
    if encoding is None or encoding.lower() == b"identity":
        return body
    try:
        return zlib.decompress(body, wbits=47)  # gzip or zlib, detected from the header
    except zlib.error:
        return b""


def _is_v2_error(body: bytes) -> bool:
    if not body.startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(body).get("error"), str)
    except (ValueError, AttributeError):
        return False


def _rename(upstream: UpstreamResponse, model: str) -> UpstreamResponse:
    """Model metadata names the model as the client called it, not as the backend serves it."""
    if upstream.status != 200:
        return upstream
    try:
        meta = json.loads(upstream.body)
    except ValueError:
        return upstream
    if isinstance(meta, dict) and meta.get("name") != model:
        meta["name"] = model
        return UpstreamResponse(200, [(b"content-type", _JSON)], json.dumps(meta).encode(), upstream.keep_alive)
    return upstream
