"""One inference call as the upstream clients see it: what the client sent, decoded no further
than routing needs."""

from __future__ import annotations

from collections.abc import Mapping


class InferCall:
    """Filled by a front end, read by the pipeline stages and the upstream client.

    ``body`` stays the client's bytes; ``header_length`` is the V2 binary extension's JSON
    header length (None for pure JSON); ``headers`` are the client's request headers (or gRPC
    metadata), lowercase names, for matching. The pipeline notes where the call went so the
    front end can count, label and log it.
    """

    __slots__ = ("request_id", "model", "version", "body", "content_type", "header_length",
                 "forward_headers", "headers", "tenant", "route", "variant", "backend", "endpoint", "start")

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
        self.route = ""
        self.variant = ""
        self.backend = ""
        self.endpoint = ""


    def shadow_copy(self, name: str) -> InferCall:
        """The copy a mirror sends: same payload, its own id, marked as shadow traffic."""
        rid = self.request_id
        copy = InferCall(rid + b"-shadow-" + name.encode(), self.model, self.version, self.body, self.content_type,
                         self.header_length, self.forward_headers + b"x-meshgate-shadow: true\r\n"
                         b"x-meshgate-primary-request-id: " + rid + b"\r\n", self.start, self.headers)
        copy.tenant = self.tenant
        copy.route = self.route
        copy.variant = name
        return copy
