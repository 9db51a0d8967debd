"""The model's answers as the commands, the status board and the monitors need them: the
planner's advice for each environment of a component, which environments contain a
version, and a version's path to production. One reading, so they all agree."""

from __future__ import annotations

from dataclasses import dataclass

from bot.model.pathway import Pathway, pathway
from bot.model.planner import Advice, plan_env, plan_version
from bot.model.state import EnvFacts, Model, SeenMap


@dataclass(frozen=True)
class VersionView:
    """Where a version is: which environments contain it, its step k of n, the next step."""

    version: str
    contains: dict[str, bool | None]
    path: Pathway
    advice: Advice
    pending: dict[str, str]  # env -> the command that applies its pin (pinned, not running)

    def describe(self) -> str:
        return self.path.describe(self.pending)


async def env_advice(
    model: Model, component: str, prefix: str = "!", seen: SeenMap | None = None
) -> dict[str, Advice]:
    """The planner's next step for component in every environment."""
    facts = await model.all_facts(component, seen)
    return {env: plan_env(f, facts, prefix) for env, f in facts.items()}


def pending_commands(facts: dict[str, EnvFacts], prefix: str = "!") -> dict[str, str]:
    """Per environment whose pin does not run: the planner's command (with its gate)."""
    out = {}
    for env, f in facts.items():
        advice = plan_env(f, facts, prefix)
        if advice.command is not None:
            out[env] = advice.command + (f" ({advice.gate})" if advice.gate else "")
    return out


async def version_view(
    model: Model, component: str, version: str, *, merged: bool = True, built: bool = True,
    bump_open: bool = False, bump_label: str = "bump MR open",
    links: dict[str, str | None] | None = None, prefix: str = "!",
    seen: SeenMap | None = None,
) -> VersionView:  # fmt: skip
    """`version`'s path: an environment is reached when what runs there contains it (live
    state known), else when it is pinned there."""
    envs = model.services.config.env_names
    facts = await model.all_facts(component, seen)
    contains = await model.contains(component, version, seen)
    path = pathway(
        envs, merged=merged, built=built, bump_open=bump_open,
        pinned={e: facts[e].pinned == version for e in envs},
        live={e: contains[e] if facts[e].live_known else None for e in envs},
        links=links, bump_label=bump_label,
    )  # fmt: skip
    reached = {e: bool(s.reached) for s in path.steps if (e := s.env) is not None}
    pin_contains = {
        e: await model.history.is_ancestor(component, version, p)
        if (p := facts[e].pinned)
        else None
        for e in envs
    }
    advice = plan_version(component, version, reached, facts, envs, prefix, pin_contains)
    pending = {e: c for e, c in pending_commands(facts, prefix).items() if e in _pending(path)}
    return VersionView(version, contains, path, advice, pending)


def _pending(path: Pathway) -> set[str]:
    return {s.env for s in path.steps if s.pending and s.env}
