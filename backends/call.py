"""One inference call as the upstream clients see it: what the client sent, decoded no further
than routing needs."""

from __future__ import annotations

import json
from collections.abc import Mapping


class InferCall:
    """Filled by a front end, read by the pipeline stages and the upstream client.

    ``body`` stays the client's bytes; ``header_length`` is the V2 binary extension's JSON
    header length (None for pure JSON); ``headers`` are the client's request headers (or gRPC
    metadata), lowercase names, for matching. The pipeline notes where the call went so the
    front end can count, label and log it.
    """

    __slots__ = ("request_id", "model", "version", "body", "content_type", "header_length",
                 "forward_headers", "headers", "tenant", "timeout", "route", "variant", "backend", "endpoint", "start")

    def __init__(self, request_id: bytes, model: str, version: str | None, body: bytes,
                 content_type: bytes | None, header_length: bytes | None, forward_headers: bytes,
                 start: float, headers: Mapping[bytes, bytes] | None = None) -> None:
        self.request_id = request_id
        self.model = model
        self.version = version
        self.body = body
        self.content_type = content_type
        self.header_length = header_length
        self.forward_headers = forward_headers
        self.start = start
        self.headers: Mapping[bytes, bytes] = headers if headers is not None else {}
        self.tenant: str | None = None
        self.timeout: float | None = None  # the client's own deadline, when it sent one
        self.route = ""
        self.variant = ""
        self.backend = ""
        self.endpoint = ""


    def key(self, kind: str, name: str) -> bytes | None:
        """The bytes a sticky split or a ring-hash balancer hashes: ``header`` NAME, the ``tenant``,
        or a dotted ``field`` path in the V2 JSON body (parsed only when asked); None when absent."""
        if kind == "header":
            return self.headers.get(name.encode())
        if kind == "tenant":
            return self.tenant.encode() if self.tenant else None
        return self._body_field(name)

    def _body_field(self, path: str) -> bytes | None:
        body = self.body
        if self.header_length is not None:
            try:
                body = body[: int(self.header_length)]
            except ValueError:
                return None
        try:
            node = json.loads(body)
        except ValueError:
            return None
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, dict | list):
            return None
        return str(node).encode()

    def shadow_copy(self, name: str) -> InferCall:
        """The copy a mirror sends: same payload, its own id, marked as shadow traffic."""
        rid = self.request_id
        copy = InferCall(rid + b"-shadow-" + name.encode(), self.model, self.version, self.body, self.content_type,
                         self.header_length, self.forward_headers + b"x-meshgate-shadow: true\r\n"
                         b"x-meshgate-primary-request-id: " + rid + b"\r\n", self.start, self.headers)
        copy.tenant = self.tenant
        copy.timeout = self.timeout
        copy.route = self.route
        copy.variant = name
        return copy
