"""Policy files: what validates, and errors that name file, line, field and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.loader import PolicyError, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return [str(p) for p in info.value.problems]


def test_quickstart_example_is_valid() -> None:
    policy = load_policy(ROOT / "examples" / "quickstart.yaml")
    assert set(policy.backends) == {"demo-v1", "demo-v2"}
    assert policy.backends["demo-v1"].timeout == 5.0
    assert policy.backends["demo-v1"].launch is not None
    assert policy.backends["demo-v1"].launch.max_queue_delay == pytest.approx(0.002)
    assert [r.match.model for r in policy.routes] == ["demo"]
    assert policy.routes[0].shares() == [90.0, 10.0]


def test_canary_example_is_valid() -> None:
    policy = load_policy(ROOT / "examples" / "canary.yaml")
    assert [r.route_name for r in policy.routes] == ["fraud-acme-ab", "fraud"]


def test_durations_and_sizes_are_written_as_people_write_them() -> None:
    policy = parse_policy("""
limits: {max_body: 2MiB}
backends:
  b: {endpoints: [127.0.0.1:1], timeout: 250ms, connect_timeout: 2}
""")
    assert policy.limits.max_body == 2 * 2**20
    assert policy.backends["b"].timeout == pytest.approx(0.25)
    assert policy.backends["b"].connect_timeout == 2.0


def test_errors_name_file_line_field_and_reason() -> None:
    problems = _problems("""backends:
  b:
    endpoints: [127.0.0.1:9101, nohost]
    timeout: 5 parsecs
    tmeout: 3s
""")
    assert problems == [
        "p.yaml:3: backends.b.endpoints[1].address: 'nohost' is not host:port (e.g. 127.0.0.1:9101)",
        "p.yaml:4: backends.b.timeout: '5 parsecs' is not a duration such as 250ms, 5s or 2m",
        "p.yaml:5: backends.b.tmeout: unknown field (check the spelling)",
    ]


def test_route_to_unknown_backend_points_at_the_route_line() -> None:
    problems = _problems("""backends:
  b: {endpoints: [127.0.0.1:9101]}
routes:
  - model: demo
    backend: c
""")
    assert problems == ["p.yaml:5: routes[0].backend: unknown backend 'c'; defined: b"]


def test_same_model_routed_twice_is_an_error() -> None:
    problems = _problems("""backends:
  b: {endpoints: [127.0.0.1:9101]}
routes:
  - {model: demo, backend: b}
  - {model: demo, backend: b}
""")
    assert problems == [
        "p.yaml:5: routes[1].model: duplicate route name 'demo' (also routes[0]); give each route a name:",
        "p.yaml:5: routes[1]: unreachable: routes[0] ('demo') matches every request this route matches, "
        "and the first match wins",
    ]


def test_broken_yaml_names_the_line() -> None:
    problems = _problems("backends:\n  b: {endpoints: [127.0.0.1:1]\nroutes: []\n")
    assert len(problems) == 1 and problems[0].startswith("p.yaml:3: (top): not valid YAML")


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "absent.yaml")
    assert "cannot read" in str(info.value)


def test_field_reference_doc_is_generated_from_the_current_schema() -> None:
    from policies.reference import render

    assert (ROOT / "docs" / "policy-reference.md").read_text() == render() + "\n", \
        "docs/policy-reference.md is stale: run `meshgate policy reference > docs/policy-reference.md`"
