"""A deliberate rollback is remembered: until someone deploys again, the undeployed alert
for that environment says who rolled back and when, and does not advise redeploying what
was just rolled back (the demo's repos and simulated live state, console as a user)."""

from __future__ import annotations

import io
import re

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config
from bot.store.alerts import AlertStore


async def undeployed_text(config: Config, lines: list[str]) -> str:
    """Run the lines as `console:tester`, then one monitor check; the alert's text."""
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    app = App(config, console=ConsoleAdapter(stdin, io.StringIO(), user="tester"))
    await app.start()
    try:
        assert app.console is not None
        await app.console.finished.wait()
        await app.monitors.check_now()
        alerts = await AlertStore(app.services.store).active()
    finally:
        await app.stop()
    return next(a.text for a in alerts if (a.kind, a.component) == ("undeployed", "builds-api"))


async def test_undeployed_alert_after_a_rollback_names_it_until_the_next_deploy(
    demo_config: Config,
) -> None:
    before = await undeployed_text(demo_config, ["!status builds-api tools"])
    # the planner's step for the newest release: toolsbeta first (tools requires it)
    assert re.search(r"; next: !deploy builds-api 0\.0\.134-\S+ to toolsbeta$", before), before

    after = await undeployed_text(
        demo_config,
        [
            "!deploy builds-api latest",
            "!promote builds-api",
            "!apply builds-api tools",
            "!rollback builds-api tools",
        ],
    )
    assert "rolled back on purpose by tester at " in after
    assert "kept back deliberately until the next deploy" in after
    assert "next:" not in after
    rolled = after.split("rolled back on purpose by tester at ", 1)[1]
    assert rolled.split(" from ", 1)[1].startswith("0.0.134-")  # the version it left

    # someone deploys tools again (what is pinned; toolsbeta runs newer, so --force)
    again = await undeployed_text(demo_config, ["!apply builds-api tools --force"])
    # deployed again: the advice is back (toolsbeta runs it, so tools is promoted next)
    assert again.endswith("; next: !promote builds-api to tools"), again
