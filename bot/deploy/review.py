"""Reviewed applies (environment option `review: true`), as the Pipeline admin page does it:
`helmfile diff`, a human reads it, then apply.

`!apply <c> <env>` on such an environment runs only `deploy.diff` at the commit it would
deploy, keeps the output behind `/deploys/<id>/log`, says what changes, and stops. The review
is a row of the `deploys` table (action `review`, state `reviewed`), so it survives a restart.
`!apply <c> <env> confirm` by a second deployer (`review_by: other`; `self` allows the
requester) within `review_timeout` applies exactly the reviewed commit: a pin that moved since
needs a new review. Every step is in the SAL.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bot.cluster.kube import ClusterError
from bot.config.auth import same_person
from bot.config.model import Config
from bot.control import upgrades
from bot.core.errors import UserError
from bot.core.tasks import within
from bot.core.text import duration_seconds, format_duration
from bot.deploy.deployer import Deployer
from bot.deploy.model import Action, Deploy, DeployFailed, DeployOutcome, DeployRequest
from bot.deploy.records import claim_review, latest_review, release_review, waiting_review_rows
from bot.model.running import running_version
from bot.store.db import Store
from bot.store.sal import SalEntry, actor_name, deploy_message


async def _record(dep: Deployer, d: Deploy, result: str, text: str) -> None:
    req = d.req
    env_cfg = dep.config.env(req.env)
    base = deploy_message(req.actor, req.component, d.from_version, d.version, req.env, d.refs)
    await dep.services.sal.record(
        SalEntry(
            actor=req.actor, action="review", message=f"{base}: {text}",
            component=req.component, env=req.env, from_version=d.from_version,
            to_version=d.version, commit_sha=d.commit, mr_url=d.mr.url if d.mr else None,
            tasks=list(req.tasks), result=result, log_url=dep.report.log_url(d.id),
            sal_project=env_cfg.sal_project if env_cfg else None,
        )
    )  # fmt: skip


async def crosses_scripts(dep: Deployer, req: DeployRequest) -> bool:
    """Would an apply now cross an upgrade script (`bot.control.upgrades`)? Production asks
    for a confirmed review then, as a `review: true` environment always does."""
    control, bumper = dep.services.control, dep.bumper
    if control is None or bumper is None:
        return False
    try:
        commit, _ = await dep.source_of(req.component, req.env)
        pins = await bumper.pinned(req.component, req.env, commit)
        running = await running_version(dep.services, req.component, req.env)
        if running is None:  # what runs is unknown: count from the previous pin
            running = await bumper.previous(req.component, req.env)
    except (UserError, ClusterError):
        return False  # the apply itself will say what is wrong
    names = await control.names_at(commit, f"components/{req.component}")
    return bool(pins) and bool(upgrades.crossed(names, running, pins[0]))


async def review(dep: Deployer, req: DeployRequest) -> DeployOutcome:
    """Run the diff of what `!apply` would deploy; apply nothing."""
    config = dep.config
    env_cfg = config.env(req.env)
    req.action = Action.REVIEW
    if not config.deploy.diff:
        return await dep.report.refuse(req, f"{req.env} needs a review but deploy.diff is not set")
    try:
        d = await dep.prepare(req)
    except UserError as exc:
        return await dep.report.refuse(req, str(exc))
    workdir = dep.dir / str(d.id)
    try:
        await dep.steps.checkout(d, workdir)
        scripts = await dep.report.upgrade_scripts(d, workdir)
        await dep.records.set_state(d.id, "applying")
        summary = dep.steps.diff_summary(
            await dep.steps.run(
                d, "diff", config.deploy.diff, workdir, on_wait=dep.report.waiting(d)
            ),
            dep.report.log_url(d.id),
        )
    except DeployFailed as exc:
        await dep.records.set_state(d.id, "failed", result=str(exc), error=str(exc))
        await _record(dep, d, "failed", f"review failed: {exc}")
        line = f"review #{d.id} of {req.component} in {req.env} failed: {exc} · log: "
        return DeployOutcome(d.id, "failed", line + dep.report.log_url(d.id), d.version)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    await dep.records.set_state(d.id, "reviewed", result=summary)
    timeout = duration_seconds(env_cfg.review_timeout) if env_cfg else 900.0
    until = datetime.fromtimestamp(time.time() + timeout, UTC).strftime("%H:%M UTC")
    tasks = f" ({', '.join(req.tasks)})" if req.tasks else ""
    who = "another deployer" if env_cfg is None or env_cfg.review_by == "other" else "a deployer"
    await _record(dep, d, "reviewed", f"diff reviewed from {d.source}: {summary}; nothing applied")
    line = (
        f"review #{d.id}: {req.component} {d.from_version or '(none)'} -> {d.version} in"
        f" {req.env} from {d.source}{tasks}: {summary}{'; upgrade scripts crossed (named above)' if scripts else ''} · diff:"
        f" {dep.report.log_url(d.id)} · nothing applied; {who} confirms with"
        f" !apply {req.component} {req.env} confirm until {until}"
    )
    await dep.services.announcer.announce(line, component=req.component, key=f"deploy:{d.id}")
    return DeployOutcome(d.id, "reviewed", line, d.version)


async def confirm(dep: Deployer, req: DeployRequest) -> DeployOutcome:
    """Apply the waiting review of component in env, exactly its commit."""
    env_cfg = dep.config.env(req.env)
    c, env = req.component, req.env
    req.action = Action.CONFIRM
    row = await latest_review(dep.services.store, c, env)
    if row is None or row["state"] != "reviewed":
        why = "" if row is None else f" (review #{row['id']} is {row['state']})"
        return await dep.report.refuse(
            req, f"no review of {c} in {env} waits{why}; !apply {c} {env}"
        )
    rid = int(row["id"])
    timeout = duration_seconds(env_cfg.review_timeout) if env_cfg else 900.0
    age = time.time() - float(row["finished_at"] or 0)
    if age > timeout:
        return await dep.report.refuse(
            req, f"review #{rid} expired {format_duration(age - timeout)} ago (review_timeout"
            f" {env_cfg.review_timeout if env_cfg else '15m'}); !apply {c} {env} for a new one",
        )  # fmt: skip
    people = dep.config.people
    if (env_cfg is None or env_cfg.review_by == "other") and same_person(
        people, row["actor"], req.actor
    ):
        return await dep.report.refuse(
            req, f"review #{rid} was requested by {actor_name(row['actor'])}"
            f"{_elsewhere(row['actor'], req.actor)}; another deployer must confirm it"
            " (review_by: other)",
        )  # fmt: skip
    if not await claim_review(dep.services.store, rid, req.actor):
        return await dep.report.refuse(req, f"review #{rid} was confirmed already")
    tasks = [t for t in (row["tasks"] or "").split(",") if t]
    apply = DeployRequest(
        c, env, req.actor, Action.APPLY, tuple(dict.fromkeys([*tasks, *req.tasks])), req.force,
        version=row["version"], commit=row["commit_sha"],
    )  # fmt: skip
    await dep.services.sal.record(
        SalEntry(
            actor=req.actor, action="confirm", component=c, env=env,
            message=f"{actor_name(req.actor)}: confirmed review #{rid} of {c} {row['version']}"
            f" in {env} by {actor_name(row['actor'])}" + "".join(f" {t}" for t in apply.tasks),
            to_version=row["version"], commit_sha=row["commit_sha"], tasks=list(apply.tasks),
            result="confirmed", log_url=dep.report.log_url(rid),
            sal_project=env_cfg.sal_project if env_cfg else None,
        )
    )  # fmt: skip
    outcome = await dep.apply(apply)
    if outcome.state == "refused":  # nothing applied: the review still waits for a confirm
        await release_review(dep.services.store, rid)
    return outcome


def _elsewhere(asked: str, confirming: str) -> str:
    """` (the same person as console:ALICE)` when the identities differ but the person is
    one (a case variant, a nick change, another network)."""
    return "" if asked == confirming else f" (the same person as {confirming})"


@dataclass(frozen=True)
class PendingReview:
    """A review waiting for its confirm, as the pages show it (read from the store, so it
    is the same after a restart)."""

    id: int
    component: str
    env: str
    asked_by: str  # short name of who ran the review
    version: str
    from_version: str | None
    summary: str  # what the diff changes
    confirm: str  # the command that applies it
    who_confirms: str  # "another deployer" | "a deployer"
    until: float  # when the review expires (epoch seconds)
    commit: str | None = None  # the reviewed commit: a confirm applies exactly this one
    stale: str | None = None  # why a confirm would be refused now (the pin moved since)

    def until_text(self) -> str:
        return datetime.fromtimestamp(self.until, UTC).strftime("%H:%M UTC")


async def pending_reviews(
    store: Store, config: Config, now: float
) -> dict[tuple[str, str], PendingReview]:
    """Every review still waiting (not confirmed, not expired) by (component, env)."""
    prefix = str(config.bot.prefix)
    out = {}
    for row in await waiting_review_rows(store):
        c, env = row["component"], row["env"]
        env_cfg = config.env(env)
        timeout = duration_seconds(env_cfg.review_timeout) if env_cfg else 900.0
        until = float(row["finished_at"] or row["started_at"]) + timeout
        if until <= now:
            continue
        other = env_cfg is None or env_cfg.review_by == "other"
        out[(c, env)] = PendingReview(
            id=int(row["id"]), component=c, env=env, asked_by=actor_name(row["actor"]),
            version=row["version"] or "?", from_version=row["from_version"],
            summary=row["result"] or "", confirm=f"{prefix}apply {c} {env} confirm",
            who_confirms="another deployer" if other else "a deployer", until=until,
            commit=row["commit_sha"],
        )  # fmt: skip
    return out


async def check_current(dep: Deployer, review: PendingReview, wait: float) -> PendingReview:
    """The review, marked stale when what an apply would deploy now is not the reviewed
    commit (a confirm is then refused: the pin moved since the review). Unknown within
    `wait` seconds: left as it is (the confirm says so if it comes to that)."""
    try:
        commit, source = await within(dep.source_of(review.component, review.env), wait)
    except (UserError, TimeoutError):
        return review
    if review.commit is None or commit == review.commit:
        return review
    return replace(review, stale=f"the pin moved since: {source} is not the reviewed commit"
                   f" {review.commit[:8]}")  # fmt: skip
