"""Reviewed applies (`review: true`): the first `!apply` runs only the diff, the requester's
own confirm is refused, a second deployer's confirm applies exactly the reviewed commit."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time

from tests.support.deployworld import NS, DeployBed, bed
from tests.support.shown import said as said_all
from tests.support.shown import shown

__all__ = ["bed"]


def reviewed_env(bed: DeployBed, **extra: object) -> None:
    env = bed.data["environments"][0]
    assert env["name"] == "toolsbeta"
    env.update({"review": True, "auto_apply": False, **extra})


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#") and "working on it" not in line]


async def test_the_diff_is_reviewed_then_a_second_deployer_applies_that_commit(
    bed: DeployBed,
) -> None:
    reviewed_env(bed)
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    head = await bed.main_head()

    first = await bed.run(["!apply builds-api toolsbeta T9", "!apply builds-api toolsbeta confirm"])
    said = [
        next(x for x in said_all(first.out) if x.startswith("review #1: ")),
        *replies(first.out),
    ]
    url = f"{bed.data['bot']['public_url']}/deploys/1/log"
    assert re.fullmatch(
        rf"review #1: builds-api {re.escape(shown(old))} -> {re.escape(shown(new))} in toolsbeta"
        rf" from main@{head[:8]} \(T9\): "
        rf"2 resources changed: .* · diff: {re.escape(url)} · nothing applied; another deployer"
        r" confirms with !apply builds-api toolsbeta confirm until \d\d:\d\d UTC",
        said[0],
    ), said[0]
    assert said[1] == (
        "apply: refused: review #1 was requested by alice; another deployer must confirm it"
        " (review_by: other)"
    )
    assert [c["sub"] for c in bed.records()] == ["diff"]  # nothing applied
    assert bed.kube._ns(NS).deployments["builds-api"].version == old

    def start() -> None:
        bed.kube.start_rollout(NS, "builds-api", version=new, ready_after_polls=1)

    rollout = asyncio.create_task(bed.on_sync(start))
    second = await bed.run(["!apply builds-api toolsbeta confirm"], user="carol")
    await rollout
    done = rf"deploy #2 done: builds-api {re.escape(shown(new))} to toolsbeta \(T9\) in "
    assert re.match(done, said_all(second.out)[-1]), second.out
    calls = bed.records()
    assert [c["sub"] for c in calls] == ["diff", "diff", "apply"]
    assert {c["head"] for c in calls} == {head}  # exactly the reviewed commit
    assert [(e.action, e.result, e.actor) for e in second.sal] == [
        ("review", "reviewed", "console:alice"),
        ("confirm", "refused", "console:alice"),
        ("confirm", "confirmed", "console:carol"),
        ("apply", "started", "console:carol"),
        ("apply", "done", "console:carol"),
    ]
    again = await bed.run(["!apply builds-api toolsbeta confirm"], user="carol")
    assert replies(again.out)[-1] == (
        "apply: refused: no review of builds-api in toolsbeta waits (review #1 is confirmed);"
        " !apply builds-api toolsbeta"
    )


async def test_a_pin_newer_than_the_review_needs_a_new_review(bed: DeployBed) -> None:
    reviewed_env(bed, review_by="self")
    new = bed.releases[-1]
    bed.push(bed.pins["toolsbeta"])
    bed.push(new)
    first = await bed.run(["!apply builds-api toolsbeta", f"!deploy builds-api {new} to toolsbeta"])
    assert any(x.startswith("review #1: ") for x in said_all(first.out))
    second = await bed.run(["!apply builds-api toolsbeta confirm"])  # review_by: self
    line = replies(second.out)[-1]
    assert line.startswith("apply: refused: the pin moved since the review: main@")
    assert line.endswith("!apply builds-api toolsbeta for a new review; nothing run")
    assert [c["sub"] for c in bed.records()] == ["diff"]


async def test_an_expired_review_is_refused(bed: DeployBed) -> None:
    reviewed_env(bed, review_timeout="15m")
    bed.push(bed.pins["toolsbeta"])
    await bed.run(["!apply builds-api toolsbeta"])
    db = bed.config.bot.state_dir / "deploybot.sqlite3"
    with sqlite3.connect(db) as conn:  # the review was made an hour ago
        conn.execute("UPDATE deploys SET finished_at = finished_at - 3600 WHERE id = 1")
    out = await bed.run(["!apply builds-api toolsbeta confirm"], user="carol")
    assert re.fullmatch(
        r"apply: refused: review #1 expired 45m\d*s? ago \(review_timeout 15m\);"
        r" !apply builds-api toolsbeta for a new one",
        replies(out.out)[-1],
    )


async def test_the_pages_see_a_waiting_review_until_it_is_confirmed_or_expires(
    bed: DeployBed,
) -> None:
    from bot.deploy.review import pending_reviews
    from bot.store.db import Store

    reviewed_env(bed, review_timeout="15m")
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    out = (await bed.run(["!apply builds-api toolsbeta"])).out
    said = next(x for x in said_all(out) if x.startswith("review #1: "))
    until = re.search(r"until (\d\d:\d\d UTC)$", said)
    assert until is not None, said
    store = Store(bed.config.bot.state_dir / "deploybot.sqlite3")
    await store.open()
    try:
        now = time.time()
        waiting = await pending_reviews(store, bed.config, now)
        [review] = waiting.values()
        assert (review.component, review.env, review.asked_by) == (
            "builds-api",
            "toolsbeta",
            "alice",
        )
        assert review.confirm == "!apply builds-api toolsbeta confirm"
        assert review.until_text() == until.group(1)  # the same deadline the line said
        assert await pending_reviews(store, bed.config, review.until + 1) == {}  # expired
    finally:
        await store.close()
    bed.script({"helmfile sync": {"ack": True}})

    def start() -> None:
        bed.kube.start_rollout(NS, "builds-api", version=new, ready_after_polls=1)

    rollout = asyncio.create_task(bed.on_sync(start))
    await bed.run(["!apply builds-api toolsbeta confirm"], user="carol")
    await rollout
    await store.open()
    try:
        assert await pending_reviews(store, bed.config, time.time()) == {}  # confirmed
    finally:
        await store.close()
