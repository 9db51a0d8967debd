"""Unasked lines: which room a component's announcements go to, queued in the outbox.

After a line is queued (durably, as before) it is also handed to in-process listeners, such
as the web pages' live feed; a listener never delays or changes what goes to chat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.config.model import Config
from bot.core.redact import Redactor
from bot.core.text import chat_safe
from bot.delivery.outbox import Outbox

log = logging.getLogger("deploybot.announcer")


@dataclass(frozen=True)
class Announced:
    """One announcement as it was queued for chat (already redacted)."""

    text: str
    component: str | None
    key: str | None
    final: bool
    room: str
    at: float


Listener = Callable[[Announced], None]


class Announcer:
    def __init__(self, config: Config, outbox: Outbox, redactor: Redactor) -> None:
        self.config = config
        self.outbox = outbox
        self.redactor = redactor
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every announcement after it is queued; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def room_for(self, component: str | None) -> str:
        """The chat room for a component's announcements (fallback: the default room)."""
        comp = self.config.components.get(component or "")
        return (comp.room if comp and comp.room else None) or self.config.chat.default_room

    async def announce(
        self, text: str, *, component: str | None = None, key: str | None = None,
        final: bool = False, room: str | None = None, short: str | None = None,
    ) -> None:  # fmt: skip
        """Queue an unasked line for the component's room (durable, flood-controlled).

        `short` (e.g. "builds-api #41 success 3m") replaces `text` when a backlog is packed.
        """
        room = room or self.room_for(component)
        text = self.redactor(chat_safe(text))
        short = self.redactor(chat_safe(short)) if short else None
        await self.outbox.enqueue(room, text, key=key, final=final, short=short)
        if self._listeners:
            said = Announced(text, component, key, final, room, time.time())
            for listener in list(self._listeners):
                try:
                    listener(said)
                except Exception:  # a page feed must never break chat announcements
                    log.exception("an announcement listener failed")
