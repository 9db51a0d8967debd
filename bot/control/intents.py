"""Bump intents: what the bot is about to publish, written down before it publishes.

A bump's SAL entries are written after the forge took the change (a push to the branch on the
plain git forge; a commit and a merge request on GitLab). A `kill -9` between the two once left
a pin change with no SAL entry and no announcement. So what the bump plans (and everything
its SAL entries need) is written to `<state_dir>/intents/<key>.json` (fsynced) before the
forge is called and removed once the entries are recorded. After a restart each leftover
intent is asked of the forge (`bot.control.recovery`): published means its SAL entries are
completed and announced; not published means nothing changed.

The key is the planned commit on the git forge. GitLab gives the commit its id, so there the
key is a fresh random id and `mark` holds what finds the change again (the bump branch, its
head before, the commit message, the MR). (A file, not a table: the store's schema belongs to
the store's own work.)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Intent:
    sha: str  # the planned commit; "" where the forge gives the id (GitLab)
    component: str
    version: str
    olds: dict[str, str | None]  # env -> version pinned before
    actor: str
    tasks: list[str]
    action: str
    mark: dict[str, Any] = field(default_factory=dict)  # what finds it on the forge
    key: str = ""  # the file's name: the sha, or a random id when there is none

    @staticmethod
    def new_key(sha: str) -> str:
        return sha or secrets.token_hex(10)

    @property
    def id(self) -> str:
        return self.key or self.sha


class Intents:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"not an intent key: {key!r}")
        return self.dir / f"{key}.json"

    def write(self, intent: Intent) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(intent.id)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(asdict(intent), f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def has(self, key: str) -> bool:
        return self._path(key).exists()

    def age(self, key: str) -> float:
        """Seconds since the intent was written (0 when unknown: treat it as young)."""
        try:
            return max(0.0, time.time() - self._path(key).stat().st_mtime)
        except OSError:
            return 0.0

    def clear(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def pending(self) -> list[Intent]:
        out = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                out.append(Intent(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return out
