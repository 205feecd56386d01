"""Reads a policy YAML file into a validated ``Policy``; every error names file, line, field and reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.checks import cross_check
from policies.model import FieldError, Policy

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field or '(top)'}: {self.reason}"


class PolicyError(Exception):
    """The policy file cannot be used; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise PolicyError([Problem(str(path), 0, "", f"cannot read: {e.strerror}")]) from None
    return parse_policy(text, str(path))


def parse_policy(text: str, filename: str = "<policy>") -> Policy:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        reason = getattr(e, "problem", None) or str(e)
        raise PolicyError([Problem(filename, line, "", f"not valid YAML: {reason}")]) from None
    if node is None:
        raise PolicyError([Problem(filename, 1, "", "the file is empty")])
    lines: dict[Loc, int] = {}
    data = _to_python(node, (), lines)
    if not isinstance(data, dict):
        raise PolicyError([Problem(filename, node.start_mark.line + 1, "", "the top level must be a mapping")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        raise PolicyError([_problem(err, filename, lines) for err in e.errors()]) from None
    problems = []
    for loc, reason in cross_check(policy):
        loc = _as_written(loc, lines)
        problems.append(Problem(filename, _line(loc, lines), _field(loc), reason))
    if problems:
        raise PolicyError(problems)
    return policy


def _to_python(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    """Builds plain data from a composed YAML node, noting the line of every path."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            out[key] = _to_python(value_node, (*loc, key), lines)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return _to_python(node, (), {})
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _problem(err: Any, filename: str, lines: dict[Loc, int]) -> Problem:
    loc: Loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        loc = loc + cause.loc
        reason = str(cause)
    else:
        reason = err["msg"].removeprefix("Value error, ")
    # Pydantic names union members and validators in ``loc``; keep what matches the file.
    shown = tuple(part for part in loc if not (isinstance(part, str) and (
        part.startswith("function-") or part in ("int", "str", "float"))))
    if err["type"] == "extra_forbidden":
        reason = "unknown field (check the spelling)"
    return Problem(filename, _line(shown, lines), _field(shown), reason)


def _as_written(loc: Loc, lines: dict[Loc, int]) -> Loc:
    """The path as the file spells it when a shorthand was used (``backend:``, ``model:`` on a route)."""
    if loc in lines:
        return loc
    short = list(loc)
    if len(short) >= 4 and short[0] == "routes" and short[2] == "variants" and short[3] == 0:
        del short[2:4]
    if len(short) >= 3 and short[0] == "routes" and short[2] == "match":
        del short[2]
    return tuple(short) if tuple(short) in lines else loc


def _line(loc: Loc, lines: dict[Loc, int]) -> int:
    """The line of the deepest part of ``loc`` that is written in the file."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 0


def _field(loc: Loc) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
