"""Every applied policy version, kept on disk so a rollback is one step and a restart knows its place.

One YAML file and one JSON metadata file per version in a directory, each written to a temp
file, fsynced and renamed, so a crash never leaves a half-written version.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Version:
    number: int
    sha256: str
    applied_at: str
    source: str  # start, file, sighup, admin, rollback
    who: str
    note: str = ""

    def summary(self) -> dict[str, object]:
        return asdict(self)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PolicyHistory:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._versions: dict[int, Version] = {}
        for meta in sorted(self.dir.glob("*.json")):
            try:
                v = Version(**json.loads(meta.read_text()))
            except (ValueError, TypeError):
                continue  # a foreign or damaged file is not a version
            if (self.dir / f"{v.number:06d}.yaml").exists():
                self._versions[v.number] = v

    def versions(self) -> list[Version]:
        return [self._versions[n] for n in sorted(self._versions)]

    def latest(self) -> Version | None:
        return self._versions[max(self._versions)] if self._versions else None

    def get(self, number: int) -> Version:
        try:
            return self._versions[number]
        except KeyError:
            raise KeyError(f"no policy version {number}; known: "
                           f"{', '.join(str(n) for n in sorted(self._versions)) or 'none'}") from None

    def text(self, number: int) -> str:
        self.get(number)
        return (self.dir / f"{number:06d}.yaml").read_text()

    def record(self, text: str, source: str, who: str, note: str = "") -> Version:
        number = max(self._versions, default=0) + 1
        version = Version(number, text_hash(text), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          source, who, note)
        self._write(self.dir / f"{number:06d}.yaml", text)
        self._write(self.dir / f"{number:06d}.json", json.dumps(asdict(version)))
        self._versions[number] = version
        return version

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
