"""Declarative configuration: the YAML models an SRE writes, their validation, and the
compiled, immutable ``Snapshot`` the request path reads."""
