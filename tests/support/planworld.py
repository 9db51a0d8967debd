"""Random deploy histories against the planner's rules (issue 21, SPEC §15), shared by the
property tests in tests/model/test_planner_properties*.py.

Three environments (local -> toolsbeta -> tools; tools is `review: true`), the demo's real git
control repo and builds-api repository (with extra releases: one more on main and one on a
side branch, so history is not a line). A history is a random list of steps: deploys (with
and without `to`, downgrades with `--force`), promotions, applies, review confirmations by
either person, rollbacks, emergency rollbacks, manual pin edits and config-only commits
pushed to the control repo by hand. After every step:

1. every `next:` the bot said (the step's reply, `!status`, `!where`, the board's cells, the
   open alerts), typed by the same person, is accepted or refused only by a gate the advice
   named (review, requires, lock, window);
2. no advice moves an environment to an ancestor of what runs there (unless the step asked
   to go back);
3. `!where X`, the board and the open alerts agree with the history on which environments
   contain X;
4. no forward move into tools (review) happens without a second person's confirm
   (emergency rollback excepted), and no forward move skips `requires`;
5. `!rollback` goes back only: what runs there never moves forward and its new pin is never
   ahead of what ran; a plain `!rollback` (`previous`: what ran before) never says "nothing
   to roll back" (with the pin ahead of what runs, the way back is the pin), and a version
   it refuses as "not older than what runs" did run there (never one only pinned).

The oracle is independent of the bot: what runs is read from the cluster side of the world
(a `Live`: the demo's live files, or the Kubernetes fake's Deployments), ancestry with
`git merge-base --is-ancestor` in the component repository.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from hypothesis import strategies as st

from bot.app import App
from bot.chat.base import Message
from bot.chat.console import ROOM, ConsoleAdapter
from bot.config.model import parse_config
from bot.demo.setup import prepare
from bot.store.alerts import AlertStore
from tests.support.session import free_port

ENVS = ("local", "toolsbeta", "tools")
REQUIRES = {"toolsbeta": "local", "tools": "toolsbeta"}
USERS = ("alice", "bob")  # alice is an admin, bob a deployer
C = "builds-api"
GATES = {"review": "review", "requires": "requires", "lock": "locked", "window": "window"}
NEXT_RE = re.compile(r"next: (!\S+(?: [^\s;·()]+)*)(?: \(([^)]*(?:\([^)]*\)[^)]*)*)\))?")
REVIEW_RE = re.compile(r"(?:\[#\S+\] )?review #\d+: ")
NOT_OLDER_RE = re.compile(r"refused: (\S+) \(([0-9a-f]{8})\) is not older than")


class Live(Protocol):
    """The cluster side of a world: what runs in an environment, read without the bot."""

    def live(self, env: str) -> str | None: ...

    def unapplied(self, world: World, env: str) -> bool | None:
        """Would applying main change what is deployed in env (None: not known here)?"""
        ...

    def ran(self, env: str) -> set[str]:
        """Every version that ran in env (its Helm history)."""
        ...


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@functools.cache  # the component repository does not change once the world is made
def is_ancestor(repo: Path, old: str, new: str) -> bool:
    code = subprocess.run(
        ["git", "merge-base", "--is-ancestor", f"refs/tags/{old}", f"refs/tags/{new}"], cwd=repo
    ).returncode
    return code == 0


@dataclass
class World:
    """The demo's repos made once; `reset()` returns them to the start for each example."""

    root: Path
    data: dict[str, Any]  # the config, without `environments` (the cluster side adds them)
    control: Path  # bare
    component: Path  # bare
    releases: list[str]  # oldest first by release order; the last is on a side branch
    start: str  # control repo main at the start
    live_start: dict[str, str]
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.work = self.root / "human"

    def reset(self) -> None:
        git(self.control, "update-ref", "refs/heads/main", self.start)
        shutil.rmtree(self.root / "demo" / "var", ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)
        git(self.root, "clone", "--quiet", str(self.control), str(self.work))

    def pin(self, env: str) -> str:
        text = git(self.control, "show", f"main:components/{C}/values/{env}.yaml")
        return text.split("chartVersion:", 1)[1].split()[0]

    def values_at_start(self, env: str) -> str:
        """The environment's values file at the start (what was last applied there)."""
        return subprocess.run(
            ["git", "show", f"{self.start}:components/{C}/values/{env}.yaml"],
            cwd=self.control, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    def push_by_hand(self, env: str, *, version: str | None, note: str) -> None:
        """A person edits the control repo directly (a pin, or config only)."""
        git(self.work, "pull", "--quiet", "--rebase", "origin", "main")
        path = self.work / "components" / C / "values" / f"{env}.yaml"
        text = path.read_text()
        if version is not None:
            text = re.sub(r"chartVersion: \S+", f"chartVersion: {version}", text)
        else:
            text = re.sub(r"replicas: \d+", f"replicas: {len(note) % 5 + 1}", text)
        path.write_text(text)
        git(self.work, "commit", "--quiet", "--allow-empty", "-am", note)
        git(self.work, "push", "--quiet", "origin", "HEAD:main")


def _release(repo: Path, n: int, parent: str, branch: str) -> str:
    tree = git(repo, "rev-parse", f"{parent}^{{tree}}")
    env = {**os.environ, "GIT_AUTHOR_DATE": f"2026-11-20T0{n % 10}:00:00Z"}
    sha = subprocess.run(
        ["git", "commit-tree", tree, "-p", parent, "-m", f"{C}: change {n}"],
        cwd=repo, capture_output=True, text=True, check=True, env=env,
    ).stdout.strip()  # fmt: skip
    git(repo, "update-ref", f"refs/heads/{branch}", sha)
    version = f"0.0.{n}-2026112{n % 10}000000-{sha[:8]}"
    git(repo, "tag", version, sha)
    return version


async def make_world(tmp: Path) -> World:
    path = await prepare(tmp / "demo", listen=f"127.0.0.1:{free_port()}")
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    component = tmp / "demo" / "git" / f"{C}.git"
    main = git(component, "rev-parse", "main")
    _release(component, 135, main, "main")  # a build after the demo's releases
    _release(component, 136, main, "side")  # a release on another line of history
    tags = git(component, "tag", "--list").split()
    releases = sorted(tags, key=lambda t: int(t.split(".")[2].split("-")[0]))
    data["components"] = {C: data["components"][C]}
    data["environments"] = []
    data["monitors"] = {"enabled": False, "drift_grace": 0, "undeployed_after": 0}
    data["auth"] = {
        "rules": [
            {"who": ["console:alice"], "role": "admin"},
            {"who": ["console:bob"], "role": "deployer"},
        ]
    }
    data.pop("sal", None)
    control = tmp / "demo" / "git" / "toolforge-deploy.git"
    world = World(tmp, data, control, component, releases, git(control, "rev-parse", "main"), {})
    world.live_start = {env: world.pin(env) for env in ENVS}
    world.live_start["local"] = releases[-4]  # local runs behind its pin at the start
    return world


def environments(**per_env: dict[str, Any]) -> list[dict[str, Any]]:
    """The three environments' config, with what the cluster side adds to each."""
    base: dict[str, dict[str, Any]] = {
        "local": {"auto_apply": True},
        "toolsbeta": {"auto_apply": True, "requires": "local"},
        "tools": {"requires": "toolsbeta", "review": True},
    }
    return [{"name": env, **base[env], **per_env.get(env, {})} for env in ENVS]


@dataclass
class Step:
    kind: str
    user: str
    env: str
    ref: int  # index into the releases
    flag: bool


STEPS = st.builds(
    Step,
    kind=st.sampled_from(
        [
            "deploy",
            "deploy-to",
            "promote",
            "apply",
            "confirm",
            "rollback",
            "rollback-to",
            "emergency",
            "pin-by-hand",
            "config-only",
            "downgrade",
        ]
    ),  # fmt: skip
    user=st.sampled_from(USERS),
    env=st.sampled_from(ENVS),
    ref=st.integers(min_value=0, max_value=5),
    flag=st.booleans(),
)
HISTORIES = st.lists(STEPS, min_size=1, max_size=4)
# a history every run includes (`hypothesis.example`): tools pinned ahead of what it runs and
# not applied, then `!rollback` twice (the pin alone goes back; then no older one is known)
PIN_AHEAD = [
    Step("promote", "bob", "tools", 0, False),
    Step("rollback", "bob", "tools", 0, False),
    Step("rollback", "alice", "tools", 0, False),
]


def command(world: World, step: Step) -> str | None:
    version = world.releases[step.ref % len(world.releases)]
    return {
        "deploy": f"!deploy {C} {version}",
        "deploy-to": f"!deploy {C} {version} to {step.env}",
        "downgrade": f"!deploy {C} {version} to {step.env} --force",
        "promote": f"!promote {C} to {step.env if step.env != 'local' else 'tools'}",
        "apply": f"!apply {C} {step.env}",
        "confirm": f"!apply {C} tools confirm",
        "rollback": f"!rollback {C} {step.env}",
        "rollback-to": f"!rollback {C} {step.env} to {version}",
        "emergency": f"!rollback {C} {step.env} --emergency",
    }.get(step.kind)


class Session:
    """One app over the world; lines typed as either person, replies read back."""

    def __init__(self, world: World, cluster: Live, data: dict[str, Any], counts: Counter[str]):
        self.world = world
        self.cluster = cluster
        self.counts = counts
        self.out = io.StringIO()
        # a port of its own: between two histories another process may take the last one
        # (the long run failed "Address already in use" while other tests ran beside it)
        listen = f"127.0.0.1:{free_port()}"
        data = {**data, "http": {**data.get("http", {}), "listen": listen},
                "bot": {**data["bot"], "public_url": f"http://{listen}"}}  # fmt: skip
        config = parse_config(data)
        self.app = App(config, console=ConsoleAdapter(io.StringIO(""), self.out, user="alice"))
        self.requester: str | None = None  # who asked for the waiting review of tools

    def live(self, env: str) -> str | None:
        return self.cluster.live(env)

    async def say(self, user: str, line: str) -> list[str]:
        """Type `line` as `user`; the replies (announcements to rooms left out)."""
        start = len(self.out.getvalue())
        msg = Message("console", ROOM, user, line, (f"console:{user}",), private=True)
        await self.app.dispatcher.handle(msg)
        assert await self.app.services.outbox.flush(timeout=20)  # every reply written
        lines = self.out.getvalue()[start:].splitlines()
        replies = [x for x in lines if not x.startswith("[") and "working on it" not in x]
        if os.environ.get("PLANNER_DEBUG"):
            print(f"{user}> {line}", *lines, sep="\n  ")
        # the review is said once, as the room's announcement (a console shows each line
        # once), so it is looked for among all the lines
        if line == f"!apply {C} tools" and any(REVIEW_RE.match(x) for x in lines):
            self.requester = user
        return replies


def advised(lines: list[str]) -> Iterator[tuple[str, str]]:
    """(command, gate text) of every `next:` in the lines."""
    for line in lines:
        for m in NEXT_RE.finditer(line):
            yield m.group(1).strip(), m.group(2) or ""


def refusal(cmd: str, replies: list[str]) -> str | None:
    """The error line if the command was not accepted (an error names the command)."""
    name = cmd.split()[0].lstrip("!")
    return next((x for x in replies if x.startswith(f"{name}: ")), None)


async def check_typed(s: Session, user: str, cmd: str, gate: str) -> None:
    """Invariant 1: the advice, typed by the same person, is accepted or held by its gate."""
    before = {e: s.live(e) for e in ENVS}
    replies = await s.say(user, cmd)
    await check_moves(s, user, cmd, before)
    bad = refusal(cmd, replies)
    s.counts["1 next: typed"] += 1
    if bad is None:
        return
    named = [word for key, word in GATES.items() if key in gate]
    assert named and any(w in bad for w in named), f"{cmd!r} (gate {gate!r}) -> {bad!r}"
    s.counts["1 refused by the gate it named"] += 1


def target_of_advice(s: Session, cmd: str) -> tuple[str, str] | None:
    """(env, version) the advised command would make that environment run or pin."""
    words = cmd.split()
    if words[0] == "!apply" and len(words) == 3:
        return words[2], s.world.pin(words[2])
    if words[0] == "!deploy" and len(words) == 5 and words[3] == "to":
        return words[4], words[2]
    if words[0] == "!promote" and len(words) == 4:
        required = s.live(REQUIRES.get(words[3], ""))
        return (words[3], required) if required else None
    return None


def check_not_back(s: Session, cmd: str, asked_back: bool) -> None:
    """Invariant 2: no advice to an ancestor of what runs (unless going back was asked)."""
    found = target_of_advice(s, cmd)
    if found is None or asked_back:
        return
    env, version = found
    runs = s.live(env)
    s.counts["2 advice checked for a step back"] += 1
    if runs and version != runs:
        assert not is_ancestor(s.world.component, version, runs), f"{cmd} moves {env} back"


async def check_moves(s: Session, user: str, cmd: str, before: dict[str, str | None]) -> None:
    """Invariant 4: forward moves pass requires, and into tools only by a second person."""
    component = s.world.component
    for env in ("toolsbeta", "tools"):
        old, new = before[env], s.live(env)
        if new is None or new == old or (old and is_ancestor(component, new, old)):
            continue  # no move, or a step back
        s.counts["4 forward moves checked"] += 1
        if "--emergency" in cmd:
            s.counts["4 emergency (gates skipped, admin)"] += 1
            continue
        assert s.live(REQUIRES[env]) == new, f"{cmd}: {env} -> {new} skipped requires"
        if env == "tools":
            assert cmd == f"!apply {C} tools confirm", f"{cmd} moved tools without review"
            assert s.requester not in (None, user), f"{user} confirmed their own review"


def check_rollback(
    s: Session, step: Step, replies: list[str], before: dict[str, str | None], pinned: str
) -> None:
    """Invariant 5: a rollback goes back only, and `previous` is a way back."""
    if step.kind not in ("rollback", "rollback-to"):
        return
    component, env = s.world.component, step.env
    old, new, pin = before[env], s.live(env), s.world.pin(env)
    if old and new and new != old:
        assert is_ancestor(component, new, old), f"rollback moved {env} forward: {old} -> {new}"
    if old and pin != pinned and pin != old:  # re-pinned: to what ran, or older
        assert is_ancestor(component, pin, old), f"rollback pinned {pin} in {env}, ahead of {old}"
    if step.kind == "rollback":
        said = " ".join(replies)
        assert "nothing to roll back" not in said, said
        for short, sha in NOT_OLDER_RE.findall(said):
            assert any(v.startswith(f"{short}-") and v.endswith(sha) for v in s.cluster.ran(env)), (
                f"previous in {env} is {short} ({sha}), which never ran there: {said}"
            )
            s.counts["5 previous ran there"] += 1
    s.counts["5 rollbacks go back only"] += 1


async def check_agree(s: Session, user: str, probe: str, *, unapplied: bool) -> list[str]:
    """Invariant 3, and the advice all views give (to check with 1 and 2). With `unapplied`,
    the unapplied check runs first (its alerts are among the views)."""
    component = s.world.component
    lines = await s.say(user, f"!where {C} {probe}")
    if os.environ.get("PLANNER_DEBUG"):
        print("WHERE", lines)
    truth = [e for e in ENVS if (r := s.live(e)) and is_ancestor(component, probe, r)]
    if lines and "step" in lines[0] and len(lines) > 1:
        said = re.search(r"runs in \(contained in what runs\): ([a-z, ]+)", lines[1])
        shown = [e.strip() for e in said.group(1).split(",")] if said else []
        assert shown == truth, f"!where {probe}: {shown} != {truth}"
        s.counts["3 !where agrees"] += 1
    [status] = await s.app.board.gather([C], fresh=True)
    latest = status.latest
    assert latest is not None
    oracle = {e: bool((r := s.live(e)) and is_ancestor(component, latest.raw, r)) for e in ENVS}
    assert {e: bool(v) for e, v in status.contains_latest.items()} == oracle
    s.counts["3 board agrees"] += 1
    if unapplied:
        await s.app.unapplied.check_now()
    await s.app.monitors.check_now()
    alerts = await AlertStore(s.app.services.store).active()
    for alert in alerts:
        m = re.search(r"newest (\S+),", alert.text) if alert.kind == "undeployed" else None
        if m is not None:
            assert not is_ancestor(component, m.group(1), s.live(alert.env) or ""), (
                f"undeployed names {m.group(1)}, which runs in {alert.env}"
            )
            s.counts["3 alerts agree"] += 1
    for env in ENVS if unapplied else ():
        truth = s.cluster.unapplied(s.world, env)
        raised = any(a.kind == "unapplied" and a.env == env for a in alerts)
        if truth is not None:
            assert raised == truth, f"unapplied alert in {env}: {raised}, applying main: {truth}"
            s.counts["3 unapplied alert agrees"] += 1
    cells = [c.advice.line() for c in status.cells.values() if c.advice is not None]
    said = await s.say(user, f"!status {C}")
    return lines + said + cells + [a.text for a in alerts]


async def seen_push(s: Session) -> None:
    """The bot has seen the push (as after the control repo's push webhook): the advice is
    about the state it knows."""
    assert s.app.bumper is not None
    await s.app.bumper.forge.refresh(max_age=0)


async def run_history(s: Session, steps: list[Step], *, unapplied: bool = False) -> None:
    """Each step, then the five invariants; the app is started and stopped here."""
    world = s.world
    await s.app.start()
    try:
        for step in steps:
            cmd = command(world, step)
            if step.kind == "pin-by-hand":
                version = world.releases[step.ref % len(world.releases)]
                world.push_by_hand(step.env, version=version, note=f"pin {version} by hand")
                await seen_push(s)
                replies: list[str] = []
            elif step.kind == "config-only":
                world.push_by_hand(step.env, version=None, note="config only")
                await seen_push(s)
                replies = []
            else:
                assert cmd is not None
                user = "alice" if step.kind in ("emergency", "downgrade") else step.user
                before = {e: s.live(e) for e in ENVS}
                pinned = world.pin(step.env)
                replies = await s.say(user, cmd)
                await check_moves(s, user, cmd, before)
                check_rollback(s, step, replies, before, pinned)
            asked_back = step.kind in ("rollback", "rollback-to", "emergency", "downgrade")
            for advice, _ in advised(replies):
                check_not_back(s, advice, asked_back)
            probe = world.releases[(step.ref + 2) % len(world.releases)]
            seen = await check_agree(s, step.user, probe, unapplied=unapplied)
            todo = list(dict.fromkeys(advised(seen)))
            for advice, _ in todo:
                check_not_back(s, advice, False)
            if todo:  # one of them typed, as the same person
                advice, gate = todo[step.ref % len(todo)]
                await check_typed(s, step.user, advice, gate)
    finally:
        await s.app.stop()


def report(counts: Counter[str], what: str) -> None:
    """Print how often each invariant was checked (run with -s); at least once each."""
    if not counts:
        pytest.skip("the property test did not run in this session")
    print(f"\nplanner invariants checked ({what}):", dict(sorted(counts.items())))
    for key in ("1 next: typed", "2 advice checked for a step back", "3 board agrees"):
        assert counts[key] > 0, key
