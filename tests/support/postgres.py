"""A real PostgreSQL server (Debian `postgresql`) on loopback for tests.

    with running_postgres(tmp_path) as pg:
        pg.psql("CREATE TABLE t (x int)")
        pg.url  # postgresql://deploybot@127.0.0.1:PORT/deploybot
        with pg.blocked():  # the DB stops answering (SIGSTOP of every server process)
            ...

As root the server runs as the `postgres` user (PostgreSQL refuses root); otherwise as the
current user. `initdb` runs once per test process into a template cluster that each server
copies (saves about a second per server). Trust authentication, superuser `deploybot`,
database `deploybot`, `fsync=off`: a throwaway test cluster, never a production setup.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import (
    HOST,
    children_of,
    free_port,
    log_tail,
    missing,
    signal_pids,
    stop_process,
    wait_until,
)
from tests.support.real import real

INSTALL = "apt-get install -y --no-install-recommends postgresql"
SUPERUSER = "deploybot"
DATABASE = "deploybot"
START_TIMEOUT = 20.0
_SOCKET_PATH_MAX = 90  # a Unix socket path must stay under ~107 bytes, with its file name


def find_bindir() -> Path | None:
    """The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `postgres`."""

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        bindir = Path(candidate)
        if all((bindir / tool).exists() for tool in ("initdb", "postgres", "psql", "pg_isready")):
            return bindir
    return None


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as: `postgres` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        missing("the postgres system user", INSTALL)


def _reachable(path: Path, account: pwd.struct_passwd | None) -> bool:
    """Can `account` traverse every directory down to `path`? (pytest's tmp root is 0700.)"""
    if account is None:
        return True
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _owned_dir(path: Path, account: pwd.struct_passwd | None) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    return path


@dataclass(frozen=True)
class _Creds:
    """How to run a server tool: as `postgres` (we are root) or as ourselves."""

    env: dict[str, str]
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


def _creds(account: pwd.struct_passwd | None) -> _Creds:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
    if account is None:
        return _Creds(env)
    return _Creds({**env, "HOME": account.pw_dir}, account.pw_uid, account.pw_gid, [])


_template: Path | None = None


def _template_cluster(bindir: Path, account: pwd.struct_passwd | None) -> Path:
    """A cluster made by `initdb` once per process; servers start from a copy of it."""
    global _template
    if _template is not None and _template.exists():
        return _template
    base = Path(tempfile.mkdtemp(prefix="deploybot-pg-template-"))
    atexit.register(shutil.rmtree, base, True)
    _owned_dir(base, account)
    datadir = base / "pgdata"
    argv = [
        str(bindir / "initdb"),
        "-D",
        str(datadir),
        "--auth=trust",
        "-U",
        SUPERUSER,
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    creds = _creds(account)
    done = subprocess.run(
        argv,
        cwd=base,
        capture_output=True,
        timeout=120,
        check=False,
        env=creds.env,
        user=creds.user,
        group=creds.group,
        extra_groups=creds.extra_groups,
    )
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    _template = datadir
    return datadir


def _is_postgres(pid: int) -> bool:
    """Is `pid` still a PostgreSQL process (not exited, not a reused PID)?"""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres")
    except OSError:
        return False


@real
@dataclass
class PgServer:
    """One PostgreSQL server process on 127.0.0.1; restartable on the same port and data."""

    bindir: Path
    datadir: Path
    log: Path
    port: int
    account: pwd.struct_passwd | None = None
    host: str = HOST
    user: str = SUPERUSER
    database: str = DATABASE
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False

    @property
    def url(self) -> str:
        """`postgresql://deploybot@127.0.0.1:PORT/deploybot` (trust auth: no password)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the postmaster and wait (deadline `timeout`) until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("PostgreSQL is already running")
        socket_dir = str(self.datadir) if len(str(self.datadir)) < _SOCKET_PATH_MAX else ""
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-k",
            socket_dir,
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=50",
        ]
        creds = _creds(self.account)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.datadir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=creds.env,
                user=creds.user,
                group=creds.group,
                extra_groups=creds.extra_groups,
            )
        self.paused = False
        wait_until(
            self.ready, timeout=timeout, what="PostgreSQL to accept", alive=self.proc, log=self.log
        )

    def ready(self) -> bool:
        """`pg_isready` against the TCP port answers "accepting connections"."""
        done = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
            + ["-U", self.user, "-d", "postgres", "-t", "2"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return done.returncode == 0

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients), then immediate (SIGQUIT), then SIGKILL;
        each with a deadline. Workers the postmaster leaves behind are killed by PID."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self.resume()  # a stopped process cannot act on SIGINT
            workers = children_of(proc.pid)
            stop_process(proc, ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0)))
            signal_pids(filter(_is_postgres, workers), signal.SIGKILL)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def crash(self) -> None:
        """SIGKILL the postmaster and its workers: the next start runs crash recovery."""
        proc = self.proc
        if proc is None:
            return
        self.resume()
        workers = children_of(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        signal_pids(workers, signal.SIGKILL)
        self.proc = None

    # --- cut-off simulation ----------------------------------------------------------------

    def _pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *children_of(self.proc.pid)]

    def pause(self) -> None:
        """The database stops answering: SIGSTOP the postmaster (first, so it forks no more
        backends) and every server process. New connections hang in the TCP backlog and open
        ones get no replies, as when the network to the DB is cut; nothing is refused."""
        if self.proc is None or self.paused:
            return
        signal_pids([self.proc.pid], signal.SIGSTOP)
        signal_pids(children_of(self.proc.pid), signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Undo `pause()`: SIGCONT the workers, then the postmaster."""
        if self.proc is None or not self.paused:
            return
        signal_pids(children_of(self.proc.pid), signal.SIGCONT)
        signal_pids([self.proc.pid], signal.SIGCONT)
        self.paused = False

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        """`with pg.blocked():` the database is cut off inside the block, back after it."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    # --- client ----------------------------------------------------------------------------

    def psql(
        self,
        sql: str,
        *,
        database: str | None = None,
        timeout: float = 10.0,
        connect_timeout: int = 5,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `sql` with `psql` (unaligned, tuples only, stop on error). `timeout` bounds the
        whole command; `check` raises CalledProcessError on failure."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGCONNECT_TIMEOUT": str(connect_timeout),
            "PGOPTIONS": f"-c statement_timeout={int(timeout * 1000)}",
        }
        argv = [str(self.bindir / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", self.host, "-p", str(self.port), "-U", self.user]
        argv += ["-d", database or self.database, "-c", sql]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=check, env=env
        )

    def query(
        self, sql: str, *, database: str | None = None, timeout: float = 10.0
    ) -> list[list[str]]:
        """Rows of `sql` as lists of strings (fields split on `|`)."""
        out = self.psql(sql, database=database, timeout=timeout).stdout
        return [line.split("|") for line in out.splitlines() if line]

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"', database="postgres")


@real
@contextlib.contextmanager
def running_postgres(tmpdir: Path, *, keep_data: bool = False) -> Iterator[PgServer]:
    """Start a fresh PostgreSQL with database `deploybot` on a free loopback port; yield it;
    always stop it and remove its data (unless `keep_data`). Server log: `tmpdir/postgres.log`.
    The data dir is `tmpdir/pgdata`, or a private dir under $TMPDIR when the server's user
    cannot reach `tmpdir` (root running pytest: `/tmp/pytest-of-root` is mode 0700).

    Skips the test (fails under CI=true) when PostgreSQL is not installed."""
    bindir = find_bindir()
    if bindir is None:
        missing("PostgreSQL (initdb/postgres)", INSTALL)
    account = _run_as()
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    # The server user must reach its data dir; pytest's tmp root is private to root.
    if _reachable(tmpdir, account):
        base, own_base = tmpdir, False
    else:
        base, own_base = Path(tempfile.mkdtemp(prefix="deploybot-pg-")), True
    datadir = base / "pgdata"
    server: PgServer | None = None
    try:
        template = _template_cluster(bindir, account)
        if datadir.exists():
            shutil.rmtree(datadir)
        subprocess.run(["cp", "-a", str(template), str(datadir)], check=True, timeout=60)
        _owned_dir(datadir, account)
        if own_base:
            _owned_dir(base, account)
        log = tmpdir / "postgres.log"
        for attempt in range(3):  # another process may take the free port before we bind it
            server = PgServer(bindir, datadir, log, free_port(), account)
            try:
                server.start()
                break
            except RuntimeError:
                server.stop()
                if attempt == 2 or "already in use" not in log_tail(log, 5):
                    raise
        assert server is not None
        server.create_database(DATABASE)
        yield server
    finally:
        if server is not None:
            server.stop()
        if not keep_data:
            shutil.rmtree(base if own_base else datadir, ignore_errors=True)
