"""`!log` writes a Server Admin Log entry; `!sal` shows the latest ones."""

from __future__ import annotations

from bot.core.auth import Role
from bot.core.errors import UserError
from bot.core.sal import SalEntry, actor_name
from commands.parse import Invocation
from commands.spec import Context, command, did_you_mean

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
    usage="[component|nick] [env] [N]",
    summary="the last N Server Admin Log entries (default 5), for a component, an "
    "environment or a person",
    examples=[
        ("!sal", r"#\d+ |no SAL entries"),
        ("!sal builds-api tools 3", r"#\d+ |no SAL entries"),
        ("!sal builds-api -1", r"N must be a whole number from 1 to 20"),
    ],
)
async def sal(ctx: Context, inv: Invocation) -> str:
    component = env = actor = None
    limit = 5
    usage = f"usage: {ctx.spec.syntax(ctx.prefix)}"
    for arg in inv.args:
        if arg.lstrip("+-").isdigit() or arg.startswith("-"):
            if not arg.isdigit() or not 1 <= int(arg) <= 20:
                raise UserError(f"N must be a whole number from 1 to 20, not {arg[:20]!r}; {usage}")
            limit = int(arg)
        elif arg in ctx.config.components and component is None:
            component = arg
        elif arg in ctx.config.env_names and env is None:
            env = arg
        elif (
            actor is None
            and len(arg) <= 64
            and arg.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            actor = arg
        else:
            raise UserError(usage)
    entries = await ctx.services.sal.query(component=component, env=env, actor=actor, limit=limit)
    if not entries:
        scope = " ".join(x for x in (component, env) if x)
        text = (
            "no SAL entries"
            + (f" for {scope}" if scope else "")
            + (f" by {actor}" if actor else "")
        )
        if actor is not None:
            names = [*ctx.config.components, *ctx.config.env_names]
            hint = did_you_mean(actor, names)
            text += (
                hint or f" ({actor!r} is not a component or environment, so it was read as a nick)"
            )
        return text
    lines = [_line(e) for e in entries]
    if len(lines) > 3:
        # chat replies stay short: the newest two, then a link to the full list
        params = {"component": component, "env": env, "actor": actor, "limit": str(limit)}
        query = "&".join(f"{k}={v}" for k, v in params.items() if v)
        url = f"{ctx.config.bot.public_url}/sal?{query}"
        return "\n".join(lines[:2]) + f"\n… {len(lines) - 2} more: {url}"
    return "\n".join(lines)
