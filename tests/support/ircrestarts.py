"""A pipeline burst while the IRC server is killed and restarted: the bed of the fault test
and the benchmark that count final states lost (issue "Resilience").

`deploybot run` (a subprocess) talks to a real ngircd through a door (`TcpProxy`): a
loopback TCP proxy that forwards everything at once, but can hold *new* connections. A
watching client records the channel. Each restart: hold the door, SIGKILL ngircd, start it
on the same port, let the watcher connect and join, open the door. So after every restart
the watcher is in the channel before the bot is (it sees the bot's JOIN), and every line
the bot says in that session reaches it: "seen by the watcher" is "visible in the channel".
A line the bot wrote into a connection that died before ngircd relayed it is lost for
everyone, and counts as lost.

Pipelines are staggered (pipeline k's 10 deliveries start at tick k), so final states keep
arriving while the server restarts; each restart comes at a seeded random moment shortly
after the bot said something, i.e. while lines flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.chat.irc.fence import MARKER
from bot.chat.irc.proto import Line
from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.ircservers import Ngircd, RawIrcClient
from tests.support.tcpproxy import TcpProxy

HOST = "127.0.0.1"
CHANNEL = "#restarts"
BOT_NICK = "restartbot"
SECRET_ENV = "DEPLOYBOT_RESTARTS_WEBHOOK_SECRET"
SECRET = "restarts-webhook-secret"
FIRST_ID = 820000
STAGES = ("build", "test", "publish")
SEQUENCE = [("pending", 0)] + [("running", s) for s in (1, 1, 1, 2, 2, 2, 3, 3)]
SEQUENCE += [("success", 3)]
# a full line ("builds-api: pipeline 7 on wip/x (abcd1234): success in ...") or the short
# form of a packed backlog ("builds-api #7 success 1m5s")
ITEM_RE = re.compile(r"(?:pipeline (\d+) on .*?: |^\S+ #(\d+) )(\w+)")


def schedule(pipelines: int) -> list[list[dict[str, Any]]]:
    """Deliveries per tick: pipeline k sends its j-th update at tick k + j."""
    ticks: list[list[dict[str, Any]]] = [[] for _ in range(pipelines + len(SEQUENCE) - 1)]
    for k in range(pipelines):
        pid = FIRST_ID + k
        for j, (status, stage) in enumerate(SEQUENCE):
            body = pipeline_hook(pid, status, stage, stages=STAGES, ref="wip/restarts")
            body["object_attributes"]["sha"] = body["commit"]["id"] = f"{pid:040x}"
            ticks[k + j].append(body)
    return ticks


@dataclass
class Transcript:
    """What the watchers saw from the bot, over all their sessions."""

    pipelines: int
    lines: list[str] = field(default_factory=list)
    finals: dict[int, int] = field(default_factory=dict)  # pipeline -> final items seen

    def feed(self, line: Line) -> None:
        if line.command != "PRIVMSG" or line.nick != BOT_NICK:
            return
        self.lines.append(line.param(1))
        for item in line.param(1).split(" | "):
            found = ITEM_RE.search(item)
            if found and found[3] == "success":
                pid = int(found[1] or found[2])
                self.finals[pid] = self.finals.get(pid, 0) + 1

    @property
    def complete(self) -> bool:
        return len(self.finals) == self.pipelines


@dataclass
class RestartRun:
    pipelines: int
    restarts: int  # restarts done
    deliveries: int
    http_not_200: int
    lost: list[int]  # pipelines whose final state the channel never saw
    repeats: int  # final states seen more than once (extra sightings)
    late_sessions: int  # watcher sessions that joined after the bot (should be 0)
    bot_sessions: int  # connections the bot made through the door
    lines: int
    resent: int  # lines the bot sent again after a reconnect (marked so)
    seconds: float  # from the first delivery until every final was seen (or the deadline)


class _Watch:
    """The watching client, reconnected after each restart; feeds one transcript."""

    def __init__(self, port: int, seen: Transcript) -> None:
        self.port, self.seen = port, seen
        self.client: RawIrcClient | None = None
        self.fed = 0
        self.late = 0
        self.changed = asyncio.Event()

    async def join(self) -> None:
        await self.close()
        client = RawIrcClient(self.port, "watcher")
        await client.connect()
        await client.join(CHANNEL)
        names = [ln for ln in client.lines if ln.command == "353"]
        if any(BOT_NICK in ln.param(-1).split() for ln in names):
            self.late += 1  # the bot was in first: what it said before is not judged here
        self.client, self.fed = client, 0

    def pump(self) -> None:
        """Feed new lines of the current session to the transcript."""
        if self.client is None:
            return
        for line in self.client.lines[self.fed :]:
            self.seen.feed(line)
        self.fed = len(self.client.lines)

    async def wait(self, predicate: Any, within: float) -> bool:
        """Until `predicate(line)` holds for a new line of this session; False on timeout."""
        assert self.client is not None
        mark = self.fed
        try:
            await self.client.wait_for(predicate, within, mark)
        except TimeoutError:
            return False
        finally:
            self.pump()
        return True

    async def close(self) -> None:
        if self.client is not None:
            self.pump()
            await self.client.close()
            self.client = None


async def burst_with_restarts(
    workdir: Path,
    *,
    pipelines: int = 50,
    restarts: int = 10,
    tick_s: float = 0.5,
    seed: int = 14,
    deadline_s: float = 50.0,
    extra: dict[str, Any] | None = None,
    in_flight: bool = False,
) -> RestartRun:
    """Post the staggered burst and restart ngircd `restarts` times while it is shown.

    Kills come at a random moment up to 0.4 s after the watcher saw a line; with
    `in_flight`, the moment the door passed one of the bot's PRIVMSGs on to the server
    (the line is on the wire: whether ngircd read it before dying is a race).
    """
    rng = random.Random(seed)
    server = Ngircd(workdir / "ngircd")
    server.dir.mkdir(parents=True)
    await asyncio.to_thread(server.start)
    door = TcpProxy(server.port)
    await door.start()
    config: dict[str, Any] = {
        "bot": {"nick": BOT_NICK},
        "chat": {"default_room": CHANNEL,
                 "irc": {"host": HOST, "port": door.port, "tls": False, "channels": [CHANNEL]}},
        "monitors": {"enabled": False},
        "components": {"builds-api": {"project": "repos/cloud/toolforge/builds-api",
                                      "room": CHANNEL}},
        "gitlab": {"url": "http://127.0.0.1:9", "webhook_secret_env": SECRET_ENV,
                   "mr_notes": False, "announce_branches": ["wip/*"]},
        **(extra or {}),
    }  # fmt: skip
    bot = BotProcess(workdir / "bot", config, {SECRET_ENV: SECRET})
    seen = Transcript(pipelines)
    watch = _Watch(server.port, seen)
    failures = 0
    done_restarts = 0
    ticks = schedule(pipelines)

    async def post_all() -> None:
        nonlocal failures
        start = time.monotonic()
        for index, bodies in enumerate(ticks):
            # pacing the deliveries over time (not waiting for an event)
            await asyncio.sleep(max(0.0, start + index * tick_s - time.monotonic()))
            headers = [{"X-Gitlab-Token": SECRET, "X-Gitlab-Event-UUID": f"rs-{index}-{n}"}
                       for n in range(len(bodies))]  # fmt: skip
            codes = await asyncio.gather(
                *(bot.post_webhook(b, headers=h) for b, h in zip(bodies, headers, strict=True))
            )
            failures += sum(1 for code in codes if code != 200)

    def said(line: Line) -> bool:
        return line.command == "PRIVMSG" and line.nick == BOT_NICK

    def joined(line: Line) -> bool:
        return line.command == "JOIN" and line.nick == BOT_NICK

    killed = asyncio.Event()
    armed = [False]

    def kill_in_flight(data: bytes) -> None:  # a PRIVMSG of the bot's went upstream
        if armed[0] and b"PRIVMSG" in data:
            armed[0] = False
            door.hold()
            server.kill()
            killed.set()

    door.on_upstream = kill_in_flight
    poster: asyncio.Task[None] | None = None
    started = time.monotonic()
    try:
        await watch.join()
        await bot.start()
        started = time.monotonic()
        poster = asyncio.create_task(post_all())
        for _ in range(restarts):
            if in_flight:
                killed.clear()
                armed[0] = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(killed.wait(), 10)
                armed[0] = False
            else:
                await watch.wait(said, within=10)  # lines are flowing (or nothing is left)
                await asyncio.sleep(rng.uniform(0.0, 0.4))  # a random moment in the flow
            door.hold()
            await asyncio.to_thread(server.restart)
            done_restarts += 1
            await watch.join()
            door.admit()
            if not await watch.wait(joined, within=30):
                raise TimeoutError(f"the bot did not rejoin after restart {done_restarts}")
        await poster
        remaining = deadline_s - (time.monotonic() - started)
        while not seen.complete and remaining > 0:
            await watch.wait(said, within=min(remaining, 1.0))
            remaining = deadline_s - (time.monotonic() - started)
        seconds = time.monotonic() - started
    finally:
        if poster is not None and not poster.done():
            poster.cancel()
            await asyncio.gather(poster, return_exceptions=True)
        await watch.close()
        await bot.stop()
        await door.close()
        await asyncio.to_thread(server.kill)
    return RestartRun(
        pipelines=pipelines,
        restarts=done_restarts,
        deliveries=sum(len(t) for t in ticks),
        http_not_200=failures,
        lost=sorted(set(range(FIRST_ID, FIRST_ID + pipelines)) - set(seen.finals)),
        repeats=sum(n - 1 for n in seen.finals.values()),
        late_sessions=watch.late,
        bot_sessions=door.connections,
        lines=len(seen.lines),
        resent=sum(1 for line in seen.lines if line.endswith(MARKER)),
        seconds=round(seconds, 2),
    )
