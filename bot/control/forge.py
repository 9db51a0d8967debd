"""Where bump commits go: the control repo's forge, behind one small port.

`GitLabControl` (forge: gitlab) reads files through the API and proposes each bump as one
commit on branch `bump_<component>` (reset onto the target branch every time) with a single
merge request for it, reusing whichever MR is already open on that branch. `GitControl`
(forge: git) commits on the reused checkout under `state_dir`, reset hard to the remote, and
pushes straight to the branch; a push that loses a race raises `PushRace` so the caller
re-plans on a fresh checkout. Before either writes, it hands the caller what will find the
change again (`BeforePush`), and after a restart `find_published` says whether it got there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.config.model import Config
from bot.control.gitlabport import GitLabPort
from bot.control.repo import ControlRepo
from bot.core.errors import GitLabError, UserError
from bot.core.git import GitError, git


class BumpError(UserError):
    """A bump that could not be made; the line says what was and was not changed."""


class PushRace(Exception):
    """The branch moved on the remote while we committed; re-plan and try again."""


class ForgeUnreachable(Exception):
    """The forge cannot say now whether an intent's change got there; ask again later."""


@dataclass(frozen=True)
class FileEdit:
    path: str
    old_text: str
    new_text: str


@dataclass(frozen=True)
class OpenBump:
    """The open bump MR of a component."""

    iid: int
    url: str
    branch: str


@dataclass(frozen=True)
class Published:
    action: str  # opened | updated | unchanged | pushed (after a restart also merged | closed)
    commit_sha: str
    mr: OpenBump | None = None


# called before the forge is written to: the commit id when known beforehand (git) or "", and
# what finds the change on the forge after a crash (GitLab: branch, prior head, message, MR)
BeforePush = Callable[[str, dict[str, Any]], Awaitable[None]]
_HISTORY_READS = 4  # concurrent file reads while walking a pin's history on GitLab


def bump_branch(component: str) -> str:
    return f"bump_{component}"


class ControlForge(Protocol):
    kind: str  # "gitlab" or "git"
    # seconds a publishing call a crash cut off may still take effect on the forge
    in_flight: float
    branch: str  # the target branch

    async def refresh(self, max_age: float = 0.0) -> None:
        """Make reads current (git: fetch, unless fetched less than `max_age` s ago)."""
        ...

    async def read(self, path: str, ref: str | None = None) -> str | None:
        """A file's text on the target branch (or `ref`); None if it does not exist."""
        ...

    async def history(self, path: str, limit: int = 30) -> list[str]:
        """The file's texts on the target branch, newest first (empty if too costly)."""
        ...

    async def open_bump(self, component: str) -> OpenBump | None: ...

    async def publish(
        self,
        component: str,
        files: list[FileEdit],
        message: str,
        description: str,
        before_push: BeforePush | None = None,
    ) -> Published: ...

    async def find_published(self, sha: str, mark: Mapping[str, Any]) -> Published | None:
        """After a restart: the change an intent planned if the forge has it, None if it
        never got there; ForgeUnreachable when the forge cannot tell now."""
        ...


class GitLabControl:
    """Control repo on GitLab: bumps are merge requests from `bump_<component>`."""

    kind = "gitlab"
    in_flight = 60.0  # a request GitLab already read runs to its own (Puma) 60 s timeout

    def __init__(self, gitlab: GitLabPort, project: str, branch: str) -> None:
        self._gl = gitlab
        self.project = project
        self.branch = branch

    async def refresh(self, max_age: float = 0.0) -> None:
        return None

    async def read(self, path: str, ref: str | None = None) -> str | None:
        try:
            return await self._gl.get_file(self.project, path, ref or self.branch)
        except GitLabError as exc:
            raise BumpError(f"cannot read {path} from the control repo: {exc}") from None

    async def history(self, path: str, limit: int = 30) -> list[str]:
        """One call for the commits touching `path`, then one read per commit (a few at a
        time); a commit that deleted the file is skipped."""
        try:
            shas = await self._gl.file_history(self.project, path, self.branch, limit)
        except GitLabError as exc:
            raise BumpError(f"cannot read the history of {path}: {exc}") from None
        gate = asyncio.Semaphore(_HISTORY_READS)

        async def read_at(sha: str) -> str | None:
            async with gate:
                return await self._gl.get_file(self.project, path, sha)

        results = await asyncio.gather(
            *(read_at(sha) for sha in shas[:limit]), return_exceptions=True
        )
        texts = []
        for result in results:
            if isinstance(result, GitLabError):
                raise BumpError(f"cannot read the history of {path}: {result}")
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                texts.append(result)
        return texts

    async def open_bump(self, component: str) -> OpenBump | None:
        try:
            mr = await self._gl.find_open_mr(self.project, bump_branch(component))
        except GitLabError as exc:
            raise BumpError(f"cannot look up the bump MR: {exc}") from None
        return None if mr is None else _open_bump(mr)

    async def publish(
        self,
        component: str,
        files: list[FileEdit],
        message: str,
        description: str,
        before_push: BeforePush | None = None,
    ) -> Published:
        branch = bump_branch(component)
        title = message.split("\n", 1)[0]
        try:
            existing = await self.open_bump(component)
            if existing is not None and await self._branch_has(existing.branch, files):
                head = await self._gl.get_branch(self.project, branch)
                sha = str((head or {}).get("commit", {}).get("id", ""))
                return Published("unchanged", sha, existing)
            before = await self._gl.get_branch(self.project, branch)
            existed = existing is not None or before is not None
        except GitLabError as exc:
            raise BumpError(f"nothing changed: cannot read the control repo: {exc}") from None
        if before_push is not None:
            prior = str(before["commit"]["id"]) if before else None
            await before_push("", {
                "branch": branch, "prior_head": prior, "message": message, "title": title,
                "description": description, "mr": existing.iid if existing else None,
            })  # fmt: skip
        actions = [{"action": "update", "file_path": f.path, "content": f.new_text} for f in files]
        try:
            commit = await self._gl.create_commit(
                self.project, branch, message, actions, start_branch=self.branch, force=True
            )
        except GitLabError as exc:
            if existed:
                raise BumpError(f"could not commit to {branch} (check it): {exc}") from None
            try:  # a 5xx answer may hide a commit that was made: leave no branch behind
                await self._gl.delete_branch(self.project, branch)
            except GitLabError:
                raise BumpError(
                    f"could not commit to {branch} ({exc}) and could not check that it is gone"
                ) from None
            raise BumpError(f"nothing changed: could not commit to {branch}: {exc}") from None
        sha = str(commit.get("id", ""))
        if existing is not None:
            try:
                await self._gl.update_mr(
                    self.project, existing.iid, title=title, description=description
                )
            except GitLabError as exc:
                raise BumpError(
                    f"pushed {sha[:8]} to {branch} (MR !{existing.iid} shows it) but could not "
                    f"retitle the MR: {exc}"
                ) from None
            return Published("updated", sha, existing)
        return await self._open_mr(branch, title, description, sha, existed)

    async def _open_mr(
        self, branch: str, title: str, description: str, sha: str, existed: bool
    ) -> Published:
        try:
            mr = await self._gl.create_mr(self.project, branch, self.branch, title, description)
            return Published("opened", sha, _open_bump(mr))
        except GitLabError as exc:
            error = exc
        if error.status == 409:  # opened meanwhile (by CI): reuse it
            found = await self._gl.find_open_mr(self.project, branch)
            if found is not None:
                return Published("updated", sha, _open_bump(found))
        if existed:
            raise BumpError(
                f"committed {sha[:8]} to existing branch {branch} but could not open its MR: "
                f"{error}"
            )
        try:
            await self._gl.delete_branch(self.project, branch)
        except GitLabError as exc:
            raise BumpError(
                f"could not open the bump MR ({error}); branch {branch} is left over and could "
                f"not be deleted ({exc})"
            ) from None
        raise BumpError(f"nothing changed: could not open the bump MR ({error}); removed {branch}")

    async def find_published(self, sha: str, mark: Mapping[str, Any]) -> Published | None:
        """The commit an intent planned: the bump branch's head or the head of an MR from
        it (merged or not), never the head the branch had before, with the planned message;
        and its MR. A commit that got no MR (a crash between the two calls) gets it now."""
        try:
            return await self._find(mark)
        except (GitLabError, BumpError) as exc:
            raise ForgeUnreachable(str(exc)) from None

    async def _find(self, mark: Mapping[str, Any]) -> Published | None:
        if not mark.get("branch") or not mark.get("message"):
            return None  # written for another forge: nothing of it can be here
        branch, message = str(mark["branch"]), str(mark["message"]).strip()
        head = await self._gl.get_branch(self.project, branch)
        mrs = await self._gl.merge_requests_from(self.project, branch)
        tip = str(head["commit"]["id"]) if head else ""
        ours = None
        for sha in dict.fromkeys([tip, *(str(m.get("sha") or "") for m in mrs)]):
            if not sha or sha == mark.get("prior_head"):
                continue
            commit = head["commit"] if head and sha == tip else await self._gl.get_commit(
                self.project, sha
            )  # fmt: skip
            if commit is not None and str(commit.get("message", "")).strip() == message:
                ours = sha
                break
        if ours is None:
            return None
        opened = [m for m in mrs if m.get("state") == "opened"] if ours == tip else []
        mr = next(iter(opened), None) or next((m for m in mrs if m.get("sha") == ours), None)
        title, description = str(mark.get("title", "")), str(mark.get("description", ""))
        if mr is None:
            return await self._open_mr(branch, title, description, ours, existed=True)
        state = str(mr.get("state"))
        if state != "opened":
            return Published(state, ours, _open_bump(mr))
        if mr.get("title") != title:  # the crash may have come before the retitle
            await self._gl.update_mr(self.project, int(mr["iid"]), title=title,
                                     description=description)  # fmt: skip
        action = "updated" if mark.get("mr") == mr["iid"] else "opened"
        return Published(action, ours, _open_bump(mr))

    async def _branch_has(self, branch: str, files: list[FileEdit]) -> bool:
        for f in files:
            if await self._gl.get_file(self.project, f.path, branch) != f.new_text:
                return False
        return True


def _open_bump(mr: dict[str, object]) -> OpenBump:
    return OpenBump(int(str(mr["iid"])), str(mr.get("web_url", "")), str(mr["source_branch"]))


class GitControl:
    """Control repo over plain git: bumps are commits pushed straight to the branch."""

    kind = "git"
    in_flight = 150.0  # a push runs up to git's 120 s timeout (bot.core.git), plus a margin

    def __init__(self, control: ControlRepo) -> None:
        self._control = control
        self.branch = control.branch
        self._write = asyncio.Lock()  # one shared work tree

    @property
    def workdir(self) -> Path:
        return self._control.workdir

    async def refresh(self, max_age: float = 0.0) -> None:
        try:
            await self._control.sync(max_age)
        except GitError as exc:
            raise BumpError(f"cannot fetch the control repo: {exc}") from None

    async def read(self, path: str, ref: str | None = None) -> str | None:
        return await self._control.read(path, ref)

    async def history(self, path: str, limit: int = 30) -> list[str]:
        texts = []
        for sha in await self._control.commits_touching(path, limit):
            text = await self._control.read(path, sha)
            if text is not None:
                texts.append(text)
        return texts

    async def open_bump(self, component: str) -> OpenBump | None:
        return None

    async def publish(
        self,
        component: str,
        files: list[FileEdit],
        message: str,
        description: str,
        before_push: BeforePush | None = None,
    ) -> Published:
        async with self._write:
            return await self._commit_and_push(files, message, before_push)

    async def find_published(self, sha: str, mark: Mapping[str, Any]) -> Published | None:
        """Pushed if `sha` is on the remote branch after a fresh fetch."""
        if not sha:
            return None  # written for another forge (GitLab gives the id)
        try:
            await self._control.sync()
        except GitError as exc:
            raise ForgeUnreachable(f"cannot fetch the control repo: {exc}") from None
        try:
            await git("merge-base", "--is-ancestor", sha, self._control.tracking,
                      cwd=self.workdir)  # fmt: skip
        except GitError:
            return None
        return Published("pushed", sha)

    async def _commit_and_push(
        self, files: list[FileEdit], message: str, before_push: BeforePush | None = None
    ) -> Published:
        tracking = self._control.tracking
        try:
            await git("reset", "--quiet", "--hard", tracking, cwd=self.workdir)
            base = await self._control.rev()
        except GitError as exc:
            raise BumpError(f"nothing changed: cannot reset the checkout: {exc}") from None
        root = self.workdir.resolve()
        for f in files:
            target = (root / f.path).resolve()
            if not target.is_relative_to(root) or ".git" in Path(f.path).parts:
                raise BumpError(f"nothing changed: {f.path} is outside the control repo")
            try:
                current = target.read_bytes().decode()
            except (OSError, UnicodeDecodeError):
                current = None
            if current != f.old_text:  # the remote moved since we planned
                raise PushRace()
            target.write_bytes(f.new_text.encode())
        try:
            await git("add", "--", *[f.path for f in files], cwd=self.workdir)
            await git("commit", "--quiet", "-m", message, cwd=self.workdir)
            sha = (await git("rev-parse", "HEAD", cwd=self.workdir)).strip()
        except GitError as exc:
            await self._discard(tracking)
            raise BumpError(f"nothing changed: commit failed: {exc}") from None
        if before_push is not None:
            await before_push(sha, {})
        try:
            await git(
                "push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.workdir
            )
        except GitError as exc:
            await self._discard(tracking)
            if await self._moved(base):
                raise PushRace() from None
            raise BumpError(f"nothing changed: push to {self.branch} failed: {exc}") from None
        return Published("pushed", sha)

    async def _moved(self, base: str) -> bool:
        """True if the remote branch moved away from `base` (someone pushed first)."""
        try:
            await self._control.sync()
            return await self._control.rev() != base
        except GitError:
            return False

    async def _discard(self, tracking: str) -> None:
        try:
            await git("reset", "--quiet", "--hard", tracking, cwd=self.workdir)
        except GitError:
            pass


def control_forge_from_config(
    config: Config, control: ControlRepo | None, gitlab: GitLabPort | None
) -> ControlForge | None:
    """The forge bumps go to, or None when the control repo is not configured."""
    cr = config.control_repo
    if cr is None:
        return None
    if cr.forge == "gitlab":
        if gitlab is None or not cr.project:
            return None
        return GitLabControl(gitlab, cr.project, cr.branch)
    return GitControl(control) if control is not None else None
