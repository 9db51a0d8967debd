"""`!prune plan`: never lists a live, pinned or previous artifact, nor the newest N or young
ones; read-only (the registry is unchanged); refuses when what runs cannot be read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.monitors.prune import plan_prune
from tests.support.monitorworld import ENVS, world
from tests.support.session import console_session
from tests.support.shown import shown


def ci(n: int, days_old: int, now: datetime) -> str:
    stamp = (now - timedelta(days=days_old)).strftime("%Y%m%d%H%M%S")
    return f"0.0.{n}-{stamp}-{n:08x}"


def test_live_pinned_previous_newest_and_young_artifacts_are_kept() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    versions = [ci(n, 200 - n, now) for n in range(100, 130)]  # 0.0.129 is 71 days old
    in_use = {
        versions[0]: ["previous in tools"],  # the oldest, but still the rollback target
        versions[3]: ["live in tools", "pinned in tools"],
        versions[25]: ["live in toolsbeta"],
    }
    young = ci(140, 3, now)
    plan = plan_prune("builds-api", [*versions, young, "latest", "not-a-version"], in_use, now,
                      keep_newest=10, grace_days=30)  # fmt: skip
    safe = [c.version for c in plan.safe]
    assert not set(safe) & set(in_use) and young not in safe
    assert safe == [v for i, v in enumerate(versions[:21]) if i not in (0, 3)]
    assert plan.kept["among the newest 10"] == versions[21:25] + versions[26:] + [young]
    assert plan.safe[0].reason == (
        "not live, pinned or previous anywhere; 29 newer releases; built 99 days ago"
    )
    assert "0.0.100-" in plan.kept["in use"][0] and "previous in tools" in plan.kept["in use"][0]
    line = plan.line("http://x/diffs/1")
    assert line.startswith(
        "prune plan for builds-api (read-only, nothing deleted): 19 of 31 artifact versions"
        f" safe to delete, oldest first: {versions[1]}, {versions[2]}, {versions[4]} and 16 more"
    )
    assert line.endswith("· kept: 3 in use, 9 among the newest 10 · full list: http://x/diffs/1")


async def test_the_command_lists_only_old_unused_artifacts_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        old = [f"0.0.{n}-202501{n - 59:02d}120000-{n:08x}" for n in range(60, 72)]  # 12
        for v in old:
            w.registry.push("toolforge/builds-api", v)
        total = len(w.releases["builds-api"]) + len(old)
        safe = old[: total - 10]  # the newest 10 are kept, whatever their age
        in_use = {w.pins[("builds-api", env)] for env in ENVS}
        before = {repo: sorted(t for a in arts.values() for t in a.tags)
                  for repo, arts in w.registry.repos.items()}  # fmt: skip
        out = await console_session(w.config, ["!prune plan builds-api"])
        reply = next(line for line in out if line.startswith("prune plan for builds-api"))
        assert reply.startswith(
            f"prune plan for builds-api (read-only, nothing deleted): {len(safe)} of {total}"
            " artifact versions safe to delete (0 B in all), oldest first:"  # no layers in the fake
            f" {', '.join(shown(v) + ' (0 B)' for v in safe[:3])} and"
            f" {len(safe) - 3} more · kept: "
        ), reply
        assert not any(shown(v) in reply.split("· kept")[0] for v in in_use)
        after = {repo: sorted(t for a in arts.values() for t in a.tags)
                 for repo, arts in w.registry.repos.items()}  # fmt: skip
        assert after == before  # read-only

        w.kubes["tools"].fault = "hang"  # what tools runs cannot be read: list nothing
        out = await console_session(w.config, ["!prune plan builds-api"])
        refusal = "prune: cannot tell what tools runs, pins or ran before; nothing listed"
        assert any(line.startswith(refusal) for line in out), out
