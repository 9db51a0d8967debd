"""Deploy freezes end to end: `!freeze` said in chat, planned in an iCalendar feed (a weekly
recurring event) and in the config. The real App over console chat, real git, FakeKube, a
real OCI registry and the recording helmfile (tests/support/deployworld)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.app import App
from bot.chat.base import Message
from bot.deploy.freezecal import freezes_in
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.poll import until
from tests.support.shown import said as shown_said
from tests.support.shown import shown

__all__ = ["bed"]


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#") and "working on it" not in line]


def rollouts(bed: DeployBed, new: str, count: int) -> asyncio.Task[None]:
    """Each of the next `count` syncs starts the rollout of `new` on the fake cluster."""

    async def go() -> None:
        for nth in range(1, count + 1):
            await bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new),
                              nth=nth)  # fmt: skip

    return asyncio.create_task(go())


async def test_freeze_refuses_apply_allows_emergency_and_is_lifted_at_its_end(
    bed: DeployBed,
) -> None:
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    syncs = rollouts(bed, new, 1)
    after: list[str] = []

    async def at_the_end(app: App) -> None:
        async def over() -> bool:
            return any(e.result == "unfrozen" for e in await app.services.sal.query(limit=50))

        await until(over, "the freeze's end")  # 4 s after it started
        assert await app.deployer.freezes.active("toolsbeta") == []
        msg = Message("console", "console", "alice", "!apply builds-api toolsbeta",
                      ("console:alice",))  # fmt: skip
        await app.dispatcher.handle(msg)
        assert await app.services.outbox.flush(timeout=20)
        rows = await app.store.fetchall("SELECT state, actor FROM deploys ORDER BY id")
        after.extend(r["state"] for r in rows)

    s = await bed.run(
        [
            '!freeze toolsbeta 4s "end of quarter" T77',
            "!apply builds-api toolsbeta",
            "!apply builds-api toolsbeta --emergency",
        ],
        inspect=at_the_end,
    )
    await syncs
    said = replies(s.out)
    assert said[0].startswith("froze toolsbeta until ") and said[0].endswith(
        "end of quarter (!unfreeze toolsbeta)"
    )
    assert said[1].startswith("apply: refused: toolsbeta is frozen: freeze #1 of toolsbeta until ")
    assert "by alice: end of quarter (T77)" in said[1]
    done = [x for x in shown_said(s.out) if x.startswith("deploy #1 done: ")]  # in its room, once
    assert len(done) == 1 and done[0].startswith(f"deploy #1 done: builds-api {shown(new)} to ")
    room = [x for x in s.out if x.startswith("[#")]
    assert any("deploy freeze started: freeze #1 of toolsbeta" in x for x in room)
    assert any("deploy freeze over: freeze #1 of toolsbeta ended at" in x for x in room)
    # the emergency deploy says what it went through, in its start line and the SAL
    started = next(e for e in s.sal if e.action == "apply" and e.result == "started")
    assert "--emergency" in started.message and "end of quarter" in started.message
    freeze = [(e.action, e.result, e.env) for e in s.sal if e.action == "freeze"]
    assert freeze == [("freeze", "frozen", "toolsbeta"), ("freeze", "unfrozen", "toolsbeta")]
    refused = [e for e in s.sal if e.result == "refused"]
    assert len(refused) == 1 and "frozen" in refused[0].message
    # after the end a plain !apply is no longer refused as frozen; the emergency deploy left
    # nothing to apply (the planner's "nothing to apply", not a second deploy of the same pin)
    assert after == ["done"]
    assert any(line.startswith("nothing to apply") for line in said[2:]), said


async def test_force_during_a_freeze_needs_an_admin_and_a_reason(bed: DeployBed) -> None:
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    syncs = rollouts(bed, new, 1)

    s = await bed.run(
        [
            '!freeze all 1h "datacenter move"',
            "!apply builds-api toolsbeta --force",
            '!apply builds-api toolsbeta --force "hotfix for the outage" T5',
            "!status builds-api toolsbeta",
        ]
    )
    await syncs
    said = replies(s.out)
    assert said[1].startswith("apply: refused: toolsbeta is frozen: freeze #1 of every environment")
    assert "needs a reason" in said[1]
    done = [x for x in shown_said(s.out) if x.startswith("deploy #1 done: ")]  # in its room, once
    assert len(done) == 1
    assert done[0].startswith(f"deploy #1 done: builds-api {shown(new)} to toolsbeta (T5)")
    assert said[2].startswith("FROZEN: freeze #1 of every environment until ")
    started = next(e for e in s.sal if e.result == "started")
    assert "overridden with --force by alice: hotfix for the outage" in started.message


WEEKLY = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//freezes//EN
BEGIN:VEVENT
UID:weekly-freeze@example.org
DTSTAMP:20260101T000000Z
DTSTART:{start}
DTEND:{end}
RRULE:FREQ=WEEKLY
SUMMARY:weekly train freeze
CATEGORIES:{envs}
ORGANIZER;CN=Release Team:mailto:release@example.org
END:VEVENT
END:VCALENDAR
"""


def ics(path: Path, start: datetime, hours: int, envs: str) -> Path:
    fmt = "%Y%m%dT%H%M%SZ"
    end = start + timedelta(hours=hours)
    path.write_text(WEEKLY.format(start=start.strftime(fmt), end=end.strftime(fmt), envs=envs))
    return path


async def test_a_weekly_recurring_calendar_freeze_refuses_deploys_inside_it(
    bed: DeployBed, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # first occurrence three weeks ago: only the weekly recurrence covers now
    feed = ics(tmp_path / "freezes.ics", now - timedelta(weeks=3, hours=1), 3, "toolsbeta")
    bed.data["freeze_calendar"] = f"file://{feed}"
    bed.push(bed.pins["toolsbeta"])

    s = await bed.run(["!apply builds-api toolsbeta", "!status builds-api"])

    said = replies(s.out)
    assert said[0].startswith("apply: refused: toolsbeta is frozen: calendar freeze of toolsbeta")
    assert "by Release Team: weekly train freeze" in said[0]
    assert said[1].startswith("FROZEN: calendar freeze of toolsbeta")
    assert bed.records() == []  # nothing ran


def test_calendar_occurrences_outside_now_and_other_envs_do_not_freeze() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    fmt = "%Y%m%dT%H%M%SZ"

    def text(start: datetime, envs: str) -> str:
        return WEEKLY.format(start=start.strftime(fmt),
                             end=(start + timedelta(hours=2)).strftime(fmt), envs=envs)  # fmt: skip

    envs = ["toolsbeta", "tools"]
    inside = freezes_in(text(now - timedelta(weeks=5, hours=1), "tools"), envs, now)
    assert [f.envs for f in inside if f.active(now)] == [("tools",)]
    outside = freezes_in(text(now - timedelta(weeks=5, hours=3), "tools"), envs, now)
    assert not [f for f in outside if f.active(now)]  # that week's ended an hour ago
    elsewhere = freezes_in(text(now - timedelta(hours=1), "deployment-prep"), envs, now)
    assert elsewhere == []
    everywhere = freezes_in(text(now - timedelta(hours=1), "all"), envs, now)
    assert [f.envs for f in everywhere if f.active(now)] == [("*",)]


async def test_planned_freezes_from_the_config_refuse(bed: DeployBed) -> None:
    now = datetime.now(UTC)
    bed.data["freezes"] = [
        {"envs": ["toolsbeta"], "start": (now - timedelta(hours=1)).isoformat(),
         "end": (now + timedelta(hours=1)).isoformat(), "reason": "end of year"}
    ]  # fmt: skip
    bed.push(bed.pins["toolsbeta"])

    s = await bed.run(["!apply builds-api toolsbeta", "!unfreeze toolsbeta"])

    said = replies(s.out)
    assert said[0].startswith("apply: refused: toolsbeta is frozen: config freeze of toolsbeta")
    assert "by the config: end of year" in said[0]
    assert said[1].startswith("no freeze from chat covers toolsbeta; nothing changed; still frozen")
