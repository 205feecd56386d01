"""One inference call as the upstream clients see it: what the client sent, decoded no further
than routing needs."""

from __future__ import annotations


class InferCall:
    """Filled by a front end, read by the pipeline stages and the upstream client.

    ``body`` stays the client's bytes; ``header_length`` is the V2 binary extension's JSON
    header length (None for pure JSON). The pipeline notes where the call went so the front
    end can count and log it.
    """

    __slots__ = ("request_id", "model", "version", "body", "content_type", "header_length",
                 "forward_headers", "route", "variant", "backend", "endpoint", "start")

    def __init__(self, request_id: bytes, model: str, version: str | None, body: bytes,
                 content_type: bytes | None, header_length: bytes | None, forward_headers: bytes,
                 start: float) -> None:
        self.request_id = request_id
        self.model = model
        self.version = version
        self.body = body
        self.content_type = content_type
        self.header_length = header_length
        self.forward_headers = forward_headers
        self.start = start
        self.route = ""
        self.variant = ""
        self.backend = ""
        self.endpoint = ""
