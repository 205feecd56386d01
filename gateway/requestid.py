"""Request ids: take the client's ``x-request-id`` when it is sane, else make a unique one cheaply."""

from __future__ import annotations

import os
import re

_SANE = re.compile(rb"^[\x21-\x7e]{1,128}$")


class RequestIds:
    """A random per-process prefix and a counter: unique across processes, no syscall per request."""

    __slots__ = ("_prefix", "_next")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode() + b"-"
        self._next = 0

    def take(self, given: bytes | None) -> bytes:
        if given is not None and _SANE.match(given):
            return given
        self._next += 1
        return self._prefix + b"%x" % self._next
