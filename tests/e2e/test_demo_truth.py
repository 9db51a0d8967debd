"""The demo session the README shows, as a user runs it (a real subprocess): a pin in the
manual environment names `!apply`, `!where` and `!status` give the same step, rollback lines
name both versions, no alert advises redeploying what was rolled back on purpose, and
`--emergency` works on a fresh demo (an empty store, no cluster: helm picks the revision)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.real import deploybot
from tests.support.session import free_port
from tests.support.shown import said

SESSION = [
    "!deploy builds-api latest",
    "!promote builds-api",
    "!where builds-api latest",
    "!status builds-api tools",
    "!apply builds-api tools",
    "!rollback builds-api tools",
    "!sal builds-api tools 3",
]


def demo(directory: Path, lines: list[str]) -> list[str]:
    res = subprocess.run(
        [*deploybot(), "demo", "--dir", str(directory),
         "--listen", f"127.0.0.1:{free_port()}"],
        input="".join(line + "\n" for line in lines), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()[1:]


def step(line: str) -> str:
    m = re.search(r"step (\d)(?: of |/)(\d)", line)
    assert m is not None, line
    return f"{m[1]}/{m[2]}"


def test_the_readme_session_tells_the_truth(tmp_path: Path) -> None:
    out = demo(tmp_path / "demo", SESSION)
    replies = [line for line in out if not line.startswith("[#")]
    pinned = [line for line in replies if line.startswith("pushed ")][-1]  # the promote's
    assert pinned.endswith("pinned in tools, not applied — !apply builds-api tools")
    where = next(line for line in replies if line.startswith("builds-api 0.0.134 ("))
    status = next(line for line in replies if line.startswith("builds-api tools: "))
    assert step(pinned) == step(where) == step(status) == "4/5"
    rollback = [line for line in out if "(deploy #3)" in line or "deploy #3 done" in line]
    assert rollback and all(
        re.search(r"from 0\.0\.134 \(\w{8}\) to 0\.0\.132 \(\w{8}\)", line) for line in rollback
    ), rollback
    sal = [line for line in replies if line.startswith("#") and "[rollback " in line]
    assert len(sal) == 3 and all("0.0.134 (" in x and "-> 0.0.132 (" in x for x in sal)

    rolled = out.index(next(line for line in out if "deploy #3 done" in line))
    alerts = [line for line in out[rolled:] if "ALERT undeployed builds-api tools" in line]
    assert all("rolled back on purpose by " in line for line in alerts)
    assert not any("next:" in line for line in alerts)
    after = demo(tmp_path / "demo", ["!status builds-api tools"])  # after a monitor check
    now = next(line for line in after if line.startswith("builds-api tools: "))
    assert "ALERT: undeployed (rolled back on purpose)" in now


def test_emergency_rollback_on_a_fresh_demo(tmp_path: Path) -> None:
    out = demo(tmp_path / "fresh", ["!rollback builds-api tools --emergency", "!sal 2"])
    start = next(line for line in out if "(deploy #1)" in line)
    assert start.startswith(
        "[#toolforge-deploy] emergency rollback of builds-api in tools from 0.0.132 ("
    )
    assert "helm rollback (no cluster configured to read its history)" in start
    done = [line for line in said(out) if line.startswith("deploy #1 done: rollback of builds-api")]
    assert len(done) == 1  # said once (in its room), no reply repeating it
    assert re.search(r"from 0\.0\.132 \(\w{8}\) to 0\.0\.131 \(\w{8}\) in ", done[0])
    assert "runs 0.0.131 (" in done[0] and "re-pinned in " in done[0]
