"""Lean HTTP/1.1 server protocol for the data port, on uvloop and llhttp (httptools).

Keep-alive, pipelined requests answered in order, ``Expect: 100-continue``, body and head
size limits. It knows nothing of V2 or routing: it hands a ``Request`` to a handler and
writes the ``Response`` it gets back. Not for streaming responses (aiohttp serves those).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

import httptools

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %b\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_MAX_PIPELINE = 32


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive")

    def __init__(self, method: bytes, path: bytes, query: bytes, headers: dict[bytes, bytes],
                 body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class Response:
    """``headers`` are extra header lines as (lowercase name, value); content-length is added."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ErrorResponder = Callable[[int, str], Response]


class Connections:
    """The open client connections of one server, so a stop can drain them."""

    def __init__(self) -> None:
        self.open: set[HttpProtocol] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, conn: HttpProtocol) -> None:
        self.open.add(conn)
        self._empty.clear()

    def discard(self, conn: HttpProtocol) -> None:
        self.open.discard(conn)
        if not self.open:
            self._empty.set()

    async def drained(self) -> None:
        await self._empty.wait()

    def close_idle(self, idle_for: float) -> int:
        """Closes connections with nothing in flight that sent nothing for ``idle_for`` seconds."""
        cutoff = asyncio.get_running_loop().time() - idle_for
        stale = [c for c in self.open if c.task is None and not c.queue and c.last_active < cutoff]
        for conn in stale:
            conn.shutdown()
        return len(stale)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, handler: Handler, on_error: ErrorResponder, *, max_body: int, max_head: int,
                 connections: Connections | None = None) -> None:
        self.handler = handler
        self.on_error = on_error
        self.max_body = max_body
        self.max_head = max_head
        self.connections = connections
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.task: asyncio.Task[Response] | None = None
        self.current: Request | None = None
        self.reading = True
        self.writable = True
        self.closing = False  # no new requests; connection closes once idle
        self.last_answer: Response | None = None  # written (then close) after the in-flight one
        self.last_active = self.loop.time()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.head_size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.connections is not None:
            self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.connections is not None:
            self.connections.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()  # frees the upstream connection; nobody is left to answer
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported on this port")
        except httptools.HttpParserError as e:
            self._reject(400, f"malformed HTTP request: {e}")

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self.task is None and self.queue:
            self._start(self.queue.popleft())

    # llhttp callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > self.max_head:
            raise httptools.HttpParserError("request head too large")
        name = name.lower()
        previous = self.headers.get(name)
        self.headers[name] = value if previous is None else previous + b", " + value

    def on_headers_complete(self) -> None:
        raw = self.headers.get(b"content-length")
        if raw is not None and raw.isdigit() and int(raw) > self.max_body:
            length = int(raw)
            self._reject(413, f"request body of {length} bytes is over the limit of {self.max_body} bytes")
            raise httptools.HttpParserError("body too large")
        if self.headers.get(b"expect", b"").lower() == b"100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._reject(413, f"request body is over the limit of {self.max_body} bytes")
            raise httptools.HttpParserError("body too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return  # a request after a rejected one, or during shutdown: not accepted, not answered
        body = self.body
        path, _, query = self.url.partition(b"?")
        request = Request(self.parser.get_method(), path, query, self.headers,
                          body[0] if len(body) == 1 else b"".join(body), self.parser.should_keep_alive())
        self._reset()
        if self.task is None and self.writable:
            self._start(request)
        else:
            self.queue.append(request)
            if len(self.queue) >= _MAX_PIPELINE and self.reading and self.transport is not None:
                self.reading = False
                self.transport.pause_reading()

    # request handling, one at a time so answers keep the order of requests
    def _start(self, request: Request) -> None:
        self.current = request
        self.task = task = self.loop.create_task(self.handler(request))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Response]) -> None:
        self.task = None
        request = self.current
        self.current = None
        if task.cancelled() or request is None:
            return
        try:
            response = task.result()
        except Exception:  # the front end maps every error; this is the last line of defence
            response = self.on_error(500, "internal error")
        keep_alive = request.keep_alive and (not self.closing or bool(self.queue))
        self._write(response, keep_alive)
        if not keep_alive:
            if self.last_answer is not None:
                self._write(self.last_answer, keep_alive=False)
            self._close()
            return
        if self.queue and self.writable:
            self._start(self.queue.popleft())
        if (not self.reading and not self.closing and len(self.queue) < _MAX_PIPELINE // 2
                and self.transport is not None):
            self.reading = True
            self.transport.resume_reading()

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = response.body
        head = [_STATUS_LINES.get(response.status) or b"HTTP/1.1 %d Unknown\r\n" % response.status,
                b"content-length: %d\r\n" % len(body)]
        for name, value in response.headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        if len(body) < 16384:
            head.append(body)
            transport.write(b"".join(head))
        else:
            transport.writelines((b"".join(head), body))

    def _reject(self, status: int, message: str) -> None:
        """Answers a request that cannot be parsed or accepted, then closes: the stream is unusable."""
        if self.closing:
            return
        self.closing = True
        self.queue.clear()
        answer = self.on_error(status, message)
        if self.task is None:
            self._write(answer, keep_alive=False)
            self._close()
        else:  # the in-flight request is answered first, then this, then the connection closes
            self.last_answer = answer

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the in-flight answer."""
        self.closing = True  # pipelined requests already read are still answered
        if self.transport is not None and self.reading:
            self.reading = False
            self.transport.pause_reading()
        if self.task is None and not self.queue:
            self._close()
