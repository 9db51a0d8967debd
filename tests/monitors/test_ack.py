"""`!ack`: a release deliberately not deployed to an environment silences its "undeployed"
alert (and the planner's advice to deploy it there) until a newer release appears; `remove`
undoes it; every bad input gets one line and changes nothing (the demo's real git repos and
store, console as a user)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config
from bot.store.acks import Ack
from bot.store.alerts import AlertStore
from tests.support.releases import new_release
from tests.support.shown import shown as in_chat
from tests.support.webhookbot import config_with


@dataclass
class Run:
    out: list[str]  # what the bot said (replies and announcements)
    undeployed: str | None  # the builds-api tools undeployed alert after one check
    sal: list[tuple[str, str]]  # (action, message) of every SAL entry, oldest first
    acks: int  # rows in the acks table


async def run(config: Config, lines: list[str], user: str = "tester") -> Run:
    """The lines as `console:<user>`, then one monitor check."""
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    stdout = io.StringIO()
    app = App(config, console=ConsoleAdapter(stdin, stdout, user=user))
    await app.start()
    try:
        assert app.console is not None
        await app.console.finished.wait()
        await app.monitors.check_now()
        alerts = await AlertStore(app.services.store).active()
        rows = await app.services.store.fetchall("SELECT action, message FROM sal ORDER BY id")
        acks = await app.services.store.fetchall("SELECT * FROM acks")
    finally:
        await app.stop()
    text = next(
        (a.text for a in alerts if (a.kind, a.component, a.env) == ("undeployed", "builds-api",
                                                                      "tools")), None,
    )  # fmt: skip
    return Run(
        stdout.getvalue().splitlines(), text, [(r["action"], r["message"]) for r in rows], len(acks)
    )


def cfg(path: Path, **sections: object) -> Config:
    """The demo's config; monitors only when the test checks, undeployed raised at once."""
    quiet = {"enabled": False, "drift_grace": 0, "undeployed_after": 0}
    return config_with(path, monitors=quiet, **sections)


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#")]


async def test_ack_silences_undeployed_until_a_newer_release_then_remove_undoes_it(
    demo_config_path: Path, tmp_path: Path
) -> None:
    config = cfg(demo_config_path)
    before = await run(config, [])
    assert before.undeployed is not None and "2 releases merged but not deployed to tools" in (
        before.undeployed
    )
    newest = before.undeployed.split("(newest ", 1)[1].split(",", 1)[0]

    acked = await run(config, [f"!ack builds-api tools {newest} local development only T123"])
    reply = replies(acked.out)[0]
    assert reply.startswith(
        f"acked builds-api {in_chat(newest)} as not deployed to tools on purpose: local"
        " development only;"
    ), reply
    assert acked.undeployed is None  # silenced: the acked release is the newest
    assert any(
        line.startswith("[#toolforge-deploy] RESOLVED undeployed builds-api tools")
        for line in acked.out
    ), acked.out
    action, message = acked.sal[-1]
    assert action == "ack" and f"acked builds-api {newest}" in message, acked.sal

    # it shows in !status, and the planner no longer advises taking it to tools
    shown = await run(config, ["!status builds-api tools", "!deploy builds-api latest",
                               f"!where builds-api {newest}"])  # fmt: skip
    status = next(x for x in replies(shown.out) if x.startswith("builds-api tools:"))
    assert (
        f"acked {in_chat(newest)} (not deployed on purpose) by tester: local development only"
        in status
    )
    where = next(x for x in replies(shown.out) if x.startswith("pinned now:"))
    assert "promote builds-api to tools" not in where and "tools does not run it: acked" in where
    assert shown.undeployed is None

    # a newer release appears: undeployed is back, for the newer one only
    repo = Path(config.components["builds-api"].repo_url.removeprefix("file://"))
    newer = await new_release(repo, tmp_path / "work", 135)
    back = await run(config, [])
    assert back.undeployed is not None, back.out
    assert back.undeployed.startswith(
        f"1 release merged but not deployed to tools (newest {newer}"
    ), back.undeployed

    removed = await run(config, ["!ack builds-api tools remove", "!ack builds-api tools remove"])
    assert replies(removed.out)[:2] == [
        f"removed the ack of builds-api {in_chat(newest)} in tools (was: local development only);"
        " the"
        " undeployed alert may return",
        "no ack for builds-api in tools; nothing changed",
    ]
    assert removed.sal[-1][0] == "unack" and removed.acks == 0
    assert removed.undeployed is not None and removed.undeployed.startswith("3 releases merged")


async def test_bad_acks_get_one_line_and_change_nothing(demo_config_path: Path) -> None:
    config = cfg(
        demo_config_path,
        auth={"rules": [{"who": ["console:tester"], "role": "deployer"}]},
    )
    lines = [
        "!ack buils-api tools latest local only",
        "!ack builds-api prod latest local only",
        "!ack builds-api tools 0.0.999-20990101000000-deadbeef local only",
        "!ack builds-api tools not/a..ref local only",
        "!ack builds-api tools latest",
        "!ack builds-api tools latest see $(rm -rf /); echo",
        "!ack builds-api tools remove now",
    ]
    bad = await run(config, lines)
    said = replies(bad.out)
    assert len(said) == len(lines), said
    assert said[0].startswith("ack: unknown component 'buils-api'; did you mean builds-api?")
    assert said[1].startswith("ack: unknown environment 'prod'")
    assert said[2].startswith("ack: unknown version 0.0.999 (deadbeef); newest is")
    assert said[3].startswith("ack: ref 'not/a..ref' must not contain")
    assert said[4].startswith("ack: give a reason")
    assert said[5] == ("ack: the reason must not contain shell characters ($ ;); nothing changed")
    assert said[6].startswith("ack: usage: !ack builds-api tools remove")
    assert bad.acks == 0 and not any(a in ("ack", "unack") for a, _ in bad.sal), bad.sal

    guest = await run(config, ["!ack builds-api tools latest local only"], user="guest")
    assert replies(guest.out) == ["ack: refused: you need the deployer role; see !whoami"]
    assert guest.acks == 0 and guest.undeployed is not None


versions = st.lists(st.integers(1, 60), min_size=1, max_size=12, unique=True)


@given(versions, st.integers(1, 60))
def test_an_ack_covers_its_release_and_older_ones_never_newer(ns: list[int], acked: int) -> None:
    def v(n: int) -> str:
        return f"0.0.{n}-2026{(n % 12) + 1:02d}01120000-{n:08x}"

    ack = Ack("builds-api", "tools", v(acked), "local only", "tester")
    assert [n for n in ns if ack.covers(v(n))] == [n for n in ns if n <= acked]
