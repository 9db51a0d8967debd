"""What a component's helm/helmfile commands are run with, and how many run at once.

- `releases_of`/`selector_args`: the helmfile releases that are a component
  (`components.<c>.releases`, default its Helm release) as `--selector name=<release>` words;
  a configured argv gets them where it has the word `{selectors}` (the defaults of
  `deploy.diff`, `deploy.apply` and `deploy.template` do), so one component's apply never
  syncs its whole helmfile.
- `command_argv`: a configured argv with every placeholder filled for a component in an env.
- `HelmSlots`: at most `cluster.max_parallel_helm` runs at once per cluster (kubeconfig and
  context); the rest wait their turn and say so (helm fails with EOF or "context deadline
  exceeded" when too many talk to one API server at once). Deploys, reviews and the unapplied
  check share one `HelmSlots` (`Services.helm_slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from bot.cluster.livestate import target_of
from bot.cluster.runner import fill
from bot.config.model import Config

log = logging.getLogger("deploybot.helm")

RENDERS = "(renders)"  # the slots of renders without a cluster (`deploy.template`)


def releases_of(config: Config, component: str) -> list[str]:
    """The helmfile releases that are this component (default: its Helm release)."""
    return list(config.components[component].releases or [target_of(config, component).release])


def selector_args(config: Config, component: str) -> list[str]:
    """`--selector name=<release>` for each of the component's releases."""
    return [w for r in releases_of(config, component) for w in ("--selector", f"name={r}")]


def command_argv(
    config: Config, template: list[str], component: str, env: str, **extra: str
) -> list[str]:
    """`template` with `{component}`, `{env}`, `{release}`, `{namespace}`, `{kube_context}`,
    `{selectors}` (and `extra`: `version`, `revision`) filled; RunnerError when it cannot be."""
    target = target_of(config, component)
    cfg = config.env(env)
    values = {"component": component, "env": env, "release": target.release,
              "namespace": target.namespace,
              "kube_context": (cfg.kube_context if cfg else None) or "", **extra}  # fmt: skip
    return fill(template, values, selectors=selector_args(config, component))


def cluster_key(config: Config, env: str) -> str:
    """Which cluster an environment's helm runs talk to (kubeconfig and context); an
    environment that names neither uses helm's default ($KUBECONFIG or ~/.kube/config)."""
    cfg = config.env(env)
    kubeconfig = cfg.kubeconfig if cfg else None
    context = cfg.kube_context if cfg else None
    return f"{kubeconfig or '~/.kube/config'}#{context or ''}"


def cluster_name(config: Config, env: str) -> str:
    """The cluster as people name it: its context, else its kubeconfig, else the default."""
    cfg = config.env(env)
    if cfg is not None and cfg.kube_context:
        return cfg.kube_context
    if cfg is not None and cfg.kubeconfig:
        return cfg.kubeconfig
    return "the default kubeconfig"


OnWait = Callable[[str], Awaitable[None]]


class HelmSlots:
    """At most `limit` helm/helmfile runs at once per cluster; the rest wait (and say so)."""

    def __init__(self) -> None:
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}  # the highest count seen at once, per cluster

    @contextlib.asynccontextmanager
    async def slot(
        self, cluster: str, limit: int, what: str, *, name: str | None = None,
        on_wait: OnWait | None = None,
    ) -> AsyncIterator[None]:  # fmt: skip
        """Hold one of `cluster`'s `limit` slots while the block runs. When none is free,
        `on_wait` gets `waiting for a helm slot on <name>: N runs in progress` first."""
        sem = self._slots.setdefault(cluster, asyncio.Semaphore(limit))
        if sem.locked():
            busy = self.running.get(cluster, 0)
            line = (f"waiting for a helm slot on {name or cluster}: {busy} run"
                    f"{'s' if busy != 1 else ''} in progress")  # fmt: skip
            log.info("%s: %s (cluster.max_parallel_helm)", what, line)
            if on_wait is not None:
                await on_wait(line)
        async with sem:
            self.running[cluster] = self.running.get(cluster, 0) + 1
            self.most[cluster] = max(self.most.get(cluster, 0), self.running[cluster])
            try:
                yield
            finally:
                self.running[cluster] -= 1
