"""`!freeze` and `!unfreeze`: stop deploys to an environment for a while, said in chat.

A freeze from chat is stored (`bot.store.freezes`), announced in every room the bot speaks
in, written to the SAL, shown in `!status` and on the board, and refuses every deploy to the
environment until its end, except `--emergency` and an admin's `--force` with a reason
(`bot.deploy.freezes`). Planned freezes come from the config and the calendar feed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.config.auth import Role
from bot.core.errors import UserError
from bot.deploy.freezes import FreezeBook
from bot.store.freezes import ALL, shown
from bot.store.sal import actor_name
from commands.parse import Invocation
from commands.spec import Context, command

MAX_REASON = 300
MAX_FREEZE = timedelta(days=90)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_end(word: str, now: datetime) -> datetime:
    """`2h`, `90m`, `3d`, `1w`; or an ISO time or date in UTC (`2026-12-07`,
    `2026-12-07T09:00`, `2026-12-07T09:00Z`); or `HH:MM` (UTC, the next one to come)."""
    if m := re.fullmatch(r"([0-9]{1,5})([smhdw])", word):
        return now + timedelta(seconds=int(m.group(1)) * UNITS[m.group(2)])
    if m := re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", word):
        at = now.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)
        return at if at > now else at + timedelta(days=1)
    try:
        when = datetime.fromisoformat(word.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"{word[:40]!r} is neither a duration (2h, 90m, 3d) nor a time (2026-12-07T09:00Z,"
            " 17:00 UTC); nothing changed"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _envs(ctx: Context, word: str) -> list[str]:
    return [ALL] if word == "all" else [ctx.env(word)]


def _book(ctx: Context) -> FreezeBook:
    return ctx.deployer.freezes


def _require(ctx: Context, envs: list[str]) -> None:
    for env in ctx.config.env_names if envs == [ALL] else envs:
        ctx.require(Role.admin, None, env)


@command(
    "freeze",
    role=Role.admin,
    usage="<env|all> <duration|until> <reason> [T123]",
    summary="refuse every deploy to <env> (or all) until then, except --emergency and an"
    " admin's --force with a reason; announced, in !status and the SAL",
    examples=[('!freeze tools 2h "end of quarter"', r"froze tools until .* end of quarter")],
)
async def freeze(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) < 3:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    envs = _envs(ctx, inv.args[0])
    _require(ctx, envs)
    book = _book(ctx)
    now = book.now()
    end = parse_end(inv.args[1], now)
    if end <= now:
        raise UserError(f"{shown(end)} has passed; nothing changed")
    if end - now > MAX_FREEZE:
        raise UserError("a freeze from chat lasts at most 90 days (plan longer ones in the config)")
    reason = " ".join(inv.args[2:])[:MAX_REASON]
    made = await book.table.add(envs, now, end, reason, actor_name(ctx.actor), inv.tasks)
    line = f"deploy freeze started: {made.describe()}; deploys there are refused except --emergency"
    await book.say(made, "start", line, now, actor=ctx.actor)
    target = "all" if envs == [ALL] else envs[0]
    return f"froze {made.where} until {shown(end)}: {reason} (!unfreeze {target})"


@command(
    "unfreeze",
    role=Role.admin,
    usage="<env|all>",
    summary="lift the freezes said in chat for <env> (or all); planned ones stay",
    examples=[("!unfreeze tools", r"no freeze from chat|lifted")],
)
async def unfreeze(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) != 1:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    envs = _envs(ctx, inv.args[0])
    _require(ctx, envs)
    book = _book(ctx)
    now = book.now()
    mine = [f for f in await book.table.current(now) if envs == [ALL] or f.envs == tuple(envs)]
    for f in mine:
        await book.table.lift(f, ctx.actor, now)
        line = f"deploy freeze lifted by {actor_name(ctx.actor)}: {f.describe()}"
        await book.say(f, "end", line, now, actor=ctx.actor)
    still = [f for f in await book.active(None if envs == [ALL] else envs[0], now)]
    left = f"; still frozen: {still[0].describe()}" if still else ""
    if not mine:
        return f"no freeze from chat covers {inv.args[0]}; nothing changed{left}"
    ids = ", ".join(f"#{f.key[5:]}" for f in mine)
    return f"lifted freeze {ids}{left or '; deploys are open again'}"
