"""meshgate's network edges and the per-request pipeline."""

__version__ = "0.1.0"
