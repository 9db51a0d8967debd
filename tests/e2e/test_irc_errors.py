"""IRC errors name their cause: `deploybot run` with `tls: true` against a real plaintext
InspIRCd port says the TLS handshake failed and asks whether the port is plaintext (instead of
"connection lost: " with an empty reason); an unset SASL password stops the start with one
line naming the variable, instead of silently connecting without SASL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.botproc import BotProcess
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    InspircdAtheme,
    inspircd_atheme_fixture,
    unique,
)
from tests.support.real import deploybot


async def test_tls_against_a_plaintext_port_names_the_cause(
    inspircd_atheme: InspircdAtheme, tmp_path: Path
) -> None:
    server = inspircd_atheme  # greets in plaintext at once, as IRC servers do
    channel = unique("#tls")
    config = {
        "bot": {"nick": unique("tlsbot")},
        "chat": {
            "default_room": channel,
            "irc": {"host": "127.0.0.1", "port": server.port, "channels": [channel]},
        },
    }  # fmt: skip  (tls left at its default: true)
    bot = BotProcess(tmp_path, config)
    try:
        try:
            await bot.start(within=1)
        except TimeoutError:
            pass  # never ready: it cannot connect
        found = await bot.wait_log(r"IRC: (.*)", within=40)  # the handshake timeout: 15 s
        assert found.group(1).startswith(f"TLS handshake with 127.0.0.1:{server.port} failed (")
        assert f"— is port {server.port} plaintext? (then set chat.irc.tls: false)" in found[1]
        assert "lost: \n" not in bot.log_text()
        assert await bot.ready_status() == 503
    finally:
        await bot.stop()


async def test_unset_sasl_password_stops_the_start_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bot.yaml"
    cfg.write_text(
        "bot: {state_dir: " + str(tmp_path / "var") + "}\n"
        "http: {listen: 127.0.0.1:0}\n"
        "chat:\n  default_room: '#ops'\n  irc:\n    host: 127.0.0.1\n    port: 9\n"
        "    tls: false\n    channels: ['#ops']\n"
        "    sasl: {username: bot, password_env: DEPLOYBOT_TEST_UNSET_SASL}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *deploybot(), "run", "-c", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert err.decode().strip().splitlines() == [
        "chat.irc.sasl.password_env: DEPLOYBOT_TEST_UNSET_SASL is not set (SASL needs it;"
        " the bot does not connect without the login it was told to use)"
    ]
