"""Full pin diffs served over HTTP, since chat replies only carry a summary.

A diff is stored once under `<state_dir>/diffs/<id>.diff`, its id the first 16 hex digits of
its SHA-256 (so the same diff gets the same URL), and read back by `GET /diffs/<id>`. The text
(a pin diff, helm output, pod logs, test output: all from outside) goes through `redact`
before its id is taken and it is written, so the file on disk holds no secret either.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

_ID_RE = re.compile(r"[0-9a-f]{16}")


class DiffStore:
    def __init__(
        self, state_dir: Path, public_url: str, redact: Callable[[str], str] | None = None
    ) -> None:
        self.dir = state_dir / "diffs"
        self.public_url = public_url.rstrip("/")
        self.redact = redact or (lambda text: text)

    async def save(self, text: str, gate: tuple[str, str] | None = None) -> str:
        """Store the diff (redacted); return its URL. `gate` (component, env): only who holds
        the deployer role there may read it (pod logs, as `!logs` needs)."""
        text = self.redact(text)
        diff_id = hashlib.sha256(text.encode()).hexdigest()[:16]

        def write() -> None:
            self.dir.mkdir(parents=True, exist_ok=True)
            if gate is not None:
                (self.dir / f"{diff_id}.gate").write_text(" ".join(gate) + "\n")
            path = self.dir / f"{diff_id}.diff"
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(path)

        await asyncio.to_thread(write)
        return f"{self.public_url}/diffs/{diff_id}"

    async def load(self, diff_id: str) -> str | None:
        """The stored diff, or None for an unknown or malformed id."""
        if _ID_RE.fullmatch(diff_id) is None:
            return None
        path = self.dir / f"{diff_id}.diff"

        def read() -> str | None:
            try:
                return path.read_text(encoding="utf-8")
            except OSError:
                return None

        return await asyncio.to_thread(read)

    async def gate(self, diff_id: str) -> tuple[str, str] | None:
        """(component, env) whose deployer role a page needs, or None for an open page."""
        if _ID_RE.fullmatch(diff_id) is None:
            return None
        path = self.dir / f"{diff_id}.gate"

        def read() -> tuple[str, str] | None:
            try:
                component, env = path.read_text(encoding="utf-8").split()[:2]
            except (OSError, ValueError):
                return None
            return component, env

        return await asyncio.to_thread(read)
