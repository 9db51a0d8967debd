"""The planner of the next step: every `next:` the bot says comes from here.

Pure functions over the model's facts (`bot.model.state.EnvFacts`). The rules (SPEC §15):

1. a `next:` command, typed by the same person in that state, is accepted, or refused only
   by a gate the advice names (review, requires, lock, window, freeze);
2. never advise moving an environment to an ancestor of what runs it, unless the person
   asked to go back;
3. "nothing to apply" / "already runs X" when that is the truth;
4. `!where`, `!status`, the board and the alerts say which environments contain a commit
   from the same facts;
5. never advise deploying a release to an environment where it is acked as not needed
   (`!ack`): the path of that version ends there, with the ack named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from bot.model.ancestry import Direction
from bot.model.state import EnvFacts


@dataclass(frozen=True)
class Advice:
    """The state in words, the command to type next (None: nothing to do), and the gate
    that may still hold that command (named, so a refusal by it is no surprise)."""

    text: str
    command: str | None = None
    gate: str | None = None
    known: bool = True  # False: what runs is unknown, so the step is a guess
    held: bool = False  # the path stops on purpose (an `!ack`); the text says why

    def line(self) -> str:
        """`tools pins X, runs Y; next: !apply c tools (review: …)`."""
        if self.command is None:
            return self.text
        gate = f" ({self.gate})" if self.gate else ""
        return (
            f"{self.text}; next: {self.command}{gate}"
            if self.text
            else f"next: {self.command}{gate}"
        )

    @property
    def done(self) -> bool:
        return self.command is None


def _gates(f: EnvFacts) -> str | None:
    """The gates an apply into f's environment still passes, in words."""
    found = []
    if f.review:
        found.append(f"review: {f.env} applies after a diff another deployer confirms")
    if f.lock:
        found.append(f"lock: {f.lock}")
    if f.window:
        found.append(f"window: {f.window}")
    if f.freeze:
        found.append(f"freeze: {f.freeze}")
    return "; ".join(found) or None


def _apply(f: EnvFacts, prefix: str, text: str) -> Advice:
    return Advice(text, f"{prefix}apply {f.component} {f.env}", _gates(f))


def plan_env(f: EnvFacts, facts: Mapping[str, EnvFacts] | None = None, prefix: str = "!") -> Advice:
    """The next step for one component in one environment (`facts`: every environment's,
    for the one it requires)."""
    c, env = f.component, f.env
    if f.pinned is None:
        return Advice(f"{c} has no readable pin in {env}")
    if f.trouble is not None:  # nothing applies over it until it is cleared
        return Advice(f.trouble.describe(), f.trouble.next_step(c, env), "an admin's command")
    move = f.pin_move
    if move == Direction.SAME:
        if f.unapplied:
            shown = ", ".join(f.unapplied[:3]) + (" …" if len(f.unapplied) > 3 else "")
            return _apply(f, prefix, f"{env} runs its pin {f.pinned}; unapplied: {shown}")
        return Advice(f"nothing to apply: {env} already runs {f.pinned}")
    if move == Direction.BACK:
        return Advice(
            f"{env} pins {f.pinned}, older than the {f.running} that runs; to keep what runs"
            f" (or go back: {prefix}rollback {c} {env} to {f.pinned})",
            f"{prefix}deploy {c} {f.running} to {env}",
        )
    runs = f"runs {f.running}" if f.running else "what runs is unknown"
    text = f"{env} pins {f.pinned}, {runs}"
    if f.requires is not None and not f.requires_ok:
        advice = _required_first(f, facts or {}, prefix, text)
    else:
        advice = _apply(f, prefix, text)
    return replace(advice, known=move != Direction.UNKNOWN)


def _required_first(f: EnvFacts, facts: Mapping[str, EnvFacts], prefix: str, text: str) -> Advice:
    """The pin waits for the environment it requires (the `requires` gate, named)."""
    c, req = f.component, f.requires
    gate = f"requires: {f.env} applies only what {req} runs"
    if f.required_contains_pin:  # the required env is ahead: pin what it runs
        return Advice(
            f"{text}; {req} runs a newer release", f"{prefix}promote {c} to {f.env}", gate
        )
    theirs = facts.get(req or "")
    if f.required_pinned and theirs is not None:
        inner = plan_env(theirs, facts, prefix)
        if inner.command is not None:
            both = "; ".join(g for g in (gate, inner.gate) if g)
            return Advice(f"{text}; {req} first: {inner.text}", inner.command, both)
    return Advice(f"{text}; {req} first", f"{prefix}deploy {c} {f.pinned} to {req}", gate)


def plan_version(
    component: str, version: str, contains: Mapping[str, bool | None],
    facts: Mapping[str, EnvFacts], envs: Sequence[str], prefix: str = "!",
    pin_contains: Mapping[str, bool | None] | None = None,
) -> Advice:  # fmt: skip
    """The next step for `version` on its path to production: the first environment (in
    order) whose running release does not contain it. Where that environment's pin already
    contains it, applying the pin is the step (never pinning back to `version`)."""
    for env in envs:
        if contains.get(env):
            continue
        f = facts.get(env)
        if f is None:
            return Advice(f"what runs in {env} is unknown")
        if f.ack is not None and f.ack.covers(version):  # deliberately not deployed there
            return Advice(f"{env} does not run it: {f.ack.describe()}", held=True)
        if f.pinned == version or (pin_contains or {}).get(env):
            return plan_env(f, facts, prefix)
        if f.requires is not None and contains.get(f.requires):
            return Advice(
                f"{f.requires} runs it, {env} does not yet",
                f"{prefix}promote {component} to {env}",
                _gates(f),
            )
        return Advice(
            f"{env} does not run it yet",
            f"{prefix}deploy {component} {version} to {env}",
            _gates(f),
        )
    return Advice(f"{version} runs in every environment")
