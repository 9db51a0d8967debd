"""Real IRC servers on loopback for tests (InspIRCd + Atheme, ngircd) and a raw IRC client.

Servers run from the config templates in tests/servers/ with free ports and a pytest tmp
dir; they can be killed with SIGKILL and restarted on the same ports while a bot runs.
Only the PIDs started here are ever killed.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from bot.chat.irc.proto import Line, format_line, parse_line
from tests.support.real import real

HOST = "127.0.0.1"
TEMPLATES = Path(__file__).parent / "servers"
INSTALL_HINT = "apt-get install -y ngircd inspircd atheme-services"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)
    return found


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)  # polling an external process; nothing to await in sync code
    raise TimeoutError(f"timed out waiting for {what}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _offers_cap(port: int, cap: str) -> bool:
    """Ask the server for CAP LS and report whether cap is offered."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(b"CAP LS 302\r\n")
            data = b""
            while b" LS " not in data or not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            sock.sendall(b"QUIT\r\n")
    except OSError:
        return False
    ls_lines = [ln for ln in data.decode(errors="replace").splitlines() if " LS " in ln]
    return any(cap in ln.split(":", 2)[-1].replace("=", " ").split() for ln in ls_lines)


@real
class IrcServer:
    """Processes of one test IRC network in a directory; restartable on the same ports."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.host = HOST
        self.port = free_port()
        self._procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, argv: list[str], log: str | None) -> None:
        if log is None:
            self._procs.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            return
        with open(self.dir / log, "ab") as out:
            self._procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))

    def _render(self, template: str, **values: object) -> Path:
        text = (TEMPLATES / template).read_text()
        for key, value in {"DIR": self.dir, **values}.items():
            text = text.replace(f"@{key}@", str(value))
        path = self.dir / template
        path.write_text(text)
        return path

    def start(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL every process this object started (and only those)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        self._procs = []

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self, paused: bool = True) -> None:
        """Freeze (SIGSTOP) or thaw (SIGCONT) the server processes: sockets stay open, silent."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    async def register_account(self, account: str, password: str) -> None:
        """Register a services account named `account` (NickServ registers the current nick)."""
        client = RawIrcClient(self.port, account)
        await client.connect()
        try:
            client.send(
                format_line("PRIVMSG", "NickServ", f"REGISTER {password} {account}@example.org")
            )
            await client.wait_for(
                lambda ln: (
                    ln.command == "NOTICE" and ln.nick == "NickServ" and "registered" in ln.param(1)
                ),
                within=10,
            )
        finally:
            await client.close()


class InspircdAtheme(IrcServer):
    """InspIRCd 3 with Atheme services linked: SASL, account-tag, extended-join, WHOX.

    `port` uses the default (`main`) connect class with flood limits; `fast_port` has them lifted.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.fast_port = free_port()
        self.link_port = free_port()

    def start(self) -> None:
        inspircd, atheme = _binary("inspircd"), _binary("atheme-services")
        (self.dir / "motd.txt").write_text("test\n")
        ports = {"PORT_MAIN": self.port, "PORT_FAST": self.fast_port, "PORT_LINK": self.link_port}
        conf = self._render("inspircd.conf", **ports)
        self._spawn([inspircd, "--config", str(conf), "--nofork", "--runasroot"], "inspircd.out")
        _wait_until(lambda: _listening(self.link_port) and _listening(self.port), 20, "inspircd")
        aconf = self._render("atheme.conf", PORT_LINK=self.link_port)
        argv = [
            atheme,
            "-n",
            "-c",
            str(aconf),
            "-D",
            str(self.dir),
            "-l",
            str(self.dir / "atheme.run.log"),
        ]
        self._spawn([*argv, "-p", str(self.dir / "atheme.pid")], "atheme.out")
        _wait_until(lambda: _offers_cap(self.port, "sasl"), 30, "atheme to link (CAP LS sasl)")


class Ngircd(IrcServer):
    """ngircd: a plain RFC server (no SASL, no account-tag, no WHOX). Logs go to /dev/null."""

    def start(self) -> None:
        conf = self._render("ngircd.conf", PORT=self.port)
        self._spawn([_binary("ngircd"), "-n", "-f", str(conf)], None)
        _wait_until(lambda: _listening(self.port), 20, "ngircd")


@pytest.fixture(scope="module", name="inspircd_atheme")
def inspircd_atheme_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspircdAtheme]:
    server = InspircdAtheme(tmp_path_factory.mktemp("inspircd"))
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module", name="ngircd")
def ngircd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ngircd]:
    server = Ngircd(tmp_path_factory.mktemp("ngircd"))
    try:
        server.start()
        yield server
    finally:
        server.kill()


class RawIrcClient:
    """A bare IRC client for tests: every received line is kept in `lines` (PINGs answered)."""

    def __init__(
        self,
        port: int,
        nick: str,
        *,
        sasl: tuple[str, str] | None = None,
        caps: Iterable[str] = (),
    ) -> None:
        self.port, self.nick, self._sasl, self._caps = port, nick, sasl, set(caps)
        self.lines: list[Line] = []
        self.sizes: list[int] = []  # byte length of each received line, CR/LF included
        self._changed = asyncio.Condition()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def connect(self, within: float = 15.0) -> None:
        reader, self._writer = await asyncio.open_connection(HOST, self.port)
        self._reader_task = asyncio.create_task(self._read(reader))
        self.send("CAP LS 302")
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :raw test client")
        ls = await self.wait_for(
            lambda ln: ln.command in ("CAP", "001") and ln.param(1) != "ACK", within
        )
        offered = {c.split("=")[0] for c in ls.params[-1].split()} if ls.command == "CAP" else set()
        wanted = self._caps & offered | ({"sasl"} & offered if self._sasl else set())
        if wanted:
            mark = len(self.lines)
            self.send(f"CAP REQ :{' '.join(sorted(wanted))}")
            await self.wait_for(
                lambda ln: ln.command == "CAP" and ln.param(1) in ("ACK", "NAK"), within, mark
            )
        if self._sasl and "sasl" in wanted:
            mark = len(self.lines)
            self.send("AUTHENTICATE PLAIN")
            await self.wait_for(lambda ln: ln.command == "AUTHENTICATE", within, mark)
            user, password = self._sasl
            self.send(
                "AUTHENTICATE " + base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode()
            )
            done = await self.wait_for(lambda ln: ln.command in ("903", "904", "905"), within, mark)
            if done.command != "903":
                raise RuntimeError(f"SASL failed for {user}: {done.command}")
        self.send("CAP END")
        welcome = await self.wait_for(lambda ln: ln.command == "001", within)
        self.nick = welcome.param(0)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while raw := await reader.readline():
                line = parse_line(raw.decode("utf-8", "replace"))
                if line.command == "PING":
                    self.send(format_line("PONG", line.param(0)))
                async with self._changed:
                    self.lines.append(line)
                    self.sizes.append(len(raw))
                    self._changed.notify_all()
        except OSError:
            pass
        async with self._changed:
            self.lines.append(Line("EOF"))
            self._changed.notify_all()

    def send(self, raw: str) -> None:
        assert self._writer is not None, "not connected"
        self._writer.write(raw.encode() + b"\r\n")

    async def join(self, channel: str, within: float = 10.0) -> None:
        self.send(f"JOIN {channel}")
        await self.wait_for(
            lambda ln: ln.command == "366" and ln.param(1).lower() == channel.lower(), within
        )

    async def privmsg(self, target: str, text: str) -> None:
        self.send(format_line("PRIVMSG", target, text))
        assert self._writer is not None
        await self._writer.drain()

    async def wait_for(
        self, predicate: Callable[[Line], bool], within: float = 10.0, since: int = 0
    ) -> Line:
        """First received line (from index `since`) matching predicate; TimeoutError after
        `within` s, naming the last lines this client received (what came instead)."""
        try:
            async with asyncio.timeout(within):
                async with self._changed:
                    while True:
                        for line in self.lines[since:]:
                            if predicate(line):
                                return line
                        since = len(self.lines)
                        await self._changed.wait()
        except TimeoutError:
            last = "\n".join(
                f"{ln.nick} {ln.command} {' '.join(ln.params)}" for ln in self.lines[-12:]
            )
            raise TimeoutError(
                f"no matching line within {within:g}s; the last ones:\n{last}"
            ) from None

    async def close(self) -> None:
        if self._writer is not None:
            try:
                self.send("QUIT :bye")
                await asyncio.wait_for(self._writer.drain(), 2)
            except (OSError, TimeoutError):
                pass
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)


_names = itertools.count()


def unique(prefix: str) -> str:
    """A nick or channel name no other test in this run uses."""
    return f"{prefix}{next(_names)}"


def own_source(client: RawIrcClient) -> str:
    """nick!user@host of the client, as the server shows it to others (from its JOIN echo)."""
    join = next(ln for ln in client.lines if ln.command == "JOIN" and ln.nick == client.nick)
    assert join.source is not None
    return join.source
