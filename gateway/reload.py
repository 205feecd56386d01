"""Live policy changes: validate, compile beside the old Snapshot, swap one reference, keep the version.

Sources: the policy file (watched; SIGHUP forces a look), the admin API, rollbacks. An invalid
policy is rejected, logged and counted, and the previous one keeps serving. In-flight requests
finish on the Snapshot they started with.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.pipeline import SnapshotRef
from policies.diff import diff_policies
from policies.history import PolicyHistory, Version, text_hash
from policies.loader import PolicyError, parse_policy
from policies.model import Policy
from policies.snapshot import compile_policy
from telemetry.metrics import GatewayMetrics

log = logging.getLogger("meshgate.policy")


@dataclass(frozen=True)
class Applied:
    version: Version
    changed: bool
    diff: list[str]


class PolicyController:
    def __init__(self, snapshots: SnapshotRef, history: PolicyHistory, metrics: GatewayMetrics, text: str,
                 version: Version, path: Path | None = None, watch_interval: float = 1.0) -> None:
        self.snapshots = snapshots
        self.history = history
        self.metrics = metrics
        self.path = path
        self.watch_interval = watch_interval
        self.text = text
        self._stat: tuple[int, int] | None = self._file_stat()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.version = version

    @staticmethod
    def starting_version(history: PolicyHistory, text: str, path: Path | None) -> Version:
        """The version a gateway starts on: a restart on the same policy keeps its number."""
        latest = history.latest()
        if latest is not None and latest.sha256 == text_hash(text):
            return latest
        return history.record(text, "start", "meshgate", str(path or ""))

    @property
    def policy(self) -> Policy:
        return self.snapshots.current.policy

    async def apply(self, text: str, *, source: str, who: str, filename: str = "<admin>",
                    dry_run: bool = False, note: str = "") -> Applied:
        """Validates and applies ``text``; raises PolicyError (nothing changes) when it is invalid."""
        async with self._lock:
            try:
                policy = parse_policy(text, filename)
            except PolicyError:
                self.metrics.reloads.labels(source, "rejected").inc()
                raise
            diff = diff_policies(self.policy, policy)
            if policy.listen != self.policy.listen:
                diff.append("! listen addresses change only on restart")
            if dry_run or text_hash(text) == self.version.sha256:
                return Applied(self.version, False, diff)
            version = self.history.record(text, source, who, note)
            old = self.snapshots.current
            new = compile_policy(policy, version.number, previous=old)
            new.start()
            self.snapshots.current = new
            await old.close(keep=new.pools)
            self.text = text
            self.version = version
            self.metrics.policy_version.set(version.number)
            self.metrics.reloads.labels(source, "applied").inc()
            log.info("policy version %d applied from %s by %s: %s", version.number, source, who,
                     "; ".join(diff) or "no routing change")
            return Applied(version, True, diff)

    async def rollback(self, number: int | None, who: str) -> Applied:
        """Re-applies an earlier version (default: the one before the current) as a new version."""
        if number is None:
            earlier = [v for v in self.history.versions() if v.number < self.version.number
                       and v.sha256 != self.version.sha256]
            if not earlier:
                raise KeyError("no earlier policy version to roll back to")
            number = earlier[-1].number
        text = self.history.text(number)
        return await self.apply(text, source="rollback", who=who, filename=f"<version {number}>",
                                note=f"rollback to version {number}")

    def diff(self, a: int, b: int) -> list[str]:
        return diff_policies(parse_policy(self.history.text(a), f"<version {a}>"),
                             parse_policy(self.history.text(b), f"<version {b}>"))

    # the policy file
    def _file_stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def reload_file(self, source: str = "file") -> Applied | None:
        """Applies the policy file if its content changed; logs and keeps serving if it is invalid."""
        if self.path is None:
            return None
        self._stat = self._file_stat()
        try:
            text = await asyncio.to_thread(self.path.read_text)
        except OSError as e:
            log.error("policy file %s unreadable, keeping version %d: %s", self.path, self.version.number, e)
            self.metrics.reloads.labels(source, "rejected").inc()
            return None
        if text_hash(text) == self.version.sha256:
            return None
        try:
            return await self.apply(text, source=source, who=f"file {self.path}", filename=str(self.path))
        except PolicyError as e:
            log.error("policy file rejected, version %d keeps serving:\n%s", self.version.number, e)
            return None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval)
            if self._file_stat() != self._stat:
                await self.reload_file()

    def start(self) -> None:
        if self.path is not None and self.watch_interval > 0:
            self._task = asyncio.create_task(self._watch(), name="policy-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
