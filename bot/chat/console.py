"""The console chat adapter: stdin lines in, stdout lines out, identity `console:<os user>`.

Interactive on a terminal. stdin is read as bytes and decoded as UTF-8 with invalid
sequences replaced (U+FFFD), so a stray Latin-1 byte is text, never an error. With piped stdin, each line is handled to completion (a deploy
included) before the next is read; at EOF `finished` is set so the app can flush the
outbox and exit.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

from bot.chat.base import Message, OnMessage

ROOM = "console"


def valid_text(line: str) -> str:
    """`line` with lone surrogates (undecodable bytes kept by surrogateescape) as U+FFFD."""
    return line.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class ConsoleAdapter:
    name = "console"
    rate_limited = False
    one_stream = True  # every room's lines go to the one stdout

    def __init__(
        self, stdin: TextIO | None = None, stdout: TextIO | None = None, user: str | None = None
    ):
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.user = user or getpass.getuser()
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_message: OnMessage | None = None

    @property
    def connected(self) -> bool:
        return True

    def room_states(self) -> dict[str, bool]:
        return {}  # the console has no rooms to join

    def ready_in(self) -> float:
        return 0.0

    def owns(self, room: str) -> bool:
        return room == ROOM

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self._task = asyncio.create_task(self._read_loop(), name="console-read")

    def _reader(self, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str]) -> None:
        # a daemon thread: a blocked readline must never keep the process from exiting
        raw = getattr(self.stdin, "buffer", None)  # bytes, so invalid UTF-8 cannot kill it
        if raw is not None:
            for data in iter(raw.readline, b""):
                loop.call_soon_threadsafe(lines.put_nowait, data.decode("utf-8", "replace"))
        else:
            for line in iter(self.stdin.readline, ""):
                loop.call_soon_threadsafe(lines.put_nowait, valid_text(line))
        loop.call_soon_threadsafe(lines.put_nowait, "")

    async def _read_loop(self) -> None:
        assert self._on_message is not None
        interactive = self.stdin.isatty()
        lines: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._reader, args=(loop, lines), daemon=True).start()
        try:
            while True:
                if interactive:
                    self.stdout.write("> ")
                    self.stdout.flush()
                line = await lines.get()
                if not line:
                    break
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                msg = Message(
                    adapter=self.name,
                    room=ROOM,
                    nick=self.user,
                    text=text,
                    identities=(f"console:{self.user}",),
                    private=True,
                )
                await self._on_message(msg)
        finally:
            self.finished.set()

    async def send(
        self, room: str, text: str, *, keys: Iterable[str] = (), reply: bool = False
    ) -> None:
        clean = "".join(ch if ch.isprintable() else " " for ch in text)
        prefix = "" if room == ROOM else f"[{room}] "
        line = prefix + clean + "\n"
        encoding = getattr(self.stdout, "encoding", None)
        if encoding:  # a terminal that cannot show a character gets "?", not an exception
            line = line.encode(encoding, "replace").decode(encoding)
        self.stdout.write(line)
        self.stdout.flush()

    async def stop(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
