"""The services commands and event handlers use, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.chat.outbox import Outbox
from bot.cluster.kube import KubeCluster
from bot.cluster.registry import Registry
from bot.control.bumper import Bumper
from bot.control.diffs import DiffStore
from bot.control.repo import ControlRepo
from bot.core.config import Config
from bot.core.locks import Locks
from bot.core.metrics import Metrics
from bot.core.redact import Redactor
from bot.core.sal import Sal
from bot.core.store import Store
from bot.deploy.deployer import Deployer
from bot.gitlab.api import GitLabAPI

if TYPE_CHECKING:
    from bot.monitors.checks import Monitors
    from bot.status.board import StatusBoard


@dataclass
class Services:
    config: Config
    store: Store
    sal: Sal
    outbox: Outbox
    locks: Locks
    metrics: Metrics
    redactor: Redactor
    control: ControlRepo | None = None
    gitlab: GitLabAPI | None = None
    clusters: dict[str, KubeCluster] = field(default_factory=dict)  # env name -> cluster
    registry: Registry | None = None
    bumper: Bumper | None = None
    diffs: DiffStore | None = None
    deployer: Deployer | None = None
    status_board: StatusBoard | None = None  # !status sources, with their short-lived cache
    monitors: Monitors | None = None

    def room_for(self, component: str | None) -> str:
        """The chat room for a component's announcements (fallback: the default room)."""
        comp = self.config.components.get(component or "")
        return (comp.room if comp and comp.room else None) or self.config.chat.default_room

    async def announce(
        self, text: str, *, component: str | None = None, key: str | None = None,
        final: bool = False, room: str | None = None, short: str | None = None,
    ) -> None:  # fmt: skip
        """Queue an unasked line for the component's room (durable, flood-controlled).

        `short` (e.g. "builds-api #41 success 3m") replaces `text` when a backlog is packed.
        """
        await self.outbox.enqueue(
            room or self.room_for(component),
            self.redactor(text),
            key=key,
            final=final,
            short=self.redactor(short) if short else None,
        )
