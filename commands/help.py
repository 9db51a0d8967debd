"""`!help` (generated from the command declarations) and `!whoami`."""

from __future__ import annotations

from bot.config.auth import Role, grants
from commands.parse import Invocation
from commands.spec import Context, command


@command(
    "help",
    role=Role.anyone,
    usage="[command]",
    summary="list the commands, or show one command's syntax and an example",
    examples=[
        ("!help", r"commands: .*help"),
        ("!help sal", r"!sal \[component\|nick\] \[env\] \[N\]"),
    ],
)
async def help_(ctx: Context, inv: Invocation) -> str:
    p = ctx.prefix
    if inv.args:
        name = inv.args[0].removeprefix(p).lower()
        spec = ctx.commands.get(name)
        if spec is None:
            hint = ctx.commands.suggest(name)
            if hint:
                return f"no command {name[:30]!r}; did you mean {p}help {hint}?"
            return f"no command {name[:30]!r}; commands: {' '.join(sorted(ctx.commands.specs))}"
        example = f"; e.g. {spec.examples[0].text}" if spec.examples else ""
        return f"{spec.syntax(p)} — {spec.summary} (role: {spec.role}){example}"
    names = " ".join(sorted(ctx.commands.specs))
    return f"commands: {names} — {p}help <command> for syntax and an example"


@command(
    "whoami",
    role=Role.anyone,
    usage="",
    summary="your verified identity and the roles it holds",
    examples=[("!whoami", r"you are ")],
)
async def whoami(ctx: Context, inv: Invocation) -> str:
    msg = ctx.message
    if not msg.identities:
        return f"you are {msg.nick} with no verified identity; role: anyone"
    held = grants(ctx.config.auth.rules, msg.identities)
    roles = "; ".join(g.describe() for g in held) if held else "anyone"
    ident = msg.identities[0]
    extra = ""
    if ident.startswith("irc-host:"):
        extra = " (not logged in to a services account)"
    return f"you are {ident}{extra}; roles: {roles}"
