"""The bot's edge to the GitLab REST API: python-gitlab run in threads, with deadlines,
retries and errors that are one clear line and never contain the token.

Every method returns plain values (dicts in GitLab's documented JSON shape, or `Tag`), so
callers never hold python-gitlab objects. Retries: 429 honours Retry-After (capped); 5xx,
connection errors and timeouts back off exponentially with jitter. Writes that GitLab may
already have applied (create commit/MR/note, merge) are retried only on 429 and failed
connections, never on a 5xx answer or a timeout, so a retry cannot apply them twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions as glexc
import requests

from bot.core.errors import GitLabError
from bot.core.tasks import within

T = TypeVar("T")
DOWN_HOLD = 30.0  # seconds GitLab, once it failed all retries of a call, gets one try per call


class _RateLimited(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__("429 Too Many Requests")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Tag:
    name: str
    commit: str
    created_at: str | None
    message: str


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _raise_on_rate_limit(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests response hook: turn 429 into an exception before python-gitlab sees it.

    python-gitlab would otherwise sleep for an uncapped Retry-After inside the thread.
    """
    if response.status_code == 429:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        response.close()
        raise _RateLimited(retry_after)


class GitLabAPI:
    """Async facade over one GitLab instance. `project` arguments take a path or an id."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.2,
        max_retry_after: float = 30.0,
        per_page: int = 100,
        call_timeout: float | None = None,
    ) -> None:
        self._token = token
        self._url = url.rstrip("/")
        self._retries = retries
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._per_page = per_page
        self._call_timeout = call_timeout if call_timeout is not None else timeout * 6
        self._rng = random.Random()
        self._trouble: tuple[float, str] | None = None  # (monotonic, why) of the last retry
        # after a call failed all its retries (5xx, unreachable, no answer), the calls until
        # this monotonic time try once: commands and monitors fail fast while GitLab is down
        self._down_until = 0.0
        self._session = requests.Session()
        self._session.hooks["response"].append(_raise_on_rate_limit)
        self._gl = gitlab.Gitlab(
            self._url,
            private_token=token,
            timeout=timeout,
            session=self._session,
            retry_transient_errors=False,
            per_page=per_page,
        )

    def close(self) -> None:
        self._session.close()

    # the retry loop

    def _clean(self, text: str) -> str:
        line = " ".join(str(text).split())
        if self._token:
            line = line.replace(self._token, "[token]")
        return line[:300]

    def trouble_since(self, since: float) -> str | None:
        """Why a call last had to retry, if that was after `since` (`time.monotonic()`):
        e.g. "GitLab rate-limits the bot: 429 with Retry-After 3600s, retries wait at most 30s"."""
        if self._trouble is None or self._trouble[0] < since:
            return None
        return self._trouble[1]

    def _delay(self, attempt: int) -> float:
        return min(self._backoff * 2**attempt * self._rng.uniform(0.5, 1.5), self._max_retry_after)

    async def _call(self, what: str, fn: Callable[[], T], *, write: bool = False) -> T:
        attempt = 0
        down = time.monotonic() < self._down_until
        while True:
            status: int | None = None
            try:
                result = await within(asyncio.to_thread(fn), self._call_timeout)
                self._down_until = 0.0
                return result
            except _RateLimited as err:
                status, reason = 429, "429 Too Many Requests (rate limited)"
                delay = self._delay(attempt) if err.retry_after is None else err.retry_after
                delay = min(delay, self._max_retry_after)
                asked = (
                    "" if err.retry_after is None else f" with Retry-After {err.retry_after:.0f}s"
                )
                self._trouble = (
                    time.monotonic(),
                    f"GitLab rate-limits the bot: 429{asked}, retries wait at most"
                    f" {self._max_retry_after:g}s",
                )
            except glexc.GitlabAuthenticationError as err:
                raise GitLabError(
                    f"GitLab {self._url} rejected the API token ({err.response_code}) "
                    f"during {what}: check gitlab.token_env",
                    err.response_code,
                ) from None
            except glexc.GitlabError as err:
                status = err.response_code
                reason = self._clean(f"{status} {err.error_message}")
                if status is None or status < 500 or write:
                    raise GitLabError(f"GitLab {what} failed: {reason}", status) from None
                delay = self._delay(attempt)
            except requests.ConnectionError as err:
                reason = self._clean(f"cannot reach {self._url}: {type(err).__name__}")
                delay = self._delay(attempt)
            except (TimeoutError, requests.Timeout):
                reason = f"no answer from {self._url} in time"
                if write:
                    raise GitLabError(
                        f"GitLab {what}: {reason}; it may or may not have been applied"
                    ) from None
                delay = self._delay(attempt)
            if status != 429:
                self._trouble = (time.monotonic(), f"GitLab slow or unreachable: {reason}")
                if down:
                    self._down_until = time.monotonic() + DOWN_HOLD
                    raise GitLabError(
                        f"GitLab {what} failed: {reason} (GitLab is failing; not retried)", status
                    )
            if attempt >= self._retries:
                if status != 429:
                    self._down_until = time.monotonic() + DOWN_HOLD
                raise GitLabError(
                    f"GitLab {what} failed after {attempt + 1} attempts: {reason}", status
                )
            await asyncio.sleep(delay)
            attempt += 1

    def _project(self, project: str | int) -> Any:
        return self._gl.projects.get(project, lazy=True)

    @staticmethod
    def _absent_on_404(fn: Callable[[], T]) -> Callable[[], T | None]:
        def run() -> T | None:
            try:
                return fn()
            except glexc.GitlabError as err:
                if err.response_code == 404:
                    return None
                raise

        return run

    # reads

    async def list_tags(self, project: str | int) -> list[Tag]:
        """All tags, newest commit first (GitLab's default order), across every page."""

        def run() -> list[Tag]:
            tags = self._project(project).tags.list(get_all=True, per_page=self._per_page)
            return [
                Tag(
                    name=t.name,
                    commit=t.commit["id"],
                    created_at=t.created_at or t.commit.get("created_at"),
                    message=t.message or "",
                )
                for t in tags
            ]

        return await self._call(f"list tags of {project}", run)

    async def get_commit(self, project: str | int, sha: str) -> dict[str, Any] | None:
        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._project(project).commits.get(sha).asdict()
            return result

        return await self._call(f"get commit {sha} of {project}", self._absent_on_404(run))

    async def commit_merge_requests(self, project: str | int, sha: str) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            commit = self._project(project).commits.get(sha, lazy=True)
            return list(commit.merge_requests(get_all=True))

        return await self._call(f"list MRs of commit {sha} in {project}", run)

    async def get_file(self, project: str | int, path: str, ref: str) -> str | None:
        def run() -> str:
            raw = self._project(project).files.raw(file_path=path, ref=ref)
            return bytes(raw).decode("utf-8")

        return await self._call(f"read {path}@{ref} of {project}", self._absent_on_404(run))

    async def file_history(
        self, project: str | int, path: str, ref: str, limit: int = 30
    ) -> list[str]:
        """Shas of the newest `limit` (at most 100) commits on `ref` that touched `path`,
        newest first; empty if none did."""
        per_page = min(max(limit, 1), 100)

        def run() -> list[str]:
            # `path=` would replace the URL; query_parameters then carries every filter
            found = self._project(project).commits.list(
                query_parameters={"path": path, "ref_name": ref},
                per_page=per_page,
                get_all=False,
            )
            return [str(c.id) for c in found][:per_page]

        return await self._call(f"list commits touching {path}@{ref} of {project}", run)

    async def get_branch(self, project: str | int, name: str) -> dict[str, Any] | None:
        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._project(project).branches.get(name).asdict()
            return result

        return await self._call(f"get branch {name} of {project}", self._absent_on_404(run))

    async def find_open_mr(self, project: str | int, source_branch: str) -> dict[str, Any] | None:
        def run() -> dict[str, Any] | None:
            mrs = self._project(project).mergerequests.list(
                state="opened", source_branch=source_branch, get_all=True
            )
            return mrs[0].asdict() if mrs else None

        return await self._call(f"find open MR from {source_branch} in {project}", run)

    async def merge_requests_from(
        self, project: str | int, source_branch: str, limit: int = 20
    ) -> list[dict[str, Any]]:
        """The newest `limit` MRs from `source_branch` in any state, newest first."""

        def run() -> list[dict[str, Any]]:
            mrs = self._project(project).mergerequests.list(
                state="all", source_branch=source_branch, get_all=False, per_page=limit
            )
            return [m.asdict() for m in mrs][:limit]

        return await self._call(f"list MRs from {source_branch} in {project}", run)

    async def get_mr(self, project: str | int, iid: int) -> dict[str, Any] | None:
        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._project(project).mergerequests.get(iid).asdict()
            return result

        return await self._call(f"get MR !{iid} of {project}", self._absent_on_404(run))

    async def compare(self, project: str | int, old: str, new: str) -> list[dict[str, Any]]:
        """The commits in `old..new` (refs, e.g. two tags), oldest first (compare API)."""

        def run() -> list[dict[str, Any]]:
            result = self._project(project).repository_compare(old, new)
            return list(result.get("commits") or [])

        return await self._call(f"compare {old}..{new} of {project}", run)

    async def mr_approvals(self, project: str | int, iid: int) -> dict[str, Any] | None:
        """The approvals state of an MR (`approved`, `approvals_left`, `approved_by`)."""

        def run() -> dict[str, Any]:
            mr = self._project(project).mergerequests.get(iid, lazy=True)
            result: dict[str, Any] = mr.approvals.get().asdict()
            return result

        return await self._call(
            f"get approvals of MR !{iid} of {project}", self._absent_on_404(run)
        )

    async def list_pipelines(
        self, project: str | int, sha: str | None = None, ref: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest pipelines (one page, newest first), optionally for one sha and/or ref."""
        filters = {k: v for k, v in (("sha", sha), ("ref", ref)) if v}

        def run() -> list[dict[str, Any]]:
            found = self._project(project).pipelines.list(
                get_all=False, per_page=self._per_page, **filters
            )
            return [p.asdict() for p in found]

        return await self._call(f"list pipelines of {project}", run)

    async def job_trace(self, project: str | int, job_id: int) -> str:
        def run() -> str:
            raw = self._project(project).jobs.get(job_id, lazy=True).trace()
            return bytes(raw).decode("utf-8", errors="replace")

        return await self._call(f"read log of job {job_id} in {project}", run)

    # writes

    async def create_commit(
        self,
        project: str | int,
        branch: str,
        message: str,
        actions: list[dict[str, Any]],
        start_branch: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """One commit of `actions` ({action, file_path, content}) on `branch`."""
        data: dict[str, Any] = {"branch": branch, "commit_message": message, "actions": actions}
        if start_branch:
            data["start_branch"] = start_branch
        if force:
            data["force"] = True

        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._project(project).commits.create(data).asdict()
            return result

        return await self._call(f"commit to {branch} of {project}", run, write=True)

    async def delete_branch(self, project: str | int, name: str) -> bool:
        """True if the branch was deleted, False if it did not exist."""

        def run() -> bool:
            self._project(project).branches.delete(name)
            return True

        deleted = await self._call(f"delete branch {name} of {project}", self._absent_on_404(run))
        return bool(deleted)

    async def create_mr(
        self, project: str | int, source: str, target: str, title: str, description: str
    ) -> dict[str, Any]:
        data = {
            "source_branch": source,
            "target_branch": target,
            "title": title,
            "description": description,
        }

        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._project(project).mergerequests.create(data).asdict()
            return result

        return await self._call(f"open MR {source} -> {target} in {project}", run, write=True)

    async def update_mr(
        self,
        project: str | int,
        iid: int,
        *,
        title: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        data = {k: v for k, v in (("title", title), ("description", description)) if v is not None}

        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._project(project).mergerequests.update(iid, data)
            return result

        return await self._call(f"update MR !{iid} of {project}", run)

    async def merge_mr(
        self, project: str | int, iid: int, *, remove_source_branch: bool = False
    ) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            mr = self._project(project).mergerequests.get(iid, lazy=True)
            return mr.merge(should_remove_source_branch=remove_source_branch or None)

        return await self._call(f"merge MR !{iid} of {project}", run, write=True)

    async def post_mr_note(self, project: str | int, iid: int, body: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            mr = self._project(project).mergerequests.get(iid, lazy=True)
            result: dict[str, Any] = mr.notes.create({"body": body}).asdict()
            return result

        return await self._call(f"comment on MR !{iid} of {project}", run, write=True)

    # deployments (GitLab's Environments page and the merge request widget read these)

    async def create_deployment(
        self, project: str | int, environment: str, ref: str, sha: str, *, tag: bool,
        status: str = "running",
    ) -> dict[str, Any]:  # fmt: skip
        """A deployment of `sha` (`ref`, a tag when `tag`) to `environment`, which GitLab
        creates when it does not exist yet."""
        data = {"environment": environment, "ref": ref, "sha": sha, "tag": tag, "status": status}

        def run() -> dict[str, Any]:
            result: dict[str, Any] = self._project(project).deployments.create(data).asdict()
            return result

        return await self._call(f"create a deployment in {project}", run, write=True)

    async def update_deployment(
        self, project: str | int, deployment_id: int, status: str
    ) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            deployment = self._project(project).deployments.get(deployment_id, lazy=True)
            deployment.status = status
            deployment.save()
            result: dict[str, Any] = deployment.asdict()
            return result

        return await self._call(f"update deployment {deployment_id} of {project}", run)

    async def set_environment_url(self, project: str | int, env_id: int, url: str) -> None:
        """The environment's external URL ("Open" on GitLab's Environments page)."""

        def run() -> None:
            self._project(project).environments.update(env_id, {"external_url": url})

        await self._call(f"set the URL of environment {env_id} of {project}", run)
