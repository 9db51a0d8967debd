"""Declarative commands: each handler states its name, role, usage and examples.

`@command(...)` attaches a `CommandSpec` to the handler; `CommandSet.collect(modules)`
gathers them. `!help` is generated from the specs and every example runs as a test.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from bot.core.auth import Role

if TYPE_CHECKING:
    from commands.context import Context
    from commands.parse import Invocation

Handler = Callable[["Context", "Invocation"], Awaitable[str | None]]


@dataclass(frozen=True)
class Example:
    text: str  # what a user types, e.g. "!sal builds-api 3"
    expect: str  # a regular expression the reply must match (used by the example tests)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    role: Role
    usage: str
    summary: str
    examples: tuple[Example, ...]
    handler: Handler
    flags: frozenset[str] = frozenset()

    def syntax(self, prefix: str) -> str:
        return f"{prefix}{self.name}" + (f" {self.usage}" if self.usage else "")


def command(
    name: str,
    *,
    role: Role,
    usage: str,
    summary: str,
    examples: Iterable[tuple[str, str]] = (),
    flags: Iterable[str] = (),
) -> Callable[[Handler], Handler]:
    """Declare a chat command. `examples` are (typed text, regex the reply must match)."""

    def mark(fn: Handler) -> Handler:
        spec = CommandSpec(
            name=name,
            role=role,
            usage=usage,
            summary=summary,
            examples=tuple(Example(t, e) for t, e in examples),
            handler=fn,
            flags=frozenset(flags),
        )
        fn.__command__ = spec  # type: ignore[attr-defined]
        return fn

    return mark


class CommandSet:
    """The commands one bot instance answers."""

    def __init__(self, specs: Iterable[CommandSpec]):
        self.specs: dict[str, CommandSpec] = {}
        for spec in specs:
            if spec.name in self.specs:
                raise ValueError(f"command {spec.name} declared twice")
            self.specs[spec.name] = spec

    @classmethod
    def collect(cls, modules: Iterable[ModuleType]) -> CommandSet:
        specs = []
        for module in modules:
            for value in vars(module).values():
                spec = getattr(value, "__command__", None)
                if isinstance(spec, CommandSpec):
                    specs.append(spec)
        return cls(specs)

    def get(self, name: str) -> CommandSpec | None:
        return self.specs.get(name)

    def suggest(self, name: str) -> str | None:
        match = difflib.get_close_matches(name, list(self.specs), n=1, cutoff=0.6)
        return match[0] if match else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean X?` or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""
