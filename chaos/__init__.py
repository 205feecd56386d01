"""Fault injection and invariant-checking scenarios (a later issue)."""
