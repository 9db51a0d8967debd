"""A real prosody on loopback for the XMPP tests, and a small slixmpp client to talk to it.

`running_prosody(tmp_path)` starts Debian's prosody (as user prosody via setpriv when run
as root) on a free loopback port with the MUC component `conference.localhost`, registers
bot/alice/bob, stops exactly the process it started and leaves its logs in `tmp_path`. `TestClient` is a second XMPP user (alice) who joins rooms, sends
groupchat/direct messages and records what she receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import slixmpp
from slixmpp import JID

from tests.support.real import real

DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"
USERS = {"bot": "bot-secret-pw", "alice": "alice-secret-pw", "bob": "bob-secret-pw"}
TEMPLATE = Path(__file__).parent / "servers" / "prosody.cfg.lua"
INSTALL_HINT = "apt-get install -y prosody"
START_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_binaries() -> None:
    missing = [b for b in ("prosody", "prosodyctl", "setpriv") if shutil.which(b) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not found: {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class PortInUse(RuntimeError):
    """Another program took the port between choosing it and prosody binding it."""


@real
@dataclass
class ProsodyServer:
    """One prosody process (restartable on the same port and data dir)."""

    root: Path
    port: int
    proc: asyncio.subprocess.Process | None = None
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)

    @property
    def config(self) -> Path:
        return self.root / "prosody.cfg.lua"

    def jid(self, user: str) -> str:
        return f"{user}@{DOMAIN}"

    def password(self, user: str) -> str:
        return USERS[user]

    def room(self, name: str) -> str:
        return f"{name}@{MUC_DOMAIN}"

    def write_config(self) -> None:
        text = TEMPLATE.read_text().replace("@DIR@", str(self.root))
        self.config.write_text(text.replace("@C2S_PORT@", str(self.port)))

    async def prepare(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "certs").mkdir(exist_ok=True)
        self.write_config()
        if self.as_root:
            await self._run("chown", "-R", "prosody:prosody", str(self.root))
        for user, password in USERS.items():
            await self._run(
                "prosodyctl", "--config", str(self.config), "register", user, DOMAIN, password
            )

    async def _run(self, *argv: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} {argv[1:3]} failed: {out.decode(errors='replace')}")

    async def start(self) -> None:
        """Start prosody and wait until its log says it listens on our port.

        Its log, not a TCP probe: a probe would also succeed if another program held the port.
        """
        log_file = self.root / "prosody.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        argv = ["prosody", "--config", str(self.config), "-F"]
        if self.as_root:
            argv = ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", *argv]
        with (self.root / "stdout.log").open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"prosody exited {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), log_file.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
                if f"Activated service 'c2s' on [127.0.0.1]:{self.port}" in text:
                    return
                if "Failed to open server port" in text:
                    await self.stop()
                    raise PortInUse(self.port)
            await asyncio.sleep(0.05)
        raise RuntimeError(f"prosody did not listen on {self.port}: {self.log_tail()}")

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process this object started (SIGKILL to simulate a crash)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # in case a test left it paused
            proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def pause(self, paused: bool = True) -> None:
        """Freeze (SIGSTOP) or thaw (SIGCONT) the server: connections stay open, nothing answers."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    async def restart(self) -> None:
        await self.stop(signal.SIGKILL)
        await self.start()

    def log_tail(self) -> str:
        parts = []
        for name in ("prosody.log", "stdout.log"):
            with contextlib.suppress(OSError):
                parts.append((self.root / name).read_text(errors="replace")[-2000:])
        return "\n".join(parts)


@real
@contextlib.asynccontextmanager
async def running_prosody(tmp_path: Path) -> AsyncIterator[ProsodyServer]:
    """Start prosody for one test; always stop it; leave its logs in `tmp_path`.

    The server's own dir is a fresh one directly under /tmp, not `tmp_path`: pytest keeps
    /tmp/pytest-of-<user> at mode 0700 (and re-tightens it whenever another pytest session
    starts), so the unprivileged prosody user could not reach a dir inside it.
    """
    _require_binaries()
    server = ProsodyServer(root=Path(tempfile.mkdtemp(prefix="deploybot-prosody-")), port=0)
    try:
        server.port = free_port()
        await server.prepare()
        for _ in range(5):
            try:
                await server.start()
                break
            except PortInUse:
                server.port = free_port()
                server.write_config()
        else:
            raise RuntimeError("no free port for prosody after 5 tries")
        yield server
    finally:
        await server.stop()
        tmp_path.mkdir(parents=True, exist_ok=True)
        for name in ("prosody.log", "stdout.log"):
            with contextlib.suppress(OSError):
                shutil.copyfile(server.root / name, tmp_path / name)
        shutil.rmtree(server.root, ignore_errors=True)


@dataclass(frozen=True)
class Received:
    """A message the test client got: type, sender (full JID) and body."""

    type: str
    sender: str
    body: str


class TestClient:
    """A plain slixmpp user for tests: connect, join, say things, collect what arrives."""

    __test__ = False  # not a pytest test class

    def __init__(self, server: ProsodyServer, user: str) -> None:
        self.server = server
        self.jid = server.jid(user)
        self.received: list[Received] = []
        self.xmpp = slixmpp.ClientXMPP(self.jid, server.password(user))
        self.xmpp.enable_direct_tls = False
        self.xmpp.enable_starttls = False
        self.xmpp.enable_plaintext = True
        self.xmpp.register_plugin("xep_0030")
        self.xmpp.register_plugin("xep_0045")
        self.xmpp.register_plugin("xep_0203")
        self.xmpp.register_plugin("xep_0308")
        self.xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
        self.xmpp.plugin["feature_mechanisms"].unencrypted_scram = True
        self.xmpp.add_event_handler("message", self._record)

    def _record(self, msg: slixmpp.Message) -> None:
        self.received.append(Received(str(msg["type"]), str(msg["from"]), str(msg["body"])))

    async def connect(self) -> None:
        self.xmpp.connect("127.0.0.1", self.server.port)
        await self.xmpp.wait_until("session_start", timeout=10)
        self.xmpp.send_presence()

    async def join(self, room: str, nick: str) -> None:
        await self.xmpp.plugin["xep_0045"].join_muc_wait(JID(room), nick, timeout=10)

    def say(self, room: str, text: str) -> str:
        """Say `text` in the room; return the message id (to correct it later)."""
        msg = self.xmpp.make_message(mto=JID(room), mbody=text, mtype="groupchat")
        msg["id"] = msg["id"] or self.xmpp.new_id()
        msg.send()
        return str(msg["id"])

    def correct(self, room: str, message_id: str, text: str) -> None:
        """A XEP-0308 correction of our message `message_id` (what `/correct` sends)."""
        msg = self.xmpp.make_message(mto=JID(room), mbody=text, mtype="groupchat")
        msg["replace"]["id"] = message_id
        msg.send()

    def leave(self, room: str, nick: str) -> None:
        self.xmpp.plugin["xep_0045"].leave_muc(JID(room), nick)

    def set_subject(self, room: str, subject: str) -> None:
        self.xmpp.send_message(mto=JID(room), mbody=None, msubject=subject, mtype="groupchat")

    def tell(self, jid: str, text: str) -> None:
        self.xmpp.send_message(mto=JID(jid), mbody=text, mtype="chat")

    def bodies(self, kind: str) -> list[str]:
        return [r.body for r in self.received if r.type == kind]

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.xmpp.disconnect(wait=1), timeout=3)
        self.xmpp.cancel_connection_attempt()
        task = self.xmpp._run_out_filters  # slixmpp leaves its send loop running otherwise
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll `predicate` until it holds or the deadline passes (then fail the test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)
