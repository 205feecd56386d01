"""Compiles a Policy into the immutable ``Snapshot`` the request path reads.

A reload builds a new Snapshot beside the old one and swaps one reference; pools whose
backend did not change are carried over with their connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from backends.errors import ModelNotFound
from backends.http1 import Endpoint
from backends.pool import Pool
from backends.v2http import V2HttpUpstream
from policies.model import Backend, Policy


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    name: str
    model: str
    variant: str
    backend: str
    upstream: V2HttpUpstream


@dataclass(frozen=True)
class Snapshot:
    version: int
    policy: Policy
    routes: Mapping[str, CompiledRoute]
    pools: Mapping[str, Pool]
    backends: Mapping[str, Backend] = field(repr=False)

    def route(self, model: str) -> CompiledRoute:
        route = self.routes.get(model)
        if route is None:
            raise ModelNotFound(f"unknown model {model!r}")
        return route

    def close(self, keep: Mapping[str, Pool] = MappingProxyType({})) -> None:
        """Closes the pools the next snapshot did not carry over."""
        kept = {id(p) for p in keep.values()}
        for pool in self.pools.values():
            if id(pool) not in kept:
                pool.close()


def _pool(name: str, backend: Backend) -> Pool:
    endpoints = [Endpoint(e.address, weight=e.weight, connect_timeout=backend.connect_timeout,
                          max_idle=backend.max_idle_connections) for e in backend.endpoints]
    return Pool(name, endpoints, timeout=backend.timeout)


def compile_policy(policy: Policy, version: int, previous: Snapshot | None = None) -> Snapshot:
    pools: dict[str, Pool] = {}
    for name, backend in policy.backends.items():
        if previous is not None and previous.backends.get(name) == backend:
            pools[name] = previous.pools[name]
        else:
            pools[name] = _pool(name, backend)
    routes: dict[str, CompiledRoute] = {}
    for route in policy.routes:
        backend = policy.backends[route.backend]
        upstream_model = backend.model or route.match.model
        routes[route.match.model] = CompiledRoute(
            name=route.route_name, model=route.match.model, variant=route.backend, backend=route.backend,
            upstream=V2HttpUpstream(pools[route.backend], upstream_model))
    return Snapshot(version=version, policy=policy, routes=MappingProxyType(routes),
                    pools=MappingProxyType(pools), backends=MappingProxyType(dict(policy.backends)))
