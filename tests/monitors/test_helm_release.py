"""A Helm release left failed or pending, read from FakeKube's release Secrets (as Helm 3
writes them) through the real client: `!status` shows it with the last deployed version and
the next command, and the monitors raise a `helm-release` alert and clear it once a newer
revision is deployed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bot.monitors.checks import Monitors
from bot.status.lines import status_lines
from tests.support.monitorworld import Clock, world
from tests.support.shown import shown


def _quiet(data: dict[str, Any]) -> None:
    data["monitors"].update(undeployed_after=10 * 365 * 86400, drift_grace=900)


async def test_failed_release_shows_in_status_and_raises_then_clears_an_alert(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, _quiet) as w:
        beta = w.kubes["toolsbeta"]
        pinned = w.pins[("builds-api", "toolsbeta")]
        newest = w.releases["builds-api"][-1]
        beta.add_helm_release("builds-api", "builds-api", 4, "builds-api", pinned)
        beta.add_helm_release("builds-api", "builds-api", 5, "builds-api", newest, "failed")
        app = await w.app()
        monitors = Monitors(app.services, app.bumper, clock=Clock(time.time()))

        actions = await monitors.check_now()
        lines = await status_lines(app.board, ["builds-api"], ["toolsbeta", "tools"])

        assert [(a.verb, a.alert.kind, a.alert.env) for a in actions] == [
            ("raise", "helm-release", "toolsbeta")
        ]
        said = await w.outbox(app)
        expected = (
            f"helm release builds-api failed at revision 5 ({newest}); last deployed:"
            f" revision 4 ({pinned}); next: !rollback builds-api toolsbeta --emergency"
        )
        in_chat = expected.replace(newest, shown(newest)).replace(pinned, shown(pinned))
        assert said == [f"ALERT helm-release builds-api toolsbeta: {in_chat}"]  # versions short
        beta_line, tools_line = lines
        assert beta_line.startswith(f"builds-api toolsbeta: live {pinned}, as pinned")
        assert "ALERT: helm-release" in beta_line and beta_line.endswith(expected)
        assert "helm release" not in tools_line
        text = app.metrics.render().decode()
        assert 'deploybot_monitor_alerts{kind="helm-release"} 1.0' in text

        # fixed by hand: a newer revision deployed
        beta.add_helm_release("builds-api", "builds-api", 6, "builds-api", pinned)
        app.board.forget("builds-api")
        actions = await monitors.check_now()
        assert [(a.verb, a.alert.kind) for a in actions] == [("clear", "helm-release")]
        lines = await status_lines(app.board, ["builds-api"], ["toolsbeta"])
        assert "helm release" not in lines[0] and "ALERT" not in lines[0]


async def test_pending_upgrade_names_the_helm_command_and_never_deployed_says_uninstall(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, _quiet) as w:
        tools = w.kubes["tools"]
        pinned = w.pins[("builds-api", "tools")]
        tools.add_helm_release("builds-api", "builds-api", 7, "builds-api", pinned)
        tools.add_helm_release(
            "builds-api", "builds-api", 8, "builds-api", pinned, "pending-upgrade"
        )
        tools.add_helm_release("jobs-api", "jobs-api", 1, "jobs-api", "0.0.1", "pending-install")
        app = await w.app()

        lines = await status_lines(app.board, ["builds-api", "jobs-api"], ["tools"])

    builds, jobs = lines
    assert builds.endswith(
        f"helm release builds-api pending-upgrade at revision 8 ({pinned}); last deployed:"
        " revision 7 ({pinned}); next: !rollback builds-api tools --emergency"
        " (or helm rollback builds-api 7 -n builds-api)".replace("{pinned}", pinned)
    )
    assert jobs.endswith(
        "helm release jobs-api pending-install at revision 1 (0.0.1); never deployed;"
        " next: helm uninstall jobs-api -n jobs-api, then !apply jobs-api tools"
    )
