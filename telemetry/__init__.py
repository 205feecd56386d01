"""Tracing, metrics and logs setup, and the names of every metric; imports nothing of meshgate."""
