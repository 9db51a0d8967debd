"""The deployer: `!apply`, auto-apply and rollbacks, from preflight to verified live version.

One deploy per component+environment at a time. Preflight (lock, window, requires, Helm
release state, registry) refuses before anything runs; then the deploy's row is created and
its state written before each step (`bot.deploy.records`), the configured argv run in a checkout at the exact
commit (`bot.deploy.steps`), the rollout watched and the live version verified. Start and end
go to the SAL, the component's room (one coalescing key per deploy) and, for a bump MR, the
MR (`bot.deploy.followup`). After a crash or `kill -9`, `recover()` marks what was in flight as
interrupted, says so in chat and the SAL with the live state re-read, and never re-applies.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bot.cluster.kube import ClusterError
from bot.control.bumper import Bumper
from bot.control.forge import OpenBump
from bot.core.errors import UserError
from bot.core.git import GitError, git
from bot.core.tasks import TaskSet
from bot.core.text import format_duration
from bot.deploy import functests, preflight
from bot.deploy.emergency import emergency_target, is_older
from bot.deploy.failures import hint, lost_api
from bot.deploy.followup import Deployed, follow_up
from bot.deploy.freezes import FreezeBook
from bot.deploy.gitlabdeploys import GitLabDeployments
from bot.deploy.model import (
    Action,
    Checked,
    Deploy,
    DeployFailed,
    DeployOutcome,
    DeployRequest,
    NothingToApply,
    Refusal,
)
from bot.deploy.orphans import orphan_group, wait_gone
from bot.deploy.records import DeployRecords
from bot.deploy.reporting import DeployReport
from bot.deploy.steps import Steps
from bot.model.ancestry import Direction
from bot.model.planner import plan_env
from bot.model.running import live_version, running_version
from bot.model.state import Model
from bot.services import Services
from bot.store.sal import actor_name

LIVE_WAIT = 15.0  # seconds a restart waits for what runs before it says it is unknown


class Deployer:
    """The deploy service (one per bot)."""

    def __init__(
        self, services: Services, bumper: Bumper | None, *,
        on_finished: Callable[[str], None] = lambda component: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        model: Model | None = None,
        freezes: FreezeBook | None = None,
        tracker: GitLabDeployments | None = None,
    ) -> None:  # fmt: skip
        """`on_finished(component)` is called after every deploy ends (what runs changed)."""
        self.services = services
        self.freezes = freezes or FreezeBook(services, now)
        self.tracker = tracker or GitLabDeployments(services)  # GitLab's view of deploys
        self.bumper = bumper
        self.model = model or Model(services, bumper, now=now, frozen=self.freezes.in_force)
        self.on_finished = on_finished
        self.config = services.config
        self.now = now
        self.dir = self.config.bot.state_dir / "deploys"
        self.records = DeployRecords(services.store, self.dir, services.leadership)
        self.steps = Steps(services, self.dir)
        self.report = DeployReport(services, self.records, bumper)
        self._busy: dict[tuple[str, str], str] = {}  # (component, env) -> who holds it
        self._tasks = TaskSet()  # deploys, auto-applies, orphan watches

    # --- entry points --------------------------------------------------------------------

    async def apply(self, req: DeployRequest) -> DeployOutcome:
        """Check, then deploy what is pinned; returns when the deploy has finished."""
        key = (req.component, req.env)
        if key in self._busy:
            return await self.report.refuse(req, f"{self._busy[key]}; nothing run")
        self._busy[key] = f"a deploy of {req.component} to {req.env} by {req.actor} is running"
        try:
            try:
                d = await self._prepare(req)
            except NothingToApply as exc:  # not a deploy, not a refusal: no row, no SAL
                return DeployOutcome(None, "nothing", str(exc))
            except UserError as exc:
                return await self.report.refuse(req, str(exc))
            task = self._tasks.spawn(self._execute(d), name=f"deploy-{d.id}")
            return await asyncio.shield(task)  # a caller going away does not stop the deploy
        finally:
            self._busy.pop(key, None)

    def apply_later(self, reqs: list[DeployRequest]) -> None:
        """Run deploys one after the other in the background (auto-apply after a merge)."""

        async def in_order() -> DeployOutcome | None:
            outcome = None
            for req in reqs:
                outcome = await self.apply(req)
            return outcome

        self._tasks.spawn(in_order(), name="auto-apply")

    async def auto_apply(
        self, component: str, envs: list[str], actor: str, tasks: list[str]
    ) -> list[DeployOutcome]:
        """After a bump: apply it in each `auto_apply` environment that deploys it now (on
        the GitLab forge, environments that deploy after merge wait for the merge)."""
        outcomes = []
        for env in self.auto_apply_envs(envs):
            req = DeployRequest(component, env, actor, Action.AUTO_APPLY, tuple(tasks))
            outcomes.append(await self.apply(req))
        return outcomes

    def auto_apply_envs(self, envs: list[str]) -> list[str]:
        """Which of `envs` `auto_apply` deploys right after a bump."""
        gitlab = self.bumper is not None and self.bumper.forge.kind == "gitlab"
        return [
            env for env in envs
            if (cfg := self.config.env(env)) is not None and cfg.auto_apply
            and (cfg.deploy_before_merge or not gitlab)
        ]  # fmt: skip

    async def precheck(self, req: DeployRequest, version: str) -> DeployOutcome | None:
        """The checks a deploy of `version` would make now (a refusal is recorded)."""
        busy = self._busy.get((req.component, req.env))
        try:
            if busy is not None:
                raise Refusal(f"{busy}; nothing changed")
            await preflight.check_lock(self.services, req.component, req.env, req.actor)
            move = await self.model.direction(req.component, req.env, version)
            self._check_direction(req, version, move)
            await self._checks(req, version, Checked(), move)
        except UserError as exc:
            return await self.report.refuse(req, str(exc))
        return None

    async def holder(self, component: str, env: str) -> str | None:
        """What keeps component+env busy now, e.g. `deploy #17 (bob)`; None when free."""
        busy = self._busy.get((component, env))
        if busy is None:
            return None
        for row in await self.records.in_flight():
            if (row["component"], row["env"]) == (component, env):
                return f"deploy #{row['id']} ({actor_name(row['actor'])})"
        return busy

    async def check_artifacts(self, req: DeployRequest, version: str) -> DeployOutcome | None:
        """The registry preflight alone (for `!promote`); a refusal is recorded."""
        try:
            await preflight.check_registry(self.services, req.component, version, False, Checked())
        except Refusal as exc:
            return await self.report.refuse(req, str(exc))
        return None

    async def stop(self) -> None:
        """Cancel running deploys (their commands are killed, their rows interrupted)."""
        await self._tasks.stop()

    # --- preflight -------------------------------------------------------------------------

    def _check_direction(self, req: DeployRequest, version: str, move: Direction) -> None:
        """A rollback only goes back; forward is `!deploy`'s (through every gate). An apply
        of a pin that is a step back (edited by hand, or moved since the advice) says so
        instead of going back unasked: `!rollback` (or an admin's --force) does that."""
        c, env = req.component, req.env
        if req.action in (Action.APPLY, Action.CONFIRM) and move == Direction.BACK:
            if not req.force:
                raise Refusal(
                    f"{env} pins {version}, older than what runs there: applying it is a step"
                    f" back; to go back: !rollback {c} {env} to {version} (or an admin's"
                    f" --force); to keep what runs, pin it again with !deploy; nothing run"
                )
        if req.action != Action.ROLLBACK or move in (Direction.BACK, Direction.UNKNOWN):
            return
        if move == Direction.SAME:
            raise Refusal(f"{env} already runs {version}; nothing to roll back; nothing run")
        raise Refusal(
            f"{version} is not older than what {env} runs, so this is not a rollback: a move"
            f" forward goes through requires and review: !deploy {c} {version} to {env};"
            " nothing run"
        )

    async def _checks(
        self, req: DeployRequest, version: str, checked: Checked, move: Direction
    ) -> None:
        """Gates by direction: a move forward (or from an unknown state) passes `requires`
        (and, in `_prepare`, `review`) whichever command asked; a step back does not wait
        for them; only the admin's `--emergency` skips every gate, and says so."""
        s = self.services
        await preflight.check_freeze(self.freezes, req, self.now(), checked)
        emergency = req.action == Action.EMERGENCY
        if emergency:  # the way out of an incident: no window, requires or review
            checked.notes.append("emergency: window, requires and review not checked")
        else:
            preflight.check_window(s, req.env, req.force, self.now(), checked)
        if move.gated and not emergency and not self._rollback_of_unknown(req, move):
            await preflight.check_requires(
                self.model, req.component, req.env, version, req.force, checked
            )
        if not emergency:  # the emergency rollback is the way out of a failed or pending release
            await preflight.check_helm_release(s, req.component, req.env, req.force, checked)
        if emergency and not version:  # the warning is already the first note
            return
        await preflight.check_registry(
            s, req.component, version, req.force, checked, emergency=emergency
        )

    @staticmethod
    def _rollback_of_unknown(req: DeployRequest, move: Direction) -> bool:
        """A rollback where nothing says what runs: `!rollback` checked the direction
        against the pin before re-pinning it."""
        return req.action == Action.ROLLBACK and move == Direction.UNKNOWN

    def _check_review(self, req: DeployRequest, move: Direction) -> None:
        env_cfg = self.config.env(req.env)
        if not (env_cfg and env_cfg.review) or req.commit is not None:
            return
        if req.action in (Action.REVIEW, Action.EMERGENCY) or not move.gated:
            return  # the review itself; the admin's way out; a step back
        if self._rollback_of_unknown(req, move):
            return
        raise Refusal(f"{req.env} applies only after a review: !apply {req.component}"
                      f" {req.env} runs the diff; nothing run")  # fmt: skip

    async def _prepare(self, req: DeployRequest) -> Deploy:
        s = self.services
        checked = Checked()
        await preflight.check_lock(s, req.component, req.env, req.actor)
        revisions: tuple[int | None, int | None] = (None, None)
        from_version: str | None = None
        if req.action == Action.EMERGENCY:
            commit, mr = None, None
            pick = await emergency_target(s, req)
            version, source, from_version, revisions = (
                pick.version, pick.source, pick.from_version, pick.revisions,
            )  # fmt: skip
            if pick.unchecked is not None:  # the first line says so, before anything else
                checked.notes.insert(
                    0, "WARNING: could not check the image it returns to (helm picks the revision)"
                )
        else:
            commit, source, mr = await self._source(req.component, req.env)
            await preflight.check_approval(s, req.env, mr, req.actor)
            pins = await self._bumper().pinned(req.component, req.env, commit)
            if not pins:
                raise Refusal(f"{req.component} has no pin in {req.env}; nothing run")
            version = pins[0]
            if req.commit is not None and commit != req.commit:
                raise Refusal(
                    f"the pin moved since the review: {source} is not the reviewed"
                    f" {req.commit[:8]}; !apply {req.component} {req.env} for a new review;"
                    " nothing run"
                )
            if s.control is not None and commit is not None:  # the bump's tasks come along
                comp = self.config.components[req.component]
                found = await s.control.tasks_at(commit, req.component, comp, req.env)
                req.tasks = tuple(dict.fromkeys([*req.tasks, *found]))
            if req.version is not None and version != req.version:
                raise Refusal(f"{source} pins {version}, not {req.version}; nothing run")
        if from_version is None:
            try:
                from_version = await running_version(s, req.component, req.env)
            except ClusterError:
                from_version = None
        move = await self._move(req, from_version, version)
        self._check_direction(req, version, move)
        self._check_review(req, move)
        await self._checks(req, version, checked, move)
        await self._check_something(req, version, move)
        deploy_id = await self.records.insert(req, version, from_version, commit, mr)
        d = Deploy(deploy_id, req, version, from_version, commit, source, mr, checked)
        d.revision, d.from_revision = revisions
        return d

    async def _move(self, req: DeployRequest, running: str | None, version: str) -> Direction:
        if req.action == Action.EMERGENCY and not version:
            return Direction.BACK  # helm picks the previous revision
        return await self.model.history.direction(req.component, running, version)

    async def _check_something(self, req: DeployRequest, version: str, move: Direction) -> None:
        """An apply of what already runs is "nothing to apply" (no deploy, no SAL), unless
        the model knows of unapplied resources or an admin forces it."""
        if move != Direction.SAME or req.force or req.action.is_rollback:
            return
        if req.action not in (Action.APPLY, Action.AUTO_APPLY, Action.PROMOTE, Action.DEPLOY):
            return
        if await self.model.unapplied(req.component, req.env):
            return
        raise NothingToApply(f"nothing to apply: {req.env} already runs {version}")

    async def source_of(self, component: str, env: str) -> tuple[str, str]:
        """The commit an apply would deploy now, and how to name it (`main@1a2b3c4d`)."""
        commit, source, _ = await self._source(component, env)
        return commit, source

    async def prepare(self, req: DeployRequest) -> Deploy:
        """Preflight and the deploy's row, without running anything (a review runs the diff)."""
        return await self._prepare(req)

    def _bumper(self) -> Bumper:
        if self.bumper is None:
            raise Refusal("no control repo configured (control_repo in the config)")
        return self.bumper

    async def _source(self, component: str, env: str) -> tuple[str, str, OpenBump | None]:
        """The commit to deploy: the bump branch head when env deploys before merge and a
        bump MR is open, else the target branch head."""
        forge = self._bumper().forge
        control = self.services.control
        if control is None:
            raise Refusal("cannot check out the control repo: set control_repo.url; nothing run")
        env_cfg = self.config.env(env)
        mr = await forge.open_bump(component) if env_cfg and env_cfg.deploy_before_merge else None
        branch = mr.branch if mr else forge.branch
        try:
            await control.sync()
            if mr is not None:
                refspec = f"+refs/heads/{branch}:refs/remotes/origin/{branch}"
                await git("fetch", "--quiet", "origin", refspec, cwd=control.workdir)
            commit = await control.rev(f"origin/{branch}")
        except GitError as exc:
            raise Refusal(f"cannot read the control repo: {exc}; nothing run") from None
        label = f"{branch} (MR !{mr.iid})" if mr else branch
        return commit, f"{label}@{commit[:8]}", mr

    # --- running -------------------------------------------------------------------------

    async def _execute(self, d: Deploy) -> DeployOutcome:
        req = d.req
        notes = d.checked.notes + d.checked.forced
        shown = f" ({'; '.join(notes)})" if notes else ""
        await self.report.record(
            d, "started", f"{self.report.base(d)}: {req.action} started{shown}"
        )
        await self.tracker.started(d)
        verb = {"rollback": "rolling back", "rollback-emergency": "emergency rollback of"}
        via = "via" if d.is_rollback else "from"
        await self.report.say(d, (
            f"{verb.get(req.action, 'deploying')} {d.what()} (deploy #{d.id}{d.for_tasks})"
            f" {via} {d.source}" + (f" · {'; '.join(notes)}" if notes else "")
        ), step="start")  # fmt: skip
        workdir = self.dir / str(d.id)
        try:
            verified = await self._run_steps(d, workdir)
        except DeployFailed as exc:
            return await self._finish(d, "failed", str(exc))
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(d, "interrupted", "the bot stopped; not retried"))
            raise
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        return await self._finish(d, "done", verified)

    async def _run_steps(self, d: Deploy, workdir: Path) -> str:
        deploy, steps, scripts = self.config.deploy, self.steps, ""
        if d.req.action == Action.EMERGENCY:
            self.dir.mkdir(parents=True, exist_ok=True)
            await self.records.set_state(d.id, "applying")
            await steps.run(
                d, "rollback", deploy.rollback, self.dir, on_wait=self.report.waiting(d)
            )
        else:
            await steps.checkout(d, workdir)
            await self.records.set_state(d.id, "applying")
            if deploy.diff:  # the room hears start -> diff -> upgrade scripts -> brings -> result
                result = await steps.run(
                    d, "diff", deploy.diff, workdir, on_wait=self.report.waiting(d)
                )
                summary = steps.diff_summary(result, self.report.log_url(d.id))
                await self.report.say(d, f"deploy #{d.id} diff: {summary}", step="diff")
            scripts = await self.report.upgrade_scripts(d, workdir)
            await self.report.brings(d)
            await steps.run(d, "apply", deploy.apply, workdir, on_wait=self.report.waiting(d))
        await self.records.set_state(d.id, "verifying")
        verified = await steps.verify(d) + scripts
        if d.req.action == Action.EMERGENCY and not d.version:
            d.version = await self._now_running(d)
            verified += f"; runs {d.version or 'an unknown version'} now"
            if d.from_version and d.version and is_older(d.from_version, d.version):
                verified += (
                    "; helm's previous revision was the newer one, so this moved forward"
                    f" (to go back further: !rollback {d.req.component} {d.req.env} to <ref>)"
                )
        if deploy.test:
            report = await functests.run_tests(self.services, steps, d,
                                               workdir if d.commit else self.dir)  # fmt: skip
            d.tests, d.tests_tail = report.line(), report.tail
            if not report.ok:
                raise DeployFailed(f"{d.tests}; the new version is live: to go back,"
                                   f" !rollback {d.req.component} {d.req.env}")  # fmt: skip
            verified += f"; {d.tests}"
        return verified

    async def _finish(self, d: Deploy, state: str, detail: str) -> DeployOutcome:
        req = d.req
        seconds = time.monotonic() - d.started
        took = format_duration(seconds)
        if state == "done" and req.action == Action.EMERGENCY:
            detail += "; " + await self._repin(d)
        if state == "failed":
            prefix = str(self.config.bot.prefix)
            retry = None
            if lost_api(detail):  # whether the apply landed decides the step: the planner's
                retry = await self._retry_step(
                    req, LIVE_WAIT, "check {status}, then {apply} to retry"
                )
            if advice := hint(detail, req.component, req.env, prefix, retry):
                detail += f" · {advice}"
        await self.records.set_state(d.id, state, result=detail, version=d.version,
                                     error=None if state == "done" else detail)  # fmt: skip
        await self.tracker.ended(d, state)
        await self.report.record(
            d, state, f"{self.report.base(d)}: {req.action} {state} in {took}: {detail}"
        )
        what = f"rollback of {d.what()}" if d.is_rollback else d.what()
        line = (
            f"deploy #{d.id} {state}: {what}"
            f"{' (' + ', '.join(req.tasks) + ')' if req.tasks else ''} in {took}: "
            f"{detail} · log: {self.report.log_url(d.id)}"
        )
        await self.report.say(d, line, final=True)
        self.services.metrics.deploys.labels(state).inc()
        self.services.metrics.deploy_duration.labels(req.component, req.env, state).observe(seconds)
        self.on_finished(req.component)  # what runs changed: no stale !status, wake monitors
        if d.mr is not None and state in ("done", "failed"):
            done = Deployed(req.component, req.env, d.version, req.actor, d.id, state, took,
                            self.report.log_url(d.id), d.tests, d.tests_tail)  # fmt: skip
            await follow_up(self.services, self.bumper, d.mr, done)
        return DeployOutcome(d.id, state, line, d.version)

    async def _now_running(self, d: Deploy) -> str:
        """What runs after helm picked the revision (a live file says, in the demo)."""
        try:
            return await live_version(self.services, d.req.component, d.req.env) or ""
        except ClusterError:
            return ""

    async def _repin(self, d: Deploy) -> str:
        """After an emergency rollback: pin what is live, so git matches the cluster."""
        if not d.version:
            return (
                f"not re-pinned: the version helm returned to is unknown; check "
                f"!status {d.req.component} {d.req.env}, then pin it with !deploy"
            )
        try:
            out = await self._bumper().bump(
                d.req.component, d.version, [d.req.env], actor=d.req.actor,
                tasks=d.req.tasks, action=Action.EMERGENCY,
            )  # fmt: skip
        except UserError as exc:
            return f"re-pin failed ({exc}); pin {d.version} by hand"
        if out.published is None:
            return f"pin already at {d.version}"
        if out.published.mr is not None:
            return f"re-pin MR !{out.published.mr.iid}: {out.published.mr.url}"
        return f"re-pinned in {out.published.commit_sha[:8]}"

    # --- restart -------------------------------------------------------------------------

    async def recover(self, live_timeout: float = LIVE_WAIT) -> list[int]:
        """Mark deploys a crash left in flight as interrupted; never re-apply them."""
        rows = await self.records.in_flight()
        for row in rows:
            tasks = tuple(t for t in row["tasks"].split(",") if t)
            req = DeployRequest(
                row["component"], row["env"], row["actor"], Action(row["action"]), tasks
            )
            d = Deploy(row["id"], req, row["version"], row["from_version"], row["commit_sha"],
                       "", None, Checked())  # fmt: skip
            live = await self._live_now(req.component, req.env, live_timeout)
            pgid = orphan_group(self.dir, d.id)
            if pgid is not None:
                detail = (
                    f"interrupted: the bot restarted while {row['state']}; its deploy process"
                    f" group {pgid} still runs, so applies of {req.component} to {req.env} wait"
                    f" until it exits; {live}"
                )
                self._watch_orphan(d, pgid)
            else:
                detail = (
                    f"interrupted: the bot restarted while {row['state']}; nothing was"
                    f" re-applied; {live}; {await self._after_restart(req, live_timeout)}"
                )
            await self.records.set_state(d.id, "interrupted", result=detail,
                                         error=f"bot restarted while {row['state']}")  # fmt: skip
            await self.tracker.ended(d, "interrupted")
            await self.report.record(
                d, "interrupted", f"{self.report.base(d)}: {req.action} {detail}"
            )
            self.services.metrics.deploys.labels("interrupted").inc()
            await self.report.say(
                d, f"deploy #{d.id} of {req.component} {d.version} to {req.env} {detail}"
                f" · log: {self.report.log_url(d.id)}", final=True,
            )  # fmt: skip
            await asyncio.to_thread(shutil.rmtree, self.dir / str(d.id), True)
        return [int(r["id"]) for r in rows]

    async def _after_restart(self, req: DeployRequest, limit: float) -> str:
        """The planner's step for an interrupted deploy's environment."""
        return await self._retry_step(req, limit, "check, then {apply} to retry")

    async def _retry_step(self, req: DeployRequest, limit: float, retry: str) -> str:
        """The planner's step for an environment whose deploy was cut off (a restart, helm
        losing the API): `retry` (its `{apply}` filled) only while the pin is not what runs
        (else `!apply` would say nothing to apply)."""
        prefix = str(self.services.config.bot.prefix)
        apply = f"{prefix}apply {req.component} {req.env}"
        retry = retry.format(apply=apply, status=f"{prefix}status {req.component} {req.env}")
        try:
            async with asyncio.timeout(limit):
                facts = await self.model.facts(req.component, req.env)
        except (ClusterError, GitError, UserError, TimeoutError):
            return retry
        advice = plan_env(facts, prefix=prefix)
        return retry if advice.command == apply else advice.line()

    def _watch_orphan(self, d: Deploy, pgid: int) -> None:
        """Refuse applies of that component+env until the orphaned group is gone."""
        key = (d.req.component, d.req.env)
        self._busy[key] = (
            f"deploy #{d.id}'s process group {pgid} from before the bot restarted still runs"
        )

        async def gone() -> None:
            self._busy.pop(key, None)
            step = await self._after_restart(d.req, LIVE_WAIT)
            await self.report.say(
                d, f"deploy #{d.id}'s leftover process group {pgid} has exited; {step}",
                final=True,
            )  # fmt: skip

        self._tasks.spawn(wait_gone(self.dir, d.id, pgid, gone), name=f"orphan-{d.id}")

    async def _live_now(self, component: str, env: str, limit: float) -> str:
        if env not in self.services.clusters:
            return "live version unknown: no cluster configured"
        try:
            async with asyncio.timeout(limit):
                live = await live_version(self.services, component, env)
        except (ClusterError, TimeoutError) as exc:
            return f"live version unknown ({exc or 'timed out'})"
        return f"live now: {live or 'unknown'}"
