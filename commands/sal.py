"""`!log` writes a Server Admin Log entry; `!sal` shows the latest ones.

`!log [<project>] <message>` takes stashbot's form: a first word naming a configured SAL
project chooses it; a near miss is refused with a did-you-mean (stashbot would reject it);
otherwise the room's default project is used and the reply says which and why.
"""

from __future__ import annotations

import difflib

from bot.config.auth import Role
from bot.config.model import Config
from bot.core.errors import UserError
from bot.store.sal import SalEntry, actor_name
from commands.parse import Invocation
from commands.spec import Context, command, did_you_mean

MAX_LOG = 400


def default_project(config: Config, room: str, component: str | None) -> tuple[str, str]:
    """The SAL project `!log` uses without one, and why: the room's `sal.rooms` entry, the
    named component's `sal_project`, the one project of the components announcing in this
    room, else the bot's first configured project."""
    if room in config.sal.rooms:
        return config.sal.rooms[room], f"default for {room}"
    comp = config.components.get(component or "")
    if comp is not None and comp.sal_project:
        return comp.sal_project, f"default for {component}"
    here = {
        c.sal_project
        for c in config.components.values()
        if c.sal_project and (c.room or config.chat.default_room) == room
    }
    if len(here) == 1:
        return here.pop(), f"default for {room}"
    projects = config.sal_projects
    return (projects[0] if projects else "deploybot"), "the bot's default"


def choose_project(config: Config, text: str) -> tuple[str | None, str]:
    """(project, message) when the first word names a SAL project, else (None, text);
    a UserError for a near miss (stashbot rejects unknown projects)."""
    first, _, rest = text.partition(" ")
    projects = config.sal_projects
    if first in projects:
        if not rest.strip():
            raise UserError(f"nothing to log for {first}: !log {first} <message>")
        return first, rest.strip()
    near = difflib.get_close_matches(first, projects, n=1, cutoff=0.75)
    if f"tools.{first}" in projects:
        near = [f"tools.{first}"]
    if near and first not in config.components:
        raise UserError(
            f"unknown SAL project {first[:60]!r}; did you mean {near[0]}?"
            f" (!log {near[0]} <message>); nothing logged"
        )
    return None, text


def named_component(config: Config, text: str) -> str | None:
    """The first configured component the message names, however it is written
    (`builds-api:`, `BUILDS-API`, `(builds-api)`): the role check must not miss it."""
    for word in text.split():
        name = word.strip(".,:;!?()[]{}<>\"'`*").lower()
        if name in config.components:
            return name
    return None


@command(
    "log",
    role=Role.deployer,
    usage="[project] <message>",
    summary="write a Server Admin Log entry (to the room's default SAL project, or <project>)",
    examples=[
        ("!log restarted builds-api pods T123", r"logged #\d+ to \S+ \(.*default"),
        ("!log tools restarted builds-api pods T123", r"logged #\d+ to tools:"),
    ],
)
async def log_(ctx: Context, inv: Invocation) -> str:
    text = inv.rest.strip()
    if not text:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    if len(text) > MAX_LOG:
        raise UserError(f"message longer than {MAX_LOG} characters; put details in a task")
    project, text = choose_project(ctx.config, ctx.services.redactor.outside(text))
    component = named_component(ctx.config, text)
    if component is not None:  # an entry filed under a component needs the role there
        ctx.require(Role.deployer, component)
    why = ""
    if project is None:
        project, reason = default_project(ctx.config, ctx.message.room, component)
        why = f" ({reason}; !log <project> <message> to choose)"
    entry = await ctx.services.sal.record(
        SalEntry(
            actor=ctx.actor,
            action="log",
            message=f"{actor_name(ctx.actor)}: {text}",
            component=component,
            tasks=inv.tasks,
            result="ok",
            sal_project=project,
        )
    )
    return f"logged #{entry.id} to {project}{why}: {entry.message}"


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
