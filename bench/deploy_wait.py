"""Benchmark: another user's `!whoami` and `!status` during a 20 s deploy step, on ngircd.

`deploybot run` on the demo's repositories, with the apply step replaced by a 20 s command
(`sh -c "sleep 20"`, standing for `helmfile sync --wait`). While alice's `!apply` runs it,
bob asks `!whoami` and `!status builds-api`; reported: the seconds each took to answer,
against the same commands with no deploy running (the baseline, same run). Target: 1 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.demo.setup import prepare
from tests.support.botproc import BotProcess
from tests.support.ircservers import Ngircd, RawIrcClient, free_port

CHANNEL = "#deploys"
BOT_NICK = "waitbot"
STEP_S = 20
# the deploy's first announcement (its diff) or the "working on it" reply to alice
STARTED = re.compile(r"deploy #\d+ diff|working on it")


async def ask(client: RawIrcClient, text: str, pattern: str) -> float:
    mark = len(client.lines)
    started = time.monotonic()
    await client.privmsg(CHANNEL, text)
    await client.wait_for(
        lambda ln: ln.command == "PRIVMSG" and ln.nick == BOT_NICK
        and re.search(pattern, ln.param(1)) is not None,
        30, mark,
    )  # fmt: skip
    return time.monotonic() - started


async def _run(workdir: Path) -> dict[str, Any]:
    config_path = await prepare(workdir / "demo", listen=f"127.0.0.1:{free_port()}")
    data = yaml.safe_load(config_path.read_text())
    server = Ngircd(workdir / "ngircd")
    server.dir.mkdir(parents=True)
    await asyncio.to_thread(server.start)
    data["bot"]["nick"] = BOT_NICK
    data["chat"] = {"default_room": CHANNEL, "irc": {
        "host": "127.0.0.1", "port": server.port, "tls": False, "channels": [CHANNEL]}}  # fmt: skip
    data["components"]["builds-api"]["room"] = CHANNEL
    data["deploy"]["apply"] = ["sh", "-c", f"sleep {STEP_S}"]
    data["monitors"] = {"enabled": False}
    data["auth"] = {"rules": [{"who": ["irc-host:*"], "role": "admin", "trust": "hostmask"}]}
    bot = BotProcess(workdir / "bot", data)
    alice, bob = RawIrcClient(server.port, "alice"), RawIrcClient(server.port, "bob")
    try:
        await bot.start()
        for client in (alice, bob):
            await client.connect()
            await client.join(CHANNEL)
        idle = [
            await ask(bob, "!whoami", r"^(?:bob: )?you are "),
            await ask(bob, "!status", r"builds-api"),
        ]
        await alice.privmsg(CHANNEL, "!apply builds-api toolsbeta")
        try:
            await alice.wait_for(lambda ln: ln.nick == BOT_NICK and STARTED.search(ln.param(1)), 30)
        except TimeoutError:
            raise RuntimeError(
                str([ln.param(1) for ln in alice.lines if ln.nick == BOT_NICK]) + bot.log_tail()
            ) from None
        deploying = time.monotonic()
        busy = [
            await ask(bob, "!whoami", r"^(?:bob: )?you are "),
            await ask(bob, "!status builds-api", r"builds-api"),
        ]
        still_running = time.monotonic() - deploying < STEP_S
    finally:
        for client in (alice, bob):
            await client.close()
        await bot.stop()
        server.kill()
    return {
        "bench": "deploy_wait",
        "what": f"another user's !whoami and !status during a {STEP_S} s deploy step, ngircd",
        "whoami_s": round(busy[0], 3),
        "status_s": round(busy[1], 3),
        "baseline_idle_whoami_s": round(idle[0], 3),
        "baseline_idle_status_s": round(idle[1], 3),
        "answered_while_deploy_ran": still_running,
        "target_s": 1.0,
        "meets_target": max(busy) <= 1.0 and still_running,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-deploy-wait-") as tmp:
        try:
            result = asyncio.run(_run(Path(tmp)))
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            result = {"bench": "deploy_wait", "skipped": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
