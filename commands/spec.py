"""What every command handler declares, and what it is given.

Declares: `@command(...)` attaches a `CommandSpec` (name, role, usage, examples) to the
handler; `CommandSet.collect(modules)` gathers them. `!help` is generated from the specs and
every example runs as a test.

Is given: a `Context` with the message, the caller's roles, the shared `Services` and the
capabilities (`Capabilities`: deployer, bumper, status board, monitors), and a way to reply.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

from bot.chat.base import Message
from bot.config.auth import Role, refusal, role_for
from bot.config.model import Config
from bot.control.bumper import Bumper
from bot.core.errors import Refused, UserError
from bot.core.text import chat_safe
from bot.deploy.deployer import Deployer
from bot.deploy.queue import DeployQueue
from bot.model.state import Model
from bot.monitors.checks import Monitors
from bot.services import Services
from bot.status.board import StatusBoard
from bot.store.queue import QueueEntry
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


def addressed(msg: Message, text: str) -> str:
    """A reply in a room (an IRC channel, an XMPP MUC) names the asker (`alice: ...`), as
    Sopel and Limnoria do, so in a busy room everyone sees whose command it answers;
    private replies and the console (one person) do not."""
    if msg.private or msg.adapter == "console" or not msg.nick:
        return text
    return f"{msg.nick}: {text}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean X?` or an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


@dataclass(frozen=True)
class Capabilities:
    """What handlers use beyond the shared kit, built by the composition root."""

    deployer: Deployer
    bumper: Bumper | None
    board: StatusBoard
    monitors: Monitors
    queue: DeployQueue | None = None


@dataclass
class Context:
    services: Services
    caps: Capabilities
    message: Message
    commands: CommandSet
    spec: CommandSpec
    replied: bool = False  # the handler already said something (no "working on it" needed)
    queued: QueueEntry | None = None  # set when a queued command runs at its turn

    @property
    def deployer(self) -> Deployer:
        return self.caps.deployer

    @property
    def model(self) -> Model:
        """What runs where, release ancestry and the planner's facts (the deployer's)."""
        return self.caps.deployer.model

    @property
    def board(self) -> StatusBoard:
        return self.caps.board

    @property
    def monitors(self) -> Monitors:
        return self.caps.monitors

    @property
    def bumper(self) -> Bumper:
        """The control-repo bumper (a refusal when no control repo is configured)."""
        if self.caps.bumper is None:
            raise UserError("no control repo configured (control_repo in the config)")
        return self.caps.bumper

    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def prefix(self) -> str:
        return str(self.services.config.bot.prefix)

    @property
    def actor(self) -> str:
        """The verified identity acting (the strongest one), or `nick:<nick>` for nobody."""
        return (
            self.message.identities[0] if self.message.identities else f"nick:{self.message.nick}"
        )

    def role(self, component: str | None = None, env: str | None = None) -> Role:
        return role_for(self.services.config.auth.rules, self.message.identities, component, env)

    def require(self, needed: Role, component: str | None = None, env: str | None = None) -> None:
        if self.role(component, env) < needed:
            self.services.metrics.refusals.labels(self.spec.name, str(needed)).inc()
            raise Refused(refusal(needed, component, env))

    async def reply(self, text: str) -> None:
        """Send a line now (before the handler returns), e.g. "working on it"."""
        self.replied = True
        if self.queued is not None:  # said to its owner by name, wherever it was queued
            text = f"{self.queued.nick}: queue #{self.queued.id}: {text}"
        else:
            text = addressed(self.message, text)
        await self.services.outbox.enqueue(
            self.message.room,
            self.services.redactor(chat_safe(text)),
            adapter=self.message.adapter,
            priority=1,
        )

    def sees_announcements(self, component: str) -> bool:
        """True when this chat line came from the room (on the same network) that gets the
        component's announcements, or from a connection that shows every room in one stream
        (the console) and also says them, so a reply repeating one would show it twice."""
        msg, services = self.message, self.services
        room = services.announcer.room_for(component)
        adapter = services.outbox.pick_adapter(None, room)
        if adapter is None or adapter.name != msg.adapter:
            return False
        return adapter.one_stream or (not msg.private and room.casefold() == msg.room.casefold())

    def component(self, name: str) -> str:
        """Validate a component name from chat."""
        if name not in self.services.config.components:
            known = self.services.config.components
            raise UserError(f"unknown component {name[:60]!r}{did_you_mean(name, known)}")
        return name

    def env(self, name: str) -> str:
        names = self.services.config.env_names
        if name not in names:
            hint = did_you_mean(name, names) or f"; environments: {', '.join(names)}"
            raise UserError(f"unknown environment {name[:60]!r}{hint}")
        return name
