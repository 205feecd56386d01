"""Renders the policy field reference (docs/policy-reference.md) from the pydantic models themselves,
so the docs cannot drift from what the loader accepts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from policies import model as m

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("top level", m.Policy), ("listen", m.Listen), ("limits", m.Limits), ("admin", m.Admin),
    ("backends.NAME", m.Backend), ("backends.NAME.endpoints[]", m.Endpoint), ("backends.NAME.balancer", m.Balancer),
    ("backends.NAME.health", m.HealthCheck), ("backends.NAME.outlier", m.Outlier),
    ("backends.NAME.retries", m.Retries), ("backends.NAME.hedging", m.Hedging),
    ("backends.NAME.limits", m.BackendLimits), ("backends.NAME.launch", m.Launch),
    ("routes[]", m.Route), ("routes[].match", m.Match), ("routes[].variants[]", m.Variant),
    ("routes[].sticky", m.Sticky), ("routes[].mirror[]", m.Mirror), ("routes[].fault", m.Fault),
    ("routes[].fault.delay", m.Delay), ("routes[].fault.abort", m.Abort),
]


_UNITS = {"parse_duration": "duration", "parse_percent": "percentage", "parse_size": "size"}


def _type(field: Any) -> str:
    for meta in field.metadata:
        unit = _UNITS.get(getattr(getattr(meta, "func", None), "__name__", ""))
        if unit:
            return unit
    text = str(field.annotation).replace("typing.", "").replace("policies.model.", "")
    for noise in ("<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("Literal[", "one of [")


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        return "" if field.default is None else f"`{field.default}`"
    if field.default_factory is not None:
        return "(see section)" if isinstance(field.default_factory, type) else "`[]`/`{}`"
    return "**required**"


def render() -> str:
    out = ["# Policy field reference", "",
           "Generated from the schema by `meshgate policy reference`; every field the loader accepts is here.",
           "Durations: `250ms`, `5s`, `2m`, `1h`. Sizes: `512KiB`, `16MiB`. Percentages: `10%`, `2.5%`.",
           "Unknown fields are errors. A JSON Schema for editors: `meshgate policy schema`.", ""]
    for title, cls in SECTIONS:
        out += [f"## {title}", "", (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "", "",
                "| field | type | default | meaning |", "|---|---|---|---|"]
        for name, field in cls.model_fields.items():
            description = (field.description or "").replace("|", "\\|")
            out.append(f"| `{name}` | {_type(field).replace('|', 'or')} | {_default(field)} | {description} |")
        out.append("")
    return "\n".join(out)
