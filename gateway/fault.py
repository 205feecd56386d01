"""Fault-injection stage: delays or aborts the share of a route's requests its policy names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from backends.errors import InjectedFault
from policies.snapshot import CompiledRoute
from telemetry.metrics import GatewayMetrics


async def inject(route: CompiledRoute, random: Callable[[], float], metrics: GatewayMetrics) -> None:
    if route.delay is not None and random() < route.delay[0]:
        metrics.fault(route.name, "delay")
        await asyncio.sleep(route.delay[1])
    if route.abort is not None and random() < route.abort[0]:
        metrics.fault(route.name, "abort")
        raise InjectedFault(route.abort[1])
