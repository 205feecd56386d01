"""Open-loop HTTP/1.1 load generator: requests leave on a fixed schedule whether or not earlier
ones have returned, and latency is measured from the *intended* send time, so a stalled
server shows up in the tail instead of slowing the generator down (no coordinated omission).

Bounded by count and time: ``rate * duration`` requests at most, and a hard deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import httptools


@dataclass
class Result:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    late_start_max: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class _Conn(asyncio.Protocol):
    def __init__(self, result: Result, idle: deque[_Conn], loop: asyncio.AbstractEventLoop) -> None:
        self.result = result
        self.idle = idle
        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.intended = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.pending: set[_Conn] | None = None
        self.drained: asyncio.Event | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(ok=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.intended:
            self._finish(ok=False)

    def on_message_complete(self) -> None:
        self._finish(ok=200 <= self.parser.get_status_code() < 300)

    def _finish(self, ok: bool) -> None:
        if not self.intended:
            return
        latency = time.perf_counter() - self.intended
        self.intended = 0.0
        if ok:
            self.result.ok += 1
            self.result.latencies.append(latency)
        else:
            self.result.errors += 1
        if not self.closed:
            self.idle.append(self)
        if self.pending is not None:
            self.pending.discard(self)
            if not self.pending and self.drained is not None:
                self.drained.set()


async def open_loop(host: str, port: int, request: bytes, rate: float, duration: float,
                    max_conns: int = 512) -> Result:
    loop = asyncio.get_running_loop()
    result = Result()
    idle: deque[_Conn] = deque()
    busy: set[_Conn] = set()
    drained = asyncio.Event()
    total = int(rate * duration)
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    start = time.perf_counter() + 0.05
    conns = 0
    for i in range(total):
        intended = start + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.late_start_max = max(result.late_start_max, time.perf_counter() - intended)
        conn = None
        while idle:
            conn = idle.pop()
            if not conn.closed:
                break
            conn = None
        if conn is None:
            if conns >= max_conns:
                result.errors += 1  # the generator's own bound: counted, never silently waited on
                continue
            _, conn = await loop.create_connection(lambda: _Conn(result, idle, loop), host, port)
            conns += 1
        conn.intended = intended
        conn.pending = busy
        conn.drained = drained
        busy.add(conn)
        assert conn.transport is not None
        conn.transport.write(request)
        result.sent += 1
    if busy:
        drained.clear()
        try:
            await asyncio.wait_for(drained.wait(), 10.0)  # bounded wait for the last answers
        except TimeoutError:
            pass
    result.errors += len(busy)
    for c in list(idle) + list(busy):
        if c.transport is not None:
            c.transport.close()
    return result


def build_request(host: str, port: int, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="http://host:port/path")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--body", default="{}")
    args = parser.parse_args()
    hostport, _, path = args.url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    request = build_request(host, int(port), "/" + path, args.body.encode())
    result = asyncio.run(open_loop(host, int(port), request, args.rate, args.duration))
    json.dump({"sent": result.sent, "ok": result.ok, "errors": result.errors,
               "p50_ms": result.percentile(50) * 1e3, "p99_ms": result.percentile(99) * 1e3,
               "p999_ms": result.percentile(99.9) * 1e3, "late_start_max_ms": result.late_start_max * 1e3},
              sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
