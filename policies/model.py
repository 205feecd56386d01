"""The policy file's schema: pydantic models an SRE writes in YAML.

Only data and validation live here; compilation into what the request path reads is in
``policies.snapshot``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.units import Duration, Percent, Size, parse_percent

_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_address(value: str, *, allow_any_port: bool = False) -> str:
    m = _ADDRESS.match(value)
    lowest = 0 if allow_any_port else 1
    if not m or not lowest <= int(m.group("port")) < 65536:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9101)")
    return value


def check_request_key(value: str) -> str:
    """A key taken from a request: ``header:NAME``, ``tenant`` or ``field:PATH`` (V2 JSON body)."""
    kind, _, rest = value.partition(":")
    if value == "tenant" or (kind in ("header", "field") and rest):
        return value.lower() if kind == "header" else value
    raise ValueError(f"{value!r}: expected header:NAME, tenant or field:PATH")


def check_listen_address(value: str) -> str:
    """Port 0 is allowed for listeners: the system picks a free port (tests use it)."""
    return check_address(value, allow_any_port=True)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Endpoint(_Frozen):
    """One model server replica."""

    address: str = Field(description="host:port of the server")
    weight: int = Field(1, ge=1, le=1000, description="relative share of traffic (a bigger GPU gets more)")

    _check = field_validator("address")(check_address)


class Launch(_Frozen):
    """Have `meshgate up` start a reference model server on every endpoint of this backend."""

    model: str | None = Field(None, description="model name the server serves (default: the backend's model)")
    variant: int = Field(1, ge=1, description="which variant of the reference model (2 is close to 1)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_batch_size: int = Field(32, ge=1)
    max_queue_delay: Duration = Field(0.002, description="how long the dynamic batcher waits to fill a batch")


class Balancer(_Frozen):
    """How a backend picks the endpoint for each request."""

    kind: Literal["round-robin", "least-request", "p2c-ewma", "ring-hash", "load-aware"] = Field(
        "p2c-ewma", description="p2c-ewma: power of two choices over peak-EWMA latency x (in-flight + 1); "
        "least-request: two choices over in-flight; ring-hash: consistent hash of `hash_key` with bounded load; "
        "load-aware: the servers' own queue depth / KV-cache use scraped from their /metrics")
    decay: Duration = Field(2.0, description="p2c-ewma: how fast old latency observations fade")
    default_latency: Duration = Field(0.05, description="p2c-ewma: latency assumed for an endpoint not yet measured")
    hash_key: str = Field("header:x-session-id", description="ring-hash: header:NAME, tenant or field:PATH")
    bounded_load: float = Field(1.25, ge=1.0, description="ring-hash: an endpoint takes at most this times the "
                                "mean in-flight load before the ring moves on")
    metrics_path: str = Field("/metrics", description="load-aware: where the servers publish Prometheus metrics")
    scrape_interval: Duration = Field(1.0, description="load-aware: how often /metrics is read")
    max_staleness: Duration = Field(3.0, description="load-aware: older scrapes fall back to p2c-ewma")

    _key = field_validator("hash_key")(check_request_key)


class HealthCheck(_Frozen):
    """Active health checks: a GET on each endpoint; thresholds turn it in and out of rotation."""

    enabled: bool = True
    path: str = Field("/v2/health/ready", description="HTTP path that answers 200 when the server can take work")
    interval: Duration = Field(2.0, description="time between checks of one endpoint (jittered)")
    timeout: Duration = Field(1.0, description="a check slower than this fails")
    healthy_threshold: int = Field(1, ge=1, description="consecutive passes that bring an endpoint back")
    unhealthy_threshold: int = Field(2, ge=1, description="consecutive failures that take it out")
    jitter: Percent = Field(10.0, description="random spread of the interval, so checks do not align")


class Outlier(_Frozen):
    """Passive outlier ejection from live traffic, capped so a bad deploy cannot empty the pool."""

    consecutive_errors: int = Field(5, ge=1, description="errors in a row that eject an endpoint")
    failure_rate: Percent = Field(50.0, description="failure share over `window` that ejects an endpoint")
    min_requests: int = Field(20, ge=1, description="requests in the window before the failure rate counts")
    window: Duration = Field(10.0, description="window for the failure rate")
    base_ejection: Duration = Field(2.0, description="first ejection time; doubles with each repeat ejection")
    max_ejection: Duration = Field(60.0, description="longest ejection")
    max_ejected: Percent = Field(50.0, description="most of the pool that may be ejected at once")


class Retries(_Frozen):
    """Retries on another endpoint, only for failures that are safe to retry."""

    attempts: int = Field(3, ge=1, le=10, description="tries in all, the first included")
    backoff: Duration = Field(0.005, description="base of the exponential backoff (with full jitter)")
    max_backoff: Duration = Field(0.1, description="longest backoff")
    budget: Percent = Field(20.0, description="retries may add at most this share of extra load")
    min_retries_per_second: float = Field(5.0, ge=0, description="retries always allowed at this rate, so a "
                                          "quiet backend can still retry")
    on_503: bool = Field(True, description="retry a 503 (an overloaded server said no before doing work)")


class Hedging(_Frozen):
    """Send a second copy to another endpoint when the first is slower than usual; first answer wins."""

    enabled: bool = False
    percentile: Percent = Field(95.0, description="hedge once the endpoint's latency passes this percentile")
    min_delay: Duration = Field(0.005, description="never hedge sooner than this")


class BackendLimits(_Frozen):
    """Circuit breaking: in-flight bounds and a bounded wait; beyond them a fast 503 with Retry-After."""

    max_inflight: int = Field(0, ge=0, description="requests in flight to the whole backend (0: no limit)")
    max_inflight_per_endpoint: int = Field(0, ge=0, description="requests in flight to one endpoint (0: no limit)")
    max_queue: int = Field(0, ge=0, description="requests that may wait for a free slot (0: none wait)")
    queue_timeout: Duration = Field(1.0, description="longest wait for a slot")


class Backend(_Frozen):
    """A named set of endpoints serving one model, reached with one protocol."""

    protocol: Literal["v2"] = Field("v2", description="KServe Open Inference Protocol V2")
    transport: Literal["http"] = Field("http", description="HTTP/1.1 with pooled keep-alive connections")
    endpoints: list[Endpoint] = Field(min_length=1, description="`host:port` strings or {address, weight}; "
                                      "weighted round-robin across them")
    model: str | None = Field(None, description="model name on the servers (default: the client-facing name)")
    version: str | None = Field(None, description="model version to call on the servers (default: the version "
                                "the client asked for, if any)")
    timeout: Duration = Field(30.0, description="whole-request deadline for one call, e.g. 5s")
    connect_timeout: Duration = Field(1.0, description="TCP connect deadline per endpoint")
    max_idle_connections: int = Field(64, ge=0, description="keep-alive connections kept per endpoint")
    balancer: Balancer = Field(default_factory=Balancer, description="endpoint choice")
    health: HealthCheck = Field(default_factory=HealthCheck, description="active health checks")
    outlier: Outlier = Field(default_factory=Outlier, description="passive outlier ejection")
    retries: Retries = Field(default_factory=Retries, description="safe retries with a budget")
    hedging: Hedging = Field(default_factory=Hedging, description="hedged requests (off by default)")
    limits: BackendLimits = Field(default_factory=BackendLimits, description="in-flight limits (circuit breaking)")
    launch: Launch | None = Field(None, description="have `meshgate up` start a reference server on each endpoint")

    @field_validator("balancer", mode="before")
    @classmethod
    def _balancer_shorthand(cls, value: object) -> object:
        return {"kind": value} if isinstance(value, str) else value  # `balancer: least-request`

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoint_shorthand(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"address": v} if isinstance(v, str) else v for v in value]
        return value


class Match(_Frozen):
    """Which requests a route takes. Header names are case-insensitive; values match exactly."""

    model: str = Field(description="client-facing model name, as in /v2/models/{model}/infer")
    version: str | None = Field(None, description="only this model version (default: any)")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers that must all be present "
                                    "with these exact values, e.g. {x-tenant: acme}")

    @field_validator("headers")
    @classmethod
    def _lower(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.lower(): v for k, v in value.items()}


class Variant(_Frozen):
    """One arm of a split: a backend and its share of the route's traffic."""

    name: str | None = Field(None, description="the name clients see in x-meshgate-variant (default: the backend)")
    backend: str = Field(description="a backend name from `backends`")
    weight: int | str = Field(1, description="an integer weight (>= 0) or a percentage such as 5%; "
                              "percentages must add up to 100%")

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("a weight cannot be negative")
            return value
        parse_percent(value)
        if "%" not in value:
            raise ValueError(f"{value!r}: write a percentage with % (e.g. 5%) or an integer weight")
        return value.strip()

    @property
    def variant_name(self) -> str:
        return self.name or self.backend


class Sticky(_Frozen):
    """Keeps a user in one arm: a stable hash of this key picks the variant."""

    key: str = Field(description="header:NAME (a request header), tenant (the caller's tenant), or "
                     "field:PATH (a dotted path in the V2 JSON body, e.g. field:parameters.user_id)")

    _key = field_validator("key")(check_request_key)


class Mirror(_Frozen):
    """A shadow: a sampled copy of the route's traffic; its answers are never returned to clients."""

    backend: str = Field(description="a backend name from `backends`, not one of the route's variants")
    name: str | None = Field(None, description="shadow variant name (default: the backend)")
    percent: Percent = Field(100.0, description="share of the route's requests copied, e.g. 10%")

    @property
    def variant_name(self) -> str:
        return self.name or self.backend


class Delay(_Frozen):
    percent: Percent = Field(description="share of requests delayed")
    duration: Duration = Field(description="added delay, e.g. 250ms")


class Abort(_Frozen):
    percent: Percent = Field(description="share of requests answered with an error instead of forwarded")
    status: int = Field(503, ge=400, le=599, description="HTTP status of the injected error")


class Fault(_Frozen):
    """Injected faults for chaos drills (as Istio's fault injection)."""

    delay: Delay | None = Field(None, description="delay a share of requests")
    abort: Abort | None = Field(None, description="answer a share of requests with an error")


class Route(_Frozen):
    """Sends requests that match to one of its variants (weighted or sticky), mirrors and faults aside."""

    name: str | None = Field(None, description="unique route name (default: the model name); used in metrics")
    match: Match = Field(description="which requests; `model: NAME` is short for `match: {model: NAME}`")
    variants: list[Variant] = Field(min_length=1, description="the arms; `backend: NAME` is short for one variant")
    sticky: Sticky | None = Field(None, description="keep each user in one arm (default: weighted random)")
    mirror: list[Mirror] = Field(default_factory=list, description="shadow copies (one mapping or a list)")
    fault: Fault | None = Field(None, description="injected delays and errors")

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: object) -> object:
        # `model: demo` is short for `match: {model: demo}`; `backend: b` for `variants: [{backend: b}]`.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "model" in data and "match" not in data:
            data["match"] = {"model": data.pop("model")}
        if "backend" in data and "variants" not in data:
            data["variants"] = [{"backend": data.pop("backend")}]
        if isinstance(data.get("mirror"), dict):
            data["mirror"] = [data["mirror"]]
        return data

    @property
    def route_name(self) -> str:
        return self.name or self.match.model

    def shares(self) -> list[float]:
        """Each variant's share of traffic, in percent."""
        weights = [parse_percent(v.weight) if isinstance(v.weight, str) else float(v.weight) for v in self.variants]
        total = sum(weights)
        return [w * 100.0 / total if total else 0.0 for w in weights]


class Listen(_Frozen):
    """Where meshgate listens (port 0 picks a free port). Changes apply on restart."""

    http: str = Field("127.0.0.1:8080", description="KServe V2 REST data port")
    grpc: str = Field("127.0.0.1:8081", description="KServe V2 gRPC data port (reserved)")
    admin: str = Field("127.0.0.1:9901", description="admin API: /metrics, /ready, /status, /admin/policy...")

    _check = field_validator("http", "grpc", "admin")(check_listen_address)


class Limits(_Frozen):
    """Request size limits on the data port."""

    max_body: Size = Field(64 * 2**20, description="largest request body accepted (413 above)")
    max_header: Size = Field(64 * 2**10, description="largest request head accepted")
    idle_timeout: Duration = Field(75.0, description="close a client connection that sends nothing for this long "
                                   "between requests (or while sending a request head)")


class Admin(_Frozen):
    """The admin API's credential: clients send ``Authorization: Bearer TOKEN``."""

    token_sha256: str | None = Field(None, description="SHA-256 (hex) of the admin token; without it the admin "
                                     "API refuses changes (meshgate up makes one for its session)")

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("expected 64 hex digits (sha256 of the token)")
        return value.lower() if value else value


class Policy(_Frozen):
    """The whole policy file."""

    version: Literal[1] = Field(1, description="schema version")
    listen: Listen = Field(default_factory=Listen, description="listening addresses")
    limits: Limits = Field(default_factory=Limits, description="request size limits")
    admin: Admin = Field(default_factory=Admin, description="admin API credential")
    backends: dict[str, Backend] = Field(description="named sets of model server endpoints")
    routes: list[Route] = Field(default_factory=list, description="first match wins; a route without headers "
                                "or version is its model's default, so put it last")

    @field_validator("backends")
    @classmethod
    def _backend_names(cls, value: dict[str, Backend]) -> dict[str, Backend]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"backend name {name!r} must be letters, digits, '.', '_' or '-'")
        return value


class FieldError(ValueError):
    """A cross-field check that knows which field is wrong (the loader reads ``loc``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
