"""The policy file's schema: pydantic models an SRE writes in YAML.

Only data and validation live here; compilation into what the request path reads is in
``policies.snapshot``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.units import Duration, Size

_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_address(value: str, *, allow_any_port: bool = False) -> str:
    m = _ADDRESS.match(value)
    lowest = 0 if allow_any_port else 1
    if not m or not lowest <= int(m.group("port")) < 65536:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9101)")
    return value


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


class Backend(_Frozen):
    """A named set of endpoints serving one model, reached with one protocol."""

    protocol: Literal["v2"] = Field("v2", description="KServe Open Inference Protocol V2")
    transport: Literal["http"] = "http"
    endpoints: list[Endpoint] = Field(min_length=1)
    model: str | None = Field(None, description="model name on the servers (default: the client-facing name)")
    timeout: Duration = Field(30.0, description="whole-request deadline for one call, e.g. 5s")
    connect_timeout: Duration = Field(1.0, description="TCP connect deadline per endpoint")
    max_idle_connections: int = Field(64, ge=0, description="keep-alive connections kept per endpoint")
    launch: Launch | None = None

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoint_shorthand(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"address": v} if isinstance(v, str) else v for v in value]
        return value


class Match(_Frozen):
    model: str = Field(description="client-facing model name")


class Route(_Frozen):
    """Sends requests for one client-facing model to a backend."""

    name: str | None = None
    match: Match
    backend: str

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, data: object) -> object:
        # `model: demo` is the short form of `match: {model: demo}`.
        if isinstance(data, dict) and "model" in data and "match" not in data:
            data = dict(data)
            data["match"] = {"model": data.pop("model")}
        return data

    @property
    def route_name(self) -> str:
        return self.name or self.match.model


class Listen(_Frozen):
    http: str = "127.0.0.1:8080"
    grpc: str = "127.0.0.1:8081"
    admin: str = "127.0.0.1:9901"

    _check = field_validator("http", "grpc", "admin")(check_listen_address)


class Limits(_Frozen):
    max_body: Size = Field(64 * 2**20, description="largest request body accepted (413 above)")
    max_header: Size = Field(64 * 2**10, description="largest request head accepted")


class Policy(_Frozen):
    """The whole policy file."""

    version: Literal[1] = 1
    listen: Listen = Field(default_factory=Listen)
    limits: Limits = Field(default_factory=Limits)
    backends: dict[str, Backend]
    routes: list[Route] = Field(default_factory=list)

    @field_validator("backends")
    @classmethod
    def _backend_names(cls, value: dict[str, Backend]) -> dict[str, Backend]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"backend name {name!r} must be letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _references(self) -> Policy:
        seen: set[str] = set()
        for i, route in enumerate(self.routes):
            if route.backend not in self.backends:
                raise FieldError(("routes", i, "backend"), f"unknown backend {route.backend!r}; "
                                  f"defined: {', '.join(sorted(self.backends)) or 'none'}")
            if route.match.model in seen:
                raise FieldError(("routes", i, "match", "model"),
                                  f"model {route.match.model!r} is already routed by an earlier route")
            seen.add(route.match.model)
        return self


class FieldError(ValueError):
    """A cross-field check that knows which field is wrong (the loader reads ``loc``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
