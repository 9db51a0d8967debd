"""Unasked lines: which room a component's announcements go to, queued in the outbox."""

from __future__ import annotations

from bot.chat.outbox import Outbox
from bot.core.config import Config
from bot.core.redact import Redactor


class Announcer:
    def __init__(self, config: Config, outbox: Outbox, redactor: Redactor) -> None:
        self.config = config
        self.outbox = outbox
        self.redactor = redactor

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
        await self.outbox.enqueue(
            room or self.room_for(component),
            self.redactor(text),
            key=key,
            final=final,
            short=self.redactor(short) if short else None,
        )
