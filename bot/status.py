"""The status report: one line per component, shared by `!status` and `GET /status`."""

from __future__ import annotations

from bot.git import GitError
from bot.services import Services


async def status_lines(services: Services, components: list[str], envs: list[str]) -> list[str]:
    """`<component>: pinned <env> <version> · <env> <version> [locked by x]` per component."""
    control = services.control
    if control is None:
        return ["no control repo configured: pins unknown"]
    try:
        await control.sync(max_age=10)
    except GitError as exc:
        return [f"control repo unreachable ({exc}); pins unknown"]
    lines = []
    for name in components:
        parts = []
        for env in envs:
            pins = await control.pins(name, services.config.components[name], env)
            shown = ",".join(p.value or f"unknown ({p.error})" for p in pins)
            lock = await services.locks.get(name, env)
            parts.append(f"{env} {shown}" + (f" [locked by {lock.owner}]" if lock else ""))
        lines.append(f"{name}: pinned " + " · ".join(parts))
    return lines
