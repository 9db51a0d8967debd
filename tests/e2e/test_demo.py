"""The demo session from a fresh directory, as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.support.real import deploybot
from tests.support.session import free_port
from tests.support.shown import said, shown

SESSION = "!help\n!whoami\n!log hello from the demo\n!sal\n!status\n"


def test_piped_demo_session(tmp_path: Path) -> None:
    res = subprocess.run(
        [*deploybot(), "demo", "--dir", str(tmp_path / "demo"),
         "--listen", f"127.0.0.1:{free_port()}"],
        input=SESSION, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0].startswith("deploybot demo:")
    assert out[1].startswith("commands: ") and "status" in out[1]
    assert out[2].startswith("you are console:") and "admin" in out[2]
    assert out[3].startswith("logged #1 to toolsbeta (") and out[3].endswith("hello from the demo")
    assert out[4].startswith("#1 ") and "hello from the demo" in out[4]
    status = "\n".join(out[5:])
    # the seeded demo data shows a drift and a merged-but-not-deployed alert, unasked
    assert "ALERT drift builds-api toolsbeta: live 0.0.132 (" in status
    assert "ALERT undeployed builds-api tools: 2 releases merged but not deployed" in status
    # and !status shows live vs pinned per environment, then a count of the rest
    assert "builds-api toolsbeta: live 0.0.132 (" in status and "pinned 0.0.133 (" in status
    assert "1 more need attention · 1 healthy" in status
    assert (tmp_path / "demo" / "var" / "deploybot.sqlite3").exists()
    # the generated config's header comment reads as written (no placeholder filled into it)
    header = (tmp_path / "demo" / "deploybot.yaml").read_text().split("\nbot:")[0]
    assert header.startswith("# The demo's config.") and str(tmp_path) not in header


def test_demo_deploy_reaches_the_simulated_live_state(tmp_path: Path) -> None:
    res = subprocess.run(
        [*deploybot(), "demo", "--dir", str(tmp_path / "demo"),
         "--listen", f"127.0.0.1:{free_port()}"],
        input="!deploy builds-api latest T123\n!status builds-api toolsbeta\n!sal builds-api 1\n",
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    replies = [line for line in res.stdout.splitlines()[1:] if not line.startswith("[#")]
    # the version !deploy pinned (a slow machine may say "working on it" first)
    pinned = next(line for line in replies if " -> " in line and "working on it" not in line)
    newest = pinned.split(" -> ")[1].rsplit(" in ", 1)[0]
    assert re.fullmatch(r"0\.0\.134 \([0-9a-f]{8}\)", newest), pinned  # shown short
    assert "nothing is deployed to a cluster" in res.stdout.splitlines()[0]  # said once, at start
    assert not any("nothing is deployed" in line for line in res.stdout.splitlines()[1:])
    status = next(line for line in replies if line.startswith("builds-api toolsbeta:"))
    assert status.startswith(f"builds-api toolsbeta: live {newest}, as pinned")
    assert "[auto-apply builds-api toolsbeta]" in replies[-1]
    log_url = next(w for line in said(res.stdout.splitlines()[1:]) for w in line.split()
                   if "/deploys/" in w)  # fmt: skip
    assert log_url.endswith("/deploys/1/log")


def test_demo_console_says_each_line_once_with_short_versions(tmp_path: Path) -> None:
    """The console shows every room: a deploy's result is its announcement, said once (no
    reply repeating it); chat shows versions short, the SAL's `--json` keeps them full."""
    demo = tmp_path / "demo"
    res = subprocess.run(
        [*deploybot(), "demo", "--dir", str(demo), "--listen", f"127.0.0.1:{free_port()}"],
        input="!deploy builds-api latest\n!promote builds-api\n!apply builds-api tools\n",
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()[1:]
    newest = "0.0.134-20261107230700-43712340"  # the demo's seeded newest release
    for n, env in ((1, "toolsbeta"), (2, "tools")):
        done = [line for line in out if f"deploy #{n} done: " in line]
        assert len(done) == 1, "\n".join(out)
        assert f"deploy #{n} done: builds-api {shown(newest)} to {env} in " in done[0]
    # in full only where a command to type names it (typed as shown, it is accepted)
    full = [line for line in out if newest in line]
    assert full and all(f"next: !deploy builds-api {newest} " in line for line in full), full
    sal = subprocess.run(
        [*deploybot(), "sal", "-c", str(demo / "deploybot.yaml"), "--component", "builds-api",
         "--json"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sal.returncode == 0, sal.stderr
    entries = [json.loads(line) for line in sal.stdout.splitlines()]
    done = [e for e in entries if e["result"] == "done" and e["env"] == "toolsbeta"]
    assert done and done[-1]["to_version"] == newest and newest in done[-1]["message"]
