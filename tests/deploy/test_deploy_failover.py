"""Two replicas on one PostgreSQL: `kill -9` of the leader during a long apply. The standby
takes over, marks the deploy interrupted (chat + SAL), and nothing is applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.support.deployworld import NS, DeployBed, bed
from tests.support.real import deploybot
from tests.support.session import free_port
from tests.support.shown import shown

__all__ = ["bed"]
ROOT = Path(__file__).resolve().parents[2]
LEASE = 3.0


async def start_bot(config: Path, out: Path) -> asyncio.subprocess.Process:
    with out.open("ab") as fh:
        return await asyncio.create_subprocess_exec(
            *deploybot(), "run", "-c", str(config),
            cwd=ROOT, env=dict(os.environ), stdin=asyncio.subprocess.PIPE, stdout=fh, stderr=fh,
        )  # fmt: skip


async def leads(port: int, proc: asyncio.subprocess.Process, within: float = 60) -> None:
    """Until the replica on `port` says `deploybot_leader 1`."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "the replica exited"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    if re.search(r"^deploybot_leader 1\.0$", await resp.text(), re.M):
                        return
            await asyncio.sleep(0.1)  # polling another process's /metrics
    raise TimeoutError(f"the replica on {port} never led")


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_the_standby_marks_the_dead_leaders_deploy_interrupted_and_never_reapplies(
    bed: DeployBed,
) -> None:
    old, version = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(version)
    bed.script({"helmfile apply": {"sleep": 120}})
    bed.data["auth"]["rules"].append({"who": [f"console:{getpass.getuser()}"], "role": "deployer"})
    bed.data["leader_election"] = {"backend": "postgres", "lease_seconds": LEASE}
    configs, ports = [], []
    for name in ("leader", "standby"):
        port = free_port()
        data = {**bed.data, "http": {"listen": f"127.0.0.1:{port}"}}
        path = bed.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        configs.append(path)
        ports.append(port)
    first_out, second_out = bed.tmp / "leader.out", bed.tmp / "standby.out"

    first = await start_bot(configs[0], first_out)
    second: asyncio.subprocess.Process | None = None
    orphan = 0
    try:
        await leads(ports[0], first)
        second = await start_bot(configs[1], second_out)  # a standby: reads no chat yet
        assert first.stdin is not None
        first.stdin.write(b"!apply builds-api toolsbeta T7\n")
        await first.stdin.drain()
        deadline = time.monotonic() + 60
        while not (syncs := [c for c in bed.records() if c["sub"] == "apply"]):
            assert time.monotonic() < deadline, "helmfile sync never ran"
            await asyncio.sleep(0.05)  # polling another process's output file
        orphan = int(str(syncs[0]["pid"]))
        first.kill()  # SIGKILL: no cleanup, no release of the lease
        await first.wait()
        with contextlib.suppress(ProcessLookupError):  # the apply outlived its bot
            os.killpg(orphan, signal.SIGKILL)

        await leads(ports[1], second, within=LEASE + 25)
        await asyncio.wait_for(second.communicate(b"!sal builds-api 3\n"), timeout=60)
        assert second.returncode == 0, second_out.read_text()[-2000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

    out = second_out.read_text()
    url = f"{bed.data['bot']['public_url']}/deploys/1/log"
    assert (
        f"[#toolforge-deploy] deploy #1 of builds-api {shown(version)} to toolsbeta interrupted:"
        f" the bot restarted while applying; nothing was re-applied; live now: {shown(old)};"
        " check, then"
        f" !apply builds-api toolsbeta to retry · log: {url}"
    ) in out
    assert [c["sub"] for c in bed.records()] == ["diff", "apply"]  # nothing applied again
    sal = [line for line in out.splitlines() if re.match(r"^#\d+ ", line)]
    assert [line.split()[0] for line in sal] == ["#2", "#1"]  # newest first: one SAL entry each
    assert "[apply builds-api toolsbeta]" in sal[0] and "interrupted: the bot restarted" in sal[0]
