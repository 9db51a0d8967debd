"""The deployment control repository as the bot reads it: which version is pinned where.

The bot keeps one checkout under `<state_dir>/checkouts/control`, reused between calls and
refreshed from the remote (at most every `max_age` seconds for reads). Reads come from the
remote-tracking branch (`origin/<branch>`), or any other ref, through `git show`, so the
work tree can be reset for edits without disturbing readers. A file at a commit never
changes: reads at a commit id, or at the tracking branch (whose commit is read from the ref
files, as git stores them), are kept (`READ_CACHE` files), so a `!status` over many
components does not run one `git show` per pin and view.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from bot.config.model import ComponentConfig, Config
from bot.control.pins import PinError, pin_file_candidates, read_pin
from bot.core.git import GitError, git

READ_CACHE = 2048  # (commit, path) -> text, least recently used dropped
_SHA_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class PinValue:
    """One pin as found in the control repo (value None with `error` when unreadable)."""

    component: str
    env: str
    path: str
    key: str
    value: str | None
    error: str | None = None


class ControlRepo:
    """A reused git checkout of the control repo (plain git forge, or a GitLab clone URL)."""

    def __init__(self, url: str, branch: str, workdir: Path):
        self.url = url
        self.branch = branch
        self.workdir = workdir
        self._lock = asyncio.Lock()
        self._fetched_at = 0.0
        self._texts: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._logs: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        self._present: set[str] = set()  # commits a read found (a later fetch may bring others)

    @property
    def tracking(self) -> str:
        return f"origin/{self.branch}"

    async def sync(self, max_age: float = 0.0) -> None:
        """Clone or fetch the remote (skipped if fetched less than `max_age` s ago)."""
        async with self._lock:
            if max_age and time.monotonic() - self._fetched_at < max_age:
                return
            if not (self.workdir / ".git").exists():
                self.workdir.parent.mkdir(parents=True, exist_ok=True)
                await git("clone", "--quiet", "--no-checkout", "--", self.url, str(self.workdir))
            else:
                await git("fetch", "--quiet", "--prune", "origin", cwd=self.workdir)
            self._fetched_at = time.monotonic()

    async def read(self, path: str, ref: str | None = None) -> str | None:
        """The file's text at `ref` (default: the remote branch); None if it does not exist."""
        commit = self._commit_of(ref or self.tracking)
        key = (commit or "", path)
        if key in self._texts:
            self._texts.move_to_end(key)
            return self._texts[key]
        try:
            text: str | None = await git("show", f"{commit or ref or self.tracking}:{path}",
                                         cwd=self.workdir)  # fmt: skip
        except GitError:
            text = None
        if commit is None:
            return text
        if text is not None or ref in (None, self.tracking):
            self._present.add(commit)
        if commit in self._present:  # a missing file is kept only at a commit known to exist
            self._texts[key] = text
            if len(self._texts) > READ_CACHE:
                self._texts.popitem(last=False)
                self._present.intersection_update(c for c, _ in self._texts)
        return text

    async def commits_touching(self, path: str, limit: int) -> list[str]:
        """The last `limit` commits of the tracking branch that changed `path`, newest first
        (kept per tracking commit, as the reads are)."""
        commit = self._commit_of(self.tracking)
        key = (commit or "", f"log -n{limit} -- {path}")
        if commit is not None and key in self._logs:
            return list(self._logs[key])
        try:
            out = await git("log", f"-n{limit}", "--format=%H", commit or self.tracking, "--",
                            path, cwd=self.workdir)  # fmt: skip
        except GitError:
            return []
        found = out.split()
        if commit is not None:
            self._logs[key] = found
            if len(self._logs) > READ_CACHE:
                self._logs.popitem(last=False)
        return list(found)

    def _commit_of(self, ref: str) -> str | None:
        """The commit id of a full commit id, or of the tracking branch as its ref file (or
        packed-refs) says now; None for anything else (read through git, not kept)."""
        if _SHA_RE.fullmatch(ref):
            return ref
        if ref != self.tracking:
            return None
        name = f"refs/remotes/{ref}"
        try:
            value = (self.workdir / ".git" / name).read_text().strip()
        except OSError:
            try:
                packed = (self.workdir / ".git" / "packed-refs").read_text()
            except OSError:
                return None
            value = next((line.split(" ", 1)[0] for line in packed.splitlines()
                          if line.endswith(f" {name}")), "")  # fmt: skip
        return value if _SHA_RE.fullmatch(value) else None

    async def rev(self, ref: str | None = None) -> str:
        return (await git("rev-parse", ref or self.tracking, cwd=self.workdir)).strip()

    async def names_at(self, ref: str, folder: str) -> list[str]:
        """The file names directly in `folder` at `ref` (empty when it does not exist)."""
        try:
            out = await git("ls-tree", "--name-only", ref, "--", folder.rstrip("/") + "/",
                            cwd=self.workdir)  # fmt: skip
        except GitError:
            return []
        return [line.rsplit("/", 1)[-1] for line in out.splitlines() if line]

    async def tasks_at(
        self, ref: str, component: str, comp: ComponentConfig, env: str
    ) -> list[str]:
        """The `Bug: T123` trailers of the commit that last changed the component's pins in
        env at `ref` (the bump a deploy applies), so its SAL entries name the tasks."""
        paths: list[str] = []
        for pin in comp.pins:
            try:
                paths += pin_file_candidates(pin.file, component, env)
            except PinError:
                continue
        try:
            body = await git("log", "-n", "1", "--format=%B", ref, "--", *paths, cwd=self.workdir)
        except GitError:
            return []
        return list(dict.fromkeys(_TRAILER_RE.findall(body)))

    async def pins(
        self, component: str, comp: ComponentConfig, env: str, ref: str | None = None
    ) -> list[PinValue]:
        """Every configured pin of component in env, read at `ref`."""
        out = []
        for pin in comp.pins:
            try:
                candidates = pin_file_candidates(pin.file, component, env)
            except PinError as exc:
                out.append(PinValue(component, env, pin.file, pin.key, None, str(exc)))
                continue
            for path in candidates:
                text = await self.read(path, ref)
                if text is None:
                    continue
                try:
                    out.append(PinValue(component, env, path, pin.key, read_pin(text, pin.key)))
                except PinError as exc:
                    out.append(PinValue(component, env, path, pin.key, None, str(exc)))
                break
            else:
                out.append(
                    PinValue(component, env, candidates[0], pin.key, None, "pin file not found")
                )
        return out


_TRAILER_RE = re.compile(r"^Bug: (T[0-9]{1,9})\s*$", re.MULTILINE)


def control_repo_from_config(config: Config) -> ControlRepo | None:
    """The checkout for the configured control repo (git forge), if any."""
    cr = config.control_repo
    if cr is None or cr.url is None:
        return None
    return ControlRepo(cr.url, cr.branch, config.bot.state_dir / "checkouts" / "control")
