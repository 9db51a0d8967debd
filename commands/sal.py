"""`!log` writes a Server Admin Log entry; `!sal` shows the latest ones."""

from __future__ import annotations

from bot.core.auth import Role
from bot.core.errors import UserError
from bot.core.sal import SalEntry, actor_name
from commands.parse import Invocation
from commands.spec import Context, command

MAX_LOG = 400


@command(
    "log",
    role=Role.deployer,
    usage="<message>",
    summary="write a Server Admin Log entry",
    examples=[("!log restarted builds-api pods T123", r"logged #\d+")],
)
async def log_(ctx: Context, inv: Invocation) -> str:
    text = inv.rest.strip()
    if not text:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    if len(text) > MAX_LOG:
        raise UserError(f"message longer than {MAX_LOG} characters; put details in a task")
    component = next((a for a in inv.args if a in ctx.config.components), None)
    if component is not None:  # an entry filed under a component needs the role there
        ctx.require(Role.deployer, component)
    entry = await ctx.services.sal.record(
        SalEntry(
            actor=ctx.actor,
            action="log",
            message=f"{actor_name(ctx.actor)}: {text}",
            component=component,
            tasks=inv.tasks,
            result="ok",
        )
    )
    return f"logged #{entry.id}: {entry.message}"


def _line(e: SalEntry) -> str:
    where = " ".join(x for x in (e.component, e.env) if x)
    return f"#{e.id} {e.ts} [{e.action}{' ' + where if where else ''}] {e.message}"


@command(
    "sal",
    role=Role.anyone,
    usage="[component|nick] [N]",
    summary="the last N Server Admin Log entries (default 5), for a component or a person",
    examples=[("!sal", r"#\d+ |no SAL entries"), ("!sal builds-api 3", r"#\d+ |no SAL entries")],
)
async def sal(ctx: Context, inv: Invocation) -> str:
    component = actor = None
    limit = 5
    for arg in inv.args:
        if arg.isdigit():
            limit = max(1, min(int(arg), 20))
        elif arg in ctx.config.components:
            component = arg
        elif len(arg) <= 64 and arg.replace("-", "").replace("_", "").replace(".", "").isalnum():
            actor = arg
        else:
            raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    entries = await ctx.services.sal.query(component=component, actor=actor, limit=limit)
    if not entries:
        return "no SAL entries" + (f" for {component or actor}" if component or actor else "")
    lines = [_line(e) for e in entries]
    if len(lines) > 3:
        # chat replies stay short: the newest two, then a link to the full list
        query = f"component={component}" if component else f"actor={actor}" if actor else ""
        url = f"{ctx.config.bot.public_url}/sal?{query}&limit={limit}".replace("?&", "?")
        return "\n".join(lines[:2]) + f"\n… {len(lines) - 2} more: {url}"
    return "\n".join(lines)
