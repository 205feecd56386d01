"""Routing stage: which route takes the call, and which of its variants serves it.

Order of precedence for the variant: the tester's override header ``x-meshgate-variant``,
then the sticky key's stable hash, then a weighted random draw.
"""

from __future__ import annotations

from collections.abc import Callable

from backends.call import InferCall
from backends.errors import BadRequest
from policies.snapshot import CompiledRoute, CompiledVariant, Snapshot
from policies.split import sticky_point

OVERRIDE_HEADER = b"x-meshgate-variant"


def choose(snapshot: Snapshot, call: InferCall, random: Callable[[], float]) -> tuple[CompiledRoute, CompiledVariant]:
    route = snapshot.select(call.model, call.version, call.headers)
    override = call.headers.get(OVERRIDE_HEADER)
    if override is not None:
        variant = route.by_name.get(override)
        if variant is None:
            names = ", ".join(sorted(v.decode() for v in route.by_name))
            raise BadRequest(f"x-meshgate-variant {override.decode(errors='replace')!r} is not a variant of route "
                             f"{route.name!r} (variants: {names})")
        return route, variant
    if route.split.single is not None:
        return route, route.split.single
    key = _sticky_key(route, call) if route.sticky is not None else None
    return route, route.split.pick(sticky_point(key) if key is not None else random())


def _sticky_key(route: CompiledRoute, call: InferCall) -> bytes | None:
    """The bytes to hash for a sticky route, or None (then the draw is random)."""
    assert route.sticky is not None
    return call.key(*route.sticky)
