"""From a chat Message to a reply: parse, find the command, check the role, run the handler.

Every command answers within `bot.reply_timeout` seconds: with its result, or with
"working on it" followed later by the result. Errors a user caused are one line; anything
unexpected is logged with its traceback and reported as one line without details.
"""

from __future__ import annotations

import asyncio
import logging

from bot.chat.base import Message
from bot.core.errors import Refused, UserError
from bot.services import Services
from commands.parse import Invocation, ParseError, parse_line
from commands.spec import Capabilities, CommandSet, Context

log = logging.getLogger("deploybot.commands")
EDIT_NOT_RUN = "edits are not run; send the command again"


class Dispatcher:
    def __init__(self, services: Services, caps: Capabilities, commands: CommandSet):
        self.services = services
        self.caps = caps
        self.commands = commands
        self._edits_answered: dict[tuple[str, str, str], None] = {}  # bounded, oldest first

    async def handle(self, msg: Message) -> None:
        """Answer one chat line (ignores lines that are not for the bot)."""
        cfg = self.services.config
        if msg.edit_of is not None or msg.replayed:
            await self._not_run(msg)
            return
        try:
            inv = parse_line(msg.text, cfg.bot.prefix, cfg.bot.nick)
        except ParseError as exc:
            self.services.metrics.commands.labels("(invalid)", "refused").inc()
            await self._reply(msg, str(exc))
            return
        if inv is None:
            return
        spec = self.commands.get(inv.name)
        if spec is None:
            self.services.metrics.commands.labels("(unknown)", "unknown").inc()
            hint = self.commands.suggest(inv.name)
            name = inv.name[:30]
            await self._reply(
                msg,
                f"unknown command {cfg.bot.prefix}{name}"
                + (f"; did you mean {cfg.bot.prefix}{hint}?" if hint else "; try !help"),
            )
            return
        ctx = Context(self.services, self.caps, msg, self.commands, spec)
        unknown_flags = inv.flags - spec.flags
        if unknown_flags:
            await ctx.reply(f"{spec.name}: unknown option --{sorted(unknown_flags)[0]}")
            return
        task = asyncio.ensure_future(self._run(ctx, inv))
        done, _ = await asyncio.wait({task}, timeout=cfg.bot.reply_timeout)
        if not done and not ctx.replied:  # a handler that spoke already is visibly at work
            await ctx.reply(f"{spec.name}: working on it…")
        text, result = await task
        self.services.metrics.commands.labels(spec.name, result).inc()
        for line in (text or "").splitlines():
            if line.strip():
                await ctx.reply(line)

    async def _not_run(self, msg: Message) -> None:
        """A correction, replayed history or a delayed line is never run; an edited command
        gets one answer per corrected message."""
        cfg = self.services.config
        try:
            command = parse_line(msg.text, cfg.bot.prefix, cfg.bot.nick) is not None
        except ParseError:
            command = True
        if not command or msg.edit_of is None:
            if command:
                log.info("not running a replayed/delayed line from %s in %s", msg.nick, msg.room)
            return
        key = (msg.adapter, msg.room, msg.edit_of or msg.text)
        if key in self._edits_answered:
            return
        self._edits_answered[key] = None
        if len(self._edits_answered) > 1000:
            del self._edits_answered[next(iter(self._edits_answered))]
        self.services.metrics.commands.labels("(edit)", "refused").inc()
        await self._reply(msg, EDIT_NOT_RUN)

    async def _reply(self, msg: Message, text: str) -> None:
        await self.services.outbox.enqueue(
            msg.room, self.services.redactor(text), adapter=msg.adapter, priority=1
        )

    async def _run(self, ctx: Context, inv: Invocation) -> tuple[str | None, str]:
        spec = ctx.spec
        try:
            ctx.require(spec.role)
            return await spec.handler(ctx, inv), "ok"
        except Refused as exc:
            return f"{spec.name}: refused: {exc}", "refused"
        except UserError as exc:
            return f"{spec.name}: {exc}", "error"
        except Exception:
            log.exception("command %s failed", spec.name)
            return f"{spec.name}: internal error (see the bot log); check !status", "crashed"
