"""`!lock`/`!unlock` and the one-deploy-at-a-time rule, through the real App."""

from __future__ import annotations

import asyncio

import pytest

from bot.app import App
from bot.deploy.model import DeployRequest
from tests.support.deployworld import DeployBed, bed

pytestmark = pytest.mark.both_engines  # the store behind these runs on SQLite and PostgreSQL

__all__ = ["bed"]


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#")]


async def test_a_lock_blocks_everyone_else_and_only_owner_or_admin_unlocks(bed: DeployBed) -> None:
    bed.push(bed.pins["toolsbeta"])

    carol = await bed.run(["!lock builds-api toolsbeta db migration T42"], user="carol")
    alice = await bed.run(["!apply builds-api toolsbeta"], user="alice")
    bob = await bed.run(["!unlock builds-api toolsbeta"], user="bob")
    owner = await bed.run(["!unlock builds-api toolsbeta", "!unlock builds-api toolsbeta"], "carol")

    assert replies(carol.out) == [
        "locked builds-api in toolsbeta: db migration T42 (!unlock builds-api toolsbeta)"
    ]
    [refusal] = replies(alice.out)
    assert refusal.startswith("apply: refused: builds-api locked in toolsbeta by console:carol")
    assert refusal.endswith(": db migration T42; nothing run")
    assert bed.records() == []
    assert replies(bob.out) == [
        "unlock: refused: locked by carol; only they or an admin can unlock"
    ]
    assert replies(owner.out) == [
        "unlocked builds-api in toolsbeta",
        "builds-api is not locked in toolsbeta",
    ]
    assert [(e.actor, e.action, e.result) for e in owner.sal] == [
        ("console:carol", "lock", "locked"),
        ("console:alice", "apply", "refused"),
        ("console:bob", "unlock", "refused"),  # every refusal of a mutating command
        ("console:carol", "unlock", "unlocked"),
    ]
    assert owner.sal[0].tasks == [] and "db migration T42" in owner.sal[0].message


async def test_an_all_environment_lock_and_an_admin_unlock(bed: DeployBed) -> None:
    carol = await bed.run(
        ["!lock builds-api cluster upgrade", "!lock builds-api tools again", "!lock builds-api"],
        user="carol",
    )
    bob = await bed.run(["!apply builds-api toolsbeta", "!lock jobs-api tools nope"], user="bob")
    alice = await bed.run(["!unlock builds-api"], user="alice")

    assert replies(carol.out) == [
        "locked builds-api in all environments: cluster upgrade (!unlock builds-api)",
        "locked builds-api in tools: again (!unlock builds-api tools)",
        "lock: give a reason, e.g. !lock builds-api tools cluster upgrade",
    ]
    assert "builds-api locked in all environments by console:carol" in replies(bob.out)[0]
    assert replies(bob.out)[1] == (
        "lock: refused: you need the deployer role for jobs-api in tools; see !whoami"
    )
    assert replies(alice.out) == ["unlocked builds-api in all environments"]
    assert bed.records() == []


async def test_a_second_deploy_of_the_same_target_is_told_who_holds_it(bed: DeployBed) -> None:
    bed.push(bed.pins["toolsbeta"])
    bed.script({"helmfile apply": {"ack": True}})
    answers: list[str] = []

    async def race(app: App) -> None:
        deployer = app.deployer
        assert deployer is not None
        first = asyncio.create_task(
            deployer.apply(DeployRequest("builds-api", "toolsbeta", "console:carol"))
        )
        await bed.on_sync(lambda: None, within=20)  # the first is applying now...
        second = await deployer.apply(DeployRequest("builds-api", "toolsbeta", "console:alice"))
        answers.append(second.line)
        answers.append((await first).state)

    s = await bed.run([], inspect=race)

    assert answers[0] == (
        "refused: a deploy of builds-api to toolsbeta by console:carol is running; nothing run"
    )
    assert answers[1] == "failed"  # live version check: the fake cluster never changed
    assert [c["sub"] for c in bed.records()] == ["diff", "apply"]
    assert [(e.actor, e.result) for e in s.sal] == [
        ("console:carol", "started"),
        ("console:alice", "refused"),
        ("console:carol", "failed"),
    ]
