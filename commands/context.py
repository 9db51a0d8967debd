"""What a command handler gets: the message, the caller's roles, the services, a reply."""

from __future__ import annotations

from dataclasses import dataclass

from bot.chat.base import Message
from bot.core.auth import Role, refusal, role_for
from bot.core.config import Config
from bot.core.errors import Refused, UserError
from bot.services import Services
from commands.spec import CommandSet, CommandSpec, did_you_mean


@dataclass
class Context:
    services: Services
    message: Message
    commands: CommandSet
    spec: CommandSpec

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
        await self.services.outbox.enqueue(
            self.message.room,
            self.services.redactor(text),
            adapter=self.message.adapter,
            priority=1,
        )

    def component(self, name: str) -> str:
        """Validate a component name from chat."""
        if name not in self.services.config.components:
            known = self.services.config.components
            raise UserError(f"unknown component {name[:60]!r}{did_you_mean(name, known)}")
        return name

    def env(self, name: str) -> str:
        names = self.services.config.env_names
        if name not in names:
            raise UserError(f"unknown environment {name[:60]!r}{did_you_mean(name, names)}")
        return name
