"""The unapplied monitor: changes merged to the control repo but never applied, said once.

Every `monitors.unapplied_every` (and soon after a deploy or a control-repo webhook) it asks,
per component+environment, what applying main would change (`bot.model.unapplied`): by
`helmfile template` of the commit last applied (the deploy records) against main, or, where
the environment has a cluster, by `helmfile diff`. Renders are cached by commit, so a round
where nothing moved runs nothing; a diff runs again when main or the applied commit moved, or
once per interval (hand edits in the cluster). The findings become `unapplied` alerts through
the monitors (`Monitors` asks `findings()`), which resolve once an apply lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from bot.core.git import GitError
from bot.core.tasks import within
from bot.gitlab.inbox import Router
from bot.model.manifests import RenderError, resources_text
from bot.model.planner import Advice
from bot.model.running import last_applied_commit
from bot.model.unapplied import Unapplied, UnappliedRunner, UnappliedState
from bot.services import Services
from bot.store.alerts import AlertStore, Finding, Scope

log = logging.getLogger("deploybot.monitors")
STARTUP_DELAY = 60.0  # seconds before the first round (unless a deploy or webhook wakes it)


def unapplied_text(r: Unapplied, prefix: str = "!", advice: Advice | None = None) -> str:
    """`applying main would change 1 resource: Deployment/x (helmfile template); 1 control-repo
    commit since the last apply (1a2b3c4d): ...; next: !apply c env`. With the planner's
    `advice` for the pair, its next step (and the gate it names) ends the text instead, or
    nothing when it has none: `!apply` is not always the step (the environment it requires
    may not run the pin yet, or the pin may be behind what runs)."""
    if r.resources:
        what = resources_text(r.resources)
    else:
        what = "resources helmfile diff did not name"
    text = f"applying main would change {what} (helmfile {r.source})"
    since = f" since the last apply ({r.applied[:8]})" if r.applied else ""
    if r.commits:
        n = len(r.commits)
        text += f"; {n} control-repo commit{'s' if n != 1 else ''}{since}: "
        text += "; ".join(r.commits[:3]) + (f" and {n - 3} more" if n > 3 else "")
    elif r.applied:
        text += f"; no control-repo commit{since}: changed in the cluster outside the bot"
    else:
        text += "; no apply by this bot recorded there"
    if advice is None:
        return f"{text}; next: {prefix}apply {r.component} {r.env}"
    if advice.command is None:
        return text
    return f"{text}; {replace(advice, text='').line()}"


class UnappliedMonitor:
    """Owned by the composition root; `run()` goes under the supervisor (on the leader)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        config = services.config
        control = services.control
        workdir = config.bot.state_dir / "checkouts" / "unapplied"
        self.runner = (
            UnappliedRunner(config, control, services.redactor, workdir, services.helm_slots)
            if control
            else None
        )
        self.state = UnappliedState()
        # called after each round: the monitors look again
        self.on_round: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopped = False
        self._diffed: dict[tuple[str, str], tuple[tuple[str | None, str], float]] = {}

    @property
    def every(self) -> float:
        return self.services.config.monitors.unapplied_every

    def register(self, router: Router) -> None:
        """Look again soon after a push or a merge request (the control repo may have moved)."""
        router.after(("push", "merge_request"), self.wake)  # once per batch of events

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Rounds every `unapplied_every` or when woken; the first one a little after start
        (at most a minute), so a starting bot answers `!status` before it runs helm."""
        if not self.services.config.monitors.enabled or self.runner is None:
            return
        with contextlib.suppress(TimeoutError):
            await within(self._wake.wait(), min(self.every, STARTUP_DELAY))
        while not self._stopped:
            self._wake.clear()
            try:
                await self.check_now()
            except Exception:
                log.exception("unapplied check failed; next one in %ss", self.every)
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), self.every)

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        self._stopped = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._lock:
                pass

    async def check_now(self) -> None:
        """One round over every component+environment; then the monitors look again."""
        runner = self.runner
        if runner is None:
            return
        async with self._lock:
            await runner.control.sync()
            main = await runner.control.rev()
            cfg = self.services.config
            pairs = [(c, e) for c in cfg.components for e in cfg.env_names]
            await asyncio.gather(*(self._check(runner, c, e, main) for c, e in pairs))
        for hook in self.on_round:
            hook()

    async def _check(self, runner: UnappliedRunner, component: str, env: str, main: str) -> None:
        applied = await last_applied_commit(self.services.store, component, env)
        try:
            if env in self.services.clusters:
                key, last = (applied, main), self._diffed.get((component, env))
                if last is not None and last[0] == key and time.monotonic() - last[1] < self.every:
                    return  # nothing moved since the last diff: keep its answer
                result = await runner.by_diff(component, env, applied, main)
                self._diffed[(component, env)] = (key, time.monotonic())
            elif applied is None:
                self.state.forget(component, env)  # nothing known to compare main with
                return
            else:
                result = await runner.by_template(component, env, applied, main)
        except (RenderError, GitError) as exc:
            if self.state.errors.get((component, env)) != str(exc):
                log.warning("unapplied check of %s in %s: %s", component, env, exc)
            self.state.failed(component, env, str(exc))
            return
        self.state.put(result)

    async def source(self, component: str, env: str) -> tuple[str, ...] | None:
        """For the model (`UnappliedSource`): the latest round's answer; until this run has
        one for the pair, the `unapplied` alert an earlier run raised (a restart must not
        turn an `!apply` the alert advises into "nothing to apply")."""
        if (component, env) in self.state.results:
            return await self.state.source(component, env)
        for alert in await AlertStore(self.services.store).active():
            if alert.scope == ("unapplied", component, env):
                return (alert.text.split("; ", 1)[0],)
        return None

    def findings(
        self, advice: Mapping[tuple[str, str], Advice | None] | None = None
    ) -> tuple[list[Finding], set[Scope]]:
        """`unapplied` findings from the latest answers, and the scopes they cover (a pair
        whose latest check failed is left out: its alert stays as it was). `advice`: the
        planner's next step per (component, env), which ends each alert's text."""
        prefix = str(self.services.config.bot.prefix)
        found: list[Finding] = []
        scopes: set[Scope] = set()
        for (component, env), result in self.state.results.items():
            if (component, env) in self.state.errors:
                continue
            scopes.add(("unapplied", component, env))
            if result.pending:
                found.append(
                    Finding(
                        "unapplied",
                        component,
                        env,
                        "",
                        unapplied_text(result, prefix, (advice or {}).get((component, env))),
                    )  # fmt: skip
                )
        return found, scopes
