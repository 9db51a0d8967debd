"""Bump intents: what the bot is about to push, written down before it pushes.

On the plain git forge a bump is a commit pushed straight to the branch; its SAL entries are
written after the push. A `kill -9` between the two once left a pin change on main with no
SAL entry and no announcement. So the planned commit (and everything the SAL entries need)
is written to `<state_dir>/intents/<sha>.json` (fsynced) before the push and removed once the
entries are recorded. After a restart each leftover intent is checked against the remote:
pushed means its SAL entries are completed and announced; not pushed means nothing changed.
(A file, not a table: the store's schema belongs to the store's own work.)
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Intent:
    sha: str
    component: str
    version: str
    olds: dict[str, str | None]  # env -> version pinned before
    actor: str
    tasks: list[str]
    action: str


class Intents:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, sha: str) -> Path:
        if not sha.isalnum():
            raise ValueError(f"not a commit id: {sha!r}")
        return self.dir / f"{sha}.json"

    def write(self, intent: Intent) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(intent.sha)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(asdict(intent), f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def clear(self, sha: str) -> None:
        with contextlib.suppress(OSError):
            self._path(sha).unlink()

    def pending(self) -> list[Intent]:
        out = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                out.append(Intent(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return out
