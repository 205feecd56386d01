"""Pooled keep-alive HTTP/1.1 client for one upstream endpoint, on asyncio protocols and llhttp.

This is the data path's upstream leg: no per-request objects beyond the response, bodies as
bytes. It is not a general HTTP client (no redirects, cookies or proxies): aiohttp serves
the admin and tooling paths.
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools

from backends.errors import UpstreamProtocolError, UpstreamTimeout


class ConnectFailed(Exception):
    """The endpoint refused or did not accept a connection: safe to try another endpoint."""


class StaleConnection(Exception):
    """A reused keep-alive connection closed before any response byte: safe to resend once."""


class UpstreamResponse:
    __slots__ = ("status", "headers", "body", "keep_alive")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lowercase)."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Connection(asyncio.Protocol):
    """One TCP connection; carries one request at a time."""

    __slots__ = ("transport", "parser", "waiter", "headers", "body", "got_bytes", "closed", "reused")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[UpstreamResponse] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.got_bytes = False
        self.closed = False
        self.reused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(UpstreamProtocolError(f"upstream sent an invalid HTTP response: {e}"))

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if not self.got_bytes and self.reused:
                waiter.set_exception(StaleConnection())
            elif not self.got_bytes:
                error = UpstreamProtocolError("upstream closed the connection without answering")
                error.before_answer = True  # nothing came back: safe to try another endpoint
                waiter.set_exception(error)
            else:
                waiter.set_exception(UpstreamProtocolError("upstream closed the connection mid-response"))
        self.waiter = None

    # llhttp callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        self.waiter = None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        response = UpstreamResponse(self.parser.get_status_code(), self.headers, body,
                                    self.parser.should_keep_alive())
        self.headers = []
        self.body = []
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # used by Endpoint
    def send(self, parts: tuple[bytes, ...], loop: asyncio.AbstractEventLoop) -> asyncio.Future[UpstreamResponse]:
        waiter = loop.create_future()
        self.waiter = waiter
        self.got_bytes = False
        assert self.transport is not None
        # One write of one buffer: cheaper than writelines for the small bodies that dominate.
        if len(parts[-1]) < 65536:
            self.transport.write(b"".join(parts))
        else:
            self.transport.writelines(parts)
        return waiter

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def timed_out(self) -> None:
        self._fail(UpstreamTimeout("upstream did not answer within the backend's timeout"))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Endpoint:
    """One upstream server address with its keep-alive connection pool and the state balancers read.

    Everything here runs on one event loop, so the state is plain attributes:
    ``inflight`` (requests in flight), ``ewma``/``ewma_at`` (peak-EWMA latency in seconds and
    when it was last updated; 0.0 = not measured yet), ``healthy`` (active health checks),
    ``ejected_until`` and ``ejections`` (passive outlier ejection, in ``clock`` seconds), and
    ``load``/``load_at`` (the server's own reported load, from its /metrics).
    """

    __slots__ = ("address", "host", "port", "weight", "host_line", "connect_timeout", "max_idle",
                 "idle", "inflight", "loop", "ewma", "ewma_at", "healthy", "ejected_until", "ejections",
                 "load", "load_at")

    def __init__(self, address: str, *, weight: int = 1, connect_timeout: float = 1.0,
                 max_idle: int = 64) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.host = host.strip("[]")
        self.port = int(port)
        self.weight = weight
        self.host_line = b"host: " + address.encode() + b"\r\n"
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle: deque[_Connection] = deque()
        self.inflight = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ewma = 0.0
        self.ewma_at = 0.0
        self.healthy = True
        self.ejected_until = 0.0
        self.ejections = 0
        self.load: float | None = None
        self.load_at = 0.0

    def __repr__(self) -> str:
        return f"Endpoint({self.address})"

    async def _connect(self, timeout: float) -> _Connection:
        loop = self.loop
        assert loop is not None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), min(timeout, self.connect_timeout))
        except (TimeoutError, OSError) as e:
            raise ConnectFailed(f"{self.address}: {e or 'connect timed out'}") from None
        return conn

    async def request(self, line: bytes, headers: bytes, body: bytes, timeout: float) -> UpstreamResponse:
        """Sends one request: ``line`` is the request line, ``headers`` the header block after
        ``Host`` up to and including the blank line."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.inflight += 1
        try:
            while True:
                idle = self.idle
                conn = None
                while idle:
                    conn = idle.pop()
                    if not conn.closed:
                        break
                    conn = None
                if conn is None:
                    conn = await self._connect(deadline - loop.time())
                    conn.reused = False
                else:
                    conn.reused = True
                timer = loop.call_at(deadline, conn.timed_out)
                try:
                    response = await conn.send((line, self.host_line, headers, body), loop)
                except StaleConnection:
                    continue  # nothing reached the server: resend on a fresh connection
                except BaseException:
                    conn.abort()
                    raise
                finally:
                    timer.cancel()
                if response.keep_alive and not conn.closed and len(idle) < self.max_idle:
                    idle.append(conn)
                else:
                    conn.abort()
                return response
        finally:
            self.inflight -= 1

    def close(self) -> None:
        """Closes idle connections; busy ones close when their answer is in (nothing is kept)."""
        self.max_idle = 0
        while self.idle:
            self.idle.pop().abort()
