"""Unapplied changes: would applying main change what was last applied in an environment?

A version-only model misses a config-only change (a values edit, same chart version) that
was merged but never applied. Two sources answer it:

- without a cluster: the component's files in the control repo changed since the commit last
  applied there (`git diff`), and the real `helmfile template` (`deploy.template`) renders
  both commits; the manifests are compared (`bot.model.manifests`), naming `Kind/name`;
- where the environment has a cluster: `helmfile diff` (`deploy.diff`) at main against the
  cluster, which also finds changes made by hand (helm-diff's three-way merge is asked for).

Both run with `--selector name=<release>` for each of the component's releases
(`components.<c>.releases`, where the argv has `{selectors}`, as the defaults do) and at most
`cluster.max_parallel_helm` helm runs at once per cluster, shared with deploys (renders share
one such limit). `UnappliedState` keeps the latest result per
component+environment; its `source` is what the planner asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.cluster.helm import RENDERS, HelmSlots, cluster_key, command_argv
from bot.cluster.runner import RunnerError, die_with_parent, diff_outcome, run
from bot.config.model import Config
from bot.control.pins import PinError, pin_file_candidates
from bot.control.repo import ControlRepo
from bot.core.git import git
from bot.core.redact import Redactor
from bot.core.text import one_line
from bot.model.manifests import Key, RenderError, changed, diff_resources, manifests

log = logging.getLogger("deploybot.unapplied")

Source = Literal["template", "diff"]
_RENDERS_KEPT = 64  # rendered manifests kept in memory, by (component, env, commit)
_CHECKOUTS_KEPT = 8  # commit checkouts kept on disk for renders


@dataclass(frozen=True)
class Unapplied:
    """What applying main in env would change, as far as `source` could tell."""

    component: str
    env: str
    source: Source
    main: str  # the control-repo commit of main that was compared
    applied: str | None  # the commit last applied there (None: unknown)
    resources: tuple[str, ...] = ()  # `Kind/name`; empty: nothing would change
    commits: tuple[str, ...] = ()  # `sha8 subject` touching the component since `applied`
    changes_unread: bool = False  # helmfile diff said "changes" but named none

    @property
    def pending(self) -> bool:
        return bool(self.resources) or self.changes_unread


def component_paths(config: Config, component: str, env: str) -> list[str]:
    """git pathspecs of the control-repo files that are this component in env: its folder
    and its pin files, minus the other environments' files in its folder (`<other>.*`)."""
    paths = [f"components/{component}/"]
    for pin in config.components[component].pins:
        with contextlib.suppress(PinError):
            paths += pin_file_candidates(pin.file, component, env)
    paths += [
        f":(exclude,glob)components/{component}/**/{other}.*"
        for other in config.env_names
        if other != env
    ]
    return list(dict.fromkeys(paths))


class UnappliedRunner:
    """Runs the renders and diffs over checkouts of the control repo (see the module doc)."""

    def __init__(
        self, config: Config, control: ControlRepo, redactor: Redactor, workdir: Path,
        slots: HelmSlots,
    ) -> None:  # fmt: skip
        self.config = config
        self.control = control
        self.redactor = redactor
        self.workdir = workdir
        self.slots = slots  # shared with deploys (`Services.helm_slots`)
        self._renders: OrderedDict[tuple[str, str, str], dict[Key, Any]] = OrderedDict()
        self._checkouts: OrderedDict[str, asyncio.Lock] = OrderedDict()
        self._in_use: dict[str, int] = {}  # commit -> renders/diffs running in its checkout

    # --- git ---------------------------------------------------------------------------------

    async def files_changed(self, component: str, env: str, old: str, new: str) -> list[str]:
        out = await git("diff", "--name-only", old, new, "--",
                        *component_paths(self.config, component, env), cwd=self.control.workdir)  # fmt: skip
        return [line for line in out.splitlines() if line]

    async def commits(self, component: str, env: str, old: str, new: str) -> tuple[str, ...]:
        """`sha8 subject (author)` of the commits since `old` touching the component, oldest
        first."""
        out = await git("log", "--no-merges", "--reverse", "--format=%h %s (%an)", "--abbrev=8",
                        f"{old}..{new}", "--", *component_paths(self.config, component, env),
                        cwd=self.control.workdir)  # fmt: skip
        return tuple(one_line(line, 100) for line in out.splitlines() if line)

    @contextlib.asynccontextmanager
    async def checkout(self, commit: str) -> AsyncIterator[Path]:
        """A checkout of `commit`, shared by the renders and diffs at it while they run; the
        newest few are kept for the next round, older ones not in use are removed."""
        path = self.workdir / commit[:16]
        lock = self._checkouts.setdefault(commit, asyncio.Lock())
        self._checkouts.move_to_end(commit)
        self._in_use[commit] = self._in_use.get(commit, 0) + 1
        try:
            async with lock:
                if not (path / ".git").exists():
                    await asyncio.to_thread(shutil.rmtree, path, True)
                    await git("clone", "--quiet", "--shared", "--no-checkout", "--",
                              str(self.control.workdir), str(path))  # fmt: skip
                    await git("checkout", "--quiet", "--detach", commit, cwd=path)
            yield path
        finally:
            self._in_use[commit] -= 1
            if not self._in_use[commit]:
                del self._in_use[commit]
        unused = [c for c in self._checkouts if c not in self._in_use]
        for old in unused[: max(0, len(self._checkouts) - _CHECKOUTS_KEPT)]:
            del self._checkouts[old]
            gone = self.workdir / f"gone-{old[:16]}"  # out of the way at once, removed after
            with contextlib.suppress(OSError):
                (self.workdir / old[:16]).rename(gone)
            await asyncio.to_thread(shutil.rmtree, gone, True)

    # --- commands ----------------------------------------------------------------------------

    def child_env(self, env: str) -> dict[str, str]:
        """The bot's environment minus secrets, with the environment's kubeconfig/context."""
        child = {k: v for k, v in os.environ.items() if self.redactor(v) == v}
        cfg = self.config.env(env)
        if cfg and cfg.kubeconfig:
            child["KUBECONFIG"] = str(Path(cfg.kubeconfig).expanduser())
        if cfg and cfg.kube_context:
            child["HELM_KUBECONTEXT"] = cfg.kube_context
        return child

    async def render(self, component: str, env: str, commit: str) -> dict[Key, Any]:
        """The manifests `deploy.template` renders for component in env at `commit`."""
        key = (component, env, commit)
        if key in self._renders:
            self._renders.move_to_end(key)
            return self._renders[key]
        try:
            argv = command_argv(self.config, self.config.deploy.template, component, env)
        except RunnerError as exc:
            raise RenderError(f"deploy.template: {exc}") from None
        limit = self.config.cluster.max_parallel_helm
        slot = self.slots.slot(RENDERS, limit, f"render of {component} in {env}")
        async with self.checkout(commit) as cwd, slot:
            out = await _stdout(argv, cwd, self.child_env(env), self.config.deploy.timeout)
        found = manifests(out)
        self._renders[key] = found
        while len(self._renders) > _RENDERS_KEPT:
            self._renders.popitem(last=False)
        return found

    async def by_template(self, component: str, env: str, applied: str, main: str) -> Unapplied:
        """Render both commits when the component's files changed between them."""
        result = Unapplied(component, env, "template", main, applied)
        if applied == main or not await self.files_changed(component, env, applied, main):
            return result
        before, after = await asyncio.gather(
            self.render(component, env, applied), self.render(component, env, main)
        )
        resources = changed(before, after)
        if not resources:
            return result
        commits = await self.commits(component, env, applied, main)
        return Unapplied(component, env, "template", main, applied, resources, commits)

    async def by_diff(self, component: str, env: str, applied: str | None, main: str) -> Unapplied:
        """`deploy.diff` at main against the cluster (three-way: hand edits show too)."""
        try:
            argv = command_argv(self.config, self.config.deploy.diff, component, env)
        except RunnerError as exc:
            raise RenderError(f"deploy.diff: {exc}") from None
        child = {**self.child_env(env), "HELM_DIFF_THREE_WAY_MERGE": "true"}
        log_path = self.workdir / "logs" / f"{component}-{env}.log"
        log_path.unlink(missing_ok=True)
        limit = self.config.cluster.max_parallel_helm
        slot = self.slots.slot(
            cluster_key(self.config, env), limit, f"diff of {component} in {env}"
        )
        async with self.checkout(main) as cwd, slot:
            result = await run(argv, cwd=cwd, env=child, timeout=self.config.deploy.timeout,
                               log_path=log_path)  # fmt: skip
        outcome = diff_outcome(result.returncode)
        if outcome == "failed":
            last = self.redactor(one_line(result.last_line(), 160))
            raise RenderError(f"helmfile diff exited {result.returncode}: {last}")
        if outcome == "no changes":
            return Unapplied(component, env, "diff", main, applied)
        resources = diff_resources(result.output)
        commits = await self.commits(component, env, applied, main) if applied else ()
        return Unapplied(component, env, "diff", main, applied, resources, commits,
                         changes_unread=not resources)  # fmt: skip


async def _stdout(argv: list[str], cwd: Path, env: Mapping[str, str], timeout: float) -> str:  # noqa: ASYNC109
    """Run argv (own process group, killed on timeout or cancel); its stdout, or RenderError
    with the last line it wrote to stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),  # noqa: PLW1509 - a prctl
        )  # fmt: skip
    except OSError as exc:
        raise RenderError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    if proc.returncode != 0:
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        raise RenderError(
            f"{argv[0]} exited {proc.returncode}: {one_line(lines[-1] if lines else '', 160)}"
        )
    return out.decode(errors="replace")


class UnappliedState:
    """The latest answer per component+environment (absent: never checked, or unknown)."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], Unapplied] = {}
        self.errors: dict[tuple[str, str], str] = {}  # why the latest check could not answer

    def put(self, result: Unapplied) -> None:
        key = (result.component, result.env)
        self.results[key] = result
        self.errors.pop(key, None)

    def failed(self, component: str, env: str, error: str) -> None:
        self.errors[(component, env)] = error

    def forget(self, component: str, env: str) -> None:
        self.results.pop((component, env), None)

    async def source(self, component: str, env: str) -> tuple[str, ...] | None:
        """For the planner (`UnappliedSource`): the resources applying main would change in
        env, or None when nothing would (or it is not known)."""
        result = self.results.get((component, env))
        if result is None or not result.pending:
            return None
        return result.resources or ("changes (see the helmfile diff)",)
