"""A small client for the admin API, used by the ``meshgate policy ...`` commands."""

from __future__ import annotations

import getpass
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class AdminError(Exception):
    pass


def read_token(explicit: str | None, state_dir: Path) -> str | None:
    """The admin token: given on the command line, else the one `meshgate up`/`serve` saved."""
    if explicit:
        return explicit
    saved = state_dir / "admin-token"
    return saved.read_text().strip() if saved.exists() else None


class AdminClient:
    def __init__(self, base_url: str, token: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        request.add_header("X-Meshgate-Who", f"{getpass.getuser()} via meshgate cli")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                data = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                detail = json.loads(payload)
            except ValueError:
                raise AdminError(f"{e.code}: {payload[:300]!r}") from None
            problems = "\n".join(detail.get("problems", []))
            raise AdminError(f"{detail.get('error', e.code)}" + (f"\n{problems}" if problems else "")) from None
        except urllib.error.URLError as e:
            raise AdminError(f"cannot reach the admin API at {self.base}: {e.reason}") from None
        return json.loads(data) if "json" in kind else data.decode()
