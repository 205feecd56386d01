"""Durations and sizes written as people write them (``250ms``, ``2m``, ``16MiB``)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?\s*$")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def parse_duration(value: object) -> float:
    """Seconds from ``250ms``, ``5s``, ``2m``, ``1h``; a bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 250ms, 5s or 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as 250ms, 5s or 2m")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from ``512KiB``, ``16MiB``, ``1GB``; a bare number is bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 16MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    else:
        raise ValueError(f"{value!r} is not a size such as 512KiB or 16MiB")
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_percent(value: object) -> float:
    """A share from ``10%``, ``2.5%`` (or a bare number read as percent) -> 0.0..100.0."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage such as 10%")
    if isinstance(value, int | float):
        pct = float(value)
    elif isinstance(value, str) and (m := _PERCENT.match(value)):
        pct = float(m.group(1))
    else:
        raise ValueError(f"{value!r} is not a percentage such as 10% or 2.5%")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"{value!r} is not between 0% and 100%")
    return pct


Percent = Annotated[float, BeforeValidator(parse_percent)]
