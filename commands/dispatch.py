"""From a chat Message to a reply: parse, find the command, check the role, run the handler.

`submit` runs each line in its own task (bounded), ordered only where it matters
(`commands.lanes`), so a deploy never makes another user's `!whoami` wait. Every command
answers within `bot.reply_timeout` seconds: with its result, or with "working on it" followed
later by the result — unless its user was already told something by then (a reply, or its
own news in the room they read: `bot.delivery.outbox.speaker`). Errors a user caused are one
line; anything unexpected is logged with its traceback and reported as one line without
details.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from datetime import UTC, datetime

from bot.chat.base import Message
from bot.config.auth import Role
from bot.core.errors import Refused, UserError
from bot.core.health import is_store_failure, store_reason
from bot.core.tasks import TaskSet
from bot.core.text import chat_safe, one_line
from bot.delivery.outbox import Speaker, speaker
from bot.services import Services
from bot.store.queue import QueueEntry
from bot.store.sal import SalEntry, actor_name, current_action
from commands.lanes import Lanes, lane_keys
from commands.parse import Invocation, ParseError, parse_line
from commands.spec import Capabilities, CommandSet, Context, addressed, did_you_mean

log = logging.getLogger("deploybot.commands")
EDIT_NOT_RUN = "edits are not run; the original was: {did}"
EDIT_UNKNOWN = (
    "edits are not run; no record of the original here: check {prefix}sal before sending it again"
)
MISSED = "missed while I was disconnected ({window}): send it again"
CUT_OFF = "I was cut off from {window}: a command sent then did not reach me; send it again"


def window(cut: tuple[float, float], between: str = "–") -> str:
    """`12:41–12:42 UTC`: when the bot could not hear a room."""
    start, end = (datetime.fromtimestamp(t, UTC).strftime("%H:%M") for t in cut)
    return f"{start}{between}{end} UTC"


MAX_RUNNING = 64  # chat lines handled at once; more get one "busy" line


class Dispatcher:
    def __init__(self, services: Services, caps: Capabilities, commands: CommandSet):
        self.services = services
        self.caps = caps
        self.commands = commands
        self._edits_answered: dict[tuple[str, str, str], None] = {}  # bounded, oldest first
        # (adapter, room, nick) -> what their latest command did (its first line), for an edit
        self._did: dict[tuple[str, str, str], str] = {}
        self.lanes = Lanes()
        self._running = TaskSet()

    async def submit(self, msg: Message) -> None:
        """Handle `msg` in its own task and return at once (the chat adapters' entry)."""
        if len(self._running) >= MAX_RUNNING:
            await self._reply(msg, "too many commands in progress; try again in a minute")
            return
        self._running.spawn(self._handle_logged(msg), name="command")

    async def _handle_logged(self, msg: Message) -> None:
        try:
            await self.handle(msg)
        except Exception:  # nothing a user types may take the bot down
            log.exception("handling a chat line failed")

    async def stop(self, timeout: float) -> None:
        """Let running commands finish for up to `timeout` s, then cancel the rest."""
        await self._running.wait(timeout)
        self._running.cancel()

    async def run_queued(self, entry: QueueEntry) -> None:
        """A queued command's turn: the line runs again as its owner typed it, through the
        same parse, role check, handler and gates as a fresh one; its lines name the owner."""
        msg = Message(entry.adapter, entry.room, entry.nick, entry.command, entry.identities,
                      private=entry.private)  # fmt: skip
        await self.handle(msg, queued=entry)

    async def handle(self, msg: Message, queued: QueueEntry | None = None) -> None:
        """Answer one chat line (ignores lines that are not for the bot)."""
        cfg = self.services.config
        if msg.edit_of is not None or msg.replayed:
            await self._not_run(msg)
            return
        try:
            inv = parse_line(msg.text, cfg.bot.prefix, cfg.bot.nick, msg.private, msg.to_nick)
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
        ctx = Context(self.services, self.caps, msg, self.commands, spec, queued=queued)
        unknown_flags = inv.flags - spec.flags
        if unknown_flags:
            bad = sorted(unknown_flags)[0]
            hint = did_you_mean(bad, spec.flags)
            known = f"; usage: {spec.syntax(cfg.bot.prefix)}"
            await ctx.reply(
                f"{spec.name}: unknown option --{bad}"
                + (hint.replace("mean ", "mean --") if hint else known)
            )
            return
        keys = lane_keys(msg, spec.role, inv.flags)
        typed = " ".join([f"{cfg.bot.prefix}{spec.name}", *inv.args])
        self._remember(msg, f"{one_line(typed, 80)} (still running)")
        voice = Speaker(msg.adapter, msg.room)
        context = contextvars.copy_context()
        context.run(speaker.set, voice)  # what its task (and the tasks it starts) say counts
        task = asyncio.get_running_loop().create_task(
            self._in_lane(keys, ctx, inv), context=context
        )
        done, _ = await asyncio.wait({task}, timeout=cfg.bot.reply_timeout)
        # one that spoke (a reply, or news its user sees) is visibly at work: "working on
        # it…" would only follow that news, as the later reply overtakes the queued news
        if not done and not ctx.replied and not voice.told and queued is None:
            await ctx.reply(f"{spec.name}: working on it…")
        text, result = await task
        self.services.metrics.commands.labels(spec.name, result).inc()
        first = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
        self._remember(
            msg, one_line(first, 120) if first else f"{one_line(typed, 80)} (its lines are above)"
        )
        for line in (text or "").splitlines():
            if line.strip():
                await ctx.reply(line)

    async def _not_run(self, msg: Message) -> None:
        """A correction, replayed history or a delayed line is never run; an edited command
        gets one answer per corrected message; a command said while the bot was cut off
        (read from history after the reconnect) gets one "missed" line. The adapter's notice
        of a cut it has no history for is said once in its room."""
        cfg = self.services.config
        if msg.cut_off is not None and not msg.text and not msg.nick:
            self.services.metrics.commands.labels("(cut off)", "refused").inc()
            await self._reply(msg, CUT_OFF.format(window=window(msg.cut_off, " to ")))
            return
        try:
            command = (
                parse_line(msg.text, cfg.bot.prefix, cfg.bot.nick, msg.private, msg.to_nick)
                is not None
            )
        except ParseError:
            command = True
        if command and msg.cut_off is not None and msg.edit_of is None:
            self.services.metrics.commands.labels("(missed)", "refused").inc()
            await self._reply(msg, MISSED.format(window=window(msg.cut_off)))
            return
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
        did = self._did.get((msg.adapter, msg.room, msg.nick))
        await self._reply(
            msg, EDIT_NOT_RUN.format(did=did) if did else EDIT_UNKNOWN.format(prefix=cfg.bot.prefix)
        )

    def _remember(self, msg: Message, did: str) -> None:
        """What `msg`'s command did, for the answer to an edit of it (the latest per nick
        and room: an edit names the message it corrects by an id only the client knows)."""
        key = (msg.adapter, msg.room, msg.nick)
        self._did.pop(key, None)
        self._did[key] = did
        if len(self._did) > 1000:
            del self._did[next(iter(self._did))]

    async def _log_refusal(self, ctx: Context, inv: Invocation, reason: str) -> None:
        """Every refusal of a mutating command is one SAL entry, whoever asked."""
        cfg = self.services.config
        component = next((a for a in inv.args if a in cfg.components), None)
        env = next((a for a in inv.args if a in cfg.env_names), None)
        env_cfg = cfg.env(env) if env else None
        await self.services.sal.record(
            SalEntry(
                actor=ctx.actor, action=ctx.spec.name, component=component, env=env,
                message=f"{actor_name(ctx.actor)}: {ctx.spec.name} refused: {reason}",
                tasks=list(inv.tasks), result="refused",
                sal_project=env_cfg.sal_project if env_cfg else None,
            )
        )  # fmt: skip

    async def _reply(self, msg: Message, text: str) -> None:
        await self.services.outbox.enqueue(
            msg.room,
            self.services.redactor(chat_safe(addressed(msg, text))),
            adapter=msg.adapter,
            priority=1,
        )

    async def _in_lane(
        self, keys: tuple[str, ...], ctx: Context, inv: Invocation
    ) -> tuple[str | None, str]:
        async with self.lanes.hold(keys):
            return await self._run(ctx, inv)

    async def _run(self, ctx: Context, inv: Invocation) -> tuple[str | None, str]:
        """The handler's answer; every way it can end is a reply, whatever state the store
        is in (a refusal whose SAL entry cannot be written is still said)."""
        spec = ctx.spec
        current_action.set(uuid.uuid4().hex[:12])  # every SAL entry of this command shares it
        try:
            return await self._answer(ctx, inv)
        except Refused as exc:
            return await self._refused(ctx, inv, exc), "refused"
        except UserError as exc:
            return f"{spec.name}: {exc}", "error"
        except Exception as exc:
            if is_store_failure(exc):
                return self._store_failed(f"{spec.name}: failed", exc), "store_failed"
            log.exception("command %s failed", spec.name)
            return f"{spec.name}: internal error (see the bot log); check !status", "crashed"

    async def _answer(self, ctx: Context, inv: Invocation) -> tuple[str | None, str]:
        spec = ctx.spec
        ctx.require(spec.role)
        if spec.role != Role.anyone:  # a change is never cut off halfway
            return await spec.handler(ctx, inv), "ok"
        limit = self.services.config.bot.read_timeout
        try:
            async with asyncio.timeout(limit):
                return await spec.handler(ctx, inv), "ok"
        except TimeoutError:
            return (
                f"{spec.name}: no answer within {limit:g}s (GitLab, the cluster or the"
                " registry is slow); nothing changed; try again later",
                "timeout",
            )

    async def _refused(self, ctx: Context, inv: Invocation, exc: Refused) -> str:
        """The refusal, logged in the SAL for mutating commands when the store can write."""
        said = f"{ctx.spec.name}: refused: {exc}"
        if ctx.spec.role < Role.deployer or exc.logged:
            return said
        try:
            await self._log_refusal(ctx, inv, str(exc))
        except Exception as failure:
            if not is_store_failure(failure):
                raise
            return self._store_failed(said + " (not in the SAL", failure, closing=")")
        return said

    def _store_failed(self, head: str, exc: BaseException, closing: str = "") -> str:
        """The one answer for a store failure, wherever it was raised: /ready says 503 until a
        write succeeds, the log has one line, the user hears what happened."""
        self.services.outbox.health.failed(exc)
        log.error("command %s: the store cannot write: %s", head.split(":", 1)[0], exc)
        return (
            f"{head}: the bot's store cannot write ({store_reason(exc)}){closing}; this reply"
            " is not saved; tell the bot's operator (see /ready)"
        )
