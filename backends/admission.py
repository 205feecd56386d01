"""Circuit breaking for a backend: an in-flight limit and a bounded, time-limited wait queue.

Beyond them a request is refused at once (Overloaded: 503 with Retry-After) instead of
joining an unbounded queue.
"""

from __future__ import annotations

import asyncio
from collections import deque

from backends.errors import Overloaded


class Admission:
    def __init__(self, name: str, max_inflight: int = 0, max_queue: int = 0, queue_timeout: float = 1.0) -> None:
        self.name = name
        self.max_inflight = max_inflight  # 0: no limit
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.inflight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.refused = 0

    def try_enter(self) -> bool:
        """Takes a slot if one is free now (the request path's usual case, no coroutine)."""
        if self.max_inflight == 0 or (self.inflight < self.max_inflight and not self.waiters):
            self.inflight += 1
            return True
        return False

    async def enter(self) -> None:
        if self.try_enter():
            return
        if len(self.waiters) >= self.max_queue:
            self.refused += 1
            raise Overloaded(f"backend {self.name!r} is at its limit of {self.max_inflight} requests in flight",
                             retry_after=1.0)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self.queue_timeout)
        except TimeoutError:
            self.refused += 1
            raise Overloaded(f"backend {self.name!r} stayed at its in-flight limit for {self.queue_timeout:g}s",
                             retry_after=1.0) from None
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
        # the slot was handed over by leave(): inflight already counts this request

    def leave(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot straight to the next waiter
                return
        self.inflight -= 1
