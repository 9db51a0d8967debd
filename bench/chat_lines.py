"""Benchmark: how long the lines of the README's demo session are, as IRC messages.

Runs `deploybot demo` over the session README.md shows (`!status`, `!deploy`, `!promote`,
`!where`, `!apply`, `!rollback`, `!status`, `!sal`) and measures every line the bot said
(replies and announcements) as the IRC message it would be in the component's channel:
`PRIVMSG #toolforge-deploy :<text>`, in UTF-8 bytes. Reported: the median and the longest
(goal: max <= 400, one IRC message with room for the sender's mask; median <= 160).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from tests.support.real import deploybot
from tests.support.session import free_port

ROOM = "#toolforge-deploy"
SESSION = [
    "!status",
    "!deploy builds-api latest",
    "!promote builds-api",
    "!where builds-api latest",
    "!apply builds-api tools",
    "!rollback builds-api tools",
    "!status builds-api tools",
    "!sal builds-api tools 3",
]


def said(directory: Path) -> list[str]:
    """The bot's lines in the README session (the banner and log lines left out)."""
    res = subprocess.run(
        [*deploybot(), "demo", "--dir", str(directory), "--listen", f"127.0.0.1:{free_port()}"],
        input="".join(line + "\n" for line in SESSION), capture_output=True, text=True,
        timeout=300, check=True,
    )  # fmt: skip
    lines = res.stdout.splitlines()[1:]
    return [line.split("] ", 1)[1] if line.startswith("[#") else line for line in lines]


def figures(lines: list[str]) -> dict[str, object]:
    sizes = [len(f"PRIVMSG {ROOM} :{line}".encode()) for line in lines]
    return {
        "bench": "chat_lines",
        "lines": len(sizes),
        "median_bytes": statistics.median(sizes),
        "max_bytes": max(sizes),
        "over_400": sum(size > 400 for size in sizes),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-chat-lines-") as tmp:
        print(json.dumps(figures(said(Path(tmp) / "demo"))))


if __name__ == "__main__":
    main()
