"""What the bot reads from a component's own repository: its release tags, and whether a
commit is on its default branch.

One small port (`ComponentSource`) with two implementations: the GitLab forge (tags and
commit APIs of the component project) and a plain git forge (`git ls-remote --tags` of the
component's `repo_url`, and a cached mirror clone under `state_dir` for ancestry checks).
Tag lists are cached for a few seconds so one chat command never lists them twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bot.config.model import ComponentConfig, Config
from bot.control.changes import Change, Changes, parse_git_log
from bot.control.gitlabport import GitLabPort
from bot.core.errors import GitLabError, UserError
from bot.core.git import GitError, git
from bot.core.tasks import shared, within
from bot.core.versions import Tag, parse_version

_FULL_SHA_RE = re.compile(r"[0-9a-f]{40}")
_PREFIX_RE = re.compile(r"[0-9a-f]{4,40}")


class SourceError(Exception):
    """The component's repository could not be read; one line, no secrets."""


@dataclass(frozen=True)
class MergedCommit:
    """A commit found in the component's repository (`on_branch`: on its default branch)."""

    sha: str
    url: str | None
    on_branch: bool = True


class ComponentSource(Protocol):
    async def tags(self, component: str) -> list[Tag]:
        """Every tag of the component's repository (name and tagged commit)."""
        ...

    async def merged(self, component: str, sha: str) -> MergedCommit | None:
        """The commit `sha` names (`on_branch` says whether it is on the default branch);
        None when the repository has no such commit."""
        ...

    async def changes(self, component: str, old: str, new: str) -> Changes | None:
        """The commits between two release versions (None when they cannot be read)."""
        ...

    async def is_ancestor(self, component: str, old: str, new: str) -> bool | None:
        """Is release `old` (its commit) an ancestor of, or the same commit as, release
        `new`? None when the history cannot say (no repository, unreadable)."""
        ...


@dataclass
class _TagCache:
    """Tag lists by key (GitLab: the component; plain git: the repository URL)."""

    ttl: float
    entries: dict[str, tuple[float, list[Tag]]] = field(default_factory=dict)

    def get(self, key: str) -> list[Tag] | None:
        hit = self.entries.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            return None
        return hit[1]

    def put(self, key: str, tags: list[Tag]) -> list[Tag]:
        self.entries[key] = (time.monotonic(), tags)
        return tags

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)


def _check_sha(sha: str) -> str:
    low = sha.lower()
    if _PREFIX_RE.fullmatch(low) is None:
        raise SourceError(f"{sha[:60]!r} is not a commit sha (4-40 hex digits)")
    return low


class GitLabSource:
    """Component repositories on GitLab (`components.<name>.project`)."""

    def __init__(self, config: Config, gitlab: GitLabPort, ttl: float = 15.0) -> None:
        self._config = config
        self._gitlab = gitlab
        self._cache = _TagCache(ttl)

    def _comp(self, component: str) -> ComponentConfig:
        comp = self._config.components[component]
        if not comp.project:
            raise SourceError(f"{component} has no GitLab project configured")
        return comp

    async def tags(self, component: str) -> list[Tag]:
        cached = self._cache.get(component)
        if cached is not None:
            return cached
        project = self._comp(component).project or ""
        try:
            found = await self._gitlab.list_tags(project)
        except GitLabError as exc:
            raise SourceError(str(exc)) from None
        return self._cache.put(component, [Tag(t.name, t.commit) for t in found])

    async def merged(self, component: str, sha: str) -> MergedCommit | None:
        comp = self._comp(component)
        project = comp.project or ""
        prefix = _check_sha(sha)
        try:
            commit = await self._gitlab.get_commit(project, prefix)
            if commit is None:
                return None
            full = str(commit.get("id", prefix))
            url = commit.get("web_url")
            if any(t.commit == full for t in await self.tags(component)):
                return MergedCommit(full, url)  # CI tags release builds of the default branch
            for mr in await self._gitlab.commit_merge_requests(project, full):
                if mr.get("state") == "merged" and mr.get("target_branch") == comp.default_branch:
                    return MergedCommit(full, url)
        except GitLabError as exc:
            raise SourceError(str(exc)) from None
        return MergedCommit(full, url, on_branch=False)

    async def changes(self, component: str, old: str, new: str) -> Changes | None:
        if not _versions(old, new):
            return None
        try:
            found = await self._gitlab.compare(self._comp(component).project or "", old, new)
        except GitLabError:
            return None
        commits = [
            Change(str(c.get("id", "")), str(c.get("author_name", "?")), str(c.get("title", "")))
            for c in reversed(found)
            if len(c.get("parent_ids") or []) <= 1  # merge commits say nothing new
        ]
        return Changes(old, new, tuple(commits))

    async def is_ancestor(self, component: str, old: str, new: str) -> bool | None:
        """By the compare API: `old` is in `new`'s history when `new..old` has no commits."""
        if not _versions(old, new):
            return None
        if old == new:
            return True
        try:
            found = await self._gitlab.compare(self._comp(component).project or "", new, old)
        except (GitLabError, SourceError):
            return None
        return not found


# Whether one commit is an ancestor of another never changes (a commit id names its whole
# history): settled answers are kept for the process, whichever repository or app asked.
_SETTLED: dict[tuple[str, str], bool] = {}


class GitSource:
    """Component repositories reachable by git (`components.<name>.repo_url`).

    Everything is kept per repository URL (components may share one): the tag list
    (`git ls-remote`, `ttl` seconds), one mirror clone, fetched at most every `fetch_every`
    seconds unless a ref is missing from it; the answers of ancestry checks are kept by the
    two commits, for the process (a fact that never changes). Concurrent askers share one ls-remote and
    one clone or fetch, so a cold `!status` over many components costs one of each per
    repository, and a warm one none."""

    ANCESTRY_KEPT = 20_000  # (old commit, new commit) answers remembered

    def __init__(self, config: Config, ttl: float = 15.0, fetch_every: float = 15.0) -> None:
        self._config = config
        self._cache = _TagCache(ttl)
        self._fetch_every = fetch_every
        self._fetched: dict[str, float] = {}  # URL -> monotonic start of its last fetch
        self._syncing: dict[str, asyncio.Lock] = {}
        self._listing: dict[str, asyncio.Future[list[Tag]]] = {}
        self._ancestry: dict[tuple[str, str, str], asyncio.Future[bool | None]] = {}  # asked now

    def _url(self, component: str) -> str:
        url = self._config.components[component].repo_url
        if not url:
            raise SourceError(f"{component} has no repo_url configured")
        if url.startswith("-"):
            raise SourceError(f"{component}: repo_url must not start with '-'")
        return url

    async def tags(self, component: str) -> list[Tag]:
        url = self._url(component)
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        flight = self._listing.get(url)
        if flight is None:
            flight = self._listing[url] = shared(self._list_tags(url))
            flight.add_done_callback(lambda _: self._listing.pop(url, None))
        try:
            return await asyncio.shield(flight)
        except GitError as exc:
            raise SourceError(f"cannot list tags of {component}: {exc}") from None

    async def _list_tags(self, url: str) -> list[Tag]:
        out = await git("ls-remote", "--tags", url, timeout=60)
        return self._cache.put(url, parse_ls_remote(out))

    def _mirror(self, url: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1])[:40]
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        return self._config.bot.state_dir / "checkouts" / "components" / f"{name}-{digest}"

    async def _sync_mirror(self, component: str, force: bool = False) -> Path:
        """The mirror of the component's repository, fetched if older than `fetch_every`, or
        (`force`) if no fetch started since this call was made."""
        url = self._url(component)
        path = self._mirror(url)
        asked = time.monotonic()
        async with self._syncing.setdefault(url, asyncio.Lock()):
            last = self._fetched.get(url)
            if (path / "HEAD").exists() and last is not None:
                if (last >= asked) if force else (asked - last < self._fetch_every):
                    return path
            started = time.monotonic()
            if not (path / "HEAD").exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                await git("clone", "--quiet", "--mirror", "--", url, str(path))
            else:
                await git("fetch", "--quiet", "--prune", "origin", cwd=path)
            self._fetched[url] = started
        return path

    async def merged(self, component: str, sha: str) -> MergedCommit | None:
        prefix = _check_sha(sha)
        branch = self._config.components[component].default_branch
        try:
            path = await self._sync_mirror(component)
            full = await self._commit(path, prefix)
            if full is None:  # maybe newer than our mirror
                path = await self._sync_mirror(component, force=True)
                full = await self._commit(path, prefix)
        except GitError as exc:
            raise SourceError(f"cannot read the repository of {component}: {exc}") from None
        if full is None:
            return None
        try:
            await git("merge-base", "--is-ancestor", full, f"refs/heads/{branch}", cwd=path)
        except GitError:
            return MergedCommit(full, None, on_branch=False)
        return MergedCommit(full, None)

    async def changes(self, component: str, old: str, new: str) -> Changes | None:
        if not _versions(old, new):
            return None
        argv = [
            "log",
            "--no-merges",
            "--format=%H%x1f%an%x1f%s",
            f"refs/tags/{old}..refs/tags/{new}",
        ]
        try:
            path = await self._sync_mirror(component)
            try:
                out = await git(*argv, "--", cwd=path)
            except GitError:  # maybe a tag newer than our mirror
                path = await self._sync_mirror(component, force=True)
                out = await git(*argv, "--", cwd=path)
        except (GitError, SourceError):
            return None
        return Changes(old, new, tuple(parse_git_log(out)))

    async def is_ancestor(self, component: str, old: str, new: str) -> bool | None:
        """Is the commit tagged `old` an ancestor of (or the commit) tagged `new`? The tags'
        commits come from the tag list; `git merge-base --is-ancestor` in the mirror answers
        once per pair of commits (concurrent askers share it)."""
        if not _versions(old, new):
            return None
        if old == new:
            return True
        try:
            url = self._url(component)
            commits = await self._tag_commits(component, old, new)
        except (GitError, SourceError):
            return None
        if commits is None:
            return None
        if commits[0] == commits[1]:
            return True
        settled = _SETTLED.get(commits)
        if settled is not None:
            return settled
        key = (url, *commits)
        answer = self._ancestry.get(key)
        if answer is None:
            answer = self._ancestry[key] = shared(self._merge_base(component, *commits))
        found = await asyncio.shield(answer)
        if self._ancestry.get(key) is answer:
            del self._ancestry[key]  # settled below, or unknown now: ask git again next time
        if found is not None:
            _SETTLED[commits] = found
            if len(_SETTLED) > self.ANCESTRY_KEPT:
                del _SETTLED[next(iter(_SETTLED))]
        return found

    async def _merge_base(self, component: str, old: str, new: str) -> bool | None:
        try:
            path = await self._sync_mirror(component)
            answer = await is_ancestor_in(path, old, new)
            if answer is None:  # a commit newer than the mirror
                path = await self._sync_mirror(component, force=True)
                answer = await is_ancestor_in(path, old, new)
        except (GitError, SourceError):
            return None
        return answer

    async def _tag_commits(self, component: str, *names: str) -> tuple[str, str] | None:
        """The commits the two tags name; the list is read again once if one is missing
        (a tag pushed since it was listed)."""
        for again in (False, True):
            if again:
                self._cache.forget(self._url(component))
            by_name = {t.name: t.commit for t in await self.tags(component)}
            commits = [by_name.get(n) for n in names]
            if all(commits):
                return str(commits[0]), str(commits[1])
        return None

    @staticmethod
    async def _commit(path: Path, prefix: str) -> str | None:
        try:
            out = await git("rev-parse", "--verify", "--quiet", f"{prefix}^{{commit}}", cwd=path)
        except GitError:
            return None
        full = out.strip()
        return full if _FULL_SHA_RE.fullmatch(full) else None


async def is_ancestor_in(repo: Path, old: str, new: str) -> bool | None:
    """`git merge-base --is-ancestor old new` in `repo`: True, False, or None (git failed)."""
    proc = await asyncio.create_subprocess_exec(
        "git", "merge-base", "--is-ancestor", old, new, cwd=repo,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        code = await within(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return {0: True, 1: False}.get(code)


def parse_ls_remote(out: str) -> list[Tag]:
    """Tags from `git ls-remote --tags` output; annotated tags use the peeled commit."""
    direct: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if not ref.startswith("refs/tags/"):
            continue
        name = ref.removeprefix("refs/tags/")
        if name.endswith("^{}"):
            peeled[name[:-3]] = sha
        else:
            direct[name] = sha
    return [Tag(name, peeled.get(name, sha)) for name, sha in direct.items()]


class ConfiguredSource:
    """Per component, the chart repository when it has `helm_repo` (upstream charts), the
    GitLab source when it has a project and GitLab is configured, else the git source (its
    `repo_url`)."""

    def __init__(
        self, config: Config, gitlab: GitLabPort | None, charts: ComponentSource | None = None
    ) -> None:
        self._config = config
        self._gitlab = GitLabSource(config, gitlab) if gitlab is not None else None
        self._git = GitSource(config)
        self._charts = charts

    def _for(self, component: str) -> ComponentSource:
        comp = self._config.components[component]
        if comp.helm_repo:
            if self._charts is None:
                raise SourceError(f"{component}: chart repositories are not available here")
            return _OneLine(self._charts)
        if comp.project and self._gitlab is not None:
            return self._gitlab
        if comp.repo_url:
            return self._git
        raise SourceError(f"{component} has neither a GitLab project nor a repo_url configured")

    async def tags(self, component: str) -> list[Tag]:
        return await self._for(component).tags(component)

    async def merged(self, component: str, sha: str) -> MergedCommit | None:
        return await self._for(component).merged(component, sha)

    async def changes(self, component: str, old: str, new: str) -> Changes | None:
        try:
            return await self._for(component).changes(component, old, new)
        except SourceError:
            return None

    async def is_ancestor(self, component: str, old: str, new: str) -> bool | None:
        try:
            return await self._for(component).is_ancestor(component, old, new)
        except SourceError:
            return None


class _OneLine:
    """A source whose one-line errors (`UserError`) become `SourceError`s."""

    def __init__(self, inner: ComponentSource) -> None:
        self._inner = inner

    async def tags(self, component: str) -> list[Tag]:
        try:
            return await self._inner.tags(component)
        except UserError as exc:
            raise SourceError(str(exc)) from None

    async def merged(self, component: str, sha: str) -> MergedCommit | None:
        return await self._inner.merged(component, sha)

    async def changes(self, component: str, old: str, new: str) -> Changes | None:
        return await self._inner.changes(component, old, new)

    async def is_ancestor(self, component: str, old: str, new: str) -> bool | None:
        return await self._inner.is_ancestor(component, old, new)


def _versions(*names: str) -> bool:
    """Both are release versions (so safe and meaningful as tag names)."""
    return all((v := parse_version(n)) is not None and v.is_release for n in names)
