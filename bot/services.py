"""The shared low-level kit, built once by the composition root and frozen.

It holds the store, the SAL, the announcer and the clients of outside systems: the parts
every capability needs. It holds no capability (deployer, bumper, status board, monitors):
those get what they need through their constructors and are wired together in `bot.app`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.cluster.helm import HelmSlots
from bot.cluster.kube import KubeCluster
from bot.cluster.registry import Registry
from bot.config.model import Config
from bot.control.diffs import DiffStore
from bot.control.repo import ControlRepo
from bot.core.metrics import Metrics
from bot.core.redact import Redactor
from bot.delivery.announcer import Announcer
from bot.delivery.outbox import Outbox
from bot.store.db import Store
from bot.store.leader import Leadership
from bot.store.locks import Locks
from bot.store.sal import Sal

if TYPE_CHECKING:  # python-gitlab is loaded only where GitLab is configured (bot.app)
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
    leadership: Leadership = field(default_factory=Leadership)  # single instance: always
    # helm runs per cluster (`cluster.max_parallel_helm`): deploys and the unapplied check
    helm_slots: HelmSlots = field(default_factory=HelmSlots)
