"""Upstream client for KServe V2 over HTTP/1.1: builds the request once and sends it through a Pool.

Same-protocol calls pass the client's body through untouched; only the path changes when the
backend serves the model under another name.
"""

from __future__ import annotations

from urllib.parse import quote

from backends.call import InferCall
from backends.http1 import UpstreamResponse
from backends.pool import Pool


class V2HttpUpstream:
    __slots__ = ("pool", "model", "version", "hash_key", "_infer_lines", "_base")

    def __init__(self, pool: Pool, model: str, version: str | None = None,
                 hash_key: tuple[str, str] | None = None) -> None:
        self.pool = pool
        self.hash_key = hash_key  # (kind, name) for a ring-hash pool
        self.model = model
        self.version = version  # when set, replaces whatever version the client asked for
        self._base = "/v2/models/" + quote(model, safe="")
        self._infer_lines: dict[str | None, bytes] = {}

    def _path(self, version: str | None, suffix: str) -> str:
        path = self._base
        if self.version is not None:
            version = self.version
        if version is not None:
            path += "/versions/" + quote(version, safe="")
        return path + suffix

    async def infer(self, call: InferCall) -> UpstreamResponse:
        line = self._infer_lines.get(call.version)
        if line is None:
            line = self._infer_lines[call.version] = (
                b"POST " + self._path(call.version, "/infer").encode() + b" HTTP/1.1\r\n")
        parts = [b"content-length: %d\r\nx-request-id: %b\r\n" % (len(call.body), call.request_id)]
        if call.content_type is not None:
            parts.append(b"content-type: " + call.content_type + b"\r\n")
        if call.header_length is not None:
            parts.append(b"inference-header-content-length: " + call.header_length + b"\r\n")
        parts.append(call.forward_headers)
        parts.append(b"\r\n")
        key = call.key(*self.hash_key) if self.hash_key is not None else None
        response, endpoint = await self.pool.send(line, b"".join(parts), call.body, call.timeout, key)
        call.endpoint = endpoint.address
        return response

    async def get(self, version: str | None, suffix: str, request_id: bytes) -> UpstreamResponse:
        """A GET on the model's metadata (``""``) or readiness (``"/ready"``)."""
        line = b"GET " + self._path(version, suffix).encode() + b" HTTP/1.1\r\n"
        headers = b"x-request-id: " + request_id + b"\r\ncontent-length: 0\r\n\r\n"
        response, _ = await self.pool.send(line, headers, b"")
        return response
