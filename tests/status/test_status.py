"""`!status` and `GET /status` over the real edges (FakeKube via kubeconfig, the demo's git
repos, FakeRegistry): what they show, a hung source marked unknown, the short-lived cache."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config
from bot.deploy.model import Action, DeployRequest
from bot.deploy.records import DeployRecords
from bot.status.board import StatusBoard
from bot.status.lines import status_lines
from bot.store.acks import Acks
from tests.support.monitorworld import world
from tests.support.session import console_session
from tests.support.shown import shown, shown_all


def _fast_timeout(data: dict[str, Any]) -> None:
    data["monitors"].update(source_timeout=5)


async def test_a_hung_cluster_is_shown_unknown_within_the_timeout(tmp_path: Path) -> None:
    async with world(tmp_path, _fast_timeout) as w:
        app = await w.app()
        cfg = app.config
        # warm clients first (their first call sets up sessions and reads the kubeconfig):
        # the 0.5 s budget is about a hung cluster, not about a cold client on a busy machine
        await StatusBoard(app.services, app.bumper).gather(list(cfg.components))
        w.kubes["tools"].fault = "hang"
        board = StatusBoard(app.services, app.bumper)  # nothing cached
        lines = await asyncio.wait_for(
            status_lines(board, list(cfg.components), cfg.env_names), timeout=15
        )
        by_cell = {" ".join(line.split()[:2]): line for line in lines}
        assert set(by_cell) == {
            "builds-api toolsbeta:", "builds-api tools:", "jobs-api toolsbeta:", "jobs-api tools:"
        }  # fmt: skip
        beta = by_cell["builds-api toolsbeta:"]
        assert f"live {w.pins[('builds-api', 'toolsbeta')]}, as pinned" in beta
        assert f"latest {w.releases['builds-api'][-1]} step 2/5" in beta
        assert "2/2 ready" in beta
        tools = by_cell["jobs-api tools:"]
        assert "live unknown (no answer within 5s)" in tools
        assert f"pinned {w.pins[('jobs-api', 'tools')]}" in tools  # git still answered


async def test_answers_are_reused_for_a_short_while(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        app = await w.app()
        board = StatusBoard(app.services, app.bumper)
        beta = w.kubes["toolsbeta"]
        first = await board.gather(["builds-api"])
        asked = len(beta.requests)
        assert asked > 0
        beta.add_deployment("builds-api", "builds-api", chart="builds-api", version="0.0.1-x")
        again = await board.gather(["builds-api"])
        assert len(beta.requests) == asked  # within status_cache: no new API call
        assert again[0].cells["toolsbeta"].live == first[0].cells["toolsbeta"].live
        fresh = await board.gather(["builds-api"], fresh=True)
        assert fresh[0].cells["toolsbeta"].live.value == "0.0.1-x"


async def _session(config: Config, lines: list[str]) -> tuple[list[str], str, str]:
    """Run the app over console lines; also fetch /status and /metrics before it stops."""
    stdout = io.StringIO()
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    app = App(config, console=ConsoleAdapter(stdin, stdout, user="tester"))
    await app.start()
    try:
        await app.wait()
        base = f"http://{config.http.listen}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/status") as resp:
                status = await resp.text()
            async with http.get(f"{base}/metrics") as resp:
                metrics = await resp.text()
    finally:
        await app.stop()
    return stdout.getvalue().splitlines(), status, metrics


def _drift_now(data: dict[str, Any]) -> None:
    data["monitors"].update(drift_grace=0, undeployed_after=0)


async def test_status_shows_what_needs_attention_and_metrics_count_alerts(tmp_path: Path) -> None:
    async with world(tmp_path, _drift_now) as w:
        old = w.releases["builds-api"][-3]
        w.kubes["toolsbeta"].add_deployment(
            "builds-api", "builds-api", chart="builds-api", version=old
        )
        out, status, metrics = await _session(
            w.config, ["!status", "!status builds-api toolsbeta", "!status jobs-api tools"]
        )
    replies = [line for line in out if not line.startswith("[") and "working on it" not in line]
    announced = [line for line in out if line.startswith("[")]
    assert any(
        line.startswith("[#toolforge-deploy] ALERT drift builds-api toolsbeta:")
        for line in announced
    )
    # no arguments: the pairs needing attention (2 shown), then the rest counted
    summary, one, jobs = replies[:3], replies[3], replies[4]
    assert summary[0].startswith("builds-api toolsbeta: live " + shown(old))
    assert "ALERT: drift" in summary[0]
    assert summary[1].startswith("builds-api tools: ") and "ALERT: undeployed" in summary[1]
    assert summary[2] == (
        f"1 more need attention · 1 healthy; details: {w.config.bot.public_url}/status"
    )
    assert one == summary[0]
    assert jobs.startswith(f"jobs-api tools: live {shown(w.pins[('jobs-api', 'tools')])}")
    assert "as pinned" in jobs and "ALERT: undeployed" in jobs
    # the page says the same, with versions in full
    assert len(status.splitlines()) == 4 and f"live {old}" in status.splitlines()[0]
    assert summary[0] == shown_all(status.splitlines()[0])
    assert 'deploybot_monitor_alerts{kind="drift"} 1.0' in metrics
    assert 'deploybot_monitor_alerts{kind="undeployed"} 2.0' in metrics
    assert 'deploybot_monitor_alerts{kind="unhealthy"} 0.0' in metrics


def _nothing_due(data: dict[str, Any]) -> None:
    data["monitors"].update(undeployed_after=10 * 365 * 86400)


async def test_all_healthy_is_one_line(tmp_path: Path) -> None:
    async with world(tmp_path, _nothing_due) as w:
        said = await console_session(w.config, ["!status", "!status nope"])
    out = [line for line in said if "working on it" not in line]  # a loaded machine says it
    assert out[0] == (
        f"nothing needs attention: 4 healthy; details: {w.config.bot.public_url}/status"
    )
    assert out[1].startswith("status: unknown component 'nope'")


async def test_a_new_pin_shows_at_once_despite_the_cache(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        app = await w.app()
        board = StatusBoard(app.services, app.bumper)
        before = await board.gather(["builds-api"])
        assert before[0].cells["tools"].pinned.value == [w.pins[("builds-api", "tools")]]
        newest = w.releases["builds-api"][-1]
        bumper = app.bumper
        assert bumper is not None
        await bumper.bump("builds-api", newest, ["tools"], actor="console:tester")
        after = await board.gather(["builds-api"])
        assert after[0].cells["tools"].pinned.value == [newest]
        assert after[0].cells["tools"].drifted  # the cluster still runs the old version


async def test_a_deploy_in_flight_shows_in_status(tmp_path: Path) -> None:
    async with world(tmp_path, _nothing_due) as w:
        app = await w.app()
        records = DeployRecords(app.store, tmp_path / "logs")
        newest = w.releases["builds-api"][-1]
        req = DeployRequest("builds-api", "toolsbeta", "console:tester")
        deploy_id = await records.insert(req, newest, None, None, None)
        await records.set_state(deploy_id, "applying")
        lines = await status_lines(app.board, ["builds-api"], ["toolsbeta", "tools"])
        assert f"deploy #{deploy_id} applying ({newest})" in lines[0]
        assert "deploy #" not in lines[1]
        await records.set_state(deploy_id, "done")
        board = app.board
        assert board is not None
        board.forget("builds-api")
        lines = await status_lines(app.board, ["builds-api"], ["toolsbeta"])
        assert "deploy #" not in lines[0]


async def test_the_boards_bulk_store_reads_give_the_planner_the_same_facts(tmp_path: Path) -> None:
    """The board reads locks, acks and the last applied commits once for all cells and hands
    them to the model; the facts must be those the model reads one by one."""
    async with world(tmp_path) as w:
        app = await w.app()
        records = DeployRecords(app.store, tmp_path / "logs")
        for env, commit in (("toolsbeta", "a" * 40), ("toolsbeta", "b" * 40), ("tools", None)):
            req = DeployRequest("builds-api", env, "console:tester")
            deploy_id = await records.insert(req, w.releases["builds-api"][-1], None, commit, None)
            await records.set_state(deploy_id, "done")
        review = DeployRequest("builds-api", "tools", "console:tester", action=Action.REVIEW)
        review_id = await records.insert(review, w.releases["builds-api"][-1], None, "c" * 40, None)
        await records.set_state(review_id, "done")  # a review applies nothing
        await app.services.locks.add("jobs-api", None, "alice", "incident")
        await app.services.locks.add("builds-api", "tools", "bob", "maintenance")
        await Acks(app.store).set(
            "jobs-api", "tools", w.releases["jobs-api"][-1], "later", "al", []
        )
        board = StatusBoard(app.services, app.bumper)
        model = board.model
        found = {s.component: s for s in await board.gather(["builds-api", "jobs-api"])}
        bulk = {c: await model.all_facts(c, await board.seen(s)) for c, s in found.items()}
        for c, facts in bulk.items():
            single = await model.all_facts(c)
            for env in facts:
                seen = (facts[env].lock, facts[env].ack, facts[env].last_commit)
                assert seen == (single[env].lock, single[env].ack, single[env].last_commit)
        builds, jobs = bulk["builds-api"], bulk["jobs-api"]
        assert builds["toolsbeta"].last_commit == "b" * 40 and builds["tools"].last_commit is None
        assert builds["tools"].lock and "bob" in builds["tools"].lock
        assert all(f.lock and "alice" in f.lock for f in jobs.values())
        assert jobs["tools"].ack is not None and jobs["toolsbeta"].ack is None
