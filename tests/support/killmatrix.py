"""kill -9 at 20 points of `!deploy` and `!apply`: the points, one trial, and its counts.

A trial copies a prepared demo (control repo and component repos, made once) into its own
directory, starts the real `deploybot run` (console chat) with the recording helmfile/helm
(tests/support/bin) first on PATH and FakeKube as toolsbeta's cluster, types one command,
waits until the point is reached (a file, the remote, the store or the stand-ins' log says
so; every wait has a deadline), `kill -9`s the bot, restarts it on the same state and lets
it settle. Then it counts:

- lost: SAL entries in the store after the kill, or said in chat before it, missing after
  the restart; and commits on the control repo's remote without their SAL entry;
- double applies: two syncs of one release at once (the stand-in's lock says so), or a sync
  after the restart that nobody asked for;
- orphans: processes of the killed bot's process groups (its own, its deploy steps') still
  running at the end of the trial;
- silent: a line the restarted bot should have said about what it found, and did not.

Used by tests/faults/test_kill_matrix.py (a subset) and bench/kill_matrix.py (all 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.core.git import git
from bot.deploy.orphans import group_alive
from tests.support.crashbed import start_bot, until
from tests.support.deployworld import BIN, NS, _releases, kubeconfig
from tests.support.fakes.kube import FakeKube
from tests.support.real import real
from tests.support.session import free_port
from tests.support.shown import said

COMPONENT, ENV = "builds-api", "toolsbeta"
SHOWN = r"0\.0\.\d+ \([0-9a-f]{8}\)"  # a version as chat shows it (tests.support.shown)
# the planner's step after it: `!apply` while the pin is not live, else "nothing to apply"
# (a held sync the kill orphaned may still finish and put the pin live before the restart)
INTERRUPTED = (
    rf"deploy #1 of {COMPONENT} {SHOWN} to {ENV} interrupted: "
    rf".*(!apply {COMPONENT} {ENV}|nothing to apply: {ENV} already runs )"
)
RECORDED = rf"{COMPONENT} {SHOWN} was pushed to main in [0-9a-f]{{8}} \({ENV}\) just before"
UNAPPLIED = rf"!apply {COMPONENT} {ENV}"
# the orphan's helm upgrade finished, so its release runs: the planner's "nothing to apply"
EXITED = rf"has exited; nothing to apply: {ENV} already runs "
WITHIN = 30.0  # every wait of a trial


@dataclass(frozen=True)
class Point:
    """Where a trial kills the bot, and how it gets the bot to stop there."""

    name: str
    command: str  # "deploy" or "apply"
    reached: str  # line | kube | intent | hook | sal:<result> | running | verifying | reply
    hold: str | None = None  # the stand-in step ("helmfile apply") kept waiting past the kill
    hook: str | None = None  # "pre-receive" or "post-receive": the remote holds the push
    push: str = "lands"  # pre-receive: lands before the restart, "late" after it, "rejected"
    kube_hangs: bool = False  # the cluster answers nothing until the kill (preflight held)
    rollout: bool = True  # the rollout completes once the sync ran
    helm_child: bool = False  # helmfile sync runs helm as its child: the orphan
    says: tuple[str, ...] = ()  # what the restarted bot must say (regexes)


POINTS = (
    Point("deploy: command typed", "deploy", "line"),
    Point("deploy: bump commit made, push refused", "deploy", "intent",
          hook="pre-receive", push="rejected"),
    Point("deploy: push in flight, lands before the restart", "deploy", "hook",
          hook="pre-receive", says=(RECORDED, UNAPPLIED)),
    Point("deploy: push in flight, lands after the restart", "deploy", "hook",
          hook="pre-receive", push="late", says=(RECORDED, UNAPPLIED)),
    Point("deploy: push reached the remote", "deploy", "hook", hook="post-receive",
          says=(RECORDED, UNAPPLIED)),
    Point("deploy: bump SAL entry written, auto-apply preflight", "deploy", "sal:pushed",
          kube_hangs=True, says=(UNAPPLIED,)),
    Point("deploy: SAL 'started'", "deploy", "sal:started", says=(INTERRUPTED,)),
    Point("deploy: helmfile diff runs", "deploy", "running", hold="helmfile diff",
          says=(INTERRUPTED,)),
    Point("deploy: helmfile sync runs", "deploy", "running", hold="helmfile apply",
          says=(INTERRUPTED,)),
    Point("deploy: helm under helmfile runs", "deploy", "running", hold="helm upgrade",
          helm_child=True, says=("still runs", EXITED)),
    Point("deploy: sync exited, rollout watch", "deploy", "verifying", rollout=False,
          says=(INTERRUPTED,)),
    Point("deploy: SAL 'done'", "deploy", "sal:done"),
    Point("deploy: replied", "deploy", "reply"),
    Point("apply: preflight reads the cluster", "apply", "kube", kube_hangs=True),
    Point("apply: SAL 'started'", "apply", "sal:started", says=(INTERRUPTED,)),
    Point("apply: helmfile diff runs", "apply", "running", hold="helmfile diff",
          says=(INTERRUPTED,)),
    Point("apply: helmfile sync runs", "apply", "running", hold="helmfile apply",
          says=(INTERRUPTED,)),
    Point("apply: helm under helmfile runs", "apply", "running", hold="helm upgrade",
          helm_child=True, says=("still runs", EXITED)),
    Point("apply: sync exited, rollout watch", "apply", "verifying", rollout=False,
          says=(INTERRUPTED,)),
    Point("apply: SAL 'done'", "apply", "sal:done"),
)  # fmt: skip


@dataclass
class Outcome:
    point: str
    lost: list[str] = field(default_factory=list)
    double_applies: list[str] = field(default_factory=list)
    orphans: list[int] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "point": self.point, "lost_sal_entries": len(self.lost),
            "double_applies": len(self.double_applies), "orphans": len(self.orphans),
            "silent": len(self.silent), "seconds": round(self.seconds, 2),
        }  # fmt: skip

    def problems(self) -> list[str]:
        return [
            *(f"lost: {x}" for x in self.lost),
            *(f"double apply: {x}" for x in self.double_applies),
            *(f"orphan group {x} still runs" for x in self.orphans),
            *(f"not said after the restart: {x}" for x in self.silent),
        ]


async def prepare_template(root: Path) -> Path:
    """The demo's repos and config, made once; each trial copies them."""
    from bot.demo.setup import prepare

    return (await prepare(root / "template", listen=f"127.0.0.1:{free_port()}")).parent


class Trial:
    def __init__(self, root: Path, template: Path, point: Point, kube: FakeKube) -> None:
        self.point, self.kube, self.dir, self.template = point, kube, root, template
        self.demo = root / "demo"
        shutil.copytree(template, self.demo, symlinks=True)
        self.config = self.demo / "deploybot.yaml"
        self.remote = self.demo / "git" / "toolforge-deploy.git"
        self.var = self.demo / "var"
        self.record, self.control = root / "helm-calls.jsonl", root / "helm-control.json"
        self.out1, self.out2 = root / "first.out", root / "second.out"
        self.flags = {n: root / f"hook-{n}" for n in ("entered", "go", "reject")}
        self.env = {
            **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "FAKE_HELM_RECORD": str(self.record), "FAKE_HELM_CONTROL": str(self.control),
        }  # fmt: skip
        self.released = False
        self.first_pid = 0
        self.version = ""  # what the command deploys

    # --- what the trial looks at ----------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def syncs(self) -> int:
        return sum(1 for r in self.records() if (r["tool"], r["sub"]) == ("helmfile", "apply"))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        path = self.var / "deploybot.sqlite3"
        if not path.exists():
            return []
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
                return list(db.execute(sql))
        except sqlite3.OperationalError:  # not created yet
            return []

    def sal(self) -> dict[int, tuple[str, str, str, str]]:
        rows = self.query("SELECT id, action, result, commit_sha, log_url FROM sal")
        return {r[0]: (r[1], r[2] or "", r[3] or "", r[4] or "") for r in rows}

    def reached(self) -> bool:
        kind = self.point.reached
        if kind == "line":
            return True
        if kind == "kube":  # the cluster got a request (and holds it)
            return bool(self.kube.requests)
        if kind == "intent":
            return any((self.var / "intents").glob("*.json"))
        if kind == "hook":
            return self.flags["entered"].exists()
        if kind.startswith("sal:"):
            return any(e[1] == kind[4:] for e in self.sal().values())
        if kind == "running":
            return any(f"{r['tool']} {r['sub']}" == self.point.hold for r in self.records())
        if kind == "verifying":
            return bool(self.query("SELECT 1 FROM deploys WHERE state='verifying'"))
        return any(ln.startswith("deploy #1 done") for ln in _lines(self.out1))  # its line

    async def head(self) -> str:
        return (await git("rev-parse", "main", cwd=self.remote)).strip()

    # --- setting it up --------------------------------------------------------------------

    async def setup(self) -> str:
        """Config, cluster, stand-ins and hooks; returns the command to type."""
        text = self.config.read_text().replace(str(self.template), str(self.demo))
        data = yaml.safe_load(text)
        data["http"] = {"listen": f"127.0.0.1:{free_port()}"}
        data.pop("demo", None)
        data["monitors"] = {"enabled": False}
        data["deploy"] = {"timeout": 30, "rollout_timeout": 5}
        env = next(e for e in data["environments"] if e["name"] == ENV)
        env["kubeconfig"] = str(kubeconfig(self.dir / "kubeconfig", self.kube.url))
        env["kube_context"] = ENV
        data["auth"] = {"rules": [{"who": [f"console:{getpass.getuser()}"], "role": "admin"}]}
        self.config.write_text(yaml.safe_dump(data))
        releases = await _releases(self.demo / "git" / f"{COMPONENT}.git")
        self.kube.add_deployment(NS, COMPONENT, chart=COMPONENT, version=releases[-3])
        sync = {"helm": True} if self.point.helm_child else {"ack": True}
        script = {"helmfile diff": {"ack": True}, "helmfile apply": sync,
                  "helm upgrade": {"ack": True}}  # fmt: skip
        self.control.write_text(json.dumps(script))
        if self.point.hook is not None:
            self._hook(self.point.hook)
        if self.point.command == "deploy":
            self.version = releases[-1]
            return f"!deploy {COMPONENT} {self.version} to {ENV} T14"
        pinned = await git("show", f"main:components/{COMPONENT}/values/{ENV}.yaml",
                           cwd=self.remote)  # fmt: skip
        self.version = pinned.split("chartVersion:", 1)[1].split()[0]
        return f"!apply {COMPONENT} {ENV} T14"

    def _hook(self, name: str) -> None:
        """The remote holds the push in `name` until the trial says go (or reject)."""
        f = {k: str(v) for k, v in self.flags.items()}
        hook = self.remote / "hooks" / name
        hook.write_text(
            f"#!/bin/sh\ncat >/dev/null\ntouch {f['entered']}\nn=0\n"
            f"while [ ! -e {f['go']} ] && [ ! -e {f['reject']} ] && [ $n -lt 600 ]; do"
            f" sleep 0.05; n=$((n+1)); done\n[ -e {f['go']} ]\n"
        )
        hook.chmod(0o755)

    async def drive(self) -> None:
        """Let the stand-ins finish as the cluster changes, except the held step until
        `released`: each sync (or helm upgrade) starts the rollout of the deployed version."""
        acked: set[int] = set()
        while True:
            for rec in self.records():
                key, pid = f"{rec['tool']} {rec['sub']}", int(rec["pid"])
                if pid in acked or key not in ("helmfile diff", "helmfile apply", "helm upgrade"):
                    continue
                if key == "helmfile apply" and self.point.helm_child:
                    continue  # its helm child is the one that waits
                if key == self.point.hold and not self.released:
                    continue
                if key != "helmfile diff":
                    ready = 1 if self.point.rollout or self.released else None
                    self.kube.start_rollout(NS, COMPONENT, version=self.version,
                                            ready_after_polls=ready)  # fmt: skip
                Path(f"{self.record}.ack-{pid}").touch()
                acked.add(pid)
            await asyncio.sleep(0.02)  # polling another process's output file

    # --- the trial ------------------------------------------------------------------------

    async def run(self) -> Outcome:
        started, out = time.monotonic(), Outcome(self.point.name)
        command = await self.setup()
        head0 = await self.head()
        driver = asyncio.create_task(self.drive())
        first = second = None
        groups: set[int] = set()  # the killed bot's, counted as orphans if left
        started_groups: set[int] = set()  # the restarted bot's, only stopped
        try:
            first = await start_bot(self.config, self.out1, self.env, own_group=True)
            groups.add(first.pid)
            self.first_pid = first.pid
            if self.point.kube_hangs:
                self.kube.latency = 60.0
            await _type(first, command)
            await until(self.reached, f"{self.point.name}: the point", WITHIN)
            first.kill()
            await first.wait()
            self.kube.latency = 0.0
            groups |= {int(r["pgid"]) for r in self.records()}
            syncs_at_kill = self.syncs()
            await self._after_kill(first.pid)
            sal_before, said_before = self.sal(), _lines(self.out1)

            second = await start_bot(self.config, self.out2, self.env, own_group=True)
            started_groups = {second.pid}
            await self._settle(second, out, syncs_at_kill)
            await asyncio.wait_for(second.wait(), WITHIN)
            if self.point.hook is not None:
                await until(lambda: not group_alive(first.pid), "the held push to end", WITHIN)
            self._count(out, sal_before, said_before, syncs_at_kill)
            await self._remote(out, head0)
            out.orphans = sorted(g for g in groups if group_alive(g))
        finally:
            driver.cancel()
            self.flags["reject"].touch()  # a held push never waits past the trial
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            for g in groups | started_groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(g, signal.SIGKILL)
        out.seconds = time.monotonic() - started
        return out

    async def _after_kill(self, pid: int) -> None:
        if self.point.hook == "post-receive" or self.point.push == "lands":
            self.flags["go"].touch()
        elif self.point.push == "rejected":
            self.flags["reject"].touch()
        if self.point.hook is not None and self.point.push != "late":
            await until(lambda: not group_alive(pid), "the held push to end", WITHIN)
        if not self.point.helm_child:
            self.released = True  # what was held died with the bot

    async def _settle(self, bot: asyncio.subprocess.Process, out: Outcome, syncs: int) -> None:
        said = lambda: _lines(self.out2)  # noqa: E731
        if self.point.helm_child:  # refused while the orphan runs, accepted after
            await _type(bot, f"!apply {COMPONENT} {ENV}")
            await until(lambda: any("refused" in ln for ln in said()), "the refusal", WITHIN)
            if self.syncs() != syncs:
                out.double_applies.append("an apply ran while the orphan still ran")
            self.released = True
            await until(lambda: any("has exited" in ln for ln in said()), "the all-clear", WITHIN)
            await _type(bot, f"!apply {COMPONENT} {ENV}")  # what the all-clear promised
            await until(lambda: any(ln.startswith("nothing to apply") for ln in said()),
                        "nothing to apply after the orphan", WITHIN)  # fmt: skip
            await _type(bot, f"!apply {COMPONENT} {ENV} --force")  # an admin re-applies
            await until(lambda: any(re.match(r"deploy #2 done", ln) for ln in said()),
                        "the apply after the orphan", WITHIN)  # fmt: skip
            syncs += 1
        if self.point.push == "late":  # the restarted bot has looked; now the push lands
            await _type(bot, f"!sal {COMPONENT} 1")
            await until(lambda: any(re.match(r"#\d+ |no SAL", ln) for ln in said()), "!sal", WITHIN)
            self.flags["go"].touch()
            await until(lambda: not group_alive(self.first_pid), "the late push", WITHIN)
        # what a restart finds is said in the background (intents are asked of the forge)
        text = lambda: self.out2.read_text(errors="replace")  # noqa: E731
        with contextlib.suppress(AssertionError):  # else counted below as a silent restart
            await until(lambda: all(re.search(x, text()) for x in self.point.says),
                        "what the restart says", 15.0)  # fmt: skip
        assert bot.stdin is not None
        bot.stdin.close()

    def _count(
        self, out: Outcome, before: dict[int, Any], said: list[str], syncs_at_kill: int
    ) -> None:
        after = self.sal()
        out.lost += [f"SAL #{i} {before[i][:2]}" for i in before if i not in after]
        for line in said:
            for n in re.findall(r"\(deploy #(\d+)", line) if "deploying" in line else []:
                if not any(
                    e[1] == "started" and e[3].endswith(f"/{n}/log") for e in after.values()
                ):
                    out.lost.append(f"said {line!r} but no SAL 'started'")
            for sha in re.findall(r"^pushed ([0-9a-f]{8}) to", line):
                if not any(e[2].startswith(sha) for e in after.values()):
                    out.lost.append(f"said {line!r} but no SAL entry")
        overlaps = [r for r in self.records() if r.get("overlap")]
        out.double_applies += [
            f"{r['tool']} {r['sub']} pid {r['pid']} overlapped" for r in overlaps
        ]
        asked = syncs_at_kill + (1 if self.point.helm_child else 0)
        if self.syncs() > asked:
            out.double_applies.append(f"{self.syncs() - asked} sync(s) nobody asked for")
        text = self.out2.read_text(errors="replace")
        out.silent += [s for s in self.point.says if not re.search(s, text)]

    async def _remote(self, out: Outcome, head0: str) -> None:
        """Every commit that reached the remote has its SAL entry."""
        commits = (await git("rev-list", f"{head0}..main", cwd=self.remote)).split()
        logged = {e[2] for e in self.sal().values()}
        out.lost += [f"commit {c[:8]} on main has no SAL entry" for c in commits if c not in logged]


def _lines(path: Path) -> list[str]:
    """The console's lines, replies and rooms' announcements alike (without `[#room] `)."""
    try:
        return said(path.read_text(errors="replace").splitlines())
    except OSError:
        return []


async def _type(bot: asyncio.subprocess.Process, line: str) -> None:
    assert bot.stdin is not None
    bot.stdin.write(line.encode() + b"\n")
    await bot.stdin.drain()


@real
async def run_point(root: Path, template: Path, point: Point) -> Outcome:
    """One trial in `root` (a fresh directory) over a copy of `template`."""
    root.mkdir(parents=True, exist_ok=True)
    async with FakeKube() as kube:
        return await Trial(root, template, point, kube).run()
