"""Running one deploy command: an argv (never a shell) with a timeout and a captured log.

The child runs in its own process group (`start_new_session=True`), so a timeout or a
cancelled deploy kills the whole group (helmfile's helm children included), and it dies
with the bot (`PR_SET_PDEATHSIG`); the group id is in `pgid_path` while it runs (written by
the child itself, before the command starts), so a restarted bot can find what survived
(bot.deploy.orphans). stdout and stderr are streamed, interleaved, into the deploy's log
file as they come, so the log URL shows progress while the command runs and everything up
to a crash. Also here: filling `{placeholders}` into configured argv, and reading
`helmfile diff --detailed-exitcode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PLACEHOLDERS = ("component", "env", "version", "kube_context", "release", "namespace", "revision")
_PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
_SAFE_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,200}$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# helm-diff's header per resource: `<namespace>, <name>, <Kind> (<group>) has changed:`
_DIFF_HEADER_RE = re.compile(
    r"^(?P<ns>[^,\s]+), (?P<name>[^,\s]+), (?P<kind>[^,]+?) has (?:changed|been added|been removed)"
)
TAIL_LINES = 20


class RunnerError(Exception):
    """An argv that cannot be run as configured (bad placeholder or value)."""


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int | None  # None: killed on timeout
    duration: float
    tail: tuple[str, ...]  # the last output lines, for the one-line failure reason
    output: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def last_line(self) -> str:
        return next((line for line in reversed(self.tail) if line.strip()), "")


SELECTORS = "{selectors}"  # a word of its own: the component's `--selector name=<r>` words


def fill(
    argv: Sequence[str], values: Mapping[str, str], selectors: Sequence[str] = ()
) -> list[str]:
    """Replace `{component}`, `{env}`, ... in each word (values must be plain names); the
    word `{selectors}` becomes the words `selectors` (none: it is dropped)."""
    filled: list[str] = []
    for word in argv:
        if word == SELECTORS:
            filled += selectors
        elif SELECTORS in word:
            raise RunnerError(f"{SELECTORS} must be a word of its own, not in {word!r}")
        else:
            filled.append(_fill_word(word, values))
    return filled


def _fill_word(word: str, values: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in PLACEHOLDERS:
            raise RunnerError(f"unknown placeholder {{{name}}} in {word!r}")
        value = values.get(name, "")
        if value and not _SAFE_VALUE_RE.match(value):
            raise RunnerError(f"refusing to pass {name} {value[:60]!r} to a command")
        return value

    return _PLACEHOLDER_RE.sub(sub, word)


def diff_outcome(returncode: int | None) -> str:
    """`helmfile diff --detailed-exitcode`: 0 no changes, 2 changes, anything else failed."""
    return {0: "no changes", 2: "changes"}.get(
        returncode if returncode is not None else -1, "failed"
    )


def changed_resources(output: str) -> list[str]:
    """`<namespace>/<Kind>/<name>` for each resource helm-diff reports added/changed/removed."""
    found: list[str] = []
    for raw in output.splitlines():
        m = _DIFF_HEADER_RE.match(_ANSI_RE.sub("", raw).rstrip())  # headers start a line
        if m:
            key = f"{m['ns']}/{m['kind'].strip()}/{m['name']}"
            if key not in found:
                found.append(key)
    return found


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None, group_file: bytes | None = None) -> None:
    """preexec: the child gets SIGKILL when the bot dies, even by `kill -9` (Linux). A bot
    that died before the prctl took effect sends no signal: with `parent` (the bot's pid,
    taken before the fork) the child then exits at once instead of running unwatched.
    `group_file`: the child writes its process group id there itself, before the command
    runs, so a bot killed at any moment after the spawn leaves the group findable (the bot's
    own write would come only once its event loop got to it)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)
    if group_file is not None:  # after setsid (start_new_session): the group id is our pid
        with contextlib.suppress(OSError):
            fd = os.open(group_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"%d\n" % os.getpgid(0))
            finally:
                os.close(fd)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - the deploy timeout is the product's setting
    log_path: Path,
    pgid_path: Path | None = None,
    redact: Callable[[str], str] | None = None,
) -> RunResult:
    """Run argv to completion (or kill its process group after `timeout` s), appending its
    output to `log_path`, each line through `redact` first (nothing secret reaches the disk
    or the result). Cancelling the caller kills the group too."""
    clean = redact or (lambda text: text)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    chunks: list[str] = []
    with log_path.open("a", encoding="utf-8") as log:
        log.write(clean(f"$ {' '.join(argv)}") + "\n")
        log.flush()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                # its group id on disk before it runs: found again after a crash
                # (bot.deploy.orphans), however soon after the spawn the bot dies
                preexec_fn=functools.partial(  # noqa: PLW1509 - a prctl and one small write
                    die_with_parent, os.getpid(), os.fsencode(pgid_path) if pgid_path else None
                ),
            )
        except OSError as exc:
            message = f"cannot run {argv[0]}: {exc.strerror or exc}"
            log.write(message + "\n")
            return RunResult(tuple(argv), 127, 0.0, (message,), message)

        async def pump() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                text = clean(raw.decode(errors="replace"))
                chunks.append(text)
                log.write(text)
                log.flush()

        returncode: int | None
        try:
            async with asyncio.timeout(timeout):
                await pump()
                returncode = await proc.wait()
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            returncode = None
            log.write(f"\n[deploybot] killed after {timeout:g}s timeout\n")
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            log.flush()
            if pgid_path is not None:
                with contextlib.suppress(OSError):
                    pgid_path.unlink()
        duration = time.monotonic() - started
        if returncode is not None:
            log.write(f"[deploybot] exit {returncode} after {duration:.1f}s\n\n")
    output = "".join(chunks)
    tail = tuple(_ANSI_RE.sub("", line) for line in output.splitlines()[-TAIL_LINES:])
    return RunResult(tuple(argv), returncode, duration, tail, output)
