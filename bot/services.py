"""The shared low-level kit, built once by the composition root and frozen.

It holds the store, the SAL, the announcer and the clients of outside systems: the parts
every capability needs. It holds no capability (deployer, bumper, status board, monitors):
those get what they need through their constructors and are wired together in `bot.app`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.chat.announcer import Announcer
from bot.chat.outbox import Outbox
from bot.cluster.kube import KubeCluster
from bot.cluster.registry import Registry
from bot.control.diffs import DiffStore
from bot.control.repo import ControlRepo
from bot.core.config import Config
from bot.core.locks import Locks
from bot.core.metrics import Metrics
from bot.core.redact import Redactor
from bot.core.sal import Sal
from bot.core.store import Store
from bot.gitlab.api import GitLabAPI


@dataclass(frozen=True)
class Services:
    config: Config
    store: Store
    sal: Sal
    outbox: Outbox
    announcer: Announcer
    locks: Locks
    metrics: Metrics
    redactor: Redactor
    diffs: DiffStore
    control: ControlRepo | None = None
    gitlab: GitLabAPI | None = None
    clusters: dict[str, KubeCluster] = field(default_factory=dict)  # env name -> cluster
    registry: Registry | None = None
