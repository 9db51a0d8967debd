"""`!queue`: the deploy queue, and how `--queue` puts a deploy command in it.

`!apply`, `!deploy … to`, `!promote` and `!rollback` on a component+env that is busy (a
deploy runs) or locked by someone else are queued with `--queue`, or always with
`deploy.queue: true`; the queue (`bot.deploy.queue`) runs them when their turn comes.
"""

from __future__ import annotations

from bot.config.auth import Role
from bot.core.errors import Refused, UserError
from bot.deploy.queue import DeployQueue
from bot.store.queue import QueueEntry
from bot.store.sal import actor_name
from commands.parse import Invocation
from commands.spec import Context, command

SHOWN = 3  # entries named in chat; the count says how many more


def _queue(ctx: Context) -> DeployQueue:
    if ctx.caps.queue is None:
        raise UserError("the deploy queue is not running here")
    return ctx.caps.queue


async def maybe_queue(ctx: Context, inv: Invocation, component: str, env: str) -> str | None:
    """The reply when this command goes into the queue (busy or locked by someone else, and
    `--queue` or `deploy.queue`); None when it runs now (or is its queued turn already)."""
    if ctx.queued is not None or ctx.caps.queue is None:
        return None
    if "queue" not in inv.flags and not ctx.config.deploy.queue:
        return None
    ctx.require(Role.deployer, component, env)
    queue = ctx.caps.queue
    behind = await queue.blocker(component, env, ctx.actor)
    if behind is None:
        return None
    msg = ctx.message
    entry, place = await queue.add(component, env, msg.text.strip(), ctx.actor, msg.nick,
                                   msg.adapter, msg.room, msg.private, msg.identities,
                                   behind)  # fmt: skip
    ahead = f" ({place - 1} ahead of it)" if place > 1 else ""
    return (
        f"queued #{entry.id} behind {behind}{ahead}; it runs when {component} {env} is free,"
        f" every check made again then (!queue cancel {entry.id} takes it out)"
    )


def _line(e: QueueEntry) -> str:
    return f"#{e.id} {e.command} by {actor_name(e.actor)} (queued behind {e.behind})"


@command(
    "queue",
    role=Role.anyone,
    usage="[component] | cancel <N>",
    summary="the deploy queue (commands waiting for a busy or locked component); cancel <N>"
    " takes an entry out (its owner or an admin)",
    examples=[("!queue", r"queue is empty|#\d+"), ("!queue cancel 99", r"no queued entry #99")],
)
async def queue(ctx: Context, inv: Invocation) -> str:
    args = inv.args
    if args and args[0] == "cancel":
        if len(args) != 2 or not args[1].lstrip("#").isdigit():
            raise UserError(f"usage: {ctx.prefix}queue cancel <N>")
        return await _cancel(ctx, int(args[1].lstrip("#")))
    if len(args) > 1:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(args[0]) if args else None
    waiting = await _queue(ctx).table.waiting(component)
    if not waiting:
        return f"the deploy queue is empty{' for ' + component if component else ''}"
    more = len(waiting) - SHOWN
    lines = [_line(e) for e in waiting[:SHOWN]]
    if more > 0:
        lines[-1] += f" · and {more} more (!queue <component>)"
    return "\n".join(lines)


async def _cancel(ctx: Context, entry_id: int) -> str:
    q = _queue(ctx)
    entry = await q.table.get(entry_id)
    if entry is None or entry.state != "queued":
        state = f" (it is {entry.state})" if entry is not None else ""
        raise UserError(f"no queued entry #{entry_id}{state}; see !queue")
    if entry.actor != ctx.actor and ctx.role(entry.component, entry.env) < Role.admin:
        raise Refused(
            f"queue #{entry_id} is {actor_name(entry.actor)}'s: only they or an admin cancel it"
        )
    ctx.require(Role.deployer, entry.component, entry.env)
    if not await q.cancel(entry, ctx.actor):
        raise UserError(f"queue #{entry_id} is no longer waiting (its turn came); see !queue")
    return f"cancelled queue #{entry_id}: {entry.command}"
